//! scopegate's own signing keys as an issuer (SPEC §3.7): the key material, the JWS it
//! produces and checks, the published key set, and the `sgb` binding of minted tokens. The
//! token endpoint and the upstream assertion that use them are `crate::issuer`'s.
//! Signatures are aws-lc-rs's (ECDSA P-256 with fixed-length `r||s` as JWS wants, Ed25519);
//! nothing here is hand-rolled beyond the JWS's base64url framing.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::jose::keys::JweKey;

/// The two signature algorithms an issuer key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    Es256,
    EdDsa,
}

impl SigAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::Es256 => "ES256",
            SigAlg::EdDsa => "EdDSA",
        }
    }
}

/// Why a key file is not an issuer key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM file")]
    NotPem,
    #[error(
        "an EC P-256 (ES256) or Ed25519 (EdDSA) private key is required (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")"
    )]
    WrongPrivateKey,
    #[error("an EC P-256 or Ed25519 public key is required (\"PUBLIC KEY\")")]
    WrongPublicKey,
}

enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A public key tokens are checked against: the current key's, or a previous one's.
pub struct VerifyKey {
    pub kid: String,
    pub alg: SigAlg,
    /// The raw public key: the uncompressed P-256 point, or the 32 Ed25519 bytes.
    public: Vec<u8>,
}

impl VerifyKey {
    /// Reads a SubjectPublicKeyInfo PEM of a P-256 or Ed25519 key.
    pub fn from_public_pem(kid: &str, pem: &[u8]) -> Result<VerifyKey, KeyError> {
        let der = match rustls_pemfile::read_one_from_slice(pem) {
            Ok(Some((rustls_pemfile::Item::SubjectPublicKeyInfo(der), _))) => der,
            Ok(Some(_)) => return Err(KeyError::WrongPublicKey),
            _ => return Err(KeyError::NotPem),
        };
        // DER is canonical: an SPKI of either key type is a fixed prefix, then the key.
        const P256: &[u8] = &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        const ED25519: &[u8] = &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let der = der.as_ref();
        let (alg, public) = match der {
            d if d.len() == P256.len() + 65 && d.starts_with(P256) && d[P256.len()] == 0x04 => {
                (SigAlg::Es256, &d[P256.len()..])
            }
            d if d.len() == ED25519.len() + 32 && d.starts_with(ED25519) => {
                (SigAlg::EdDsa, &d[ED25519.len()..])
            }
            _ => return Err(KeyError::WrongPublicKey),
        };
        Ok(VerifyKey {
            kid: kid.to_string(),
            alg,
            public: public.to_vec(),
        })
    }

    /// The public JWK, as the JWKS document publishes it.
    pub fn jwk(&self) -> Value {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.alg {
            SigAlg::Es256 => json!({
                "kty": "EC", "crv": "P-256",
                "x": b(&self.public[1..33]), "y": b(&self.public[33..65]),
                "use": "sig", "alg": "ES256", "kid": self.kid,
            }),
            SigAlg::EdDsa => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b(&self.public),
                "use": "sig", "alg": "EdDSA", "kid": self.kid,
            }),
        }
    }

    fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        let alg: &dyn aws_lc_rs::signature::VerificationAlgorithm = match self.alg {
            SigAlg::Es256 => &ECDSA_P256_SHA256_FIXED,
            SigAlg::EdDsa => &ED25519,
        };
        UnparsedPublicKey::new(alg, &self.public)
            .verify(signing_input, signature)
            .is_ok()
    }
}

/// scopegate's own signing key, with the public keys (current first, then
/// `previous_keys`) that what it signed is checked against.
pub struct Issuer {
    /// `iss` of everything it signs, and `aud` of the tokens it mints.
    pub name: String,
    signer: Signer,
    /// The base64url JWS header, made once: `{"alg","typ":"JWT","kid"}`.
    header_b64: String,
    pub keys: Vec<VerifyKey>,
    rng: SystemRandom,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        write!(
            f,
            "Issuer({:?}, kids {kids:?}, <signing key redacted>)",
            self.name
        )
    }
}

impl Issuer {
    /// The issuer of `name` with the private key of `pem` (PKCS#8, or SEC1 for P-256) and
    /// the public keys it signed with before.
    pub fn new(
        name: &str,
        kid: &str,
        pem: &[u8],
        previous: Vec<VerifyKey>,
    ) -> Result<Issuer, KeyError> {
        let der = match rustls_pemfile::read_one_from_slice(pem) {
            Ok(Some((rustls_pemfile::Item::Pkcs8Key(k), _))) => k.secret_pkcs8_der().to_vec(),
            Ok(Some((rustls_pemfile::Item::Sec1Key(k), _))) => k.secret_sec1_der().to_vec(),
            Ok(Some(_)) => return Err(KeyError::WrongPrivateKey),
            _ => return Err(KeyError::NotPem),
        };
        let (signer, alg, public) =
            match EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
                Ok(k) => {
                    let public = k.public_key().as_ref().to_vec();
                    (Signer::Es256(k), SigAlg::Es256, public)
                }
                Err(_) => match Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                    Ok(k) => {
                        let public = k.public_key().as_ref().to_vec();
                        (Signer::EdDsa(k), SigAlg::EdDsa, public)
                    }
                    Err(_) => return Err(KeyError::WrongPrivateKey),
                },
            };
        let header = json!({ "alg": alg.name(), "typ": "JWT", "kid": kid });
        let mut keys = vec![VerifyKey {
            kid: kid.to_string(),
            alg,
            public,
        }];
        keys.extend(previous);
        Ok(Issuer {
            name: name.to_string(),
            signer,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            keys,
            rng: SystemRandom::new(),
        })
    }

    pub fn alg(&self) -> SigAlg {
        self.keys[0].alg
    }

    /// Signs `claims` as a compact JWS with the current key. Fails only when the system's
    /// random generator does (ECDSA needs a nonce).
    pub fn sign(&self, claims: &Value) -> Result<String, aws_lc_rs::error::Unspecified> {
        let mut token = String::with_capacity(512);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
        let signature = match &self.signer {
            Signer::Es256(k) => k.sign(&self.rng, token.as_bytes())?,
            Signer::EdDsa(k) => k.sign(token.as_bytes()),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Whether `signature` over `signing_input` is one of this issuer's, current or previous,
    /// for the token's `alg`. Keys are tried in order (a handful at most): `kid` is not
    /// needed to pick one, so a token's header cannot steer the choice.
    pub fn verifies(&self, alg: SigAlg, signing_input: &[u8], signature: &[u8]) -> bool {
        self.keys
            .iter()
            .filter(|k| k.alg == alg)
            .any(|k| k.verifies(signing_input, signature))
    }

    /// The public JWKs of every key, for the JWKS document.
    pub fn jwks(&self) -> impl Iterator<Item = Value> + '_ {
        self.keys.iter().map(VerifyKey::jwk)
    }
}

/// The `sgb` claim of a client's minted tokens: a digest of the issuer's name and the
/// client's `secret_sha256`, so that a changed secret (or issuer) stops every token minted
/// under the old one at the policy swap. It tells a reader of the token no more about the
/// secret than the policy's own unsalted `secret_sha256` does, and less (96 bits of it).
pub fn binding(issuer: &str, secret_sha256: &[u8; 32]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"scopegate token binding\0");
    ctx.update(issuer.as_bytes());
    ctx.update(b"\0");
    ctx.update(secret_sha256);
    URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..12])
}

/// The JWKS document at `/.well-known/scopegate/jwks.json`: the proxy's JWE keys (what
/// clients encrypt to) and the issuer's keys (`use: sig`, what it signs with).
pub fn jwks_document(jwe_keys: &[JweKey], issuer: Option<&Issuer>) -> String {
    let mut keys: Vec<Value> = jwe_keys.iter().map(JweKey::public_jwk).collect();
    keys.extend(issuer.into_iter().flat_map(Issuer::jwks));
    json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_changes_with_the_secret_and_the_issuer() {
        let a = binding("https://gw/", &[1; 32]);
        assert_eq!(a, binding("https://gw/", &[1; 32]));
        assert_ne!(a, binding("https://gw/", &[2; 32]));
        assert_ne!(a, binding("https://other/", &[1; 32]));
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn verify(issuer: &Issuer, token: &str) -> bool {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let alg = match header["alg"].as_str().unwrap() {
            "ES256" => SigAlg::Es256,
            _ => SigAlg::EdDsa,
        };
        issuer.verifies(alg, input.as_bytes(), &sig)
    }

    #[test]
    fn signs_with_either_key_type_and_checks_its_own_signatures() {
        for (file, alg) in [
            ("app-ec256.key.pem", SigAlg::Es256),
            ("app-ed25519.key.pem", SigAlg::EdDsa),
        ] {
            let i = Issuer::new("https://gw.example/", "k1", &fixture(file), Vec::new()).unwrap();
            assert_eq!(i.alg(), alg);
            let t = i.sign(&json!({ "sub": "a" })).unwrap();
            assert!(verify(&i, &t), "{file}");
            let mut forged = t.clone();
            forged.replace_range(t.len() - 3.., "AAA");
            assert!(!verify(&i, &forged));
            let jwk = i.jwks().next().unwrap();
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.name());
            assert!(jwk.get("d").is_none(), "never a private member");
        }
    }

    #[test]
    fn a_previous_public_key_still_verifies_and_its_jwk_matches_the_private_one() {
        let old = Issuer::new("n", "old", &fixture("app-ed25519.key.pem"), Vec::new()).unwrap();
        let token = old.sign(&json!({})).unwrap();
        let prev = VerifyKey::from_public_pem("old", &fixture("app-ed25519.pub.pem")).unwrap();
        assert_eq!(prev.jwk(), old.jwks().next().unwrap());
        let new = Issuer::new("n", "new", &fixture("app-ec256.key.pem"), vec![prev]).unwrap();
        assert!(verify(&new, &token));
        let ec = VerifyKey::from_public_pem("x", &fixture("app-ec256.pub.pem")).unwrap();
        assert_eq!(ec.jwk()["x"], new.jwks().next().unwrap()["x"]);
    }

    #[test]
    fn other_key_types_are_refused() {
        for file in ["app-rsa.key.pem", "app-ec384.key.pem", "app-ec256.pub.pem"] {
            assert!(
                Issuer::new("n", "k", &fixture(file), Vec::new()).is_err(),
                "{file}"
            );
        }
        assert!(matches!(
            Issuer::new("n", "k", b"not a key", Vec::new()),
            Err(KeyError::NotPem)
        ));
        for file in ["app-rsa.pub.pem", "app-ec384.pub.pem", "app-ec256.key.pem"] {
            assert!(
                VerifyKey::from_public_pem("k", &fixture(file)).is_err(),
                "{file}"
            );
        }
    }
}
