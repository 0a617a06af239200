//! Field masks: the canonical JSON form of `google.protobuf.FieldMask` (`grimos_proto::wkt`),
//! as `PATCH /v1/users/{id}?updateMask=...` and JSON clients send it, and the update-mask
//! rules of `UpdateUser` (user-service `service::updated_display_name`).
//!
//! Input: up to three parts separated by 0xFF bytes (never in UTF-8): the mask text, a display
//! name, and a newline-separated list of proto paths.
//!
//! Must hold: no panic; a parsed mask has non-empty snake_case paths without empty segments,
//! and writes back to the very text it was read from; the JSON string form reads the same as
//! the query form; a mask written from paths reads back as those paths (or writing refuses);
//! the rules accept exactly a non-empty mask of `display_name` with a valid name, and refuse
//! anything else with `INVALID_ARGUMENT`.

#![no_main]

use grimos_proto::user::v1 as pb;
use grimos_proto::wkt::FieldMask;
use libfuzzer_sys::fuzz_target;
use user_service::error::Error;
use user_service::service::updated_display_name;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let display_name = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let paths = String::from_utf8_lossy(parts.next().unwrap_or_default());

    let parsed = FieldMask::from_json_str(&text);
    if let Ok(mask) = &parsed {
        for path in &mask.paths {
            assert!(
                !path.is_empty() && path.split('.').all(|segment| !segment.is_empty()),
                "{text:?} gave the path {path:?}"
            );
            assert!(!path.contains(','), "{text:?} gave the path {path:?}");
            assert!(
                !path.bytes().any(|b| b.is_ascii_uppercase()),
                "{text:?} gave the path {path:?}"
            );
        }
        assert_eq!(
            mask.to_json_string().as_deref(),
            Ok(&*text),
            "no round trip"
        );
    }
    let json = serde_json::to_string(&text).expect("a string serializes");
    let from_json = serde_json::from_str::<FieldMask>(&json);
    assert_eq!(
        from_json.ok(),
        parsed.clone().ok(),
        "JSON and query forms differ"
    );
    // Any JSON at all: only a string can be a mask.
    if let Ok(mask) = serde_json::from_slice::<FieldMask>(data) {
        let value: serde_json::Value = serde_json::from_slice(data).expect("JSON");
        let text = value.as_str().expect("a mask is a JSON string");
        assert_eq!(FieldMask::from_json_str(text).ok(), Some(mask));
    }

    let written = FieldMask::new(paths.split('\n'));
    if let Ok(text) = written.to_json_string() {
        assert_eq!(
            FieldMask::from_json_str(&text).as_ref(),
            Ok(&written),
            "{written:?} was written as {text:?}"
        );
    }

    let mask = parsed.ok();
    let user = pb::User {
        id: "u1".to_owned(),
        display_name: display_name.clone().into_owned(),
        ..Default::default()
    };
    let valid_name = grimos_common::validate::display_name(&display_name);
    let only_display_name = mask
        .as_ref()
        .is_some_and(|m| !m.paths.is_empty() && m.paths.iter().all(|path| path == "display_name"));
    match updated_display_name(&user, mask.as_ref()) {
        Ok(name) => {
            assert!(only_display_name, "{mask:?} was accepted");
            assert_eq!(Ok(name), valid_name);
        }
        Err(Error::InvalidArgument(violations)) => {
            assert!(!violations.is_empty());
            assert!(
                !only_display_name || valid_name.is_err(),
                "{mask:?} was refused"
            );
        }
        Err(other) => panic!("the rules answered {other:?}"),
    }
});
