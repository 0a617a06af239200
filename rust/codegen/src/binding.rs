//! How an rpc's request message is bound to an HTTP request, one decision for both users of
//! it: the OpenAPI document describes these bindings ([`crate::openapi`]) and the gateway
//! generates them ([`crate::gateway`]).
//!
//! - A path template variable (`{user.id}`) binds the field at that path; the route and the
//!   document name it `user_id`.
//! - Query parameters bind every top-level field that neither the path nor the body binds,
//!   which must then be a scalar (well-known types with a string form included).

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use crate::Result;
use crate::types::Types;

/// A path template variable: the field path it binds (`user.id`) and its OpenAPI name.
pub(crate) struct Bound {
    pub(crate) field_path: String,
    pub(crate) name: String,
}

/// Turns a `google.api.http` path template into an OpenAPI path. A variable `{user.id}` (or
/// `{user.id=*}`) becomes the parameter `{user_id}`, so that the GET and PATCH of one path
/// share one path item, as OpenAPI requires. Multi-segment wildcards are refused.
pub(crate) fn openapi_path(rpc: &str, template: &str) -> Result<(String, Vec<Bound>)> {
    if !template.starts_with('/') {
        return Err(format!("{rpc}: the path template {template:?} must start with /").into());
    }
    let mut path = String::new();
    let mut bound = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| format!("{rpc}: unclosed {{ in {template:?}"))?;
        path.push_str(&rest[..open]);
        let variable = &rest[open + 1..close];
        let field_path = match variable.split_once('=') {
            None => variable,
            Some((field, "*")) => field,
            Some(_) => {
                return Err(format!(
                    "{rpc}: {{{variable}}} in {template:?}: only single-segment variables are supported"
                )
                .into());
            }
        };
        let name = field_path.replace('.', "_");
        path.push('{');
        path.push_str(&name);
        path.push('}');
        bound.push(Bound {
            field_path: field_path.to_owned(),
            name,
        });
        rest = &rest[close + 1..];
    }
    if rest.contains('*') || path.contains('*') {
        return Err(format!(
            "{rpc}: wildcards outside variables in {template:?} are not supported"
        )
        .into());
    }
    path.push_str(rest);
    Ok((path, bound))
}

/// The request fields left to the query string: every top-level field of `input` that is not
/// the body (`body`: a field name, `*` for all, empty for none) and not bound by the path
/// (`path_fields`: the variables' field paths). Each must be a scalar or a repeated scalar.
pub(crate) fn query_fields<'a>(
    rpc: &str,
    input: &'a DescriptorProto,
    body: &str,
    path_fields: &[&str],
) -> Result<Vec<&'a FieldDescriptorProto>> {
    if body == "*" {
        return Ok(Vec::new());
    }
    let mut fields = Vec::new();
    for field in &input.field {
        let top = field.name();
        if top == body || path_fields.contains(&top) {
            continue;
        }
        if !is_scalar(field) && !is_repeated_scalar(field) {
            return Err(format!(
                "{rpc}: the request field {top} is left to the query string, which takes scalars only"
            )
            .into());
        }
        fields.push(field);
    }
    Ok(fields)
}

/// The field at `path` (`user.id`) from the message `root`, and the message that holds it.
pub(crate) fn field_at<'a>(
    types: &Types<'a>,
    root: &str,
    path: &str,
    rpc: &str,
) -> Result<(&'a FieldDescriptorProto, String)> {
    let mut message = root.to_owned();
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (descriptor, _) = types.message(&message)?;
        let field = descriptor
            .field
            .iter()
            .find(|field| field.name() == segment)
            .ok_or_else(|| format!("{rpc}: {message} has no field {segment} (path {path})"))?;
        if segments.peek().is_none() {
            return Ok((field, message));
        }
        if field.r#type() != Type::Message || field.label() == Label::Repeated {
            return Err(
                format!("{rpc}: {path} goes through {segment}, which is not a message").into(),
            );
        }
        message = field.type_name().to_owned();
    }
    Err(format!("{rpc}: empty field path").into())
}

/// A single value with a JSON string or number form: not a message, except the well-known
/// types written as strings.
pub(crate) fn is_scalar(field: &FieldDescriptorProto) -> bool {
    field.label() != Label::Repeated
        && match field.r#type() {
            Type::Message => matches!(
                field.type_name(),
                ".google.protobuf.Timestamp"
                    | ".google.protobuf.Duration"
                    | ".google.protobuf.FieldMask"
            ),
            Type::Group => false,
            _ => true,
        }
}

/// A repeated field of non-message values.
pub(crate) fn is_repeated_scalar(field: &FieldDescriptorProto) -> bool {
    field.label() == Label::Repeated && !matches!(field.r#type(), Type::Message | Type::Group)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn path_variables_become_parameters_named_by_their_field_path() {
        let (path, bound) = openapi_path("r", "/v1/users/{user.id}").unwrap();
        assert_eq!(path, "/v1/users/{user_id}");
        assert_eq!(bound[0].field_path, "user.id");
        let (path, _) = openapi_path("r", "/v1/users/{user_id=*}:undelete").unwrap();
        assert_eq!(path, "/v1/users/{user_id}:undelete");
        assert!(openapi_path("r", "/v1/{name=users/*}").is_err());
        assert!(openapi_path("r", "/v1/files/**").is_err());
        assert!(openapi_path("r", "v1/users").is_err());
    }
}
