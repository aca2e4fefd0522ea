//! A framed connection to a worker (through `pupa-host run` or directly), over TCP or TLS.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pupa_protocol::frame::{Frame, FrameDecoder};
use pupa_protocol::msg::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::ClientError;

/// TLS settings for reaching a relay that serves TLS.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the PEM certificates in `ca` (the relay's certificate or its CA) and expects the
    /// relay to present a certificate for `server_name`.
    pub fn new(ca: &Path, server_name: &str) -> Result<TlsClient, ClientError> {
        let pem = fs::read(ca)
            .map_err(|e| ClientError::Tls(format!("cannot read {}: {e}", ca.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| ClientError::Tls(format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls(format!(
                "{} holds no PEM certificate",
                ca.display()
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(format!("server name {server_name:?}: {e}")))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A connection that sends and receives whole frames.
pub struct Connection {
    stream: Box<dyn Stream>,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    eof: bool,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), with TLS when `tls` is given. Replies must come within
    /// `timeout`.
    pub fn connect(
        addr: &str,
        tls: Option<&TlsClient>,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let sa = addr
            .to_socket_addrs()
            .map_err(|e| ClientError::Connect(addr.into(), e))?
            .next()
            .ok_or_else(|| ClientError::Connect(addr.into(), io::Error::other("no address")))?;
        let tcp = TcpStream::connect_timeout(&sa, timeout)
            .map_err(|e| ClientError::Connect(addr.into(), e))?;
        tcp.set_nodelay(true).map_err(ClientError::Io)?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(ClientError::Io)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let conn = rustls::ClientConnection::new(t.config.clone(), t.server_name.clone())
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Ok(Connection {
            stream,
            decoder: FrameDecoder::new(),
            buf: vec![0; 64 * 1024],
            eof: false,
        })
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        let f = msg.to_frame().map_err(ClientError::Encode)?;
        self.send_raw(&f)
    }

    /// Sends raw bytes (tests use it for malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .map_err(ClientError::Io)
    }

    /// The next frame, or `Ok(None)` when the peer closed cleanly between frames.
    pub fn recv_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(f) = self.decoder.next_frame().map_err(ClientError::Frame)? {
                return Ok(Some(f));
            }
            if self.eof {
                self.decoder.finish().map_err(ClientError::Frame)?;
                return Ok(None);
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.feed(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Timeout)
                }
                // A reset or a TLS peer that left without close_notify: the connection is over.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    self.eof = true
                }
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// The next message; a closed connection is [`ClientError::Closed`].
    pub fn recv(&mut self) -> Result<Message, ClientError> {
        let f = self.recv_frame()?.ok_or(ClientError::Closed)?;
        Message::from_frame(&f).map_err(ClientError::Decode)
    }
}
