//! TLS for `custody serve`: rustls with client certificates checked by the
//! service rather than by the handshake, so that a caller with an expired
//! certificate, or one from another CA, gets UNAUTHENTICATED with the reason
//! and the refusal is logged with its address, instead of a bare handshake
//! failure. The handshake still proves the client holds the certificate's
//! key; [`Verifier::check`] checks the chain and validity for every call.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a TLS handshake may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The client CA's verifier, lenient in the handshake and strict in
/// [`Verifier::check`].
#[derive(Debug)]
pub(super) struct Verifier(Arc<dyn ClientCertVerifier>);

impl Verifier {
    /// Checks a client's chain (leaf first) against the CA, now.
    pub(super) fn check(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (leaf, rest) = chain
            .split_first()
            .ok_or_else(|| "no client certificate".to_owned())?;
        self.0
            .verify_client_cert(leaf, rest, UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Callers with a bearer token present no certificate.
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked for every call by `check`, which can answer and log.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The server's TLS settings: its certificate and key, and the client CA.
pub(super) fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<(Arc<rustls::ServerConfig>, Option<Arc<Verifier>>)> {
    let chain = certs(cert)?;
    let key_pem = custody::localfile::read_secret(key, 1 << 20).map_err(|e| anyhow!(e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("{}: not a PEM private key ({e})", key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let (config, verifier) = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| anyhow!("{}: {e}", ca.display()))?;
            }
            let strict = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| anyhow!("client_ca {}: {e}", ca.display()))?;
            let v = Arc::new(Verifier(strict));
            (builder.with_client_cert_verifier(v.clone()), Some(v))
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = config
        .with_single_cert(chain, key)
        .context("the server certificate and key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), verifier))
}

/// TLS connections accepted on `listener`, each handshake on its own task
/// with a deadline; failed handshakes are logged and dropped.
pub(super) fn incoming(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("custody serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        eprintln!("custody serve: TLS handshake with {peer} failed: {e}");
                    }
                    Err(_) => eprintln!(
                        "custody serve: TLS handshake with {peer} took more than {} s",
                        HANDSHAKE_DEADLINE.as_secs()
                    ),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
