//! TLS to an upstream (SPEC §5.1): rustls with aws-lc-rs, the certificate always verified
//! against `ca_file` or the system's roots and checked for `server_name`, and optionally
//! scopegate's client certificate, reloaded like the listener's. Built once at start (and
//! by `check`), so a missing or unreadable file stops the start, not a request.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::tls::{self, Certificate};
use crate::config::UpstreamTls;

/// What connecting to one TLS upstream needs.
pub struct Client {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    /// scopegate's client certificate, for the reload watcher.
    pub certificate: Option<Arc<Certificate>>,
}

impl Client {
    /// Reads the CA and client-certificate files. `http2` offers only `h2` by ALPN, else
    /// only `http/1.1`: the upstream must speak what the config says.
    pub fn new(t: &UpstreamTls, http2: bool) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = match &t.ca_file {
            Some(ca) => roots_from(ca)?,
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let (mut config, certificate) = match &t.client_cert {
            Some((cert, key)) => {
                let c = Arc::new(Certificate::from_files(cert, key, provider)?);
                let mut config = builder.with_client_cert_resolver(c.clone());
                // A resumed session carries the identity of the certificate it began with:
                // after a rotation every new connection must show the new one. Connections
                // are pooled, so a full handshake is rare anyway.
                config.resumption = rustls::client::Resumption::disabled();
                (config, Some(c))
            }
            None => (builder.with_no_client_auth(), None),
        };
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let server_name = ServerName::try_from(t.server_name.clone())
            .map_err(|_| format!("server_name {:?} is not a DNS name or IP", t.server_name))?;
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            certificate,
        })
    }
}

fn roots_from(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut tls::read(ca)?.as_slice()) {
        roots
            .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    Ok(roots)
}

/// The operating system's trust store, as `rustls-native-certs` finds it (the standard
/// companion of rustls for this; `SSL_CERT_FILE`/`SSL_CERT_DIR` respected).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(format!(
            "no system root certificates found (set ca_file) {why}"
        ));
    }
    Ok(roots)
}

/// Whether a failed exchange failed in TLS: rustls' error somewhere in the chain (a
/// certificate the upstream refused surfaces only at the first read, after the handshake).
pub fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r.to_string());
            }
        }
        cause = c.source();
    }
    None
}
