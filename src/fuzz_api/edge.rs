//! What the HTTP edge reads from a client: the request path, the raw header bytes (the
//! framing scanner), the credential headers, the webhook signature and the token-endpoint
//! body.

use std::borrow::Cow;

use aws_lc_rs::hmac;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::NOW;
use crate::auth::credential::{self, Credential};
use crate::auth::webhook;
use crate::issuer::endpoint;
use crate::path::normalize;
use crate::policy::{Secret, Webhook};
use crate::proxy::framing::{Ambiguous, Scanner};
use crate::proxy::tap::ReadObserver;

/// `path::normalize` with arbitrary UTF-8: every accepted path is normal and stable under
/// re-normalization.
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize(raw) else {
        return;
    };
    if let Cow::Borrowed(borrowed) = out {
        assert_eq!(borrowed, raw, "borrowed output must be the input");
    }
    assert_normal(&out);
    let again = normalize(&out);
    assert_eq!(again.as_deref(), Ok(&*out), "not idempotent");
    if !out.contains('%') {
        assert!(
            matches!(again, Ok(Cow::Borrowed(_))),
            "normal path missed the fast path"
        );
    }
}

/// The invariants every normalized path holds (the `path` target's, and the property test's
/// in src/path.rs).
pub(crate) fn assert_normal(out: &str) {
    assert!(out.starts_with('/'), "{out:?}");
    assert!(!out.contains("//"), "{out:?}");
    assert!(out.split('/').all(|s| s != "." && s != ".."), "{out:?}");
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(b.is_ascii_graphic(), "{out:?}");
        assert!(!matches!(b, b'\\' | b';' | b'#' | b'?'), "{out:?}");
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            let upper = |h: &u8| h.is_ascii_digit() || (b'A'..=b'F').contains(h);
            assert!(hex.len() == 2 && hex.iter().all(upper), "{out:?}");
            let value =
                u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0);
            let unreserved =
                value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~');
            assert!(!unreserved, "undecoded unreserved escape in {out:?}");
            assert!(!matches!(value, b'/' | b'\\' | b';' | 0), "{out:?}");
        }
    }
}

/// The HTTP/1.1 framing scanner (`proxy::framing::Scanner`). The first byte seeds the sizes
/// of the reads the rest arrives in. The differential: the verdict is the same whether the
/// bytes arrive in one read, in reads of those sizes, or one byte at a time, and it is the
/// verdict of a plain reading of the rule (`ambiguous`).
pub fn framing(data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let whole = scan(bytes, |_| bytes.len().max(1));
    let mut state = u32::from(seed) | 1;
    let chunked = scan(bytes, |_| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as usize % 23 + 1
    });
    let bytewise = scan(bytes, |_| 1);
    let expected = ambiguous(bytes);
    assert_eq!(whole, expected, "the scanner misses the rule in one read");
    assert_eq!(chunked, expected, "the verdict depends on how reads split");
    assert_eq!(bytewise, expected, "the verdict depends on how reads split");
}

fn scan(bytes: &[u8], mut next_len: impl FnMut(usize) -> usize) -> bool {
    let flag = Ambiguous::default();
    let mut scanner = Scanner::new(flag.clone());
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = next_len(i).min(rest.len());
        scanner.observe(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    flag.is_set()
}

/// The rule as SPEC §5 and `framing` state it: within a block of lines ended by an empty
/// line (nothing, or a lone CR, before the LF), a line starting `content-length:` and one
/// starting `transfer-encoding:`, ASCII case ignored, after any CRs.
fn ambiguous(bytes: &[u8]) -> bool {
    let (mut cl, mut te) = (false, false);
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The last piece has no LF: it is not a line yet, but its start is scanned.
    let unfinished = lines.pop().unwrap_or_default();
    for line in lines.iter().copied().chain([unfinished]) {
        let start = line.iter().position(|b| *b != b'\r').unwrap_or(line.len());
        let name = line[start..line.len().min(start + 18)].to_ascii_lowercase();
        cl |= name.starts_with(b"content-length:");
        te |= name.starts_with(b"transfer-encoding:");
        let ended = !std::ptr::eq(line, unfinished);
        if ended && (line.is_empty() || line == b"\r") {
            if cl && te {
                return true;
            }
            (cl, te) = (false, false);
        }
    }
    false
}

/// Credential extraction (`auth::credential::extract`) from headers written one per line
/// (`name: value`). An accepted credential is one blank-free token, classified by its dots
/// and taken from one of the two headers; the verdict does not depend on the order in which
/// the two headers arrive.
pub fn credential(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let result = credential::extract(&headers);
    if let Ok(Some(c)) = &result {
        let (Credential::Jws(v) | Credential::Jwe(v) | Credential::ApiKey(v)) = *c;
        assert!(!v.is_empty() && !v.contains([' ', '\t']), "{v:?}");
        let dots = v.matches('.').count();
        match c {
            Credential::Jws(_) => assert_eq!(dots, 2),
            Credential::Jwe(_) => assert_eq!(dots, 4),
            Credential::ApiKey(_) => assert!(dots != 2 && dots != 4),
        }
        let from = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .any(|h| h.as_bytes().windows(v.len()).any(|w| w == v.as_bytes()))
        };
        assert!(
            from("authorization") || from("auth"),
            "{v:?} is in neither header"
        );
    }
    // Headers of different names, in reverse order: the same verdict.
    let mut names: Vec<&HeaderName> = headers.keys().collect();
    names.reverse();
    let mut other = HeaderMap::new();
    for name in names {
        for v in headers.get_all(name) {
            other.append(name.clone(), v.clone());
        }
    }
    let again = credential::extract(&other);
    assert_eq!(
        result.as_ref().map_err(|e| e.code()),
        again.as_ref().map_err(|e| e.code()),
        "the order of the headers changes the credential"
    );
}

/// The webhook signature header (`auth::webhook::verify`). The input is `header \n body`.
/// The header as sent is checked, then again with a correct signature for a timestamp drawn
/// from the body's first bytes appended: whatever the header held before, that verifies
/// exactly when the timestamp is within the tolerance.
pub fn webhook(data: &[u8]) {
    let w = Webhook {
        secret: Secret(b"fuzz-webhook-secret".to_vec()),
        tolerance_secs: 300,
    };
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(header) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    if webhook::verify(&w, Some(header), body, NOW).is_ok() {
        // Only a signature made with the secret can get here: the header must hold it.
        assert!(
            header.contains("v1="),
            "accepted without a v1 signature: {header:?}"
        );
    }
    let skew = i64::from(i16::from_le_bytes([
        body.first().copied().unwrap_or(0),
        body.get(1).copied().unwrap_or(0),
    ]));
    let t = NOW + skew;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &w.secret.0);
    let mac = hmac::sign(&key, &[t.to_string().as_bytes(), b".", body].concat());
    let signed = format!("{header},t={t},v1={}", hex::encode(mac));
    let expected = if skew.unsigned_abs() <= w.tolerance_secs {
        Ok(())
    } else {
        Err("stale_signature")
    };
    assert_eq!(
        webhook::verify(&w, Some(&signed), body, NOW).map_err(|e| e.code()),
        expected,
        "{signed:?}"
    );
}

/// The token endpoint's body (`issuer::endpoint::read_body`). What it accepts, re-encoded
/// as plain JSON, reads back the same; and the two members are what a generic JSON reading
/// of the body finds.
pub fn token_body(data: &[u8]) {
    let Ok(creds) = endpoint::read_body(data) else {
        return;
    };
    assert!(super::is_json(data), "accepted, so JSON: {data:?}");
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        assert_eq!(doc["accessKey"].as_str(), Some(creds.access_key.as_str()));
        assert_eq!(doc["secretKey"].as_str(), Some(creds.secret_key.as_str()));
    }
    let plain = serde_json::json!({ "accessKey": creds.access_key, "secretKey": creds.secret_key });
    let again = endpoint::read_body(plain.to_string().as_bytes()).expect("re-encoded body");
    assert_eq!(again.access_key, creds.access_key);
    assert_eq!(again.secret_key, creds.secret_key);
}
