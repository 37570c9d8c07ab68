//! Fuzzes `path::normalize` with arbitrary UTF-8: it must never panic,
//! and every accepted path must be normal and stable under re-normalization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopegate::path::normalize;
use std::borrow::Cow;

fuzz_target!(|data: &[u8]| {
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
});

/// Same invariants as the property test in src/proxy/path.rs.
fn assert_normal(out: &str) {
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
