//! Who may talk to the server: the optional API key, the `Host` check against DNS
//! rebinding, and the refusal of cross-origin requests from origins that are not allowed.
//!
//! - **API key** ([`ServerConfig::api_key`](crate::ServerConfig::api_key),
//!   `HYPERLLAMA_API_KEY`): when set, every request except `GET /` and `HEAD /` (the
//!   liveness probe) needs `Authorization: Bearer <key>`; the key is compared in constant
//!   time. Missing or wrong: 401 with `WWW-Authenticate: Bearer`. Ollama has no such key; it
//!   is off unless configured. CORS preflights are answered by the CORS layer, outside this
//!   check, since browsers send them without credentials.
//! - **Host** (Ollama's `allowedHostsMiddleware`): only when the server listens on a loopback
//!   address, a request's `Host` must be a loopback, private or unspecified IP address,
//!   `localhost`, the machine's host name, or a name under `.localhost`, `.local` or
//!   `.internal`; else 403. This stops a web page whose DNS name rebinds to 127.0.0.1 from
//!   reaching the local API. (Ollama also accepts any address of a local interface; we accept
//!   the private ranges instead of listing interfaces.)
//! - **Origin** (Ollama's CORS middleware): a request whose `Origin` is neither allowed
//!   ([`crate::cors`]) nor the server's own (`http://` or `https://` + `Host`) gets 403.
//!
//! Refusals are JSON errors in the dialect of the path: OpenAI's under `/v1/`, else Ollama's.
//!
//! # Invariants
//! - The API key never appears in logs or `Debug` output ([`ApiKey`] redacts it).
//! - The key comparison takes time independent of where the keys differ.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ApiError, ErrorKind};

/// A secret API key; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// Whether `candidate` is this key, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Byte-wise equality whose running time depends on the lengths only, never on where the
/// inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u64::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// What the guard checks, fixed when the router is built.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// The key requests must carry, if any.
    pub api_key: Option<ApiKey>,
    /// The address the server listens on; `Host` is checked only when it is loopback.
    pub local_addr: Option<SocketAddr>,
    /// Extra allowed origins (patterns).
    pub allowed_origins: Vec<String>,
    /// The machine's host name, lowercased.
    pub hostname: Option<String>,
}

impl GuardConfig {
    /// The guard for `cfg`, listening on `local_addr` when known.
    pub fn new(cfg: &crate::ServerConfig, local_addr: Option<SocketAddr>) -> Self {
        Self {
            api_key: cfg.api_key.clone(),
            local_addr,
            allowed_origins: cfg.allowed_origins.clone(),
            hostname: machine_hostname(),
        }
    }
}

/// The machine's host name, where the system tells it.
fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

/// The host of a `Host` header value, without the port (and without IPv6 brackets).
fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

fn ip_is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                // Unique local addresses (fc00::/7), IPv6's private range.
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| ip_is_local(IpAddr::V4(v4)))
        }
    }
}

/// Whether a request with this `Host` may reach a server bound to loopback.
pub fn host_allowed(host: &str, hostname: Option<&str>) -> bool {
    let host = host_part(host.trim()).to_ascii_lowercase();
    if host.is_empty() || host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip_is_local(ip);
    }
    if hostname.is_some_and(|h| h == host) {
        return true;
    }
    [".localhost", ".local", ".internal"]
        .iter()
        .any(|tld| host.ends_with(tld))
}

/// A refusal in the dialect of `path`.
fn refuse(path: &str, error: ApiError) -> Response {
    let mut resp = if path.starts_with("/v1/") || path == "/v1" {
        error.clone().into_openai()
    } else {
        error.clone().into_ollama()
    };
    if error.kind == ErrorKind::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The `Host` of a request: the header, else the URI's authority (HTTP/2).
fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

/// Refuses disallowed origins and, on loopback, disallowed hosts. Runs outside the CORS
/// layer.
pub async fn origin_and_host(
    State(cfg): State<Arc<GuardConfig>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let host = request_host(&req).unwrap_or_default();
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let same = origin == format!("http://{host}") || origin == format!("https://{host}");
        if !same && !crate::cors::origin_allowed(origin, &cfg.allowed_origins) {
            tracing::debug!(origin, "refused a cross-origin request");
            return refuse(
                &path,
                ApiError::new(
                    ErrorKind::Forbidden,
                    format!("origin '{origin}' is not allowed"),
                ),
            );
        }
    }
    let loopback = cfg.local_addr.is_some_and(|a| a.ip().is_loopback());
    if loopback && !host_allowed(&host, cfg.hostname.as_deref()) {
        tracing::debug!(host, "refused a request for a foreign host name");
        return refuse(
            &path,
            ApiError::new(
                ErrorKind::Forbidden,
                format!("host '{host}' is not allowed"),
            ),
        );
    }
    next.run(req).await
}

/// Checks the API key, when one is configured. Runs inside the CORS layer.
pub async fn api_key(State(cfg): State<Arc<GuardConfig>>, req: Request, next: Next) -> Response {
    let Some(key) = &cfg.api_key else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let probe = path == "/" && (req.method() == Method::GET || req.method() == Method::HEAD);
    if probe {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        Some(token) if key.matches(token) => next.run(req).await,
        Some(_) => refuse(
            path,
            ApiError::new(ErrorKind::Unauthorized, "invalid API key"),
        ),
        None => refuse(
            path,
            ApiError::new(
                ErrorKind::Unauthorized,
                "missing API key: send 'Authorization: Bearer <key>'",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        assert!(ApiKey::new("k").matches("k"));
        assert_eq!(format!("{:?}", ApiKey::new("hidden")), "ApiKey(<redacted>)");
    }

    #[test]
    fn hosts_allowed_on_loopback() {
        for ok in [
            "localhost:11434",
            "127.0.0.1:11434",
            "127.0.0.1",
            "[::1]:11434",
            "0.0.0.0:80",
            "192.168.1.20:11434",
            "10.0.0.3",
            "app.localhost:3000",
            "printer.local",
            "svc.internal",
            "myhost:11434",
            "",
        ] {
            assert!(host_allowed(ok, Some("myhost")), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:11434",
            "localhost.evil.example",
            "8.8.8.8",
            "[2001:db8::1]:80",
        ] {
            assert!(!host_allowed(bad, Some("myhost")), "{bad}");
        }
    }
}
