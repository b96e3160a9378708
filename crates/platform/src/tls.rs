//! TLS on the gRPC ports (rustls, with ring as the crypto provider, as the rest of Roster).
//!
//! - Server: the certificate chain and key come from PEM files (`ROSTER_TLS_CERT`,
//!   `ROSTER_TLS_KEY`) and are read again when either file changes, so a renewed certificate
//!   (cert-manager rewriting a mounted Secret) is served without a restart; a handshake looks
//!   at most once every [`RELOAD_CHECK`]. ALPN offers `h2` only, as gRPC needs.
//! - Mutual TLS (`ROSTER_TLS_CLIENT_CA`): every caller must present a certificate issued by
//!   that CA, and a caller with a service token must present one valid for the DNS name
//!   `roster-<service>` ([`names_service`], checked by the authentication layer), so a stolen
//!   service token is useless without that service's key.
//! - Client: a peer URL with `https://` is called over TLS, trusting `ROSTER_TLS_PEER_CA` and
//!   checking the peer's certificate for the URL's host name (the headless Service's name),
//!   while presenting this service's own certificate; [`ClientTls`] notices renewed files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{Stream, StreamExt};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ConfigError;

/// How often, at most, a handshake checks whether the certificate files changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to start theirs.
const CONCURRENT_HANDSHAKES: usize = 256;

/// TLS settings of `roster serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve gRPC over TLS with this certificate chain (PEM), read again when it changes.
    #[arg(long = "tls-cert", env = "ROSTER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM, PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", env = "ROSTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every caller must present a certificate issued by this CA (PEM); a caller
    /// with a service token, one valid for `roster-<service>`.
    #[arg(long = "tls-client-ca", env = "ROSTER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) the other service's certificate must chain to, for an `https://` peer URL.
    #[arg(long = "tls-peer-ca", env = "ROSTER_TLS_PEER_CA")]
    pub tls_peer_ca: Option<PathBuf>,
    /// Also answer `grpc.health.v1` in plaintext on this address, and nothing else: the
    /// kubelet's gRPC probes cannot speak TLS.
    #[arg(long = "health-listen", env = "ROSTER_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
}

impl TlsArgs {
    /// The server side, if `--tls-cert` is set.
    pub fn server(&self) -> Result<Option<Arc<ServerTls>>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        ServerTls::new(cert, key, self.tls_client_ca.as_deref()).map(|tls| Some(Arc::new(tls)))
    }

    /// The client side of calls to the other service, if `--tls-peer-ca` is set; it presents
    /// this service's own certificate when there is one.
    pub fn client(&self) -> Option<ClientTls> {
        let ca = self.tls_peer_ca.clone()?;
        let identity = self.tls_cert.clone().zip(self.tls_key.clone());
        Some(ClientTls { ca, identity, seen: None, config: None })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(key, format!("{}: no certificate in the file", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ConfigError::new("ROSTER_TLS_KEY", format!("{}: {e}", path.display())))
}

/// When a file last changed and how long it is; `None` if it cannot be read.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths.iter().map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

/// The server's certificate, read again when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
    last_check: Mutex<Instant>,
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, ConfigError> {
    let certs = read_certs(cert, "ROSTER_TLS_CERT")?;
    let key = provider
        .key_provider
        .load_private_key(read_key(key)?)
        .map_err(|e| ConfigError::new("ROSTER_TLS_KEY", e.to_string()))?;
    let loaded = CertifiedKey::new(certs, key);
    loaded
        .keys_match()
        .map_err(|e| ConfigError::new("ROSTER_TLS_KEY", format!("does not match the certificate: {e}")))?;
    Ok(Arc::new(loaded))
}

impl ReloadingCert {
    /// Reloads if the files changed since they were read; a pair that does not load (caught
    /// half-written, or a key not matching) keeps the one being served, and is tried again.
    fn refresh(&self) {
        {
            let mut last = self.last_check.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let now = stamp(&[&self.cert, &self.key]);
        if self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1 == now {
            return;
        }
        match load_pair(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (loaded, now);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => tracing::warn!(%error, "TLS certificate changed but does not load; serving the previous one"),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone())
    }
}

/// The server side of TLS; see the module doc.
#[derive(Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    pub fn new(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, ConfigError> {
        let provider = provider();
        let first = load_pair(cert, key, &provider)?;
        let resolver = ReloadingCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: provider.clone(),
            current: RwLock::new((first, stamp(&[cert, key]))),
            last_check: Mutex::new(Instant::now()),
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("ROSTER_TLS_CERT", e.to_string()))?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca, "ROSTER_TLS_CLIENT_CA")? {
                    roots.add(cert).map_err(|e| ConfigError::new("ROSTER_TLS_CLIENT_CA", e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ConfigError::new("ROSTER_TLS_CLIENT_CA", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self { config: Arc::new(config) })
    }

    /// `incoming` connections after their handshakes, which run side by side; a failed or
    /// stalled handshake drops its connection and is counted in
    /// `roster_tls_handshake_failures_total`.
    pub fn accept<S, IO, E>(&self, incoming: S) -> impl Stream<Item = Result<TlsStream<IO>, E>>
    where
        S: Stream<Item = Result<IO, E>>,
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.config.clone());
        incoming
            .map(move |accepted| {
                let acceptor = acceptor.clone();
                async move {
                    let io = match accepted {
                        Ok(io) => io,
                        Err(error) => return Some(Err(error)),
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => Some(Ok(tls)),
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
                            None
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
                            None
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENT_HANDSHAKES)
            .filter_map(std::future::ready)
    }
}

/// Whether a client certificate chain's leaf is valid for `roster-<service>`: the name a
/// service's certificate must carry for its service token to be accepted under mutual TLS.
pub fn names_service(chain: &[CertificateDer<'_>], service: &str) -> bool {
    let Some(leaf) = chain.first() else { return false };
    let Ok(name) = ServerName::try_from(format!("roster-{service}")) else { return false };
    webpki::EndEntityCert::try_from(leaf).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The client side of TLS to the other service, read again when its files change.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    seen: Option<Stamp>,
    config: Option<tonic::transport::ClientTlsConfig>,
}

impl ClientTls {
    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.ca.as_path()];
        if let Some((cert, key)) = &self.identity {
            paths.extend([cert.as_path(), key.as_path()]);
        }
        paths
    }

    /// Reads the files if they changed since last time: `Ok(true)` when the configuration is
    /// new (connections should be made again with it). A failed read keeps the previous one.
    pub fn refresh(&mut self) -> Result<bool, ConfigError> {
        let now = stamp(&self.paths());
        if self.seen.as_ref() == Some(&now) && self.config.is_some() {
            return Ok(false);
        }
        let ca = std::fs::read(&self.ca).map_err(|e| ConfigError::new("ROSTER_TLS_PEER_CA", e.to_string()))?;
        let mut config =
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            let cert = std::fs::read(cert).map_err(|e| ConfigError::new("ROSTER_TLS_CERT", e.to_string()))?;
            let key = std::fs::read(key).map_err(|e| ConfigError::new("ROSTER_TLS_KEY", e.to_string()))?;
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        self.config = Some(config);
        self.seen = Some(now);
        Ok(true)
    }

    /// The configuration for a peer reached as `host`, whose certificate must name it.
    pub fn for_host(&self, host: &str) -> Option<tonic::transport::ClientTlsConfig> {
        self.config.clone().map(|config| config.domain_name(host))
    }
}
