//! The contract's input rules that JSON Schema can state exactly, by field: the OpenAPI
//! document adds them to the fields' schemas, so clients and the schema fuzzer know them.
//!
//! The proto has no standard option for them, so they are restated here from
//! `rust/common/src/validate.rs`, which enforces them; `just test-schema` checks the two agree
//! (schemathesis sends requests that break each keyword, and the server must refuse them).
//! A keyword goes here only if it is exact: a value breaking it is refused, and one keeping it
//! is not refused for that reason. So password has no `maxLength` (the limit is 1024 bytes,
//! which JSON Schema cannot count), and the display-name pattern spells out the trimming.

use serde_json::{Value, json};

/// Rust's `char::is_whitespace` (Unicode `White_Space`) and `char::is_control` (`Cc`), as
/// regular-expression class contents (ECMA-262 and Python agree on this syntax).
const SPACE_OR_CONTROL: &str =
    r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// `White_Space` alone.
const SPACE: &str =
    r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// `Cc` alone.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// The JSON Schema keywords for the field `.pkg.Message.field`, if it has input rules.
pub fn keywords(field: &str) -> Option<Value> {
    Some(match field {
        ".grimos.user.v1.CreateUserRequest.email" => email(),
        ".grimos.user.v1.CreateUserRequest.password" => json!({"minLength": 8}),
        ".grimos.user.v1.CreateUserRequest.display_name" | ".grimos.user.v1.User.display_name" => {
            display_name()
        }
        ".grimos.user.v1.ListUsersRequest.page_size" => json!({"minimum": 0}),
        _ => return None,
    })
}

/// At most 254 characters; one `@` with a non-empty part before it and a domain of non-empty
/// labels with at least one dot after it; no white space or control characters.
fn email() -> Value {
    let local = format!("[^@{SPACE_OR_CONTROL}]");
    let label = format!("[^@.{SPACE_OR_CONTROL}]");
    json!({
        "maxLength": 254,
        "pattern": format!("^{local}+@{label}+(\\.{label}+)+$"),
    })
}

/// 1 to 100 characters once leading and trailing white space is trimmed, and no control
/// characters in what remains.
fn display_name() -> Value {
    let kept = format!("[^{SPACE}{CONTROL}]");
    let inner = format!("[^{CONTROL}]");
    json!({
        "pattern": format!("^[{SPACE}]*{kept}(?:{inner}{{0,98}}{kept})?[{SPACE}]*$"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn space_or_control_is_the_union_of_space_and_control() {
        // Spelled out once as ranges: \u0000-\u001f and \u0020 (space) meet, as do
        // \u007f-\u009f, \u0085 (inside it) and \u00a0.
        assert!(SPACE_OR_CONTROL.starts_with(r"\u0000-\u0020\u007f-\u00a0"));
        assert!(SPACE.ends_with(&SPACE_OR_CONTROL[r"\u0000-\u0020\u007f-\u00a0".len()..]));
    }

    #[test]
    fn only_the_listed_fields_have_rules() {
        assert!(keywords(".grimos.user.v1.CreateUserRequest.email").is_some());
        assert!(keywords(".grimos.auth.v1.LoginRequest.email").is_none());
    }
}
