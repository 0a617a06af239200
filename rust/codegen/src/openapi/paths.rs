//! `google.api.http` path templates as OpenAPI paths.

use super::Result;

/// A path template variable: the field path it binds (`user.id`) and its OpenAPI name.
pub(super) struct Bound {
    pub(super) field_path: String,
    pub(super) name: String,
}

/// Turns a `google.api.http` path template into an OpenAPI path. A variable `{user.id}` (or
/// `{user.id=*}`) becomes the parameter `{user_id}`, so that the GET and PATCH of one path
/// share one path item, as OpenAPI requires. Multi-segment wildcards are refused.
pub(super) fn openapi_path(rpc: &str, template: &str) -> Result<(String, Vec<Bound>)> {
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
