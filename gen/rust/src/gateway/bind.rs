//! Binding an HTTP request to an rpc's request message, and its reply to an HTTP answer: the
//! steps every generated route is made of.
//!
//! The rules, the same for every route (`rust/codegen/src/gateway.rs` decides which apply):
//! - A path variable fills the request field it names (`{user.id}` fills `user.id`); when the
//!   body carries that field too, the body's value must be absent or equal the path's.
//! - Query parameters fill the scalar request fields that neither the path nor the body fill,
//!   by their lowerCamelCase JSON name or their proto name (`pageSize`, `page_size`).
//! - `body: "*"` is the whole request message; `body: "user"` is that field, a JSON object.
//! - PATCH with a named body and an `update_mask` field: the mask is the `updateMask` query
//!   parameter, or, when absent, the body's keys less those the path binds.
//! - Binding failures are `INVALID_ARGUMENT` (400) naming the field by its proto path.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::Path;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tonic::Status;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use super::error::HttpError;
use super::json::{ProtoJson, json_with_status};
use crate::wkt::FieldMask;

/// What a successful call answers, from the rpc's row in `http_rules.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// 200 with the response message as JSON.
    Ok,
    /// 201 with the response message as JSON: the call created a resource.
    Created,
    /// 204 and no body.
    NoContent,
}

/// The HTTP answer to a successful call.
pub fn respond<T: Serialize>(success: Success, response: tonic::Response<T>) -> Response {
    match success {
        Success::Ok => ProtoJson(response.into_inner()).into_response(),
        Success::Created => json_with_status(StatusCode::CREATED, &response.into_inner()),
        Success::NoContent => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The gRPC request of an rpc that reads no token: the message alone.
pub fn request<T>(message: T) -> tonic::Request<T> {
    tonic::Request::new(message)
}

/// The gRPC request of an rpc that reads a token: the message, with the HTTP request's
/// `Authorization` header as `authorization` metadata, where the service reads it (the
/// gRPC side and the HTTP side authenticate in the one place).
pub fn with_authorization<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Ok(value) = value.parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A 400 (`INVALID_ARGUMENT`) with a `google.rpc.BadRequest` naming `field`.
pub fn bad_request(field: &str, description: impl Into<String>) -> HttpError {
    let description = description.into();
    HttpError::from(Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {field}: {description}"),
        ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]),
    ))
}

/// The path variables, or a 400 naming `field` (the first variable's field) when the path
/// does not decode.
pub fn path<T>(path: Result<Path<T>, PathRejection>, field: &str) -> Result<T, HttpError> {
    path.map(|Path(value)| value)
        .map_err(|rejection| bad_request(field, rejection.body_text()))
}

/// The query string's parameters, by name.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// The parameters, or a 400 when the query string does not decode.
    pub fn parse(
        query: Result<axum::extract::Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Self, HttpError> {
        query
            .map(|axum::extract::Query(params)| Self(params))
            .map_err(|rejection| HttpError::from(Status::invalid_argument(rejection.body_text())))
    }

    /// The value given as `json_name` (lowerCamelCase), or else as `proto_name`.
    pub fn get(&self, json_name: &str, proto_name: &str) -> Option<&str> {
        self.0
            .get(json_name)
            .or_else(|| self.0.get(proto_name))
            .map(String::as_str)
    }

    /// A string field's value.
    pub fn string(&self, json_name: &str, proto_name: &str) -> Option<String> {
        self.get(json_name, proto_name).map(str::to_owned)
    }

    /// A number's or a bool's value; present but not parsable (empty included) is a 400
    /// naming `field`, which must be `what` ("an integer").
    pub fn parsed<T: FromStr>(
        &self,
        json_name: &str,
        proto_name: &str,
        field: &str,
        what: &str,
    ) -> Result<Option<T>, HttpError> {
        self.get(json_name, proto_name)
            .map(|raw| {
                raw.parse::<T>()
                    .map_err(|_| bad_request(field, format!("{field} must be {what}")))
            })
            .transpose()
    }

    /// A `google.protobuf.FieldMask` in its JSON form (comma-separated lowerCamel paths).
    pub fn field_mask(
        &self,
        json_name: &str,
        proto_name: &str,
        field: &str,
    ) -> Result<Option<FieldMask>, HttpError> {
        self.get(json_name, proto_name)
            .map(|raw| FieldMask::from_json_str(raw).map_err(|e| bad_request(field, e.to_string())))
            .transpose()
    }
}

/// The body of a route whose body is one message field (`body: "user"`): a JSON object, or a
/// 400 naming `field`.
pub fn body_object(
    body: Value,
    field: &str,
    message: &str,
) -> Result<Map<String, Value>, HttpError> {
    match body {
        Value::Object(fields) => Ok(fields),
        _ => Err(bad_request(
            field,
            format!("the body must be a JSON object (a partial {message})"),
        )),
    }
}

/// The message a body object holds (its pbjson impl), or a 400.
pub fn from_object<T: DeserializeOwned>(fields: &Map<String, Value>) -> Result<T, HttpError> {
    serde_json::from_value(Value::Object(fields.clone())).map_err(HttpError::invalid_json)
}

/// Fills a field that both the path and the body can carry with the path's value: the body's
/// must be absent (empty) or equal it.
pub fn bind_path_in_body(slot: &mut String, value: String, field: &str) -> Result<(), HttpError> {
    if !slot.is_empty() && *slot != value {
        let name = field.rsplit('.').next().unwrap_or(field);
        return Err(bad_request(
            field,
            format!("{field} must be absent or equal the {name} in the path"),
        ));
    }
    *slot = value;
    Ok(())
}

/// The mask a PATCH without `updateMask` implies: the fields present in the body, by proto
/// name, less `path_keys` (the body keys the path binds, such as `id`).
pub fn inferred_mask(fields: &Map<String, Value>, path_keys: &[&str]) -> FieldMask {
    FieldMask::new(
        fields
            .keys()
            .filter(|key| !path_keys.contains(&key.as_str()))
            .map(|key| snake_case(key)),
    )
}

/// `displayName` → `display_name`; names already in snake_case stay as they are.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn json_names_become_field_paths() {
        assert_eq!(snake_case("displayName"), "display_name");
        assert_eq!(snake_case("display_name"), "display_name");
        assert_eq!(snake_case("email"), "email");
    }

    #[test]
    fn the_inferred_mask_is_the_body_keys_less_the_path_bound_ones() {
        let Value::Object(fields) = json!({"id": "u1", "displayName": "Ada"}) else {
            unreachable!()
        };
        assert_eq!(inferred_mask(&fields, &["id"]).paths, ["display_name"]);
    }

    #[test]
    fn a_path_value_the_body_contradicts_is_refused() {
        let mut slot = String::new();
        bind_path_in_body(&mut slot, "u1".into(), "user.id").unwrap();
        assert_eq!(slot, "u1");
        bind_path_in_body(&mut slot, "u1".into(), "user.id").unwrap();
        let mut other = "u2".to_owned();
        let error = bind_path_in_body(&mut other, "u1".into(), "user.id").unwrap_err();
        assert_eq!(
            error.status.message(),
            "invalid argument: user.id: user.id must be absent or equal the id in the path"
        );
    }

    #[test]
    fn query_parameters_are_read_by_json_or_proto_name() {
        let query = Query(HashMap::from([
            ("pageSize".to_owned(), "5".to_owned()),
            ("page_token".to_owned(), "t".to_owned()),
            ("bad".to_owned(), "".to_owned()),
        ]));
        assert_eq!(
            query
                .parsed::<i32>("pageSize", "page_size", "page_size", "an integer")
                .unwrap(),
            Some(5)
        );
        assert_eq!(
            query.string("pageToken", "page_token").as_deref(),
            Some("t")
        );
        assert_eq!(query.string("missing", "missing"), None);
        assert!(
            query
                .parsed::<i32>("bad", "bad", "bad", "an integer")
                .is_err()
        );
    }
}
