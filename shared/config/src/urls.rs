//! Outbound URLs (partners' base URLs, sources' callback URLs), read with a
//! URL parser: `https`, or `http` to a loopback host for the local stack,
//! and never a user name or password. What a deployed stack refuses on top
//! (loopback, private addresses) is `pointsflow-outbound`'s to check.

pub use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a URL: {0}")]
    Unparsable(String),
    #[error("must use https (http only to a loopback address in the local stack)")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("must not point at a loopback, private or link-local address")]
    NotPublic,
}

/// Reads `text` as an outbound URL the local stack would accept.
pub fn outbound(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Unparsable(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = url.host().ok_or(UrlError::NoHost)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&host) => Ok(url),
        _ => Err(UrlError::NotHttps),
    }
}

/// `127.0.0.0/8`, `::1`, or exactly `localhost`.
pub fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_not_matched_by_prefix() {
        for bad in [
            "http://localhost.evil.com/",
            "http://127.0.0.1@evil.com/",
            "https://user:pass@example.com/",
            "http://example.com/",
            "ftp://example.com/",
            "not a url",
            "http://127.0.0.1.nip.io/",
        ] {
            assert!(outbound(bad).is_err(), "{bad}");
        }
        for good in [
            "https://example.com/hook",
            "http://127.0.0.1:9000/hook",
            "http://localhost:8080/",
            "http://[::1]:80/",
            "http://127.8.0.1/",
        ] {
            assert!(outbound(good).is_ok(), "{good}");
        }
    }
}
