//! Test support: the network peers cliproxy may talk to an upstream through, on 127.0.0.1.
//!
//! - [`HttpProxy`]: an HTTP proxy that forwards absolute-form requests (one per connection)
//!   and tunnels `CONNECT`; it records each request line and `Proxy-Authorization`.
//! - [`Socks5Proxy`]: a SOCKS5 proxy (RFC 1928, optional RFC 1929 user/password) that records
//!   each destination as the client sent it: an address or a name.
//! - [`TlsFront`]: a TLS terminator in front of a plain-TCP server, with a certificate for
//!   `localhost` and `127.0.0.1` issued by a fresh CA of its own ([`TlsFront::ca_pem`]); it
//!   records the protocol (ALPN) each connection agreed on.
//!
//! Each serves until dropped.

mod http_proxy;
mod relay;
mod socks5;
mod tls;

pub use http_proxy::{HttpProxy, ProxiedRequest};
pub use socks5::{Destination, Socks5Proxy};
pub use tls::TlsFront;
