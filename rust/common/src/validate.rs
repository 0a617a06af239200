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
    // Lower case can be longer (`İ` is two characters in it), and the lower-cased form is the
    // one stored and checked again by the other service, so it is the one that must fit.
    let lower = raw.to_lowercase();
    if lower.chars().count() > EMAIL_MAX_CHARS {
        return Err("email must be at most 254 characters");
    }
    Ok(lower)
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
        // 254 characters, but 255 once lower-cased: what is stored must pass this check too.
        let dotted_capital_i = format!("\u{130}{}@x.io", "a".repeat(248));
        assert_eq!(dotted_capital_i.chars().count(), 254);
        assert!(email(&dotted_capital_i).is_err());
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

/// Property tests: each rule, on any input, never panics, returns what it promises, and accepts
/// what it returned (so normalizing twice changes nothing, and a value stored by one service
/// passes the other's check).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Any text, weighted towards what the rules look at: `@`, dots, white space, controls,
    /// and characters whose lower case is longer than they are (`İ`).
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,300}",
            "[a@. \\t\\x00\\x7fİÉé\\u{2028}]{0,300}",
            "[a-zA-Zİ]{0,260}@[a-z.]{0,10}",
        ]
    }

    /// Addresses the rule must accept: a local part, then two to four domain labels.
    fn valid_email() -> impl Strategy<Value = String> {
        (
            "[A-Za-z0-9._%+!#-]{1,64}",
            prop::collection::vec("[A-Za-z0-9-]{1,20}", 2..5),
        )
            .prop_map(|(local, labels)| format!("{local}@{}", labels.join(".")))
    }

    proptest! {
        #[test]
        fn an_accepted_email_is_lower_cased_well_formed_and_accepted_again(raw in text()) {
            if let Ok(email) = email(&raw) {
                prop_assert_eq!(&email, &raw.to_lowercase());
                prop_assert!(email.chars().count() <= EMAIL_MAX_CHARS);
                prop_assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()));
                let (local, domain) = email.split_once('@').unwrap();
                prop_assert!(!local.is_empty() && !domain.contains('@'));
                prop_assert!(domain.split('.').count() >= 2);
                prop_assert!(domain.split('.').all(|label| !label.is_empty()));
                prop_assert_eq!(super::email(&email), Ok(email.clone()));
            }
        }

        #[test]
        fn well_formed_emails_are_accepted_in_lower_case(raw in valid_email()) {
            prop_assert_eq!(email(&raw), Ok(raw.to_lowercase()));
        }

        #[test]
        fn an_email_with_white_space_or_a_second_at_is_rejected(
            raw in valid_email(),
            at: prop::sample::Index,
            bad in "[ \\t\\n\\r\\x00\\x1b\\u{a0}\\u{2028}@]",
        ) {
            let at = at.index(raw.len() + 1);
            prop_assume!(raw.is_char_boundary(at));
            let spoiled = format!("{}{bad}{}", &raw[..at], &raw[at..]);
            prop_assert!(email(&spoiled).is_err(), "{:?} was accepted", spoiled);
        }

        #[test]
        fn a_password_is_accepted_exactly_from_8_characters_to_1024_bytes(raw in prop_oneof![
            ".{0,20}",
            "[xé]{1000,1030}",
        ]) {
            let accepted = raw.chars().count() >= PASSWORD_MIN_CHARS && raw.len() <= PASSWORD_MAX_BYTES;
            prop_assert_eq!(password(&raw).is_ok(), accepted);
        }

        #[test]
        fn an_accepted_display_name_is_trimmed_bounded_and_accepted_again(raw in text()) {
            if let Ok(name) = display_name(&raw) {
                prop_assert_eq!(name.as_str(), raw.trim());
                let chars = name.chars().count();
                prop_assert!((1..=DISPLAY_NAME_MAX_CHARS).contains(&chars));
                prop_assert!(!name.chars().any(char::is_control));
                prop_assert_eq!(display_name(&name), Ok(name.clone()));
            }
        }

        #[test]
        fn a_display_name_is_accepted_whatever_white_space_surrounds_it(
            name in "[^\\p{Cc}\\s][^\\p{Cc}]{0,98}[^\\p{Cc}\\s]",
            before in "[ \\t\\n\\u{3000}]{0,5}",
            after in "[ \\t\\n\\u{3000}]{0,5}",
        ) {
            prop_assert_eq!(display_name(&format!("{before}{name}{after}")), Ok(name.clone()));
        }
    }
}
