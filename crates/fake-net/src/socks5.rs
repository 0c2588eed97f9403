//! A SOCKS5 proxy (RFC 1928) for `CONNECT` only, with optional user/password authentication
//! (RFC 1929). It records each destination the way the client gave it, which tells `socks5`
//! (the client resolved the name) from `socks5h` (the proxy is to resolve it).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::relay::{Listener, Record};

/// A destination as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An address: the client resolved the name itself.
    Address(SocketAddr),
    /// A host name, for the proxy to resolve.
    Name(String, u16),
}

/// A running SOCKS5 proxy.
pub struct Socks5Proxy {
    listener: Listener,
    seen: Record<Destination>,
}

impl Socks5Proxy {
    /// A proxy that accepts clients without authentication.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A proxy that requires `user` and `password`.
    pub async fn start_with_password(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> Self {
        let seen = Record::new();
        let record = seen.clone();
        let listener = Listener::start(move |stream| {
            let credentials = credentials.clone();
            let record = record.clone();
            async move {
                let _ = serve(stream, credentials, record).await;
            }
        })
        .await;
        Self { listener, seen }
    }

    /// `socks5://127.0.0.1:<port>` (or with another scheme such as `socks5h`).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.listener.addr())
    }

    /// The destinations of every accepted `CONNECT` so far, in order.
    pub fn destinations(&self) -> Vec<Destination> {
        self.seen.all()
    }
}

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;

async fn serve(
    mut client: TcpStream,
    credentials: Option<(String, String)>,
    seen: Record<Destination>,
) -> std::io::Result<()> {
    let [version, count] = read_array(&mut client).await?;
    let mut methods = vec![0; usize::from(count)];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() {
        USER_PASSWORD
    } else {
        NO_AUTHENTICATION
    };
    if version != VERSION || !methods.contains(&wanted) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(());
    }
    client.write_all(&[VERSION, wanted]).await?;
    if let Some((user, password)) = credentials {
        let [_, user_length] = read_array(&mut client).await?;
        let given_user = read_string(&mut client, user_length).await?;
        let [password_length] = read_array(&mut client).await?;
        let given_password = read_string(&mut client, password_length).await?;
        let accepted = given_user == user && given_password == password;
        client.write_all(&[1, u8::from(!accepted)]).await?;
        if !accepted {
            return Ok(());
        }
    }
    let [_, command, _, address_type] = read_array(&mut client).await?;
    let destination = match address_type {
        1 => {
            let ip: [u8; 4] = read_array(&mut client).await?;
            let port = u16::from_be_bytes(read_array(&mut client).await?);
            Destination::Address(SocketAddr::from((Ipv4Addr::from(ip), port)))
        }
        3 => {
            let [length] = read_array(&mut client).await?;
            let name = read_string(&mut client, length).await?;
            let port = u16::from_be_bytes(read_array(&mut client).await?);
            Destination::Name(name, port)
        }
        4 => {
            let ip: [u8; 16] = read_array(&mut client).await?;
            let port = u16::from_be_bytes(read_array(&mut client).await?);
            Destination::Address(SocketAddr::from((Ipv6Addr::from(ip), port)))
        }
        _ => return Ok(()),
    };
    const COMMAND_NOT_SUPPORTED: u8 = 7;
    const HOST_UNREACHABLE: u8 = 4;
    if command != 1 {
        client
            .write_all(&[VERSION, COMMAND_NOT_SUPPORTED, 0, 1, 0, 0, 0, 0, 0, 0])
            .await?;
        return Ok(());
    }
    seen.push(destination.clone());
    let upstream = match &destination {
        Destination::Address(addr) => TcpStream::connect(addr).await,
        Destination::Name(name, port) => TcpStream::connect((name.as_str(), *port)).await,
    };
    let Ok(mut upstream) = upstream else {
        client
            .write_all(&[VERSION, HOST_UNREACHABLE, 0, 1, 0, 0, 0, 0, 0, 0])
            .await?;
        return Ok(());
    };
    client
        .write_all(&[VERSION, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn read_array<const N: usize>(stream: &mut TcpStream) -> std::io::Result<[u8; N]> {
    let mut bytes = [0; N];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn read_string(stream: &mut TcpStream, length: u8) -> std::io::Result<String> {
    let mut bytes = vec![0; usize::from(length)];
    stream.read_exact(&mut bytes).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
