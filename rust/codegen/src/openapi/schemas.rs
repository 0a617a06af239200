//! The JSON Schemas of messages, enums and fields, in the proto3 JSON mapping, and of the
//! error body.

use std::collections::BTreeSet;

use prost_types::FieldDescriptorProto;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value, json};

use super::{Builder, Result};
use crate::annotations::field_behavior;
use crate::input_rules;

impl<'a> Builder<'_, 'a> {
    /// The field at `path` (`user.id`) from the message `root`, and the message that holds it.
    pub(super) fn field_at(
        &self,
        root: &str,
        path: &str,
        rpc: &str,
    ) -> Result<(&'a FieldDescriptorProto, String)> {
        crate::binding::field_at(self.types, root, path, rpc)
    }

    pub(super) fn field_comment(
        &self,
        message: &str,
        field: &FieldDescriptorProto,
    ) -> Result<Option<String>> {
        let (descriptor, found) = self.types.message(message)?;
        let position = descriptor
            .field
            .iter()
            .position(|f| f.name() == field.name());
        Ok(position.and_then(|i| found.member_comments.get(i).cloned().flatten()))
    }

    /// `{"$ref": ...}` to the component schema of a message or enum, writing it later.
    pub(super) fn reference(&mut self, type_name: &str) -> Value {
        let name = type_name.trim_start_matches('.').to_owned();
        if !self.schemas.contains_key(&name) && !self.pending.contains(&name) {
            self.pending.push(name.clone());
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// Writes every referenced schema, and those they reference.
    pub(super) fn drain(&mut self) -> Result<()> {
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
    pub(super) fn message_schema(
        &mut self,
        message: &str,
        skip: &BTreeSet<String>,
    ) -> Result<Value> {
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
    pub(super) fn constrained_schema(
        &mut self,
        message: &str,
        field: &FieldDescriptorProto,
    ) -> Result<Value> {
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
    pub(super) fn field_schema(
        &mut self,
        message: &str,
        field: &FieldDescriptorProto,
    ) -> Result<Value> {
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
    pub(super) fn single_schema(
        &mut self,
        message: &str,
        field: &FieldDescriptorProto,
    ) -> Result<Value> {
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
pub(super) fn well_known(type_name: &str) -> Option<Value> {
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
/// The error body: `google.rpc.Status` in proto3 JSON, as user-service writes it (all three
/// fields always present).
pub(super) fn status_schema() -> Value {
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

pub(super) fn any_schema() -> Value {
    json!({
        "type": "object",
        "description": "A message of any type, in proto3 JSON, named by its `@type` URL (`type.googleapis.com/google.rpc.BadRequest`).",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": true,
    })
}
