//! The generated messages speak the canonical proto3 JSON mapping that HTTP clients see.

use grimos_proto::user::v1::{UpdateUserRequest, User};
use grimos_proto::wkt::{FieldMask, Timestamp};

#[test]
fn messages_use_camel_case_names_and_canonical_well_known_types() {
    let request = UpdateUserRequest {
        user: Some(User {
            id: "u1".into(),
            display_name: "Ada".into(),
            roles: vec!["user".into()],
            create_time: Some(Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        }),
        update_mask: Some(FieldMask::new(["display_name"])),
    };
    let json = serde_json::to_value(&request).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "user": {
                "id": "u1",
                "displayName": "Ada",
                "roles": ["user"],
                "createTime": "1970-01-01T00:00:01Z",
            },
            "updateMask": "displayName",
        })
    );
    let back: UpdateUserRequest = serde_json::from_value(json).unwrap();
    assert_eq!(back, request);
}

#[test]
fn proto_field_names_are_accepted_and_unknown_fields_rejected() {
    let user: User = serde_json::from_str(r#"{"display_name": "Ada"}"#).unwrap();
    assert_eq!(user.display_name, "Ada");
    let unknown = serde_json::from_str::<User>(r#"{"displayName": "Ada", "admin": true}"#);
    assert!(unknown.is_err());
    let wrong_type = serde_json::from_str::<User>(r#"{"displayName": 7}"#);
    assert!(wrong_type.is_err());
}
