//! Request-head hygiene the HTTP parser leaves to us (`check_head`), and what it hides: a
//! header block carrying both `Content-Length` and `Transfer-Encoding` (the scanner).
//!
//! hyper follows RFC 9112 §6.3 by dropping `Content-Length` and closing the connection
//! afterwards, which is safe, but the request then looks ordinary to us. SPEC §5 wants it
//! refused (the classic smuggling probe), so this scanner watches the raw bytes (a
//! `tap::ReadObserver` on the plaintext side of the connection): within any
//! stretch between two empty lines, a line starting `content-length:` and one starting
//! `transfer-encoding:` mark the connection. Body bytes can only cause false alarms on the
//! sender's own connection; a real header block can never escape the scan, because it
//! cannot contain an empty line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Request, Version, header};
use hyper::body::Incoming;

use super::tap::ReadObserver;
use crate::error::Error;

/// Set once the connection has sent a header block with both framing headers.
#[derive(Debug, Default, Clone)]
pub struct Ambiguous(Arc<AtomicBool>);

impl Ambiguous {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

const CL: &[u8; 15] = b"content-length:";
const TE: &[u8; 18] = b"transfer-encoding:";
const CL_LEN: usize = CL.len();
const TE_LEN: usize = TE.len();

pub struct Scanner {
    flag: Ambiguous,
    /// The first bytes of the current line, lower-cased (enough to tell the two names).
    line: [u8; 18],
    line_len: usize,
    /// Every byte of the current line so far is a CR (they are passed over before a name).
    only_cr: bool,
    /// Bytes of the current line so far, over all reads: an empty line is "" or a lone CR
    /// however the reads split it.
    line_bytes: usize,
    seen_cl: bool,
    seen_te: bool,
}

impl Scanner {
    /// Scans one connection's plaintext (after TLS), raising `flag`.
    pub fn new(flag: Ambiguous) -> Scanner {
        Scanner {
            flag,
            line: [0; 18],
            line_len: 0,
            only_cr: true,
            line_bytes: 0,
            seen_cl: false,
            seen_te: false,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // Only a line's first bytes matter: take what is missing of them, then skip to
            // the end of the line (the bulk of a body is passed over by `memchr`).
            let newline = memchr::memchr(b'\n', bytes);
            let line = &bytes[..newline.unwrap_or(bytes.len())];
            // Leading CRs are passed over whatever their number, in this read or earlier
            // ones, so the verdict never depends on where the reads split a line.
            for &b in line {
                if self.line_len == self.line.len() {
                    break;
                }
                if b == b'\r' && self.only_cr {
                    continue;
                }
                self.only_cr = false;
                let b = b.to_ascii_lowercase();
                if self.line_len == 0 && b != b'c' && b != b't' {
                    // Neither name can start here: the rest of the line is passed over.
                    self.line_len = self.line.len();
                    break;
                }
                self.line[self.line_len] = b;
                self.line_len += 1;
                // Compared once, when the line is exactly as long as the name.
                match self.line_len {
                    CL_LEN => self.seen_cl |= self.line[..CL_LEN] == *CL,
                    TE_LEN => self.seen_te |= self.line[..TE_LEN] == *TE,
                    _ => {}
                }
            }
            self.line_bytes = self.line_bytes.saturating_add(line.len());
            let Some(n) = newline else { return };
            if self.only_cr && self.line_bytes <= 1 {
                // An empty line: the end of a header block (or a blank body line).
                if self.seen_cl && self.seen_te {
                    self.flag.0.store(true, Ordering::Relaxed);
                }
                self.seen_cl = false;
                self.seen_te = false;
            }
            self.line_len = 0;
            self.only_cr = true;
            self.line_bytes = 0;
            bytes = &bytes[n + 1..];
        }
    }
}

impl ReadObserver for Scanner {
    fn observe(&mut self, read: &[u8]) {
        self.scan(read);
    }
}

/// Request-line and header-block hygiene that the HTTP parser leaves to us (SPEC §5).
pub fn check_head(
    req: &Request<Incoming>,
    ambiguous_framing: bool,
    max_header_bytes: usize,
) -> Result<(), Error> {
    if !req.uri().path().starts_with('/') {
        return Err(Error::MalformedRequest("request target is not origin-form"));
    }
    let h = req.headers();
    let size: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if size > max_header_bytes {
        return Err(Error::HeadersTooLarge);
    }
    if req.version() <= Version::HTTP_11 {
        if h.get_all(header::HOST).iter().count() != 1 {
            return Err(Error::MalformedRequest("zero or several Host headers"));
        }
        let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
        if !te.is_empty() {
            if ambiguous_framing || h.contains_key(header::CONTENT_LENGTH) {
                return Err(Error::MalformedRequest(
                    "Content-Length with Transfer-Encoding",
                ));
            }
            if te.len() != 1 || !te[0].as_bytes().eq_ignore_ascii_case(b"chunked") {
                return Err(Error::MalformedRequest(
                    "transfer coding other than chunked",
                ));
            }
        }
        let mut cl = h.get_all(header::CONTENT_LENGTH).iter();
        if let Some(first) = cl.next() {
            if cl.any(|v| v != first) || first.as_bytes().contains(&b',') {
                return Err(Error::MalformedRequest("differing Content-Length values"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(chunks: &[&[u8]]) -> bool {
        let flag = Ambiguous::default();
        let mut g = Scanner::new(flag.clone());
        for c in chunks {
            g.scan(c);
        }
        flag.is_set()
    }

    #[test]
    fn both_headers_in_one_block_mark_the_connection_across_read_boundaries() {
        assert!(scanned(&[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Len",
            b"gth: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(scanned(&[
            b"POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\ncontent-length: 5\n\n"
        ]));
    }

    /// What the scanner must decide, written the obvious way over the whole input: some
    /// header block (lines up to an empty one, `\n` or `\r\n`) has a line starting, in any
    /// case and after any CRs, with each of the two names.
    fn reference(input: &[u8]) -> bool {
        let mut found = false;
        let (mut cl, mut te) = (false, false);
        let lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let text: Vec<u8> = line
                .iter()
                .skip_while(|b| **b == b'\r')
                .map(u8::to_ascii_lowercase)
                .collect();
            cl |= text.starts_with(b"content-length:");
            te |= text.starts_with(b"transfer-encoding:");
            let terminated = i + 1 < lines.len();
            if terminated && (line.is_empty() || *line == b"\r") {
                found |= cl && te;
                (cl, te) = (false, false);
            }
        }
        found
    }

    #[test]
    fn agrees_with_the_obvious_reading_on_random_input_split_anywhere() {
        let pieces: [&[u8]; 12] = [
            b"Content-Length: 5",
            b"content-length:",
            b"Transfer-Encoding: chunked",
            b"TRANSFER-ENCODING:x",
            b"Connection: close",
            b"content-lengthX: 1",
            b"tE: x",
            b"Host: a",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next(12) {
                input.extend_from_slice(pieces[next(pieces.len())]);
            }
            // One read, then the same bytes cut into random reads.
            let mut cuts = vec![0, input.len()];
            for _ in 0..next(4) {
                cuts.push(next(input.len() + 1));
            }
            cuts.sort();
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
            let want = reference(&input);
            assert_eq!(
                scanned(&[&input]),
                want,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            assert_eq!(scanned(&chunks), want, "{chunks:?}");
        }
    }

    /// Found by the fuzz target `framing` (a differential against one-byte reads): a line
    /// of two CRs read in two pieces was taken for an empty line, which ended the block, and
    /// leading CRs split over reads counted against the 18 bytes a name is looked for in.
    #[test]
    fn how_reads_split_a_line_never_changes_the_verdict() {
        let input = b"content-length: 1\r\n\r\r\ntransfer-encoding: x\r\n\r\n";
        assert!(scanned(&[input]));
        let (a, b) = input.split_at(20);
        assert_eq!(a, b"content-length: 1\r\n\r");
        assert!(scanned(&[a, b]));
        let crs = [b'\r'; 30];
        let line = [&crs[..], b"content-length: 1\ntransfer-encoding: x\n\n"].concat();
        assert!(scanned(&[&line]));
        assert!(scanned(&[&line[..10], &line[10..]]));
    }

    #[test]
    fn separate_blocks_and_look_alikes_do_not() {
        assert!(!scanned(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ]));
        assert!(!scanned(&[
            b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }
}
