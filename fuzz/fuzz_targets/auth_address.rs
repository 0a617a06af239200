//! `AUTH_SERVICE_ADDRESS`: user-service's `AuthAddress::parse`, then building the client on
//! what it accepted (`AuthClient::new`, which does no network I/O: its channels connect
//! lazily, and the tasks it spawns are dropped here unpolled).
//!
//! Input: the setting's value.
//!
//! Must hold: no panic; an accepted list has only `http://` or `https://` URLs, each with a
//! host, a port from 1 to 65535, no user information, path or query; an accepted `dns:` name
//! is non-empty, has no white space, control characters or URL delimiters, and a port from 1
//! to 65535; a client builds on every accepted list of `http://` URLs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use user_service::auth_client::{AuthAddress, AuthClient, AuthClientConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(address) = AuthAddress::parse(text) else {
        return;
    };
    let mut plain_http = false;
    match &address {
        AuthAddress::Urls(urls) => {
            assert!(!urls.is_empty());
            plain_http = true;
            for url in urls {
                let scheme = url.scheme_str();
                assert!(matches!(scheme, Some("http" | "https")), "{url}");
                plain_http &= scheme == Some("http");
                let authority = url.authority().expect("a host");
                assert!(!authority.host().is_empty(), "{url}");
                assert!(!authority.as_str().contains('@'), "{url}");
                assert!(authority.port_u16().is_some_and(|p| p > 0), "{url}");
                assert!(
                    matches!(url.path(), "" | "/") && url.query().is_none(),
                    "{url}"
                );
            }
        }
        AuthAddress::Dns { host, port } => {
            assert!(*port > 0);
            assert!(!host.is_empty());
            assert!(
                !host.chars().any(|c| c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '/' | '?' | '#' | '@' | ',')),
                "{host:?}"
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let _inside = runtime.enter();
    let client = AuthClient::new(AuthClientConfig::new(text));
    if plain_http {
        assert!(
            client.is_ok(),
            "{address:?}: {:#}",
            client.err().expect("an error")
        );
    }
});
