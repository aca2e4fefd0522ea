//! TLS for remote clients (rustls with the `ring` provider), and the split of one client
//! connection into a reader and a writer half that two pump threads can own.
//!
//! TLS protects the client ↔ host hop only; the job itself stays HPKE-sealed to the guest
//! whatever the transport, so the host learns nothing more with or without TLS.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: io::Error },
    /// The certificate file holds no PEM certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    /// The key file holds no usable PEM private key.
    #[error("{path} holds no usable PEM private key: {reason}")]
    NoKey { path: String, reason: String },
    /// The key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY` or a legacy `Proc-Type: 4,ENCRYPTED`).
    #[error("{0}: encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out KEY.plain) and keep the plain key readable only by pupa-host")]
    EncryptedKey(String),
    /// rustls refused the pair.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads a PEM certificate chain and private key into a TLS 1.2/1.3 server configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let read = |p: &Path| {
        fs::read(p).map_err(|err| TlsSetupError::Read {
            path: p.display().to_string(),
            err,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(cert.display().to_string()));
    }
    let key = load_key(key, &key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(cfg))
}

/// The private key in `pem` (read from `path`), or what is wrong with it.
fn load_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let name = path.display().to_string();
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsSetupError::EncryptedKey(name));
    }
    let no_key = |reason: String| TlsSetupError::NoKey {
        path: name.clone(),
        reason,
    };
    if !text.contains("PRIVATE KEY-----") {
        let what = if text.contains("-----BEGIN CERTIFICATE-----") {
            "it holds a certificate, not a key (are --tls-cert and --tls-key swapped?)"
        } else {
            "no -----BEGIN PRIVATE KEY----- (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY block"
        };
        return Err(no_key(what.into()));
    }
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| no_key(format!("the key block does not decode ({e})")))
}

/// The write half of a client connection.
pub trait WriteHalf: Write + Send {
    /// Ends the stream in this direction (TCP FIN; TLS close_notify first).
    fn close_write(&mut self);
    /// Closes the connection in both directions.
    fn abort(&mut self);
}

/// A client connection split for two threads.
pub struct Split {
    /// Bytes from the client (plaintext after TLS).
    pub reader: Box<dyn Read + Send>,
    /// Bytes to the client.
    pub writer: Box<dyn WriteHalf>,
}

impl WriteHalf for TcpStream {
    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn abort(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// Splits a plain TCP connection.
pub fn split_plain(s: TcpStream) -> io::Result<Split> {
    Ok(Split {
        reader: Box::new(s.try_clone()?),
        writer: Box::new(s),
    })
}

/// Splits a TLS connection: both halves share the rustls state under a mutex; the reader
/// blocks on the socket without holding it.
pub fn split_tls(s: TcpStream, cfg: Arc<rustls::ServerConfig>) -> io::Result<Split> {
    let conn = ServerConnection::new(cfg).map_err(io::Error::other)?;
    let shared = Arc::new(TlsShared {
        conn: Mutex::new(conn),
        sock: s.try_clone()?,
    });
    Ok(Split {
        reader: Box::new(TlsReader {
            shared: shared.clone(),
            raw: vec![0; 16 * 1024],
        }),
        writer: Box::new(TlsWriter { shared }),
    })
}

struct TlsShared {
    conn: Mutex<ServerConnection>,
    sock: TcpStream,
}

impl TlsShared {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends whatever TLS records rustls has queued (handshake messages, data, alerts).
    fn flush_tls(&self, c: &mut ServerConnection) -> io::Result<()> {
        while c.wants_write() {
            c.write_tls(&mut &self.sock)?;
        }
        Ok(())
    }
}

struct TlsReader {
    shared: Arc<TlsShared>,
    raw: Vec<u8>,
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut c = self.shared.lock();
                match c.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            let n = (&self.shared.sock).read(&mut self.raw)?;
            let mut c = self.shared.lock();
            let mut rd = &self.raw[..n];
            if n == 0 {
                // TCP EOF: let rustls see it, then report end of stream.
                let _ = c.read_tls(&mut rd);
                return Ok(0);
            }
            while !rd.is_empty() {
                c.read_tls(&mut rd)?;
                if let Err(e) = c.process_new_packets() {
                    let _ = self.shared.flush_tls(&mut c); // the alert
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            self.shared.flush_tls(&mut c)?;
        }
    }
}

struct TlsWriter {
    shared: Arc<TlsShared>,
}

impl Write for TlsWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut c = self.shared.lock();
        let n = c.writer().write(b)?;
        self.shared.flush_tls(&mut c)?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut c = self.shared.lock();
        self.shared.flush_tls(&mut c)
    }
}

impl WriteHalf for TlsWriter {
    fn close_write(&mut self) {
        let mut c = self.shared.lock();
        c.send_close_notify();
        let _ = self.shared.flush_tls(&mut c);
        let _ = self.shared.sock.shutdown(Shutdown::Write);
    }
    fn abort(&mut self) {
        let _ = self.shared.sock.shutdown(Shutdown::Both);
    }
}
