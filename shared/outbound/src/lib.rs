//! How pointsflow calls out: to partners and to sources' callback URLs.
//!
//! - URLs are read with a URL parser, never by prefix (the configuration's
//!   rule): `https`, or `http` to a loopback host (`127.0.0.0/8`, `::1`,
//!   `localhost`) in the local stack only, and no user name or password.
//! - No client follows a redirect: a `307` would forward a signed body (or
//!   a partner's key) to wherever it points.
//! - Deployed, a callback may not reach a loopback, private, link-local or
//!   otherwise non-public address. The check is made on every connection,
//!   by the resolver, so a name that resolves to a public address when the
//!   configuration is loaded and to `169.254.169.254` later (DNS rebinding)
//!   is still refused. A partner is a named company the operator
//!   configured; it may be reached over a private link, so only HTTPS and
//!   no redirects apply to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

pub use pointsflow_config::urls::{Url, UrlError};

/// Where the stack runs, which decides what an outbound URL may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// On one machine (`pointsflow dev`, tests, the simulator): a loopback
    /// `http` URL is allowed, for the sandbox partner and a local receiver.
    Local,
    /// In an AWS account: HTTPS only, and callbacks to public addresses only.
    Deployed,
}

/// Whom a client calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Partner,
    Callback,
}

/// `text` as a URL for `target` on a stack that runs where `reach` says:
/// the configuration's rule (`pointsflow_config::urls::outbound`), and
/// deployed, HTTPS only and a callback host that is not private.
pub fn check(text: &str, reach: Reach, target: Target) -> Result<Url, UrlError> {
    let url = pointsflow_config::urls::outbound(text)?;
    if reach == Reach::Local {
        return Ok(url);
    }
    if url.scheme() != "https" {
        return Err(UrlError::NotHttps);
    }
    if target == Target::Callback {
        match url.host() {
            Some(url::Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => {
                return Err(UrlError::NotPublic);
            }
            Some(url::Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => {
                return Err(UrlError::NotPublic);
            }
            Some(url::Host::Domain(d)) if is_localhost(d) => return Err(UrlError::NotPublic),
            _ => {}
        }
    }
    Ok(url)
}

fn is_localhost(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// Whether a deployed callback may connect to `ip`: not loopback, private,
/// link-local (the instance metadata and Lambda runtime addresses among
/// them), shared, multicast, reserved or unspecified, in either family.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 to any IPv4
}

/// What went wrong with a call, for logs and stored details: the error and
/// its causes, with the URL cut to its scheme and host (a callback's or a
/// partner's path and query may carry a token).
pub fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        let shown = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""));
        text = text.replace(url.as_str(), &shown);
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A resolver that drops every address a deployed callback may not reach,
/// and fails when none is left: the check happens on each connection.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// A client builder for `target` with the rules above: no redirects, and
/// for a deployed callback, the [`PublicOnly`] resolver.
pub fn client_builder(reach: Reach, target: Target) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if reach == Reach::Deployed && target == Target::Callback {
        builder.dns_resolver(Arc::new(PublicOnly))
    } else {
        builder
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deployed_callbacks_and_partners_need_https_and_callbacks_a_public_host() {
        use Reach::*;
        use Target::*;
        assert!(check("http://127.0.0.1:9000/", Local, Callback).is_ok());
        assert_eq!(
            check("http://127.0.0.1:9000/", Deployed, Callback),
            Err(UrlError::NotHttps)
        );
        assert_eq!(
            check("http://127.0.0.1:9000/", Deployed, Partner),
            Err(UrlError::NotHttps)
        );
        for private in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://localhost/",
            "https://api.localhost/",
        ] {
            assert_eq!(
                check(private, Deployed, Callback),
                Err(UrlError::NotPublic),
                "{private}"
            );
        }
        // A partner over a private link is the operator's choice.
        assert!(check("https://10.1.2.3/", Deployed, Partner).is_ok());
        assert!(check("https://hooks.example.com/x", Deployed, Callback).is_ok());
    }

    #[test]
    fn only_public_addresses_pass() {
        for ip in ["8.8.8.8", "2606:4700::1111", "52.94.0.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    /// The resolver refuses a name that resolves to loopback, as a
    /// rebinding name would when the call is made.
    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_private_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }

    /// An error's text names the host, never the path or query.
    #[tokio::test]
    async fn error_text_keeps_the_host_and_drops_the_path_and_query() {
        let client = client_builder(Reach::Local, Target::Callback)
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = client
            .get(format!(
                "http://127.0.0.1:{port}/hooks/T0SECRET?token=tok_0123456789"
            ))
            .send()
            .await
            .unwrap_err();
        let text = error_text(&e);
        assert!(
            !text.contains("T0SECRET") && !text.contains("tok_0123456789"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1"), "{text}");
    }

    /// A deployed callback client refuses to connect to a loopback
    /// receiver named by host, and no client follows a redirect.
    #[tokio::test]
    async fn clients_follow_no_redirect_and_deployed_callbacks_reach_no_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer = "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9001/2018-06-01/runtime/invocation/next\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let local = client_builder(Reach::Local, Target::Callback)
            .build()
            .unwrap();
        let answer = local
            .post(format!("http://127.0.0.1:{port}/hook"))
            .body("signed")
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            307,
            "the redirect is answered, not followed"
        );

        let deployed = client_builder(Reach::Deployed, Target::Callback)
            .build()
            .unwrap();
        let refused = deployed
            .post(format!("http://localhost:{port}/hook"))
            .body("signed")
            .send()
            .await;
        assert!(refused.is_err(), "a deployed callback reached loopback");
        server.abort();
    }
}
