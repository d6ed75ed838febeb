//! Test kit for TLS: a throwaway CA, certificates for chosen names written
//! where the router reads them, a router with an HTTPS listener, and
//! clients that trust the CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_client::logs::LogShipper;
use berth_model::RouteTable;
use berth_router::standalone::{self, Live};
use berth_router::tls::{CertFiles, CertSources, Certificates};
use berth_router::{RouterConfig, Routes, TlsListener};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::util::DEADLINE;

/// A certificate authority of its own per test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, and the DER the router serves.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Berth test CA");
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// A certificate for `names` (SANs, `*.` wildcards allowed).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A leaf for `names`, written as `dir/STEM.pem` and `dir/STEM.key`.
    pub fn write(&self, dir: &Path, stem: &str, names: &[&str]) -> (CertFiles, Leaf) {
        let leaf = self.leaf(names);
        let files = CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write_leaf(&files, &leaf);
        (files, leaf)
    }

    /// An HTTPS client trusting this CA (HTTP/2 when the router offers it).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let root = reqwest::Certificate::from_der(self.issuer.der()).expect("CA as root");
        reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
    }
}

/// Puts `leaf` into `files` (certificate first, as a renewal would).
pub fn write_leaf(files: &CertFiles, leaf: &Leaf) {
    std::fs::write(&files.cert, &leaf.cert_pem).expect("write certificate");
    std::fs::write(&files.key, &leaf.key_pem).expect("write key");
}

/// A router serving HTTP and HTTPS on 127.0.0.1:0.
pub struct TlsRouter {
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub certs: Certificates,
    _stop: oneshot::Sender<()>,
    _watch: oneshot::Sender<()>,
}

impl TlsRouter {
    pub async fn start(sources: CertSources, table: RouteTable) -> Self {
        Self::start_with(RouterConfig::default(), sources, table).await
    }

    /// A router whose certificates are also watched for changes.
    pub async fn start_with(config: RouterConfig, sources: CertSources, table: RouteTable) -> Self {
        let certs = Certificates::load(sources).expect("certificates load");
        let routes = Routes::new();
        routes.update(table);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tls_addr = tls_listener.local_addr().expect("addr");
        let (watch_stop, watch_stopped) = oneshot::channel::<()>();
        tokio::spawn(certs.clone().watch(async move {
            let _ = watch_stopped.await;
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let (shipper, _logs) = LogShipper::channel();
        tokio::spawn(berth_router::run_with_tls(
            listener,
            Some(TlsListener {
                listener: tls_listener,
                certs: certs.clone(),
            }),
            routes.clone(),
            config,
            Some(shipper),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            tls_addr,
            certs,
            _stop: stop,
            _watch: watch_stop,
        }
    }

    /// `https://HOST:PORT/path` reaching this router's TLS listener by
    /// name, for a client built with [`resolving`].
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls_addr.port())
    }

    /// A client trusting `ca` that reaches this router's TLS listener
    /// for `host`.
    pub fn client(&self, ca: &TestCa, host: &str) -> reqwest::Client {
        resolving(ca.client_builder(), &[host], self.tls_addr)
    }

    /// The status of `GET https://HOST/PATH`, sent through the TLS
    /// listener with a client trusting `ca`.
    pub async fn https_status(&self, ca: &TestCa, host: &str, path: &str) -> reqwest::StatusCode {
        self.client(ca, host)
            .get(self.url(host, path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET https://{host}{path}: {e}"))
            .status()
    }
}

/// A router run from a TOML file as `berth router --config` runs it:
/// routes and certificates from the file, both reloaded when it changes,
/// and the certificate files watched. HTTP and HTTPS on 127.0.0.1:0,
/// whatever the file's `listen` and `listen_tls` say.
pub struct FileRouter {
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    path: PathBuf,
    /// Dropped, it stops the router and its watchers.
    _stop: watch::Sender<()>,
}

impl FileRouter {
    /// Starts from `dir/router.toml` holding `text`, which must set
    /// `listen_tls`; its paths are relative to `dir`.
    pub async fn start(dir: &Path, text: &str) -> Self {
        let path = dir.join("router.toml");
        std::fs::write(&path, text).expect("write router.toml");
        let config = standalone::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let tls = config.tls.as_ref().expect("the file sets listen_tls");
        let certs = tls
            .load_certificates(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let routes = Routes::new();
        config.apply(&routes);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tls_addr = tls_listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(());
        let until_stopped = || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.changed().await;
            }
        };
        tokio::spawn(certs.clone().watch(until_stopped()));
        tokio::spawn(standalone::watch_file(
            path.clone(),
            Live::new(routes.clone()).with_tls(tls.listen, certs.clone()),
            until_stopped(),
        ));
        tokio::spawn(berth_router::run_with_tls(
            listener,
            Some(TlsListener {
                listener: tls_listener,
                certs,
            }),
            routes,
            config.router_config(RouterConfig::default()),
            None,
            until_stopped(),
        ));
        Self {
            addr,
            tls_addr,
            path,
            _stop: stop,
        }
    }

    /// Replaces the file as editors and config tools do: write a
    /// temporary file, then rename it over.
    pub fn write(&self, text: &str) {
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).expect("write router.toml");
        std::fs::rename(&tmp, &self.path).expect("rename router.toml");
    }

    /// The body of `GET http://HOST/` through the plain HTTP listener.
    pub async fn text(&self, host: &str) -> String {
        crate::util::http_client()
            .get(format!("http://{}/", self.addr))
            .header("host", host)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}/: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }
}

/// `builder` sending `hosts` to `addr` instead of asking DNS.
pub fn resolving(
    mut builder: reqwest::ClientBuilder,
    hosts: &[&str],
    addr: SocketAddr,
) -> reqwest::Client {
    for h in hosts {
        builder = builder.resolve(h, addr);
    }
    builder.build().expect("client")
}

/// The leaf certificate the router at `addr` serves for SNI `name` (no SNI
/// at all when `None`), whatever it is: the client checks nothing.
pub async fn served_cert(addr: SocketAddr, name: Option<&str>) -> Vec<u8> {
    let (stream, _) = handshake(addr, name, &[]).await.expect("TLS handshake");
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate")
}

/// A TLS connection to `addr` that accepts any certificate, offering
/// `alpn`; and the protocol the server chose.
pub async fn handshake(
    addr: SocketAddr,
    name: Option<&str>,
    alpn: &[&str],
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let server_name = match name {
        Some(n) => ServerName::try_from(n.to_string()).expect("a DNS name"),
        // An IP address: rustls sends no SNI for those.
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    Ok((stream, alpn))
}

/// `GET /` on an open HTTP/1.1 connection; the answer's head.
pub async fn get_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
) -> String {
    let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    // The body ("b") may trail; the head is what matters.
    String::from_utf8_lossy(&got).into_owned()
}

/// A verifier that trusts every certificate (signatures are still checked,
/// so the handshake itself is real).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
