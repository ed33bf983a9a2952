//! TLS: the certificates of the proxy's TCP listeners (`--tls`, `--tlsverify`) and of its
//! connection to a daemon reached over TCP (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).
//!
//! Which files are used is decided by pure functions ([`ServerTls`] is built by the config,
//! [`UpstreamTls::from_env`] follows the docker CLI's environment rules); loading them and
//! building the rustls configurations is the only I/O here, done once at start-up so that a bad
//! file stops the proxy before it listens.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client};

use api::DockerAddr;

/// The protocol Docker speaks; offered so that a client asking for ALPN gets an answer.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where a certificate or key path came from, for error messages that say what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--tlscacert`.
    CaFlag,
    /// `--tlscert`.
    CertFlag,
    /// `--tlskey`.
    KeyFlag,
    /// A file in the upstream certificate directory (`DOCKER_CERT_PATH`, `~/.docker`).
    UpstreamCertPath,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CaFlag => "--tlscacert",
            Self::CertFlag => "--tlscert",
            Self::KeyFlag => "--tlskey",
            Self::UpstreamCertPath => "upstream TLS (DOCKER_CERT_PATH)",
        })
    }
}

/// Why TLS could not be set up.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read at all.
    #[error("{origin} {path}: {source}")]
    Read {
        origin: Origin,
        path: PathBuf,
        source: io::Error,
    },
    /// A file was read but holds no usable PEM data of the expected kind.
    #[error("{origin} {path}: {reason}")]
    Invalid {
        origin: Origin,
        path: PathBuf,
        reason: String,
    },
    /// Exactly one of a client certificate and its key exists.
    #[error(
        "upstream TLS (DOCKER_CERT_PATH): {present} exists but {missing} does not; \
         a client certificate needs both"
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    /// Neither `DOCKER_CERT_PATH`, `DOCKER_CONFIG` nor `HOME` says where the certificates are.
    #[error(
        "{var} is set for the tcp:// daemon but DOCKER_CERT_PATH is not, and there is no HOME \
         for the default ~/.docker: set DOCKER_CERT_PATH"
    )]
    NoCertPath { var: &'static str },
    /// The daemon's host cannot be a TLS server name.
    #[error("upstream TLS: {host:?} is not a valid server name to verify the daemon against")]
    ServerName { host: String },
    /// The certificates were read but rustls refused them together (for example a key that does
    /// not belong to the certificate).
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
}

/// The proxy's own TLS server settings, from `--tls`/`--tlsverify` and the file flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// `--tlscert`: the proxy's certificate chain.
    pub cert: PathBuf,
    /// `--tlskey`: its private key.
    pub key: PathBuf,
    /// `--tlscacert` under `--tlsverify`: client certificates must be signed by it. `None`
    /// (plain `--tls`) asks clients for no certificate.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Loads the files and builds the acceptor for the TCP listeners.
    ///
    /// # Errors
    /// An unreadable or empty file, named with its flag, or a key that does not match the
    /// certificate.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let provider = provider();
        let certs = load_certs(&self.cert, Origin::CertFlag)?;
        let key = load_key(&self.key, Origin::KeyFlag)?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rustls_err("TLS protocol versions"))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = load_roots(ca, Origin::CaFlag)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| TlsError::Invalid {
                            origin: Origin::CaFlag,
                            path: ca.clone(),
                            reason: err.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(rustls_err(format!(
                "--tlscert {} with --tlskey {}",
                self.cert.display(),
                self.key.display()
            )))?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// How the proxy speaks TLS to a daemon reached over TCP, as the docker CLI would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `DOCKER_TLS_VERIFY`: the daemon's certificate must be signed by `ca` and name `host`.
    /// Without it (`DOCKER_TLS` alone) any daemon certificate is accepted, as with
    /// `docker --tls`.
    pub verify: bool,
    /// `ca.pem` in the certificate directory.
    pub ca: PathBuf,
    /// `cert.pem`: the client certificate, sent when it and `key` exist.
    pub cert: PathBuf,
    /// `key.pem`.
    pub key: PathBuf,
    /// The daemon's host as written in its address: the name its certificate must carry.
    pub host: String,
}

impl UpstreamTls {
    /// The docker CLI's rules: TLS when `DOCKER_TLS_VERIFY` or `DOCKER_TLS` is non-empty and
    /// the daemon is `tcp://`; the files are `ca.pem`, `cert.pem` and `key.pem` in
    /// `DOCKER_CERT_PATH`, else in `DOCKER_CONFIG`, else in `~/.docker`. A unix socket never
    /// uses TLS. `var` looks up an environment variable.
    ///
    /// # Errors
    /// [`TlsError::NoCertPath`] when TLS is asked for and no directory can be named.
    pub fn from_env(
        docker: &DockerAddr,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<Self>, TlsError> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let DockerAddr::Tcp(host_port) = docker else {
            return Ok(None);
        };
        let verify = set("DOCKER_TLS_VERIFY").is_some();
        if !verify && set("DOCKER_TLS").is_none() {
            return Ok(None);
        }
        let asked_by = if verify {
            "DOCKER_TLS_VERIFY"
        } else {
            "DOCKER_TLS"
        };
        let dir = set("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .or_else(|| set("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| set("HOME").map(|home| Path::new(&home).join(".docker")))
            .ok_or(TlsError::NoCertPath { var: asked_by })?;
        Ok(Some(Self {
            verify,
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            host: host_of(host_port).to_owned(),
        }))
    }

    /// Loads the files and builds what the upstream connector needs.
    ///
    /// # Errors
    /// An unreadable CA (when verifying), a client certificate without its key or the other
    /// way round, unusable files, or a host that cannot be a server name.
    pub fn connector(&self) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let name = ServerName::try_from(self.host.clone()).map_err(|_| TlsError::ServerName {
            host: self.host.clone(),
        })?;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rustls_err("TLS protocol versions"))?;
        let builder = if self.verify {
            builder.with_root_certificates(load_roots(&self.ca, Origin::UpstreamCertPath)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        };
        let config = match (self.cert.exists(), self.key.exists()) {
            (true, true) => {
                let certs = load_certs(&self.cert, Origin::UpstreamCertPath)?;
                let key = load_key(&self.key, Origin::UpstreamCertPath)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(rustls_err(format!(
                        "upstream TLS: {} with {}",
                        self.cert.display(),
                        self.key.display()
                    )))?
            }
            (false, false) => builder.with_no_client_auth(),
            (true, false) => {
                return Err(TlsError::HalfPair {
                    present: self.cert.clone(),
                    missing: self.key.clone(),
                });
            }
            (false, true) => {
                return Err(TlsError::HalfPair {
                    present: self.key.clone(),
                    missing: self.cert.clone(),
                });
            }
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A ready TLS client configuration for the daemon, and the name its certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Runs the TLS handshake over a fresh connection to the daemon.
    ///
    /// # Errors
    /// The handshake's failure, said to be one (the bare rustls message, such as
    /// `invalid peer certificate: UnknownIssuer`, does not say that TLS was involved).
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<client::TlsStream<TcpStream>> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|err| {
                io::Error::other(format!(
                    "TLS handshake with {} failed: {err}",
                    self.name.to_str()
                ))
            })
    }
}

/// The host of `host:port`, without the brackets of an IPv6 literal.
fn host_of(host_port: &str) -> &str {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// ring, named explicitly rather than installed process-wide, so that no other crate's
/// provider choice can change or break ours.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn rustls_err(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> TlsError {
    let what = what.into();
    move |source| TlsError::Rustls { what, source }
}

/// Tells a file that cannot be read from one that holds the wrong thing.
fn pem_err(origin: Origin, path: &Path, expected: &str) -> impl FnOnce(pem::Error) -> TlsError {
    let path = path.to_owned();
    let expected = expected.to_owned();
    move |err| match err {
        pem::Error::Io(source) => TlsError::Read {
            origin,
            path,
            source,
        },
        pem::Error::NoItemsFound => TlsError::Invalid {
            origin,
            path,
            reason: format!("no {expected} found (expected PEM)"),
        },
        other => TlsError::Invalid {
            origin,
            path,
            reason: format!("not a valid PEM file: {other}"),
        },
    }
}

fn load_certs(path: &Path, origin: Origin) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let expected = "certificate (BEGIN CERTIFICATE)";
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(origin, path, expected))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(origin, path, expected))?;
    if certs.is_empty() {
        return Err(pem_err(origin, path, expected)(pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn load_key(path: &Path, origin: Origin) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_err(
        origin,
        path,
        "private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
    ))
}

fn load_roots(path: &Path, origin: Origin) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, origin)? {
        roots.add(cert).map_err(|err| TlsError::Invalid {
            origin,
            path: path.to_owned(),
            reason: format!("unusable CA certificate: {err}"),
        })?;
    }
    Ok(roots)
}

/// `docker --tls` without `--tlsverify`: any daemon certificate is accepted, but the handshake
/// signatures are still checked, so the session is at least bound to the certificate shown.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn upstream(docker: &str, env: &[(&str, &str)]) -> Result<Option<UpstreamTls>, TlsError> {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        UpstreamTls::from_env(&DockerAddr::parse(docker).unwrap(), |name| {
            env.get(name).map(OsString::from)
        })
    }

    #[test]
    fn upstream_tls_follows_the_docker_cli_environment() {
        // (daemon, environment, Some((verify, cert directory, host)) or None for plain)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(bool, &'a str, &'a str)>,
        );
        let cases: [Case<'_>; 10] = [
            ("tcp://10.0.0.1:2376", &[("HOME", "/root")], None),
            (
                "tcp://10.0.0.1:2376",
                &[("DOCKER_TLS_VERIFY", "1"), ("HOME", "/root")],
                Some((true, "/root/.docker", "10.0.0.1")),
            ),
            // Any non-empty value turns it on, "0" included, as in the docker CLI.
            (
                "tcp://10.0.0.1:2376",
                &[("DOCKER_TLS_VERIFY", "0"), ("HOME", "/root")],
                Some((true, "/root/.docker", "10.0.0.1")),
            ),
            (
                "tcp://10.0.0.1:2376",
                &[("DOCKER_TLS_VERIFY", ""), ("HOME", "/root")],
                None,
            ),
            (
                "tcp://docker.example:2376",
                &[("DOCKER_TLS", "1"), ("DOCKER_CERT_PATH", "/certs")],
                Some((false, "/certs", "docker.example")),
            ),
            (
                "tcp://docker.example:2376",
                &[
                    ("DOCKER_TLS_VERIFY", "1"),
                    ("DOCKER_CONFIG", "/etc/docker-cli"),
                    ("HOME", "/root"),
                ],
                Some((true, "/etc/docker-cli", "docker.example")),
            ),
            (
                "tcp://docker.example:2376",
                &[
                    ("DOCKER_TLS_VERIFY", "1"),
                    ("DOCKER_CERT_PATH", "/certs"),
                    ("DOCKER_CONFIG", "/etc/docker-cli"),
                ],
                Some((true, "/certs", "docker.example")),
            ),
            (
                "tcp://[::1]:2376",
                &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")],
                Some((true, "/c", "::1")),
            ),
            (
                "localhost:2376",
                &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")],
                Some((true, "/c", "localhost")),
            ),
            // A unix socket never uses TLS, whatever the environment says.
            (
                "unix:///var/run/docker.sock",
                &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")],
                None,
            ),
        ];
        for (docker, env, want) in cases {
            let got = upstream(docker, env).unwrap();
            let want = want.map(|(verify, dir, host)| UpstreamTls {
                verify,
                ca: Path::new(dir).join("ca.pem"),
                cert: Path::new(dir).join("cert.pem"),
                key: Path::new(dir).join("key.pem"),
                host: host.to_owned(),
            });
            assert_eq!(got, want, "{docker} {env:?}");
        }
    }

    #[test]
    fn upstream_tls_without_any_certificate_directory_is_an_error() {
        let err = upstream("tcp://10.0.0.1:2376", &[("DOCKER_TLS_VERIFY", "1")]).unwrap_err();
        assert!(err.to_string().contains("DOCKER_CERT_PATH"), "{err}");
    }

    #[test]
    fn missing_files_are_named_with_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let tls = ServerTls {
            cert: missing.clone(),
            key: missing.clone(),
            client_ca: None,
        };
        let Err(err) = tls.acceptor() else {
            panic!("a missing certificate was accepted");
        };
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("--tlscert "), "{message}");
        assert!(message.contains("nope.pem"), "{message}");
    }

    #[test]
    fn files_without_pem_blocks_are_invalid_not_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let cases = [
            (Origin::CertFlag, "--tlscert", "certificate"),
            (Origin::KeyFlag, "--tlskey", "private key"),
        ];
        for (origin, flag, what) in cases {
            let err = match origin {
                Origin::KeyFlag => load_key(&junk, origin).map(drop),
                _ => load_certs(&junk, origin).map(drop),
            }
            .unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, TlsError::Invalid { .. }), "{message}");
            assert!(message.starts_with(flag), "{message}");
            assert!(message.contains(what), "{message}");
        }
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "").unwrap();
        let tls = UpstreamTls {
            verify: false,
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            host: "localhost".into(),
        };
        let err = tls.connector().unwrap_err();
        assert!(matches!(err, TlsError::HalfPair { .. }), "{err}");
    }

    #[test]
    fn no_client_certificate_at_all_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let tls = UpstreamTls {
            verify: false,
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            host: "127.0.0.1".into(),
        };
        tls.connector().unwrap();
    }

    #[test]
    fn a_verifying_upstream_needs_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = UpstreamTls {
            verify: true,
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            host: "127.0.0.1".into(),
        };
        let err = tls.connector().unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn hosts_lose_port_and_brackets() {
        let cases = [
            ("127.0.0.1:2376", "127.0.0.1"),
            ("docker:2376", "docker"),
            ("[::1]:2376", "::1"),
            ("[fe80::1]:1", "fe80::1"),
        ];
        for (input, want) in cases {
            assert_eq!(host_of(input), want, "{input}");
        }
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in a
    /// temporary directory laid out like `DOCKER_CERT_PATH` (ca.pem, cert.pem, key.pem for the
    /// client; server-cert.pem and server-key.pem for the server).
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            use rcgen::{
                BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            };
            let dir = tempfile::tempdir().unwrap();
            let ca_key = KeyPair::generate().unwrap();
            let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = ca.self_signed(&ca_key).unwrap();
            let issuer = Issuer::new(ca, ca_key);
            let write = |name: &str, pem: String| {
                std::fs::write(dir.path().join(name), pem).unwrap();
            };
            write("ca.pem", ca_cert.pem());
            for (prefix, names, purpose) in [
                (
                    "server-",
                    vec!["127.0.0.1".to_owned()],
                    ExtendedKeyUsagePurpose::ServerAuth,
                ),
                ("", vec![], ExtendedKeyUsagePurpose::ClientAuth),
            ] {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::new(names).unwrap();
                params.extended_key_usages = vec![purpose];
                let cert = params.signed_by(&key, &issuer).unwrap();
                write(&format!("{prefix}cert.pem"), cert.pem());
                write(&format!("{prefix}key.pem"), key.serialize_pem());
            }
            Self { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn server(&self, verify: bool) -> ServerTls {
            ServerTls {
                cert: self.path("server-cert.pem"),
                key: self.path("server-key.pem"),
                client_ca: verify.then(|| self.path("ca.pem")),
            }
        }

        fn client(&self, with_cert: bool) -> UpstreamTls {
            let missing = self.path("absent.pem");
            UpstreamTls {
                verify: true,
                ca: self.path("ca.pem"),
                cert: if with_cert {
                    self.path("cert.pem")
                } else {
                    missing.clone()
                },
                key: if with_cert {
                    self.path("key.pem")
                } else {
                    missing
                },
                host: "127.0.0.1".into(),
            }
        }
    }

    /// A loopback listener whose first client is taken through `acceptor`'s handshake.
    async fn serve_one(
        acceptor: TlsAcceptor,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<io::Result<crate::socket::Stream>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            Ok(crate::socket::Stream::from(acceptor.accept(tcp).await?))
        });
        (addr, server)
    }

    #[tokio::test]
    async fn a_tcp_half_close_without_close_notify_is_a_clean_eof() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let pki = Pki::new();
        let (addr, server) = serve_one(pki.server(true).acceptor().unwrap()).await;
        let client = pki.client(true).connector().unwrap();
        let mut tls = client
            .connect(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap();
        tls.write_all(b"stdin").await.unwrap();
        tls.flush().await.unwrap();
        // As older docker clients do at stdin EOF: shut the TCP write side, with no TLS alert.
        tls.get_mut().0.shutdown().await.unwrap();

        let mut served = server.await.unwrap().unwrap();
        let mut got = Vec::new();
        served.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"stdin");
        // The other direction still flows after the client's half-close.
        served.write_all(b"stdout").await.unwrap();
        served.shutdown().await.unwrap();
        let mut back = Vec::new();
        tls.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"stdout");
    }

    #[tokio::test]
    async fn tlsverify_refuses_a_client_without_a_certificate() {
        use tokio::io::AsyncReadExt;

        let pki = Pki::new();
        let (addr, server) = serve_one(pki.server(true).acceptor().unwrap()).await;
        let client = pki.client(false).connector().unwrap();
        // Under TLS 1.3 the client finishes first and learns of the refusal on its next read.
        if let Ok(mut tls) = client
            .connect(TcpStream::connect(addr).await.unwrap())
            .await
        {
            let mut buf = [0; 1];
            assert!(!matches!(tls.read(&mut buf).await, Ok(1)));
        }
        let err = server.await.unwrap().expect_err("the handshake fails");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn plain_tls_needs_no_client_certificate() {
        let pki = Pki::new();
        let (addr, server) = serve_one(pki.server(false).acceptor().unwrap()).await;
        let client = pki.client(false).connector().unwrap();
        client
            .connect(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_daemon_must_carry_the_name_it_is_reached_by() {
        let pki = Pki::new();
        let (addr, server) = serve_one(pki.server(false).acceptor().unwrap()).await;
        let mut settings = pki.client(true);
        settings.host = "localhost".into();
        let err = settings
            .connector()
            .unwrap()
            .connect(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("TLS handshake with localhost failed"),
            "{message}"
        );
        assert!(message.contains("certificate"), "{message}");
        drop(server);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_names_both_files() {
        let pki = Pki::new();
        let mut tls = pki.server(false);
        tls.key = pki.path("key.pem");
        let Err(err) = tls.acceptor() else {
            panic!("a mismatched key was accepted");
        };
        let message = err.to_string();
        assert!(message.contains("--tlscert"), "{message}");
        assert!(message.contains("--tlskey"), "{message}");
    }
}
