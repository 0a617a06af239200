//! `AUTH_SERVICE_ADDRESS`: one URL, a comma-separated list of them, or a `dns:///` name.

use anyhow::{Context, bail};
use http::Uri;

/// What `AUTH_SERVICE_ADDRESS` may look like, for error messages.
const ADDRESS_FORMS: &str = "expected http://host:port, https://host:port, a comma-separated list of them, or dns:///name:port";

/// Where auth-service is, as `AUTH_SERVICE_ADDRESS` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAddress {
    /// One or more `http://` or `https://` URLs; several are balanced client-side.
    Urls(Vec<Uri>),
    /// A DNS name whose every address is used, re-resolved periodically.
    Dns {
        /// The name (or a literal IP address) to resolve.
        host: String,
        /// The port every resolved address is reached on.
        port: u16,
    },
}

impl AuthAddress {
    /// Parses `http://host:port`, `https://host:port`, a comma-separated list of them
    /// (whitespace around commas is fine, empty entries are not), or `dns:///name:port`
    /// (also `dns:name:port`). The port is always required.
    pub fn parse(s: &str) -> anyhow::Result<AuthAddress> {
        let s = s.trim();
        if s.is_empty() {
            bail!("the address is empty; {ADDRESS_FORMS}");
        }
        if let Some(rest) = strip_prefix_ignore_case(s, "dns:") {
            return parse_dns(rest);
        }
        let entries: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut urls = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if entry.is_empty() {
                bail!(
                    "entry {} of the address list is empty; {ADDRESS_FORMS}",
                    index + 1
                );
            }
            urls.push(parse_url(entry)?);
        }
        Ok(AuthAddress::Urls(urls))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_dns(rest: &str) -> anyhow::Result<AuthAddress> {
    let target = if let Some(target) = rest.strip_prefix("///") {
        target
    } else if rest.starts_with("//") {
        bail!("dns://AUTHORITY/ (a custom DNS server) is not supported; write dns:///name:port");
    } else {
        rest
    };
    let (host, port) = if let Some(bracketed) = target.strip_prefix('[') {
        // An IPv6 literal: `[::1]:50051`.
        let (host, after) = bracketed
            .split_once(']')
            .with_context(|| format!("{target:?}: missing `]` after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .with_context(|| format!("{target:?}: missing port; write dns:///name:port"))?;
        (host, port)
    } else {
        let (host, port) = target
            .rsplit_once(':')
            .with_context(|| format!("{target:?}: missing port; write dns:///name:port"))?;
        if host.contains(':') {
            bail!("{target:?}: write an IPv6 address in brackets, as in dns:///[::1]:50051");
        }
        (host, port)
    };
    if host.is_empty() {
        bail!("{target:?}: missing host name; write dns:///name:port");
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@' | ','))
    {
        bail!("{target:?}: {host:?} is not a host name");
    }
    let port = parse_port(port, target)?;
    Ok(AuthAddress::Dns {
        host: host.to_owned(),
        port,
    })
}

fn parse_port(port: &str, whole: &str) -> anyhow::Result<u16> {
    if port.is_empty() {
        bail!("{whole:?}: missing port");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bail!("{whole:?}: {port:?} is not a port (1 to 65535)"),
        Ok(port) => Ok(port),
    }
}

fn parse_url(entry: &str) -> anyhow::Result<Uri> {
    let uri: Uri = entry
        .parse()
        .with_context(|| format!("{entry:?} is not a URL; {ADDRESS_FORMS}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => bail!("{entry:?}: unsupported scheme {other:?}; {ADDRESS_FORMS}"),
        None => bail!("{entry:?}: missing http:// or https://; {ADDRESS_FORMS}"),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{entry:?}: missing host; {ADDRESS_FORMS}"))?;
    if authority.as_str().contains('@') {
        bail!("{entry:?}: user information in the URL is not supported");
    }
    if authority.host().is_empty() {
        bail!("{entry:?}: missing host; {ADDRESS_FORMS}");
    }
    let port = authority
        .port()
        .with_context(|| format!("{entry:?}: missing port; write scheme://host:port"))?;
    parse_port(port.as_str(), entry)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("{entry:?}: a path or query is not allowed; write scheme://host:port");
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn urls(s: &str) -> Vec<String> {
        match AuthAddress::parse(s).unwrap() {
            AuthAddress::Urls(urls) => urls.iter().map(ToString::to_string).collect(),
            other => panic!("expected URLs, got {other:?}"),
        }
    }

    fn dns(s: &str) -> (String, u16) {
        match AuthAddress::parse(s).unwrap() {
            AuthAddress::Dns { host, port } => (host, port),
            other => panic!("expected DNS, got {other:?}"),
        }
    }

    fn error(s: &str) -> String {
        format!("{:#}", AuthAddress::parse(s).unwrap_err())
    }

    #[test]
    fn one_url_is_accepted() {
        assert_eq!(urls("http://auth:50051"), ["http://auth:50051/"]);
        assert_eq!(
            urls(" https://auth.example.com:443 "),
            ["https://auth.example.com:443/"]
        );
        assert_eq!(urls("http://127.0.0.1:50051/"), ["http://127.0.0.1:50051/"]);
        assert_eq!(urls("http://[::1]:50051"), ["http://[::1]:50051/"]);
    }

    #[test]
    fn a_comma_separated_list_is_accepted_with_spaces() {
        assert_eq!(
            urls("http://a:1, http://b:2 ,https://c:3"),
            ["http://a:1/", "http://b:2/", "https://c:3/"]
        );
    }

    #[test]
    fn empty_list_entries_are_rejected() {
        assert!(error("http://a:1,,http://b:2").contains("entry 2"));
        assert!(error("http://a:1,").contains("entry 2"));
        assert!(error(", http://a:1").contains("entry 1"));
    }

    #[test]
    fn dns_names_are_accepted_in_both_spellings() {
        assert_eq!(dns("dns:///auth.svc:50051"), ("auth.svc".to_owned(), 50051));
        assert_eq!(dns("dns:auth:50051"), ("auth".to_owned(), 50051));
        assert_eq!(dns("DNS:///localhost:1"), ("localhost".to_owned(), 1));
        assert_eq!(dns("dns:///[::1]:50051"), ("::1".to_owned(), 50051));
    }

    #[test]
    fn dns_needs_a_host_and_a_port() {
        assert!(error("dns:///auth").contains("missing port"));
        assert!(error("dns:///auth:").contains("missing port"));
        assert!(error("dns:///:50051").contains("missing host"));
        assert!(error("dns:///auth:http").contains("not a port"));
        assert!(error("dns:///auth:0").contains("not a port"));
        assert!(error("dns:///auth:65536").contains("not a port"));
        assert!(error("dns:///::1:50051").contains("brackets"));
        assert!(error("dns://8.8.8.8/auth:50051").contains("not supported"));
        assert!(error("dns:///auth/x:50051").contains("not a host name"));
    }

    #[test]
    fn other_forms_are_rejected_clearly() {
        assert!(error("").contains("empty"));
        assert!(error("   ").contains("empty"));
        assert!(error("auth:50051").contains("expected http://"));
        assert!(error("grpc://auth:50051").contains("unsupported scheme"));
        assert!(error("http://auth").contains("missing port"));
        assert!(error("http://auth:0").contains("not a port"));
        assert!(error("http://auth:50051/v1").contains("path"));
        assert!(error("http://auth:50051?x=1").contains("query"));
        assert!(error("http://user@auth:50051").contains("user information"));
        assert!(error("http://a:1 http://b:2").contains("not a URL"));
        assert!(error("http://a:1, dns:///b:2").contains("expected http://"));
    }
}
