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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};
use serde_json::{Map, Value, json};

use crate::annotations::{Annotations, HttpRule, field_behavior};
use crate::http_rules::{self, Auth, Success};
use crate::input_rules;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The name of the security scheme of bearer-token operations.
const BEARER: &str = "bearer";
/// The error body's schema: `google.rpc.Status` in proto3 JSON.
const STATUS_SCHEMA: &str = "google.rpc.Status";

/// A message or enum of the descriptor set, with what the document needs of it.
struct Type_<'a> {
    message: Option<&'a DescriptorProto>,
    enumeration: Option<&'a EnumDescriptorProto>,
    /// Its leading comment.
    comment: Option<String>,
    /// The leading comments of its fields (messages) or values (enums), by index.
    member_comments: Vec<Option<String>>,
}

/// Every message and enum of a descriptor set, by fully-qualified name (`.pkg.Message`).
struct Types<'a> {
    types: HashMap<String, Type_<'a>>,
    services: Vec<Service<'a>>,
}

/// A service of a file to generate, with its comments.
struct Service<'a> {
    package: &'a str,
    name: &'a str,
    comment: Option<String>,
    methods: Vec<(&'a prost_types::MethodDescriptorProto, Option<String>)>,
}

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

impl<'a> Types<'a> {
    fn new(files: &'a [FileDescriptorProto], to_generate: &[String]) -> Self {
        let mut types = HashMap::new();
        let mut services = Vec::new();
        for file in files {
            let comments = Comments::of(file);
            let package = format!(".{}", file.package());
            for (i, message) in file.message_type.iter().enumerate() {
                add_message(&mut types, &comments, &package, message, vec![4, index(i)]);
            }
            for (i, enumeration) in file.enum_type.iter().enumerate() {
                add_enum(
                    &mut types,
                    &comments,
                    &package,
                    enumeration,
                    vec![5, index(i)],
                );
            }
            if !to_generate.iter().any(|name| name == file.name()) {
                continue;
            }
            for (s, service) in file.service.iter().enumerate() {
                services.push(Service {
                    package: file.package(),
                    name: service.name(),
                    comment: comments.get(&[6, index(s)]),
                    methods: service
                        .method
                        .iter()
                        .enumerate()
                        .map(|(m, method)| (method, comments.get(&[6, index(s), 2, index(m)])))
                        .collect(),
                });
            }
        }
        Self { types, services }
    }

    fn get(&self, name: &str) -> Result<&Type_<'a>> {
        self.types
            .get(name)
            .ok_or_else(|| format!("type {name} is not in the descriptor set").into())
    }

    fn message(&self, name: &str) -> Result<(&'a DescriptorProto, &Type_<'a>)> {
        let found = self.get(name)?;
        let message = found
            .message
            .ok_or_else(|| format!("{name} is not a message"))?;
        Ok((message, found))
    }
}

fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

fn add_message<'a>(
    types: &mut HashMap<String, Type_<'a>>,
    comments: &Comments,
    scope: &str,
    message: &'a DescriptorProto,
    path: Vec<i32>,
) {
    let name = format!("{scope}.{}", message.name());
    let member_comments = (0..message.field.len())
        .map(|f| comments.get(&[path.as_slice(), &[2, index(f)]].concat()))
        .collect();
    for (i, nested) in message.nested_type.iter().enumerate() {
        add_message(
            types,
            comments,
            &name,
            nested,
            [path.as_slice(), &[3, index(i)]].concat(),
        );
    }
    for (i, enumeration) in message.enum_type.iter().enumerate() {
        add_enum(
            types,
            comments,
            &name,
            enumeration,
            [path.as_slice(), &[4, index(i)]].concat(),
        );
    }
    types.insert(
        name,
        Type_ {
            message: Some(message),
            enumeration: None,
            comment: comments.get(&path),
            member_comments,
        },
    );
}

fn add_enum<'a>(
    types: &mut HashMap<String, Type_<'a>>,
    comments: &Comments,
    scope: &str,
    enumeration: &'a EnumDescriptorProto,
    path: Vec<i32>,
) {
    let member_comments = (0..enumeration.value.len())
        .map(|v| comments.get(&[path.as_slice(), &[2, index(v)]].concat()))
        .collect();
    types.insert(
        format!("{scope}.{}", enumeration.name()),
        Type_ {
            message: None,
            enumeration: Some(enumeration),
            comment: comments.get(&path),
            member_comments,
        },
    );
}

/// The leading comments of a file's elements, by their source-info path.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let mut comments = HashMap::new();
        for location in file.source_code_info.iter().flat_map(|info| &info.location) {
            if let Some(text) = &location.leading_comments {
                let text = text
                    .lines()
                    .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = text.trim();
                if !text.is_empty() {
                    comments.insert(location.path.clone(), text.to_owned());
                }
            }
        }
        Self(comments)
    }

    fn get(&self, path: &[i32]) -> Option<String> {
        self.0.get(path).cloned()
    }
}

/// A path template variable: the field path it binds (`user.id`) and its OpenAPI name.
struct Bound {
    field_path: String,
    name: String,
}

/// Turns a `google.api.http` path template into an OpenAPI path. A variable `{user.id}` (or
/// `{user.id=*}`) becomes the parameter `{user_id}`, so that the GET and PATCH of one path
/// share one path item, as OpenAPI requires. Multi-segment wildcards are refused.
fn openapi_path(rpc: &str, template: &str) -> Result<(String, Vec<Bound>)> {
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
        if body != "*" {
            for field in &input.field {
                let top = field.name();
                if top == body || path_fields.contains(top) {
                    continue;
                }
                if !is_scalar(field) && !is_repeated_scalar(field) {
                    return Err(format!(
                        "{rpc}: the request field {top} is left to the query string, which takes scalars only"
                    )
                    .into());
                }
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

    /// The field at `path` (`user.id`) from the message `root`, and the message that holds it.
    fn field_at(
        &self,
        root: &str,
        path: &str,
        rpc: &str,
    ) -> Result<(&'a FieldDescriptorProto, String)> {
        let mut message = root.to_owned();
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            let (descriptor, _) = self.types.message(&message)?;
            let field = descriptor
                .field
                .iter()
                .find(|field| field.name() == segment)
                .ok_or_else(|| format!("{rpc}: {message} has no field {segment} (path {path})"))?;
            if segments.peek().is_none() {
                return Ok((field, message));
            }
            if field.r#type() != Type::Message || field.label() == Label::Repeated {
                return Err(format!(
                    "{rpc}: {path} goes through {segment}, which is not a message"
                )
                .into());
            }
            message = field.type_name().to_owned();
        }
        Err(format!("{rpc}: empty field path").into())
    }

    fn field_comment(&self, message: &str, field: &FieldDescriptorProto) -> Result<Option<String>> {
        let (descriptor, found) = self.types.message(message)?;
        let position = descriptor
            .field
            .iter()
            .position(|f| f.name() == field.name());
        Ok(position.and_then(|i| found.member_comments.get(i).cloned().flatten()))
    }

    /// `{"$ref": ...}` to the component schema of a message or enum, writing it later.
    fn reference(&mut self, type_name: &str) -> Value {
        let name = type_name.trim_start_matches('.').to_owned();
        if !self.schemas.contains_key(&name) && !self.pending.contains(&name) {
            self.pending.push(name.clone());
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// Writes every referenced schema, and those they reference.
    fn drain(&mut self) -> Result<()> {
        while let Some(name) = self.pending.pop() {
            if self.schemas.contains_key(&name) {
                continue;
            }
            let full = format!(".{name}");
            let found = self.types.get(&full)?;
            let schema = if let Some(enumeration) = found.enumeration {
                let values: Vec<Value> =
                    enumeration.value.iter().map(|v| v.name().into()).collect();
                let mut schema = json!({"type": "string", "enum": values});
                let mut description = found.comment.clone().unwrap_or_default();
                for (value, comment) in enumeration.value.iter().zip(&found.member_comments) {
                    if let Some(comment) = comment {
                        description.push_str(&format!("\n\n- `{}`: {comment}", value.name()));
                    }
                }
                if !description.trim().is_empty() {
                    schema["description"] = description.trim().into();
                }
                schema
            } else {
                self.message_schema(&full, &BTreeSet::new())?
            };
            self.schemas.insert(name, schema);
        }
        Ok(())
    }

    /// The object schema of a message, leaving out the fields named in `skip`.
    fn message_schema(&mut self, message: &str, skip: &BTreeSet<String>) -> Result<Value> {
        let (descriptor, found) = self.types.message(message)?;
        let comment = found.comment.clone();
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in &descriptor.field {
            if skip.contains(field.name()) {
                continue;
            }
            let key = format!("{message}.{}", field.name());
            let mut schema = self.constrained_schema(message, field)?;
            if let Some(description) = self.field_comment(message, field)? {
                schema["description"] = description.into();
            }
            if self
                .annotations
                .has_behavior(&key, field_behavior::OUTPUT_ONLY)
            {
                schema["readOnly"] = true.into();
            }
            if self
                .annotations
                .has_behavior(&key, field_behavior::INPUT_ONLY)
            {
                schema["writeOnly"] = true.into();
            }
            if self
                .annotations
                .has_behavior(&key, field_behavior::REQUIRED)
            {
                required.push(Value::from(field.json_name()));
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if let Some(comment) = comment {
            schema["description"] = comment.into();
        }
        Ok(schema)
    }

    /// [`Self::field_schema`] with the field's input rules ([`crate::input_rules`]), if any.
    fn constrained_schema(&mut self, message: &str, field: &FieldDescriptorProto) -> Result<Value> {
        let mut schema = self.field_schema(message, field)?;
        if let Some(Value::Object(keywords)) =
            input_rules::keywords(&format!("{message}.{}", field.name()))
            && let Value::Object(object) = &mut schema
        {
            object.extend(keywords);
        }
        Ok(schema)
    }

    /// The schema of one field's JSON value (an array for a repeated field, an object for a
    /// map), without its description.
    fn field_schema(&mut self, message: &str, field: &FieldDescriptorProto) -> Result<Value> {
        if field.label() == Label::Repeated && field.r#type() == Type::Message {
            let (entry, _) = self.types.message(field.type_name())?;
            if entry.options.as_ref().is_some_and(|o| o.map_entry()) {
                let value = entry
                    .field
                    .iter()
                    .find(|f| f.number() == 2)
                    .ok_or_else(|| {
                        format!("{message}.{}: a map entry without a value", field.name())
                    })?;
                let value = self.single_schema(field.type_name(), value)?;
                return Ok(json!({"type": "object", "additionalProperties": value}));
            }
        }
        let single = self.single_schema(message, field)?;
        if field.label() == Label::Repeated {
            Ok(json!({"type": "array", "items": single}))
        } else {
            Ok(single)
        }
    }

    /// The schema of one value of the field's type.
    fn single_schema(&mut self, message: &str, field: &FieldDescriptorProto) -> Result<Value> {
        Ok(match field.r#type() {
            Type::Double => json!({"type": "number", "format": "double"}),
            Type::Float => json!({"type": "number", "format": "float"}),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({
                "type": "integer", "format": "int32",
                "minimum": i32::MIN, "maximum": i32::MAX,
            }),
            Type::Uint32 | Type::Fixed32 => json!({
                "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX,
            }),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Type::Uint64 | Type::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Type::Bool => json!({"type": "boolean"}),
            Type::String => json!({"type": "string"}),
            Type::Bytes => json!({"type": "string", "format": "byte", "contentEncoding": "base64"}),
            Type::Enum => self.reference(field.type_name()),
            Type::Message => match well_known(field.type_name()) {
                Some(schema) => schema,
                None => self.reference(field.type_name()),
            },
            Type::Group => {
                return Err(format!("{message}.{}: groups are not supported", field.name()).into());
            }
        })
    }
}

/// The JSON schemas of the well-known types whose proto3 JSON form is not an object of fields.
fn well_known(type_name: &str) -> Option<Value> {
    Some(match type_name {
        ".google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        ".google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        ".google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Field paths in lowerCamelCase, separated by commas.",
        }),
        ".google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        ".google.protobuf.Struct" => json!({"type": "object"}),
        ".google.protobuf.Value" => json!({}),
        ".google.protobuf.ListValue" => json!({"type": "array"}),
        ".google.protobuf.Any" => json!({"$ref": "#/components/schemas/google.protobuf.Any"}),
        ".google.protobuf.StringValue" => json!({"type": ["string", "null"]}),
        ".google.protobuf.BytesValue" => json!({"type": ["string", "null"], "format": "byte"}),
        ".google.protobuf.BoolValue" => json!({"type": ["boolean", "null"]}),
        ".google.protobuf.DoubleValue" | ".google.protobuf.FloatValue" => {
            json!({"type": ["number", "null"]})
        }
        ".google.protobuf.Int32Value" | ".google.protobuf.UInt32Value" => {
            json!({"type": ["integer", "null"]})
        }
        ".google.protobuf.Int64Value" | ".google.protobuf.UInt64Value" => {
            json!({"type": ["string", "null"], "pattern": "^-?[0-9]+$"})
        }
        _ => return None,
    })
}

/// A field that is one scalar in JSON: a number, string, bool or enum, or a well-known type
/// written as a string (`Timestamp`, `Duration`, `FieldMask`).
fn is_scalar(field: &FieldDescriptorProto) -> bool {
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

fn is_repeated_scalar(field: &FieldDescriptorProto) -> bool {
    field.label() == Label::Repeated && !matches!(field.r#type(), Type::Message | Type::Group)
}

/// The error body: `google.rpc.Status` in proto3 JSON, as user-service writes it (all three
/// fields always present).
fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "The error body of every operation: the gRPC status of the failed call.",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "The gRPC status code (`google.rpc.Code`), for example 3 for INVALID_ARGUMENT.",
            },
            "message": {
                "type": "string",
                "description": "What went wrong, for a developer; not localized.",
            },
            "details": {
                "type": "array",
                "description": "Machine-readable details, each a `google.rpc` error detail in proto3 JSON with its `@type`: `google.rpc.BadRequest` (the violated fields, by proto path), `google.rpc.RetryInfo`, `google.rpc.ErrorInfo`, and the like.",
                "items": {"$ref": "#/components/schemas/google.protobuf.Any"},
            },
        },
        "required": ["code", "message", "details"],
    })
}

fn any_schema() -> Value {
    json!({
        "type": "object",
        "description": "A message of any type, in proto3 JSON, named by its `@type` URL (`type.googleapis.com/google.rpc.BadRequest`).",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": true,
    })
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

    #[test]
    fn the_summary_is_the_first_sentence() {
        assert_eq!(
            first_sentence("GetUser returns one user. Callable by\nthe user."),
            "GetUser returns one user."
        );
        assert_eq!(first_sentence("No full stop"), "No full stop");
    }
}
