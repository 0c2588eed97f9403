//! A TLS front: terminates TLS (offering HTTP/2 and HTTP/1.1 by ALPN) with a certificate for
//! `localhost` and `127.0.0.1` issued by a CA made for this front alone, and relays the plain
//! bytes to a TCP backend (e.g. a fake upstream that speaks plain HTTP/1 and HTTP/2). It
//! records the protocol each connection agreed on.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::relay::{Listener, Record};

/// A running TLS front.
pub struct TlsFront {
    listener: Listener,
    ca_pem: String,
    protocols: Record<String>,
}

impl TlsFront {
    /// Terminates TLS for `backend`.
    pub async fn start(backend: SocketAddr) -> Self {
        let (ca_pem, config) = server_config();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let protocols = Record::new();
        let record = protocols.clone();
        let listener = Listener::start(move |stream| {
            let acceptor = acceptor.clone();
            let record = record.clone();
            async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let protocol = tls.get_ref().1.alpn_protocol().unwrap_or(b"none");
                record.push(String::from_utf8_lossy(protocol).into_owned());
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        })
        .await;
        Self {
            listener,
            ca_pem,
            protocols,
        }
    }

    /// The ALPN protocol of each connection so far (`h2`, `http/1.1`, or `none`).
    pub fn protocols(&self) -> Vec<String> {
        self.protocols.all()
    }

    pub fn port(&self) -> u16 {
        self.listener.addr().port()
    }

    /// The CA certificate (PEM) that issued the front's certificate: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// A fresh CA, a leaf certificate it issued, and a server config presenting the leaf.
fn server_config() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf parameters");
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), config)
}
