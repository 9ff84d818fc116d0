//! The `Host` check against DNS rebinding: a page on `evil.example` whose
//! name is re-pointed at 127.0.0.1 may make the browser talk to a Strata on
//! loopback, but its requests still say `Host: evil.example`. The dashboard
//! and `/api/*` answer only the names in `allowed_hosts`; with none
//! configured, only loopback names when they listen on loopback (on
//! `dashboard_listen` when set, else on `listen`).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// `None`: any host.
    patterns: Option<Vec<String>>,
}

impl AllowedHosts {
    pub fn new(configured: &[String], listen: &str) -> Self {
        if !configured.is_empty() {
            let patterns = configured.iter().map(|p| p.trim().to_ascii_lowercase());
            return Self {
                patterns: Some(patterns.collect()),
            };
        }
        let (name, _) = split_port(listen);
        if is_loopback(name) {
            Self {
                patterns: Some(vec![
                    "localhost".into(),
                    "*.localhost".into(),
                    "loopback".into(),
                ]),
            }
        } else {
            Self { patterns: None }
        }
    }

    /// Whether a request with this `Host` header is answered. A request
    /// without one cannot come from a browser, so it is no rebinding.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let (Some(patterns), Some(host)) = (&self.patterns, host) else {
            return true;
        };
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = split_port(&host);
        let name = name.trim_end_matches('.');
        patterns.iter().any(|pattern| matches(pattern, name, port))
    }
}

fn matches(pattern: &str, name: &str, port: Option<&str>) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern == "loopback" {
        return is_loopback(name);
    }
    let (pattern_name, pattern_port) = split_port(pattern);
    if pattern_port.is_some() && pattern_port != port {
        return false;
    }
    match pattern_name.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
        None => pattern_name == name,
    }
}

/// `name:port`, `[v6]:port`, `name` or `[v6]` into the name (brackets kept
/// off) and the port.
fn split_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (text, None),
    }
}

fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub async fn check(State(hosts): State<AllowedHosts>, request: Request, next: Next) -> Response {
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok());
    if hosts.allows(host) {
        return next.run(request).await;
    }
    let host = host.unwrap_or_default();
    Error::MisdirectedHost(format!(
        "this server does not answer to the host {host:?}; add it to allowed_hosts in the config"
    ))
    .into_response()
}
