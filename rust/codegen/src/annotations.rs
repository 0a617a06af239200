//! The custom options the API uses (`google.api.http` on methods, `google.api.field_behavior`
//! on fields), read from the raw bytes of each file.
//!
//! prost drops unknown fields when it decodes, and to `prost_types` these extensions are
//! unknown: `MethodOptions` and `FieldOptions` arrive empty. So each file's bytes are decoded a
//! second time into the "shadow" messages below, which declare only the path from the file to
//! those extensions, with the same field numbers as `descriptor.proto`. Their lists line up
//! index for index with the `prost_types` ones, which give the names.

use std::collections::HashMap;

use prost::Message;
use prost_types::FileDescriptorProto;

/// `google.api.HttpRule` (google/api/http.proto): how an rpc maps to an HTTP method and path.
#[derive(Clone, PartialEq, Message)]
pub struct HttpRule {
    /// The method and path template.
    #[prost(oneof = "Pattern", tags = "2, 3, 4, 5, 6, 8")]
    pub pattern: Option<Pattern>,
    /// The request field the body fills: `*` for the whole request, empty for no body.
    #[prost(string, tag = "7")]
    pub body: String,
    /// The response field that is the body; empty for the whole response.
    #[prost(string, tag = "12")]
    pub response_body: String,
    /// More method and path pairs for the same rpc.
    #[prost(message, repeated, tag = "11")]
    pub additional_bindings: Vec<HttpRule>,
}

/// `google.api.HttpRule.pattern`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Pattern {
    /// `get: "/path"`.
    #[prost(string, tag = "2")]
    Get(String),
    /// `put: "/path"`.
    #[prost(string, tag = "3")]
    Put(String),
    /// `post: "/path"`.
    #[prost(string, tag = "4")]
    Post(String),
    /// `delete: "/path"`.
    #[prost(string, tag = "5")]
    Delete(String),
    /// `patch: "/path"`.
    #[prost(string, tag = "6")]
    Patch(String),
    /// `custom: {kind: "HEAD", path: "/path"}`.
    #[prost(message, tag = "8")]
    Custom(CustomHttpPattern),
}

/// `google.api.CustomHttpPattern`.
#[derive(Clone, PartialEq, Message)]
pub struct CustomHttpPattern {
    /// The HTTP method.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The path template.
    #[prost(string, tag = "2")]
    pub path: String,
}

impl HttpRule {
    /// The HTTP method (lower case, as OpenAPI names it) and the path template.
    pub fn method_and_path(&self) -> Option<(String, &str)> {
        Some(match self.pattern.as_ref()? {
            Pattern::Get(path) => ("get".to_owned(), path.as_str()),
            Pattern::Put(path) => ("put".to_owned(), path.as_str()),
            Pattern::Post(path) => ("post".to_owned(), path.as_str()),
            Pattern::Delete(path) => ("delete".to_owned(), path.as_str()),
            Pattern::Patch(path) => ("patch".to_owned(), path.as_str()),
            Pattern::Custom(custom) => (custom.kind.to_ascii_lowercase(), custom.path.as_str()),
        })
    }
}

/// `google.api.FieldBehavior` values this generator acts on.
pub mod field_behavior {
    /// Must be set by the caller.
    pub const REQUIRED: i32 = 2;
    /// Set by the server; ignored or refused in requests.
    pub const OUTPUT_ONLY: i32 = 3;
    /// Set by the caller; never returned.
    pub const INPUT_ONLY: i32 = 4;
}

#[derive(Clone, PartialEq, Message)]
struct FileShadow {
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<MessageShadow>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceShadow>,
}

#[derive(Clone, PartialEq, Message)]
struct MessageShadow {
    #[prost(message, repeated, tag = "2")]
    field: Vec<FieldShadow>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<MessageShadow>,
}

#[derive(Clone, PartialEq, Message)]
struct FieldShadow {
    #[prost(message, optional, tag = "8")]
    options: Option<FieldOptionsShadow>,
}

#[derive(Clone, PartialEq, Message)]
struct FieldOptionsShadow {
    /// `(google.api.field_behavior)`, packed or not.
    #[prost(int32, repeated, tag = "1052")]
    field_behavior: Vec<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceShadow {
    #[prost(message, repeated, tag = "2")]
    method: Vec<MethodShadow>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodShadow {
    #[prost(message, optional, tag = "4")]
    options: Option<MethodOptionsShadow>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodOptionsShadow {
    /// `(google.api.http)`.
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

/// The annotations of a set of files, by fully-qualified name (`.pkg.Service.Method`,
/// `.pkg.Message.field`).
#[derive(Debug, Default)]
pub struct Annotations {
    /// Each annotated method's `google.api.http` rule.
    pub http: HashMap<String, HttpRule>,
    /// Each annotated field's `google.api.field_behavior` values.
    pub field_behavior: HashMap<String, Vec<i32>>,
}

impl Annotations {
    /// Reads the annotations of `file`, whose encoded form is `raw`.
    pub fn add_file(
        &mut self,
        file: &FileDescriptorProto,
        raw: &[u8],
    ) -> Result<(), prost::DecodeError> {
        let shadow = FileShadow::decode(raw)?;
        let package = format!(".{}", file.package());
        for (service, shadow) in file.service.iter().zip(&shadow.service) {
            for (method, shadow) in service.method.iter().zip(&shadow.method) {
                if let Some(http) = shadow.options.as_ref().and_then(|o| o.http.clone()) {
                    let name = format!("{package}.{}.{}", service.name(), method.name());
                    self.http.insert(name, http);
                }
            }
        }
        for (message, shadow) in file.message_type.iter().zip(&shadow.message_type) {
            self.add_message(&package, message, shadow);
        }
        Ok(())
    }

    fn add_message(
        &mut self,
        scope: &str,
        message: &prost_types::DescriptorProto,
        shadow: &MessageShadow,
    ) {
        let name = format!("{scope}.{}", message.name());
        for (field, shadow) in message.field.iter().zip(&shadow.field) {
            if let Some(options) = &shadow.options
                && !options.field_behavior.is_empty()
            {
                let key = format!("{name}.{}", field.name());
                self.field_behavior
                    .insert(key, options.field_behavior.clone());
            }
        }
        for (nested, shadow) in message.nested_type.iter().zip(&shadow.nested_type) {
            self.add_message(&name, nested, shadow);
        }
    }

    /// Whether the field `.pkg.Message.field` carries `behavior`.
    pub fn has_behavior(&self, field: &str, behavior: i32) -> bool {
        self.field_behavior
            .get(field)
            .is_some_and(|values| values.contains(&behavior))
    }
}
