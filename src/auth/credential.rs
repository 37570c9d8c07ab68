//! Finding the credential in a request (SPEC §3.1 and the credential rules of §5).
//!
//! `Authorization: Bearer <v>` first, then `auth: <v>`. Query strings are never read. Two
//! different credentials, or a repeated header, are refused rather than guessed between.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::Error;
use crate::wire::AUTH;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Compact JWS: exactly two dots.
    Jws(&'a str),
    /// Compact JWE: exactly four dots.
    Jwe(&'a str),
    ApiKey(&'a str),
}

/// Returns the request's credential, `None` when it carries none.
pub fn extract(headers: &HeaderMap) -> Result<Option<Credential<'_>>, Error> {
    let bearer = single(headers, &AUTHORIZATION)?.and_then(|v| {
        let (scheme, rest) = v.split_once([' ', '\t']).unwrap_or((v, ""));
        // Another scheme (Basic, Digest, ...) is not ours to read.
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim_matches([' ', '\t']))
    });
    let auth = single(headers, &AUTH)?.map(|v| v.trim_matches([' ', '\t']));
    let value = match (bearer, auth) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::MalformedRequest("two different credentials"));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Ok(None),
    };
    // A token is hundreds of bytes: memchr scans them a vector at a time for blanks inside
    // and for the dots that tell a JWS (two) from a JWE (four) from an API key.
    let bytes = value.as_bytes();
    if bytes.is_empty() || memchr::memchr2(b' ', b'\t', bytes).is_some() {
        return Err(Error::InvalidToken("bearer value is not a single token"));
    }
    Ok(Some(match memchr::memchr_iter(b'.', bytes).count() {
        2 => Credential::Jws(value),
        4 => Credential::Jwe(value),
        _ => Credential::ApiKey(value),
    }))
}

fn single<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Result<Option<&'h str>, Error> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Error::MalformedRequest("credential header repeated"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Error::InvalidToken("credential is not visible ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn bearer_then_auth_and_classification_by_dots() {
        assert_eq!(
            extract(&h(&[("authorization", "Bearer a.b.c")])).unwrap(),
            Some(Credential::Jws("a.b.c"))
        );
        assert_eq!(
            extract(&h(&[("authorization", "bEaReR   a.b.c.d.e  ")])).unwrap(),
            Some(Credential::Jwe("a.b.c.d.e"))
        );
        assert_eq!(
            extract(&h(&[("auth", "sk_live_x")])).unwrap(),
            Some(Credential::ApiKey("sk_live_x"))
        );
        assert_eq!(
            extract(&h(&[("authorization", "Bearer k"), ("auth", "k")])).unwrap(),
            Some(Credential::ApiKey("k"))
        );
        assert_eq!(extract(&h(&[])).unwrap(), None);
    }

    #[test]
    fn other_schemes_are_not_credentials() {
        assert_eq!(
            extract(&h(&[("authorization", "Basic dTpw")])).unwrap(),
            None
        );
        assert_eq!(
            extract(&h(&[("authorization", "Basic dTpw"), ("auth", "k")])).unwrap(),
            Some(Credential::ApiKey("k"))
        );
    }

    #[test]
    fn ambiguity_is_refused() {
        let e = |p: &[(&str, &str)]| extract(&h(p)).unwrap_err().code();
        assert_eq!(
            e(&[("authorization", "Bearer a"), ("auth", "b")]),
            "malformed_request"
        );
        assert_eq!(
            e(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]),
            "malformed_request"
        );
        assert_eq!(e(&[("auth", "a"), ("auth", "a")]), "malformed_request");
        assert_eq!(e(&[("authorization", "Bearer a b")]), "invalid_token");
        assert_eq!(e(&[("authorization", "Bearer")]), "invalid_token");
    }
}
