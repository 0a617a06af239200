//! Database URLs: which backend a URL names, the file of a SQLite one, and a PostgreSQL
//! one made safe to show in logs and errors.

use std::path::PathBuf;

use anyhow::bail;

/// The file a `sqlite://` URL names: `sqlite://data/x.db` is relative to the working
/// directory, `sqlite:///tmp/x.db` is absolute. Query parameters are ignored here.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        bail!("not a sqlite URL: {url:?} (expected sqlite://PATH)");
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        bail!("{url:?} names no database file; data must live on disk");
    }
    Ok(PathBuf::from(path))
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with the password, if any, replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_recognised_and_their_passwords_hidden() {
        // (No `postgres` in the name: that marks the tests that need a server, see
        // .config/nextest.toml.)
        assert!(is_postgres_url("postgres://u:p@h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("sqlite://data/x.db"));
        assert!(!is_postgres_url("post"));
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_password("not a url"), "not a url");
    }
}
