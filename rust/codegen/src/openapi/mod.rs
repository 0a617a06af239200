//! The OpenAPI 3.1 document of the HTTP/JSON surface, written from the same descriptors as
//! the code: `grimos-codegen openapi` (buf's `opt: openapi`) answers with one file,
//! `grimos.openapi.json`.
//!
//! Operations come from the `google.api.http` options (method, path template, body), with the
//! success status, bearer requirement and error statuses of [`crate::http_rules`]. Schemas
//! follow the canonical proto3 JSON mapping that the services speak: lowerCamelCase names,
//! 64-bit integers as strings, `Timestamp` as an RFC 3339 `date-time` string, `FieldMask` as a
//! comma-separated string, enums by name. Proto comments become descriptions;
//! `(google.api.field_behavior)` `OUTPUT_ONLY` becomes `readOnly`, `INPUT_ONLY` `writeOnly`
//! and `REQUIRED` `required`. Message schemas refuse unknown properties, as the services do,
//! and the input rules JSON Schema can state exactly come from [`crate::input_rules`].
//!
//! The output depends only on the descriptors and the rule table: objects are written with
//! sorted keys (serde_json's map), lists in proto order.

use std::collections::{BTreeMap, BTreeSet};

use prost_types::FileDescriptorProto;
use serde_json::{Map, Value, json};

use crate::annotations::{Annotations, HttpRule, field_behavior};
use crate::http_rules::{self, Auth, Success};

mod schemas;

use crate::Result;
use crate::binding::{Bound, is_scalar, openapi_path, query_fields};
use crate::types::Types;
use schemas::{any_schema, status_schema};

/// The name of the security scheme of bearer-token operations.
const BEARER: &str = "bearer";
/// The error body's schema: `google.rpc.Status` in proto3 JSON.
const STATUS_SCHEMA: &str = "google.rpc.Status";

/// Writes the document for the services of `to_generate`.
pub fn document(
    files: &[FileDescriptorProto],
    annotations: &Annotations,
    to_generate: &[String],
) -> Result<String> {
    let types = Types::new(files, to_generate);
    let mut builder = Builder {
        types: &types,
        annotations,
        schemas: BTreeMap::new(),
        pending: Vec::new(),
        responses: BTreeMap::new(),
    };
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags = Vec::new();
    let mut seen_rpcs = BTreeSet::new();
    for service in &types.services {
        let full_service = format!("{}.{}", service.package, service.name);
        let mut tagged = false;
        for (method, comment) in &service.methods {
            let rpc = format!("{full_service}.{}", method.name());
            let Some(http) = annotations.http.get(&format!(".{rpc}")) else {
                continue;
            };
            let rule = http_rules::rule(&rpc).ok_or_else(|| {
                format!(
                    "{rpc} has a google.api.http option but no row in rust/codegen/src/http_rules.rs"
                )
            })?;
            seen_rpcs.insert(rpc.clone());
            let bindings = std::iter::once(http).chain(&http.additional_bindings);
            for (n, binding) in bindings.enumerate() {
                let (verb, template) = binding
                    .method_and_path()
                    .ok_or_else(|| format!("{rpc}: google.api.http names no method and path"))?;
                let (path, bound) = openapi_path(&rpc, template)?;
                let operation = builder.operation(
                    service.name,
                    method,
                    comment.as_deref(),
                    binding,
                    &bound,
                    rule,
                    &rpc,
                    n,
                )?;
                let item = paths.entry(path.clone()).or_default();
                if item.insert(verb.clone(), operation).is_some() {
                    return Err(
                        format!("{rpc}: {} {path} is bound twice", verb.to_uppercase()).into(),
                    );
                }
            }
            tagged = true;
        }
        if tagged {
            let mut tag = Map::new();
            tag.insert("name".into(), service.name.into());
            if let Some(comment) = &service.comment {
                tag.insert("description".into(), comment.as_str().into());
            }
            tags.push(Value::Object(tag));
        }
    }
    for rule in http_rules::RULES {
        if !seen_rpcs.contains(rule.rpc) {
            return Err(format!(
                "rust/codegen/src/http_rules.rs has a row for {}, which has no google.api.http option",
                rule.rpc
            )
            .into());
        }
    }
    builder.drain()?;

    let responses: Map<String, Value> = builder.responses.into_iter().collect();
    let mut schemas: Map<String, Value> = builder.schemas.into_iter().collect();
    schemas.insert(STATUS_SCHEMA.into(), status_schema());
    schemas.insert("google.protobuf.Any".into(), any_schema());
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "grimOS API",
            "version": "v1",
            "description": "The HTTP/JSON surface of the grimOS services, served by user-service. \
                Every operation is also a gRPC method of the same service on the same port. \
                Bodies are the protobuf messages in the canonical proto3 JSON mapping; errors \
                are `google.rpc.Status` in JSON. Generated from proto/ by grimos-codegen: do \
                not edit, run `just generate`.",
        },
        "tags": tags,
        "paths": paths,
        "components": {
            "responses": responses,
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from `POST /v1/auth/login` or `POST /v1/auth/refresh`.",
                },
            },
        },
    });
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok(text)
}

/// Writes operations and the schemas they use.
struct Builder<'t, 'a> {
    types: &'t Types<'a>,
    annotations: &'t Annotations,
    /// Component schemas written so far, by proto full name without the leading dot.
    schemas: BTreeMap<String, Value>,
    /// Messages and enums referenced but not written yet.
    pending: Vec<String>,
    /// The error responses operations refer to, by component name (`Error400`).
    responses: BTreeMap<String, Value>,
}

impl<'a> Builder<'_, 'a> {
    #[allow(clippy::too_many_arguments)]
    fn operation(
        &mut self,
        service: &str,
        method: &prost_types::MethodDescriptorProto,
        comment: Option<&str>,
        http: &HttpRule,
        bound: &[Bound],
        rule: &http_rules::Rule,
        rpc: &str,
        binding_index: usize,
    ) -> Result<Value> {
        let (input, _) = self.types.message(method.input_type())?;
        let mut operation = Map::new();
        operation.insert("tags".into(), json!([service]));
        let mut operation_id = format!("{service}_{}", method.name());
        if binding_index > 0 {
            // An additional binding: the same rpc under another method or path.
            operation_id.push_str(&format!("_{}", binding_index + 1));
        }
        operation.insert("operationId".into(), operation_id.into());
        if let Some(comment) = comment {
            operation.insert("summary".into(), first_sentence(comment).into());
            operation.insert("description".into(), comment.into());
        }

        // Path parameters, then query parameters: every scalar field the path and body leave.
        let mut parameters = Vec::new();
        let mut path_fields = BTreeSet::new();
        for variable in bound {
            let (field, owner) = self.field_at(method.input_type(), &variable.field_path, rpc)?;
            if !is_scalar(field) {
                return Err(format!(
                    "{rpc}: the path binds {}, which is not a scalar",
                    variable.field_path
                )
                .into());
            }
            path_fields.insert(variable.field_path.clone());
            let mut parameter = json!({
                "name": variable.name,
                "in": "path",
                "required": true,
                "schema": self.constrained_schema(&owner, field)?,
            });
            if let Some(description) = self.field_comment(&owner, field)? {
                parameter["description"] = description.into();
            }
            parameters.push(parameter);
        }
        let body = http.body.as_str();
        let path_field_names: Vec<&str> = path_fields.iter().map(String::as_str).collect();
        for field in query_fields(rpc, input, body, &path_field_names)? {
            let top = field.name();
            let mut parameter = json!({
                "name": field.json_name(),
                "in": "query",
                "schema": self.constrained_schema(method.input_type(), field)?,
            });
            if self.annotations.has_behavior(
                &format!("{}.{top}", method.input_type()),
                field_behavior::REQUIRED,
            ) {
                parameter["required"] = true.into();
            }
            if let Some(description) = self.field_comment(method.input_type(), field)? {
                parameter["description"] = description.into();
            }
            parameters.push(parameter);
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }

        // The request body: the whole message (less path fields), or one field of it.
        let has_body = !body.is_empty();
        if has_body {
            let (schema, required) = if body == "*" {
                let required = input.field.iter().any(|field| {
                    self.annotations.has_behavior(
                        &format!("{}.{}", method.input_type(), field.name()),
                        field_behavior::REQUIRED,
                    )
                });
                if path_fields.is_empty() {
                    (self.reference(method.input_type()), required)
                } else {
                    (
                        self.message_schema(method.input_type(), &path_fields)?,
                        required,
                    )
                }
            } else {
                let field = input
                    .field
                    .iter()
                    .find(|field| field.name() == body)
                    .ok_or_else(|| format!("{rpc}: body {body:?} is not a field of the request"))?;
                let required = self.annotations.has_behavior(
                    &format!("{}.{body}", method.input_type()),
                    field_behavior::REQUIRED,
                );
                (self.field_schema(method.input_type(), field)?, required)
            };
            operation.insert(
                "requestBody".into(),
                json!({
                    "required": required,
                    "content": {"application/json": {"schema": schema}},
                }),
            );
        }

        let mut responses = Map::new();
        let success = rule.success;
        let mut ok = json!({"description": success_description(success)});
        if success != Success::NoContent {
            let schema = if http.response_body.is_empty() {
                self.reference(method.output_type())
            } else {
                let (output, _) = self.types.message(method.output_type())?;
                let field = output
                    .field
                    .iter()
                    .find(|field| field.name() == http.response_body)
                    .ok_or_else(|| {
                        format!(
                            "{rpc}: response_body {:?} is not a field of the response",
                            http.response_body
                        )
                    })?;
                self.field_schema(method.output_type(), field)?
            };
            ok["content"] = json!({"application/json": {"schema": schema}});
        }
        responses.insert(success.status().to_string(), ok);
        for status in http_rules::errors(rule, has_body) {
            let (code, meaning) = http_rules::error_meaning(status).ok_or_else(|| {
                format!("{rpc}: no meaning for the error status {status} in http_rules.rs")
            })?;
            let name = format!("Error{status}");
            self.responses.entry(name.clone()).or_insert_with(|| {
                json!({
                    "description": format!("{code}: {meaning}"),
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{STATUS_SCHEMA}")}}},
                })
            });
            responses.insert(
                status.to_string(),
                json!({"$ref": format!("#/components/responses/{name}")}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));

        let security = match rule.auth {
            Auth::Public => json!([]),
            Auth::Bearer => json!([{BEARER: []}]),
            // Either way: the body's token, or else the bearer token.
            Auth::BodyOrBearer => json!([{BEARER: []}, {}]),
        };
        operation.insert("security".into(), security);
        Ok(Value::Object(operation))
    }
}

fn success_description(success: Success) -> &'static str {
    match success {
        Success::Ok => "OK",
        Success::Created => "Created",
        Success::NoContent => "Done; no body",
    }
}

/// The comment's first sentence (up to the first `. ` or line end after a full stop).
fn first_sentence(comment: &str) -> String {
    let flat = comment.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_owned(),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_first_sentence() {
        assert_eq!(
            first_sentence("GetUser returns one user. Callable by\nthe user."),
            "GetUser returns one user."
        );
        assert_eq!(first_sentence("No full stop"), "No full stop");
    }
}
