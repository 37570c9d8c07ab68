//! TLS on the public listener: rustls with aws-lc-rs, HTTP/2 and HTTP/1.1 by ALPN, optional
//! client certificates (mTLS), and a server certificate that is replaced when its files
//! change (cert-manager rotation, SPEC §1.1) without dropping a connection. The same
//! reloading `Certificate` is scopegate's client certificate to upstreams (`upstream_tls`).
//!
//! The rustls config never changes; its certificate resolver hands each new handshake the
//! certificate in force, which a reload swaps atomically. A certificate and key that do not
//! load, or do not belong together, are refused and the previous pair stays.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

/// The server certificate in force, and the file bytes it came from.
pub struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// The PEM files as read, so a change event that changed no byte costs no parse.
    files: (Vec<u8>, Vec<u8>),
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Swapped,
    Unchanged,
}

impl Certificate {
    pub fn load(tls: &Tls, provider: Arc<CryptoProvider>) -> Result<Certificate, String> {
        Certificate::from_files(&tls.cert_file, &tls.key_file, provider)
    }

    /// The listener's certificate, or scopegate's client certificate to an upstream.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Certificate, String> {
        let files = read_pair(cert_file, key_file)?;
        let key = certified_key(cert_file, key_file, &files, &provider)?;
        Ok(Certificate {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(Loaded { key, files }),
        })
    }

    /// Reads the files again and swaps in the pair if it changed and is valid.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let files = read_pair(&self.cert_file, &self.key_file)?;
        if self.current.load().files == files {
            return Ok(Reloaded::Unchanged);
        }
        let key = certified_key(&self.cert_file, &self.key_file, &files, &self.provider)?;
        self.current.store(Arc::new(Loaded { key, files }));
        Ok(Reloaded::Swapped)
    }

    /// The files to watch.
    pub fn files(&self) -> [&Path; 2] {
        [&self.cert_file, &self.key_file]
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// The same reloading certificate, shown to an upstream that asks for one (mTLS, SPEC §5.1).
impl ResolvesClientCert for Certificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

pub(crate) fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    Ok((read(cert_file)?, read(key_file)?))
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert_file.display()));
    }
    // The error names the file only: a key parser's message could quote key material.
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|_| format!("{}: not a PEM private key", key_file.display()))?
        .ok_or_else(|| format!("{}: no private key", key_file.display()))?;
    let key = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))?;
    Ok(Arc::new(key))
}

/// The acceptor for the public listener, and the certificate a reload replaces.
pub fn acceptor(tls: &Tls) -> Result<(TlsAcceptor, Arc<Certificate>), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certificate = Arc::new(Certificate::load(tls, provider.clone())?);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                roots
                    .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
                    .map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn tls(cert: &str, key: &Path) -> Tls {
        Tls {
            cert_file: fixture(cert),
            key_file: key.to_path_buf(),
            client_ca_file: None,
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    #[test]
    fn a_certificate_and_a_key_that_do_not_belong_together_are_refused() {
        let key = fixture("server-next.key.pem");
        let e = Certificate::load(&tls("server.crt.pem", &key), provider()).unwrap_err();
        assert!(
            e.contains("server.crt.pem and ") && e.contains("server-next.key.pem"),
            "{e}"
        );
        assert!(Certificate::load(&tls("server-next.crt.pem", &key), provider()).is_ok());
    }

    #[test]
    fn a_key_that_does_not_parse_is_named_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tls.key");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
        std::fs::write(
            &key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}!\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let e = Certificate::load(&tls("server.crt.pem", &key), provider()).unwrap_err();
        assert!(e.contains("tls.key"), "{e}");
        assert!(!e.contains(secret), "{e}");
    }

    #[test]
    fn a_reload_that_changed_no_byte_is_unchanged() {
        let key = fixture("server.key.pem");
        let c = Certificate::load(&tls("server.crt.pem", &key), provider()).unwrap();
        assert_eq!(c.reload(), Ok(Reloaded::Unchanged));
    }
}
