//! Webhook signatures (SPEC §3.5): `X-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>`.

use aws_lc_rs::hmac;

use crate::error::Error;
use crate::policy::Webhook;

pub fn verify(w: &Webhook, header: Option<&str>, body: &[u8], now_unix: i64) -> Result<(), Error> {
    let header = header.ok_or(Error::MissingCredentials)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok().map(|n| (v, n)),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    // Signed as sent: `<t>` is the sender's digits, whatever their form.
    let (t_sent, t) = t.ok_or(Error::InvalidSignature("no timestamp"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &w.secret.0);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t_sent.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let expected = ctx.sign();
    // Compare in constant time against each offered signature (rotation sends several).
    let ok = sigs.iter().any(|s| {
        hex::decode(s).is_ok_and(|s| {
            aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), &s).is_ok()
        })
    });
    if !ok {
        return Err(Error::InvalidSignature("signature mismatch"));
    }
    if now_unix.saturating_sub(t).unsigned_abs() > w.tolerance_secs {
        return Err(Error::StaleSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Secret;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let msg = [t.to_string().as_bytes(), b".", body].concat();
        format!("t={t},v1={}", hex::encode(hmac::sign(&key, &msg)))
    }

    #[test]
    fn valid_stale_and_forged() {
        let w = Webhook {
            secret: Secret(b"s3cret".to_vec()),
            tolerance_secs: 300,
        };
        let now = 1_800_000_000;
        assert!(verify(&w, Some(&sign(b"s3cret", now, b"{}")), b"{}", now).is_ok());
        assert_eq!(
            verify(&w, Some(&sign(b"s3cret", now - 301, b"{}")), b"{}", now)
                .unwrap_err()
                .code(),
            "stale_signature"
        );
        assert_eq!(
            verify(&w, Some(&sign(b"other", now, b"{}")), b"{}", now)
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
        assert_eq!(
            verify(&w, Some(&sign(b"s3cret", now, b"{}")), b"{ }", now)
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
        assert_eq!(
            verify(&w, Some("v1=00"), b"{}", now).unwrap_err().code(),
            "invalid_signature"
        );
        assert_eq!(
            verify(&w, None, b"{}", now).unwrap_err().code(),
            "missing_credentials"
        );
        // In the future beyond the tolerance is stale too.
        assert_eq!(
            verify(&w, Some(&sign(b"s3cret", now + 301, b"{}")), b"{}", now)
                .unwrap_err()
                .code(),
            "stale_signature"
        );
    }

    /// The HMAC covers the timestamp as sent, not as re-formatted after parsing.
    #[test]
    fn the_timestamp_is_signed_as_sent() {
        let w = Webhook {
            secret: Secret(b"s3cret".to_vec()),
            tolerance_secs: 300,
        };
        let now = 1_800_000_000i64;
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        let sent = format!("0{now}");
        let mac = hmac::sign(&key, format!("{sent}.{{}}").as_bytes());
        let header = format!("t={sent},v1={}", hex::encode(mac));
        assert!(verify(&w, Some(&header), b"{}", now).is_ok());
        let reformatted = header.replacen(&sent, &now.to_string(), 1);
        assert_eq!(
            verify(&w, Some(&reformatted), b"{}", now)
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
    }
}
