//! The HTTP/JSON gateway: for each package, `<package>.gateway.rs`, the axum routes of every
//! rpc with a `google.api.http` option, one `<service>_gateway::routes(service)` per service.
//!
//! Each route binds the path, the query and the JSON body to the rpc's request message as
//! [`crate::binding`] decides (the same decision the OpenAPI document describes), calls the
//! tonic service trait that gRPC clients reach, and answers as the rpc's row in
//! [`crate::http_rules`] says. The generated code only sequences calls into grimos-proto's
//! hand-written runtime (`gen/rust/src/gateway/`), where every rule is written once.
//!
//! The generator's rules beyond `google.api.http`, each from the rule table or the proto:
//! - Success: 200 with the response as JSON, 201 (`Success::Created`), or 204 without a body
//!   (`Success::NoContent`).
//! - The `Authorization` header reaches the rpc as `authorization` metadata when the row says a
//!   token is read (`Bearer`, `BodyOrBearer`); the rpc decides what a missing or bad one means,
//!   so a fallback such as logout's (the bearer token when the body names none) is the rpc's.
//! - A PATCH whose body is one message field and whose request has an `update_mask`
//!   (`google.protobuf.FieldMask`) infers the mask from the body's keys when the query gives
//!   none.
//! - 405 for a known path with another method is the router's, not a route's.
//!
//! A binding it cannot generate (a custom method, a path variable that is not a string, a
//! named body that is not a message, a query field of a kind it cannot parse) fails the
//! generation with the rpc's name, rather than producing a route that drops the field.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{FieldDescriptorProto, FileDescriptorProto};

use crate::Result;
use crate::annotations::Annotations;
use crate::binding::{field_at, openapi_path, query_fields};
use crate::http_rules::{self, Auth, Success};
use crate::types::Types;

/// `<package>.gateway.rs` for each package of `to_generate` with at least one HTTP rule, as
/// (package, source); every HTTP rule must have its row in the table and the reverse.
pub fn files(
    files: &[FileDescriptorProto],
    annotations: &Annotations,
    to_generate: &[String],
) -> Result<Vec<(String, String)>> {
    let types = Types::new(files, to_generate);
    let mut by_package: Vec<(String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for service in &types.services {
        let mut routes: Vec<Route> = Vec::new();
        for (method, _) in &service.methods {
            let rpc = format!("{}.{}.{}", service.package, service.name, method.name());
            let Some(http) = annotations.http.get(&format!(".{rpc}")) else {
                continue;
            };
            let rule = http_rules::rule(&rpc).ok_or_else(|| {
                format!(
                    "{rpc} has a google.api.http option but no row in rust/codegen/src/http_rules.rs"
                )
            })?;
            seen.insert(rpc.clone());
            if !http.additional_bindings.is_empty() {
                return Err(format!("{rpc}: additional_bindings are not generated yet").into());
            }
            if !http.response_body.is_empty() {
                return Err(format!("{rpc}: response_body is not generated yet").into());
            }
            let (verb, template) = http
                .method_and_path()
                .ok_or_else(|| format!("{rpc}: google.api.http names no method and path"))?;
            if !matches!(verb.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                return Err(format!("{rpc}: the HTTP method {verb} is not generated").into());
            }
            let (path, bound) = openapi_path(&rpc, template)?;
            let handler = snake_case(method.name());
            let source = Handler {
                types: &types,
                rpc: &rpc,
                method,
                verb: &verb,
                template,
                body: &http.body,
                bound: bound
                    .iter()
                    .map(|b| b.field_path.as_str())
                    .collect::<Vec<_>>(),
                rule,
            }
            .source(&handler)?;
            routes.push(Route {
                path,
                verb,
                handler,
                source,
            });
        }
        if routes.is_empty() {
            continue;
        }
        let module = service_module(service.package, service.name, &routes);
        match by_package.iter_mut().find(|(p, _)| p == service.package) {
            Some((_, src)) => src.push_str(&module),
            None => by_package.push((service.package.to_owned(), module)),
        }
    }
    for rule in http_rules::RULES {
        if !seen.contains(rule.rpc) && to_generate_has(&types, rule.rpc) {
            return Err(format!(
                "rust/codegen/src/http_rules.rs has a row for {}, which has no google.api.http option",
                rule.rpc
            )
            .into());
        }
    }
    Ok(by_package
        .into_iter()
        .map(|(package, body)| {
            let src = format!(
                "// @generated by grimos-codegen from proto/. Do not edit: run `just generate`.\n{body}"
            );
            (package, src)
        })
        .collect())
}

/// Whether `rpc` names a service of the files being generated (a row for another package's
/// rpc is that package's business).
fn to_generate_has(types: &Types<'_>, rpc: &str) -> bool {
    types
        .services
        .iter()
        .any(|s| rpc.starts_with(&format!("{}.{}.", s.package, s.name)))
}

/// One generated route.
struct Route {
    /// The axum path (`/v1/users/{user_id}`).
    path: String,
    /// The lower-case HTTP method, as axum's routing functions are named.
    verb: String,
    /// The handler function's name.
    handler: String,
    /// The handler function.
    source: String,
}

/// The module of one service: `routes(service)` and a handler per route.
fn service_module(package: &str, service: &str, routes: &[Route]) -> String {
    let module = format!("{}_gateway", snake_case(service));
    let server = format!("{}_server", snake_case(service));
    let mut runtime = vec!["HttpError"];
    if routes.iter().any(|r| r.source.contains("ProtoJson(")) {
        runtime.push("ProtoJson");
    }
    if routes.iter().any(|r| r.source.contains("Query::parse(")) {
        runtime.push("Query");
    }
    runtime.extend(["Success", "bind"]);
    let runtime = runtime.join(", ");
    let mut src = String::new();
    let _ = write!(
        src,
        "
/// The HTTP/JSON routes of `{package}.{service}`, generated from its `google.api.http` options
/// and `rust/codegen/src/http_rules.rs`.
pub mod {module} {{
    use std::sync::Arc;

    use axum::extract::State;
    use axum::response::Response;

    use super::{server}::{service};
    use crate::gateway::{{{runtime}}};

    /// Every route, calling `service`: the same implementation its gRPC server serves.
    pub fn routes<T: {service}>(service: T) -> axum::Router {{
        axum::Router::new()
"
    );
    let mut paths: Vec<&str> = Vec::new();
    for route in routes {
        if !paths.contains(&route.path.as_str()) {
            paths.push(&route.path);
        }
    }
    for path in paths {
        let mut methods = routes.iter().filter(|r| r.path == path);
        let mut router = String::new();
        if let Some(first) = methods.next() {
            let _ = write!(
                router,
                "axum::routing::{}({}::<T>)",
                first.verb, first.handler
            );
        }
        for route in methods {
            let _ = write!(router, ".{}({}::<T>)", route.verb, route.handler);
        }
        let _ = writeln!(src, "            .route({path:?}, {router})");
    }
    src.push_str(
        "            .layer(crate::gateway::body_limit())
            .with_state(Arc::new(service))
    }
",
    );
    for route in routes {
        src.push_str(&route.source);
    }
    src.push_str("}\n");
    let _ = package;
    src
}

/// What one handler needs to know.
struct Handler<'t, 'a> {
    types: &'t Types<'a>,
    rpc: &'t str,
    method: &'a prost_types::MethodDescriptorProto,
    verb: &'t str,
    template: &'t str,
    body: &'t str,
    /// The path variables' field paths, in template order.
    bound: Vec<&'t str>,
    rule: &'static http_rules::Rule,
}

impl Handler<'_, '_> {
    fn source(&self, name: &str) -> Result<String> {
        let rpc = self.rpc;
        let input_type = self.method.input_type();
        let (input, _) = self.types.message(input_type)?;
        let request_type = rust_type(rpc, input_type)?;
        let reads_token = self.rule.auth != Auth::Public;

        // The extractors, in axum's order: state, request parts, then the body.
        let mut params = vec!["State(service): State<Arc<T>>".to_owned()];
        if reads_token {
            params.push("headers: axum::http::HeaderMap".to_owned());
        }
        let path_type = match self.bound.len() {
            0 => None,
            1 => Some("String".to_owned()),
            n => Some(format!("({})", vec!["String"; n].join(", "))),
        };
        if let Some(path_type) = &path_type {
            params.push(format!(
                "path: Result<axum::extract::Path<{path_type}>, axum::extract::rejection::PathRejection>"
            ));
        }
        let queried = query_fields(rpc, input, self.body, &self.bound)?;
        if !queried.is_empty() {
            params.push(
                "query: Result<axum::extract::Query<std::collections::HashMap<String, String>>, axum::extract::rejection::QueryRejection>"
                    .to_owned(),
            );
        }
        // A named body field: its message type, parsed from a JSON object.
        let body_field = match self.body {
            "" | "*" => None,
            field => {
                let descriptor =
                    input
                        .field
                        .iter()
                        .find(|f| f.name() == field)
                        .ok_or_else(|| {
                            format!("{rpc}: body {field:?} is not a field of the request")
                        })?;
                if descriptor.r#type() != Type::Message || descriptor.label() == Label::Repeated {
                    return Err(format!(
                        "{rpc}: body {field:?} is not a message field, which the gateway needs"
                    )
                    .into());
                }
                Some(descriptor)
            }
        };
        match self.body {
            "" => {}
            "*" => params.push(format!("ProtoJson(body): ProtoJson<{request_type}>")),
            _ => params.push("ProtoJson(body): ProtoJson<serde_json::Value>".to_owned()),
        }

        let mut lines: Vec<String> = Vec::new();
        let mut assigned = false;
        if self.body == "*" {
            lines.push("let request = body;".to_owned());
        } else {
            lines.push(format!("let request = {request_type}::default();"));
        }
        // Path variables, then the query, then a named body: the order errors are reported.
        let path_values: Vec<String> = self
            .bound
            .iter()
            .map(|path| format!("path_{}", path.replace('.', "_")))
            .collect();
        if let Some(first) = self.bound.first() {
            let pattern = if path_values.len() == 1 {
                path_values[0].clone()
            } else {
                format!("({})", path_values.join(", "))
            };
            lines.push(format!("let {pattern} = bind::path(path, {first:?})?;"));
        }
        if !queried.is_empty() {
            lines.push("let query = Query::parse(query)?;".to_owned());
        }
        let body_local = body_field.map(|f| rust_field(f.name()));
        if let Some(field) = body_field {
            let local = rust_field(field.name());
            let message_type = rust_type(rpc, field.type_name())?;
            let (message, _) = self.types.message(field.type_name())?;
            lines.push(format!(
                "let fields = bind::body_object(body, {:?}, {:?})?;",
                field.name(),
                message.name()
            ));
            lines.push(format!(
                "let mut {local}: {message_type} = bind::from_object(&fields)?;"
            ));
        }
        for (path, value) in self.bound.iter().zip(&path_values) {
            let (field, _) = field_at(self.types, input_type, path, rpc)?;
            if field.r#type() != Type::String || field.label() == Label::Repeated {
                return Err(format!(
                    "{rpc}: the path variable {path} is not a string field, which the gateway needs"
                )
                .into());
            }
            match (self.body, body_field) {
                ("*", _) => {
                    let place = place("request", path);
                    lines.push(format!(
                        "bind::bind_path_in_body(&mut {place}, {value}, {path:?})?;"
                    ));
                    assigned = true;
                }
                (_, Some(body)) if path.starts_with(&format!("{}.", body.name())) => {
                    let rest = &path[body.name().len() + 1..];
                    let local = body_local.clone().unwrap_or_default();
                    let place = place(&local, rest);
                    lines.push(format!(
                        "bind::bind_path_in_body(&mut {place}, {value}, {path:?})?;"
                    ));
                }
                _ => {
                    lines.push(format!("{} = {value};", place("request", path)));
                    assigned = true;
                }
            }
        }
        if let (Some(field), Some(local)) = (body_field, &body_local) {
            lines.push(format!("request.{local} = Some({local});"));
            let _ = field;
            assigned = true;
        }
        let infers_mask = self.verb == "patch" && body_field.is_some();
        for field in &queried {
            assigned = true;
            lines.push(self.query_line(field, infers_mask, input_type)?);
        }
        if assigned {
            lines[0] = lines[0].replacen("let request", "let mut request", 1);
        }

        let method = snake_case(self.method.name());
        let call = if reads_token {
            "bind::with_authorization(&headers, request)"
        } else {
            "bind::request(request)"
        };
        lines.push(format!("let response = service.{method}({call}).await?;"));
        let success = match self.rule.success {
            Success::Ok => "Ok",
            Success::Created => "Created",
            Success::NoContent => "NoContent",
        };
        lines.push(format!("Ok(bind::respond(Success::{success}, response))"));

        let mut src = String::new();
        let _ = write!(
            src,
            "
    /// `{} {}`: `{}`, {}.
    async fn {name}<T: {}>(
",
            self.verb.to_uppercase(),
            self.template,
            self.method.name(),
            self.rule.success.status(),
            rpc.rsplit('.').nth(1).unwrap_or_default(),
        );
        for param in &params {
            let _ = writeln!(src, "        {param},");
        }
        src.push_str("    ) -> Result<Response, HttpError> {\n");
        for line in &lines {
            let _ = writeln!(src, "        {line}");
        }
        src.push_str("    }\n");
        Ok(src)
    }

    /// The statement that fills one query-bound field.
    fn query_line(
        &self,
        field: &FieldDescriptorProto,
        infers_mask: bool,
        input_type: &str,
    ) -> Result<String> {
        let rpc = self.rpc;
        let proto = field.name();
        let json = field.json_name();
        let target = format!("request.{}", rust_field(proto));
        if field.label() == Label::Repeated {
            return Err(
                format!("{rpc}: the repeated query field {proto} is not generated yet").into(),
            );
        }
        let parsed = |rust: &str, what: &str| {
            format!(
                "if let Some(value) = query.parsed::<{rust}>({json:?}, {proto:?}, {proto:?}, {what:?})? {{ {target} = value; }}"
            )
        };
        Ok(match field.r#type() {
            Type::String => {
                format!(
                    "if let Some(value) = query.string({json:?}, {proto:?}) {{ {target} = value; }}"
                )
            }
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => parsed("i32", "an integer"),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => parsed("i64", "an integer"),
            Type::Uint32 | Type::Fixed32 => parsed("u32", "a non-negative integer"),
            Type::Uint64 | Type::Fixed64 => parsed("u64", "a non-negative integer"),
            Type::Float => parsed("f32", "a number"),
            Type::Double => parsed("f64", "a number"),
            Type::Bool => parsed("bool", "true or false"),
            Type::Message if field.type_name() == ".google.protobuf.FieldMask" => {
                if infers_mask && proto == "update_mask" {
                    let keys = self.path_keys_in_body(input_type)?;
                    format!(
                        "{target} = Some(match query.field_mask({json:?}, {proto:?}, {proto:?})? {{ Some(mask) => mask, None => bind::inferred_mask(&fields, &[{keys}]) }});"
                    )
                } else {
                    format!(
                        "if let Some(mask) = query.field_mask({json:?}, {proto:?}, {proto:?})? {{ {target} = Some(mask); }}"
                    )
                }
            }
            _ => {
                return Err(format!(
                    "{rpc}: the query field {proto} has a type the gateway does not parse yet"
                )
                .into());
            }
        })
    }

    /// The body keys a PATCH's inferred mask leaves out: the JSON and proto names of the body
    /// message's fields that the path binds (`id` for `{user.id}` with `body: "user"`).
    fn path_keys_in_body(&self, input_type: &str) -> Result<String> {
        let mut keys: Vec<String> = Vec::new();
        for path in &self.bound {
            let Some(rest) = path.strip_prefix(&format!("{}.", self.body)) else {
                continue;
            };
            if rest.contains('.') {
                continue;
            }
            let (field, _) = field_at(self.types, input_type, path, self.rpc)?;
            for key in [field.json_name(), field.name()] {
                let quoted = format!("{key:?}");
                if !keys.contains(&quoted) {
                    keys.push(quoted);
                }
            }
        }
        Ok(keys.join(", "))
    }
}

/// The place `root.a.b` in Rust: optional message fields on the way are created.
fn place(root: &str, path: &str) -> String {
    let segments: Vec<&str> = path.split('.').collect();
    let mut place = root.to_owned();
    for (i, segment) in segments.iter().enumerate() {
        place.push('.');
        place.push_str(&rust_field(segment));
        if i + 1 < segments.len() {
            place.push_str(".get_or_insert_with(Default::default)");
        }
    }
    place
}

/// The Rust path, from a service's gateway module, of a message of the same package.
fn rust_type(rpc: &str, type_name: &str) -> Result<String> {
    let package = rpc.rsplitn(3, '.').nth(2).unwrap_or_default();
    let name = type_name
        .strip_prefix(&format!(".{package}."))
        .ok_or_else(|| {
            format!("{rpc}: {type_name} is not in the rpc's package, which the gateway needs")
        })?;
    if name.contains('.') {
        return Err(format!("{rpc}: the nested message {type_name} is not generated yet").into());
    }
    Ok(format!("super::{name}"))
}

/// A field's name in prost's Rust struct.
fn rust_field(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
        "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
        "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
    ];
    let snake = snake_case(name);
    if KEYWORDS.contains(&snake.as_str()) {
        format!("r#{snake}")
    } else {
        snake
    }
}

/// `CreateUser` → `create_user`, as tonic names trait methods and prost modules.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_tonic_and_prost() {
        assert_eq!(snake_case("CreateUser"), "create_user");
        assert_eq!(snake_case("UserService"), "user_service");
        assert_eq!(rust_field("type"), "r#type");
        assert_eq!(rust_field("display_name"), "display_name");
    }

    #[test]
    fn nested_places_create_the_messages_on_the_way() {
        assert_eq!(place("request", "user_id"), "request.user_id");
        assert_eq!(
            place("request", "user.id"),
            "request.user.get_or_insert_with(Default::default).id"
        );
    }
}
