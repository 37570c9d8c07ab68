//! Request-path normalization (spec §5 "Path normalization").
//!
//! Every request path goes through [`normalize`] once, before routing. The
//! result is used both to match routes and as the path forwarded upstream:
//! the path that was authorized is the path that is forwarded. No upstream
//! can then decode, merge or resolve its way to a resource the policy never
//! saw. Where servers are known to read a path differently (encoded slashes,
//! backslashes, `;` path parameters, NUL, ...), the path is rejected with a
//! [`PathError`] rather than guessed at, and the caller answers
//! 400 `invalid_path`.
//!
//! The steps, in order:
//! 1. the path must start with `/` and be printable ASCII without raw `\`,
//!    `;`, `#` or `?`;
//! 2. percent-escapes of unreserved characters (RFC 3986 §2.3) are decoded;
//!    all other escapes stay encoded, spelled in upper-case hex. Nothing is
//!    decoded twice (`%252e` stays `%252e`);
//! 3. runs of `/` are merged into one;
//! 4. `.` and `..` segments are resolved as in RFC 3986 §5.2.4, but a `..`
//!    that would climb above `/` is rejected instead of clamped.
//!
//! The trailing slash is kept as sent, and case is never changed except for
//! the hex digits of an escape.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused. All variants map to 400 `invalid_path`; the
/// variant and its [`Display`](fmt::Display) text are for operators' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Empty, or not starting with `/` (`*`, `a/b`, an absolute URI, ...).
    NotAbsolute,
    /// A non-ASCII character: a request target is ASCII, so a client that
    /// sends one skipped percent-encoding, and upstreams disagree on the fix.
    NonAscii,
    /// A raw control byte (< 0x20, 0x7F) or a raw space: these split or
    /// corrupt the request line when forwarded.
    ControlChar,
    /// `%` not followed by two hex digits: servers repair it differently.
    InvalidEscape,
    /// `%2F`: an upstream that decodes it after we matched would turn
    /// `/public%2F..%2Fadmin` into a path we never authorized.
    EncodedSlash,
    /// `\` or `%5C`: Windows-style servers and some frameworks read it as `/`.
    Backslash,
    /// `%00`: C-string backends truncate at it (`/admin%00.png`).
    Nul,
    /// `;` or `%3B`: servlet-style path parameters are stripped by some
    /// upstreams (the `/admin/..;/x` bypass), and some decode `%3B` first.
    Semicolon,
    /// A raw `#`, or a raw `?` that the caller should have split off: both
    /// end the path, so forwarding one would show the upstream a different
    /// path than the one matched.
    Fragment,
    /// A `..` segment that would climb above `/`: clamping would silently
    /// change what the request means, so it is refused.
    ClimbsAboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with '/'",
            PathError::NonAscii => "non-ASCII character in path",
            PathError::ControlChar => "control character or raw space in path",
            PathError::InvalidEscape => "malformed percent-escape in path",
            PathError::EncodedSlash => "encoded slash (%2F) in path",
            PathError::Backslash => "backslash (\\ or %5C) in path",
            PathError::Nul => "encoded NUL (%00) in path",
            PathError::Semicolon => "semicolon (; or %3B) in path",
            PathError::Fragment => "raw '#' or '?' in path",
            PathError::ClimbsAboveRoot => "'..' climbs above the root",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalizes the raw path of a request target (query already split off).
///
/// Returns the input borrowed when it is already normal and has no `%`,
/// which is the common case and costs one byte scan without allocating.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain_normal(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// A path that went through [`normalize`]: the only kind the router matches, so a raw
/// path cannot be routed by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a>(Cow<'a, str>);

impl<'a> Normalized<'a> {
    pub fn new(raw: &'a str) -> Result<Normalized<'a>, PathError> {
        normalize(raw).map(Normalized)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl std::ops::Deref for Normalized<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Returns `path` without one trailing slash, unless `path` is just `/`.
/// The router treats one trailing slash as insignificant when matching.
pub fn trim_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// Fast path: true if `path` (which starts with `/`) has no `%`, no
/// forbidden byte, no `//` and no `.`/`..` segment, so it is already normal.
/// Anything else goes to the slow path, which is the only one that reports
/// errors, so both paths always agree.
fn is_plain_normal(path: &[u8]) -> bool {
    let (mut seg_len, mut seg_dots) = (0usize, 0usize);
    for &b in path.iter().skip(1) {
        match b {
            b'/' if seg_len == 0 || is_dot_segment(seg_len, seg_dots) => return false,
            b'/' => (seg_len, seg_dots) = (0, 0),
            b'.' => (seg_len, seg_dots) = (seg_len + 1, seg_dots + 1),
            b'%' => return false,
            _ if check_raw(b).is_ok() => seg_len += 1,
            _ => return false,
        }
    }
    !is_dot_segment(seg_len, seg_dots)
}

/// A segment of `len` bytes, `dots` of them `.`, is `.` or `..`.
fn is_dot_segment(len: usize, dots: usize) -> bool {
    dots == len && (1..=2).contains(&len)
}

fn normalize_slow(raw: &str) -> Result<String, PathError> {
    resolve_segments(&decode(raw.as_bytes())?)
}

/// Validates every byte and rewrites escapes: unreserved ones decoded, the
/// rest kept with upper-case hex. Single pass, so nothing is decoded twice.
fn decode(bytes: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            check_raw(b)?;
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
        let lo = bytes.get(i + 2).and_then(|&h| hex_value(h));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::InvalidEscape);
        };
        match (hi << 4) | lo {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b';' => return Err(PathError::Semicolon),
            c if is_unreserved(c) => out.push(char::from(c)),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Rejects a raw (not percent-encoded) byte that may not appear in a path.
fn check_raw(b: u8) -> Result<(), PathError> {
    match b {
        0x80.. => Err(PathError::NonAscii),
        ..=b' ' | 0x7F => Err(PathError::ControlChar),
        b'\\' => Err(PathError::Backslash),
        b';' => Err(PathError::Semicolon),
        b'#' | b'?' => Err(PathError::Fragment),
        _ => Ok(()),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §2.3: escapes of these mean the same as the character itself.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Merges repeated slashes and resolves dot-segments. `decoded` starts with
/// `/` and can hold no encoded slash (rejected in [`decode`]), so splitting
/// on `/` yields exactly the segments an upstream will see.
fn resolve_segments(decoded: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        // As in RFC 3986 §5.2.4, a final `.` or `..` leaves a trailing slash.
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::ClimbsAboveRoot);
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::PathError::*;
    use super::*;

    /// (raw input, expected result)
    const CASES: &[(&str, Result<&str, PathError>)] = &[
        // Already normal: returned as is.
        ("/", Ok("/")),
        ("/bots/st-1234", Ok("/bots/st-1234")),
        ("/a/b/c", Ok("/a/b/c")),
        ("/a/b/", Ok("/a/b/")),
        ("/A/b/C", Ok("/A/b/C")),
        ("/...", Ok("/...")),
        ("/a/.../b", Ok("/a/.../b")),
        ("/.a/..b/c./d..", Ok("/.a/..b/c./d..")),
        ("/.well-known/jwks.json", Ok("/.well-known/jwks.json")),
        ("/a+b!$&'()*,=:@~_-", Ok("/a+b!$&'()*,=:@~_-")),
        // Repeated slashes merged.
        ("//a//b", Ok("/a/b")),
        ("//a///b", Ok("/a/b")),
        ("//", Ok("/")),
        ("///", Ok("/")),
        ("/a//", Ok("/a/")),
        ("/a//../b", Ok("/b")),
        // Dot-segments resolved; a final `.`/`..` leaves a trailing slash.
        ("/a/./b", Ok("/a/b")),
        ("/a/./b/", Ok("/a/b/")),
        ("/a/b/../c", Ok("/a/c")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/.", Ok("/a/b/")),
        ("/a/..", Ok("/")),
        ("/a/../", Ok("/")),
        ("/.", Ok("/")),
        ("/./", Ok("/")),
        ("/./a", Ok("/a")),
        ("/a/b/../../c", Ok("/c")),
        // Unreserved escapes decoded; case of the decoded char is the escape's.
        ("/%7Euser", Ok("/~user")),
        ("/%7euser", Ok("/~user")),
        ("/%41%42", Ok("/AB")),
        ("/%61%7A%30%39%2D%5F%2E", Ok("/az09-_.")),
        ("/a%2e%2eb", Ok("/a..b")),
        ("/Admin%2e", Ok("/Admin.")),
        // Decoding comes before dot-segment resolution.
        ("/%2e", Ok("/")),
        ("/a/%2e/b", Ok("/a/b")),
        ("/a/%2E%2E/b", Ok("/b")),
        ("/a/.%2e/b", Ok("/b")),
        ("/a/%2e./b", Ok("/b")),
        ("/a/b/%2e%2e", Ok("/a/")),
        ("/a/%2e%2e%2e", Ok("/a/...")),
        // Other escapes stay, upper-cased; only the escape's digits change.
        ("/a%3fb", Ok("/a%3Fb")),
        ("/a%3Fb", Ok("/a%3Fb")),
        ("/a%3ab", Ok("/a%3Ab")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%23b", Ok("/a%23b")),
        ("/%25", Ok("/%25")),
        ("/a%252e%252e/", Ok("/a%252e%252e/")),
        ("/a%252E", Ok("/a%252E")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/a%0ab", Ok("/a%0Ab")),
        ("/a%7f", Ok("/a%7F")),
        ("/x/%2e%2e/%3fq", Ok("/%3Fq")),
        // Not absolute.
        ("", Err(NotAbsolute)),
        ("a/b", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        ("http://h/a", Err(NotAbsolute)),
        ("%2Fa", Err(NotAbsolute)),
        (".", Err(NotAbsolute)),
        // Climbing above the root is rejected, never clamped.
        ("/..", Err(ClimbsAboveRoot)),
        ("/../", Err(ClimbsAboveRoot)),
        ("/../a", Err(ClimbsAboveRoot)),
        ("//..", Err(ClimbsAboveRoot)),
        ("/a/../..", Err(ClimbsAboveRoot)),
        ("/a/b/../../..", Err(ClimbsAboveRoot)),
        ("/%2e%2e/admin", Err(ClimbsAboveRoot)),
        ("/%2E%2E", Err(ClimbsAboveRoot)),
        ("/.%2e", Err(ClimbsAboveRoot)),
        ("/./../a", Err(ClimbsAboveRoot)),
        // Encoded slash.
        ("/a%2Fb", Err(EncodedSlash)),
        ("/a%2fb", Err(EncodedSlash)),
        ("/public%2F..%2Fadmin", Err(EncodedSlash)),
        // Backslash, raw or encoded.
        ("/a\\b", Err(Backslash)),
        ("/a%5Cb", Err(Backslash)),
        ("/a%5cb", Err(Backslash)),
        ("/..\\admin", Err(Backslash)),
        // NUL.
        ("/a%00b", Err(Nul)),
        ("/admin%00.png", Err(Nul)),
        // Malformed escapes.
        ("/a%", Err(InvalidEscape)),
        ("/a%4", Err(InvalidEscape)),
        ("/a%zz", Err(InvalidEscape)),
        ("/a%G1", Err(InvalidEscape)),
        ("/a%1G", Err(InvalidEscape)),
        ("/a%%41", Err(InvalidEscape)),
        ("/a%-1", Err(InvalidEscape)),
        ("/a%+1", Err(InvalidEscape)),
        ("/a%4é", Err(InvalidEscape)),
        // Semicolon, raw or encoded.
        ("/a;b", Err(Semicolon)),
        ("/a;", Err(Semicolon)),
        ("/a/..;/b", Err(Semicolon)),
        ("/a%3Bb", Err(Semicolon)),
        ("/a%3bb", Err(Semicolon)),
        // Raw `#` / `?`.
        ("/a#b", Err(Fragment)),
        ("/a?b", Err(Fragment)),
        // Control characters and raw space.
        ("/a b", Err(ControlChar)),
        ("/a\tb", Err(ControlChar)),
        ("/a\r\nb", Err(ControlChar)),
        ("/a\0b", Err(ControlChar)),
        ("/a\u{7f}", Err(ControlChar)),
        // Non-ASCII.
        ("/café", Err(NonAscii)),
        ("/a\u{200b}b", Err(NonAscii)),
        ("/\u{ff0f}admin", Err(NonAscii)),
        // Byte errors are reported before climbing (left-to-right scan first).
        ("/../a;b", Err(Semicolon)),
    ];

    #[test]
    fn table() {
        assert!(CASES.len() >= 60);
        for &(raw, expected) in CASES {
            let got = normalize(raw);
            assert_eq!(got.as_deref(), expected.as_deref(), "input {raw:?}");
        }
    }

    #[test]
    fn fast_path_borrows() {
        for raw in [
            "/",
            "/bots/st-1234",
            "/a/b/",
            "/...",
            "/.well-known/x",
            "/a..b",
        ] {
            assert!(matches!(normalize(raw), Ok(Cow::Borrowed(_))), "{raw:?}");
        }
        for raw in ["//a", "/a/./b", "/a/..", "/.", "/%41", "/a%3Fb"] {
            assert!(matches!(normalize(raw), Ok(Cow::Owned(_))), "{raw:?}");
        }
    }

    #[test]
    fn trailing_slash_trim() {
        assert_eq!(trim_trailing_slash("/"), "/");
        assert_eq!(trim_trailing_slash("/a/"), "/a");
        assert_eq!(trim_trailing_slash("/a"), "/a");
        assert_eq!(trim_trailing_slash("/a/b/"), "/a/b");
        assert_eq!(trim_trailing_slash("/a//"), "/a/");
        assert_eq!(trim_trailing_slash(""), "");
    }

    #[test]
    fn display_is_distinct() {
        let all = [
            NotAbsolute,
            NonAscii,
            ControlChar,
            InvalidEscape,
            EncodedSlash,
            Backslash,
            Nul,
            Semicolon,
            Fragment,
            ClimbsAboveRoot,
        ];
        let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), all.len());
        assert_eq!(EncodedSlash.to_string(), "encoded slash (%2F) in path");
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
            usize::try_from(x).unwrap_or(0) % n
        }
    }

    const ALPHABET: &[&str] = &[
        "/", "/", "/", "//", ".", ".", "..", "a", "b", "Z", "0", "-", "~", "%", "%2e", "%2E",
        "%2F", "%2f", "%25", "%41", "%7e", "%3f", "%3b", "%3B", "%5c", "%00", "%23", "%c3%a9",
        "%4", "%zz", "2", "e", "E", "f", ";", "#", "?", "\\", " ", "\t", "\u{7f}", "é",
    ];

    #[test]
    fn properties_on_random_paths() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut raw = String::from(if rng.below(20) == 0 { "" } else { "/" });
            for _ in 0..rng.below(14) {
                raw.push_str(ALPHABET[rng.below(ALPHABET.len())]);
            }
            let got = normalize(&raw);
            // Fast and slow paths agree.
            if raw.starts_with('/') {
                let slow = normalize_slow(&raw);
                assert_eq!(got.as_deref(), slow.as_deref(), "{raw:?}");
            }
            let Ok(out) = got else { continue };
            accepted += 1;
            if let Cow::Borrowed(b) = out {
                assert_eq!(b, raw);
            }
            crate::fuzz_api::edge::assert_normal(&out);
            let again = normalize(&out);
            assert_eq!(again.as_deref(), Ok(&*out), "not idempotent on {raw:?}");
            if !out.contains('%') {
                assert!(matches!(again, Ok(Cow::Borrowed(_))), "{out:?} not fast");
            }
        }
        assert!(
            accepted > 2_000,
            "only {accepted} accepted: generator too hostile"
        );
    }
}
