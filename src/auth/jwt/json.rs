//! The JSON readers of a JWS header and a JWT's claims: strict where serde is lenient (a
//! member the proxy reads may appear once only, `null` is present and not a number), and
//! borrowing from the decoded part rather than building a `Value`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// A header or claim set must be UTF-8 as a whole (RFC 7519 §7.2, RFC 8259 §8.1): serde_json
/// checks the strings it keeps, not the members it skips, so bytes that are not UTF-8 in an
/// unknown member would otherwise verify (found by the `jws` fuzz target).
pub(super) fn utf8(part: &[u8]) -> Result<(), Error> {
    match std::str::from_utf8(part) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidToken("token part is not UTF-8")),
    }
}

/// The JWS header members the proxy reads. Every member name must be unique: serde would
/// refuse a repeated `alg` but let a repeated `kid` (or any member it skips) through, and
/// two readers of one header must never see two different values.
pub(super) struct JoseHeader<'a> {
    pub alg: Cow<'a, str>,
    /// Selects among a JWKS app's keys; never used to find a key elsewhere.
    pub kid: Option<Cow<'a, str>>,
    /// Any value at all, `null` included, counts as present.
    pub crit: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for JoseHeader<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JoseHeader<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JoseHeader<'de>, A::Error> {
                use serde::de::Error as _;
                // Names are borrowed from the header unless they hold escapes (`Claim`).
                let mut seen: Vec<Claim<'de>> = Vec::new();
                let (mut alg, mut kid, mut crit) = (None, None, false);
                while let Some(name) = map.next_key::<Claim<'de>>()? {
                    let key = name.as_str().unwrap_or_default();
                    if seen.iter().any(|n| n.as_str() == Some(key)) {
                        return Err(A::Error::custom("duplicate header parameter"));
                    }
                    match key {
                        "alg" => match map.next_value::<Claim<'de>>()? {
                            Claim::String(a) => alg = Some(a),
                            _ => return Err(A::Error::custom("alg is not a string")),
                        },
                        "kid" => match map.next_value::<Claim<'de>>()? {
                            Claim::String(k) => kid = Some(k),
                            _ => return Err(A::Error::custom("kid is not a string")),
                        },
                        "crit" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            crit = true;
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    seen.push(name);
                }
                let alg = alg.ok_or_else(|| A::Error::missing_field("alg"))?;
                Ok(JoseHeader { alg, kid, crit })
            }
        }
        d.deserialize_map(V)
    }
}

/// The claims the proxy reads, borrowed from the decoded payload. Every member is kept as
/// present-or-absent exactly as sent (`null` is present, and not a number), so the type
/// rules below see what the client wrote.
#[derive(Default)]
pub(super) struct Claims<'a> {
    /// The value of each of the policy's `app_id_claims`, in its order.
    pub app_ids: Vec<Claim<'a>>,
    pub exp: Claim<'a>,
    pub nbf: Claim<'a>,
    pub iat: Claim<'a>,
    pub aud: Option<Value>,
    pub jti: Claim<'a>,
    pub scope: Claim<'a>,
    pub sub: Claim<'a>,
    pub iss: Claim<'a>,
}

impl<'a> Claims<'a> {
    /// Reads `payload`, picking out the claims named in `app_id_claims` on the way. A
    /// member the proxy reads may appear once only (as `serde` refuses a repeated field).
    pub fn parse(payload: &'a [u8], app_id_claims: &[String]) -> Result<Claims<'a>, Error> {
        use serde::de::DeserializeSeed;
        utf8(payload).map_err(|_| Error::InvalidToken("bad JSON"))?;
        let mut de = serde_json::Deserializer::from_slice(payload);
        let claims = ClaimsSeed(app_id_claims)
            .deserialize(&mut de)
            .and_then(|c| de.end().map(|()| c))
            .map_err(|_| Error::InvalidToken("bad JSON"))?;
        Ok(claims)
    }

    /// The app's id: the first of `app_id_claims` present, which must be a string.
    pub fn app_id(&self) -> Result<&str, Error> {
        match self.app_ids.iter().find(|c| !matches!(c, Claim::Absent)) {
            Some(Claim::String(s)) => Ok(s),
            Some(_) => Err(Error::InvalidToken("app id claim is not a string")),
            None => Err(Error::InvalidToken("no app id claim")),
        }
    }
}

struct ClaimsSeed<'n>(&'n [String]);

impl<'de, 'n> serde::de::DeserializeSeed<'de> for ClaimsSeed<'n> {
    type Value = Claims<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Claims<'de>, D::Error> {
        struct V<'n>(&'n [String]);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = Claims<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims<'de>, A::Error> {
                use serde::de::Error as _;
                let mut c = Claims {
                    app_ids: (0..self.0.len()).map(|_| Claim::Absent).collect(),
                    ..Claims::default()
                };
                let mut aud_seen = false;
                while let Some(name) = map.next_key::<Claim<'de>>()? {
                    let key = name.as_str().unwrap_or_default();
                    let id = self.0.iter().position(|n| n == key);
                    let slot = match key {
                        "exp" => Some(&mut c.exp),
                        "nbf" => Some(&mut c.nbf),
                        "iat" => Some(&mut c.iat),
                        "jti" => Some(&mut c.jti),
                        "scope" => Some(&mut c.scope),
                        "sub" => Some(&mut c.sub),
                        "iss" => Some(&mut c.iss),
                        "aud" => {
                            if aud_seen {
                                return Err(A::Error::custom("duplicate claim"));
                            }
                            aud_seen = true;
                            c.aud = Some(map.next_value::<Value>()?);
                            continue;
                        }
                        _ => None,
                    };
                    match (slot, id) {
                        (Some(slot), id) => {
                            if !matches!(slot, Claim::Absent) {
                                return Err(A::Error::custom("duplicate claim"));
                            }
                            *slot = map.next_value::<Claim<'de>>()?;
                            if let Some(i) = id {
                                c.app_ids[i] = slot.clone();
                            }
                        }
                        (None, Some(i)) => {
                            if !matches!(c.app_ids[i], Claim::Absent) {
                                return Err(A::Error::custom("duplicate claim"));
                            }
                            c.app_ids[i] = map.next_value::<Claim<'de>>()?;
                        }
                        (None, None) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V(self.0))
    }
}

/// One claim's value as far as the rules need it: absent (the default, when the member is
/// missing), a number, a string (borrowed from the payload unless it holds escapes), or
/// anything else, `null` included, read past. Unlike a `Value` it allocates nothing for the
/// claims every token carries.
#[derive(Default, Clone)]
pub(super) enum Claim<'a> {
    #[default]
    Absent,
    Number(f64),
    String(Cow<'a, str>),
    Other,
}

impl<'a> Claim<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Claim::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Claim<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Claim<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            // As `serde_json::Number::as_f64` converts.
            fn visit_u64<E>(self, v: u64) -> Result<Claim<'de>, E> {
                Ok(Claim::Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Claim<'de>, E> {
                Ok(Claim::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Claim<'de>, E> {
                Ok(Claim::Number(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Claim<'de>, E> {
                Ok(Claim::String(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Claim<'de>, E> {
                Ok(Claim::String(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Claim<'de>, E> {
                Ok(Claim::String(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Claim<'de>, E> {
                Ok(Claim::Other)
            }
            fn visit_unit<E>(self) -> Result<Claim<'de>, E> {
                Ok(Claim::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Claim<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Claim::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claim<'de>, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Claim::Other)
            }
        }
        d.deserialize_any(V)
    }
}
