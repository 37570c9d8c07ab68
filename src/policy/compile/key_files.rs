//! Reading what the policy refers to outside itself: key and secret files, secrets from
//! the environment, and public key PEMs (with the key type read from the SPKI). Every
//! file read is recorded in `Compiler::files` so it can be watched.

use super::*;

impl<'a> Compiler<'a> {
    pub(super) fn read_file(&mut self, l: u64, p: &Path, what: &str) -> Option<Vec<u8>> {
        let path = yaml::resolve(self.file, p);
        self.files.push(path.clone());
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(l, format!("{what} {}: cannot read: {e}", path.display()));
                None
            }
        }
    }

    pub(super) fn secret(&mut self, l: u64, s: &SecretRef, what: &What<'_>) -> Option<Secret> {
        let bytes = match s {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => v.into_bytes(),
                _ => {
                    self.err(
                        l,
                        format!("{what}: secret environment variable {name} is not set"),
                    );
                    return None;
                }
            },
            SecretRef::File(p) => {
                let mut b = self.read_file(l, p, "secret file")?;
                while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    b.pop();
                }
                b
            }
            SecretRef::Value(v) => {
                self.warn(
                    l,
                    format!("{what}: secret written inline in the policy; prefer env or file"),
                );
                v.clone().into_bytes()
            }
        };
        if bytes.is_empty() {
            self.err(l, format!("{what}: secret is empty"));
            return None;
        }
        Some(Secret(bytes))
    }

    pub(super) fn public_key(&mut self, l: u64, p: &Path, what: &What<'_>) -> Option<PublicKey> {
        let pem = self.read_file(l, p, "public_key_file")?;
        let kind = pem_public_key_kind(&pem);
        let key = match kind {
            Some(PublicKeyKind::Rsa) => DecodingKey::from_rsa_pem(&pem),
            Some(PublicKeyKind::EcP256 | PublicKeyKind::EcP384) => DecodingKey::from_ec_pem(&pem),
            Some(PublicKeyKind::Ed25519) => DecodingKey::from_ed_pem(&pem),
            None => {
                self.err(l, format!("{what}: public_key_file is not an RSA, P-256, P-384 or Ed25519 public key PEM"));
                return None;
            }
        };
        match (kind, key) {
            (Some(kind), Ok(key)) => Some(PublicKey { kind, key }),
            (_, Err(e)) => {
                self.err(l, format!("{what}: public_key_file: {e}"));
                None
            }
            (None, _) => None,
        }
    }
}

pub(super) fn key_fits(kind: PublicKeyKind, alg: Algorithm) -> bool {
    kind.fits(alg)
}

/// Reads the key type from the SPKI's algorithm identifier (the OIDs are fixed byte
/// strings, so finding them in the DER is exact enough to pick the parser).
fn pem_public_key_kind(pem: &[u8]) -> Option<PublicKeyKind> {
    let text = std::str::from_utf8(pem).ok()?;
    if text.contains("BEGIN RSA PUBLIC KEY") {
        return Some(PublicKeyKind::Rsa);
    }
    let item = rustls_pemfile::read_one_from_slice(pem).ok()??.0;
    let der: Vec<u8> = match item {
        rustls_pemfile::Item::SubjectPublicKeyInfo(spki) => spki.as_ref().to_vec(),
        _ => return None,
    };
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
    ];
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(RSA) {
        Some(PublicKeyKind::Rsa)
    } else if has(P256) {
        Some(PublicKeyKind::EcP256)
    } else if has(P384) {
        Some(PublicKeyKind::EcP384)
    } else if has(ED25519) {
        Some(PublicKeyKind::Ed25519)
    } else {
        None
    }
}
