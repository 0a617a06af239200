//! The contract's input rules, shared by both services so they can never disagree.
//!
//! Each function returns the value as it is stored (normalized) or a reason fit for a
//! `google.rpc.BadRequest` field violation. None of them panics, on any input.

/// The longest email address accepted, in characters.
pub const EMAIL_MAX_CHARS: usize = 254;
/// The shortest password accepted, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// The longest password accepted, in bytes: caps the work one Argon2 call can be made to do.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// The longest display name accepted, in characters after trimming.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;

/// Checks an email address and returns it lower-cased: at most 254 characters, exactly one
/// `@`, a non-empty local part, and a domain of non-empty labels with at least one dot. No
/// white space or control characters anywhere.
pub fn email(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("email is required");
    }
    if raw.chars().count() > EMAIL_MAX_CHARS {
        return Err("email must be at most 254 characters");
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("email must not contain spaces or control characters");
    }
    let mut parts = raw.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("email must contain exactly one @");
    };
    if local.is_empty() {
        return Err("email must have a part before the @");
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err("email must have a domain with a dot, such as example.com");
    }
    Ok(raw.to_lowercase())
}

/// Checks a new password: at least 8 characters and at most 1024 bytes.
pub fn password(raw: &str) -> Result<(), &'static str> {
    if raw.len() > PASSWORD_MAX_BYTES {
        return Err("password must be at most 1024 bytes");
    }
    if raw.chars().count() < PASSWORD_MIN_CHARS {
        return Err("password must be at least 8 characters");
    }
    Ok(())
}

/// Checks a display name and returns it trimmed: 1 to 100 characters, no control characters.
pub fn display_name(raw: &str) -> Result<String, &'static str> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("display name is required");
    }
    if trimmed.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err("display name must be at most 100 characters");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("display name must not contain control characters");
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(email("Ada@Example.COM").unwrap(), "ada@example.com");
        assert_eq!(email("a@x.io").unwrap(), "a@x.io");
        for bad in [
            "",
            "ada",
            "@x.io",
            "a@b@x.io",
            "a@localhost",
            "a@.io",
            "a@x.",
            "a b@x.io",
            "a@x.io\n",
        ] {
            assert!(email(bad).is_err(), "{bad:?} was accepted");
        }
        let longest = format!("{}@x.io", "a".repeat(249));
        assert!(email(&longest).is_ok());
        assert!(email(&format!("a{longest}")).is_err());
    }

    #[test]
    fn passwords_have_a_floor_in_characters_and_a_cap_in_bytes() {
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
        assert!(password("ééééééé").is_err(), "7 characters, 14 bytes");
        assert!(password(&"x".repeat(1024)).is_ok());
        assert!(password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_checked() {
        assert_eq!(display_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(display_name("   ").is_err());
        assert!(display_name("Ada\u{0007}").is_err());
        assert!(display_name(&"é".repeat(100)).is_ok());
        assert!(display_name(&"é".repeat(101)).is_err());
    }
}
