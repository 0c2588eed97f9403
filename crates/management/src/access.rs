//! Who may use the management routes: the management key (compared in constant time), the
//! loopback rule, same-origin pages only, and the lockout after wrong keys.
//!
//! Order of the checks, first failure answers:
//! 1. No management key configured: every management route is 404, except `/metrics`, which
//!    then answers loopback peers whose `Host` is a loopback name (no DNS rebinding), and 403
//!    others.
//! 2. A peer that is not loopback, without `management.allow-remote = true`: 403.
//! 3. An `Origin` header that is not the request's own origin (a web page elsewhere): 403.
//! 4. The dashboard's page and assets need no key (they hold no data: the page asks for it).
//! 5. An address locked out: 429 with `Retry-After`, even with the right key.
//! 6. No key (`Authorization: Bearer KEY` or `X-Management-Key: KEY`): 401. A wrong one: 401,
//!    counted against the address.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, Response, StatusCode};

use crate::key::ManagementKey;
use crate::lockout::Lockout;
use crate::reply;

/// The header the dashboard sends the key in.
pub const KEY_HEADER: &str = "x-management-key";

/// Which kind of route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `/v0/management/...`
    Api,
    /// `/metrics`
    Metrics,
    /// `/dashboard` and its assets.
    Dashboard,
}

/// The management routes' gate.
#[derive(Debug)]
pub struct Gate {
    pub key: Option<ManagementKey>,
    pub allow_remote: bool,
    pub lockout: Lockout,
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The host part of a `Host` value (`name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = host_name(host).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// Whether `Origin`, when present, is the request's own origin (`http://` + `Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|origin| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
        })
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
}

/// The key a request presents.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let key = match headers.get(KEY_HEADER) {
        Some(value) => value.to_str().ok()?,
        None => {
            let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
            let (scheme, key) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(key)?
        }
    };
    Some(key.trim()).filter(|key| !key.is_empty())
}

impl Gate {
    /// `Ok` when the request may go on, else the answer that refuses it.
    pub async fn check(
        &self,
        area: Area,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<(), Response<Bytes>> {
        let loopback = is_loopback(peer.ip());
        let Some(key) = &self.key else {
            if area != Area::Metrics {
                return Err(reply::not_found());
            }
            if loopback && loopback_host(headers) && same_origin(headers) {
                return Ok(());
            }
            return Err(reply::error(
                StatusCode::FORBIDDEN,
                "metrics_loopback_only",
                "without a management key /metrics answers only loopback clients; set management-key to scrape it from elsewhere",
            ));
        };
        if !loopback && !self.allow_remote {
            return Err(reply::error(
                StatusCode::FORBIDDEN,
                "management_loopback_only",
                "the management routes answer only loopback clients; set allow-remote = true in [management] to use them from elsewhere (use TLS in front of it)",
            ));
        }
        if !same_origin(headers) {
            return Err(reply::error(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "the management routes refuse requests from other web pages; open the dashboard on this server instead",
            ));
        }
        if area == Area::Dashboard {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(left) = self.lockout.locked_for(peer.ip(), now) {
            return Err(reply::locked_out(left.as_secs()));
        }
        let Some(presented) = presented_key(headers) else {
            return Err(reply::error(
                StatusCode::UNAUTHORIZED,
                "missing_management_key",
                "this route needs the management key: send it as `Authorization: Bearer KEY` or `X-Management-Key: KEY`",
            ));
        };
        if key.matches(presented).await {
            self.lockout.succeeded(peer.ip());
            return Ok(());
        }
        let locked = self.lockout.failed(peer.ip(), now);
        tracing::warn!(peer = %peer.ip(), locked, "wrong management key");
        Err(reply::error(
            StatusCode::UNAUTHORIZED,
            "wrong_management_key",
            "wrong management key; five wrong keys lock this address out for 15 minutes",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        assert_eq!(host_name("127.0.0.1:8317"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8317"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "127.0.0.1:8317".parse().unwrap());
        assert!(loopback_host(&headers) && same_origin(&headers));
        headers.insert(ORIGIN, "http://127.0.0.1:8317".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(HOST, "rebound.example:8317".parse().unwrap());
        assert!(!loopback_host(&headers));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("abc"));
        headers.insert(KEY_HEADER, "def".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("def"));
    }
}
