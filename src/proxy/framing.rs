//! Sees what the HTTP/1 parser hides: a header block carrying both `Content-Length` and
//! `Transfer-Encoding`.
//!
//! hyper follows RFC 9112 §6.3 by dropping `Content-Length` and closing the connection
//! afterwards, which is safe, but the request then looks ordinary to us. SPEC §5 wants it
//! refused (the classic smuggling probe), so this reader watches the raw bytes: within any
//! stretch between two empty lines, a line starting `content-length:` and one starting
//! `transfer-encoding:` mark the connection. Body bytes can only cause false alarms on the
//! sender's own connection; a real header block can never escape the scan, because it
//! cannot contain an empty line.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Set once the connection has sent a header block with both framing headers.
#[derive(Debug, Default, Clone)]
pub struct Ambiguous(Arc<AtomicBool>);

impl Ambiguous {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Guard<IO> {
    io: IO,
    flag: Ambiguous,
    /// The first bytes of the current line, lower-cased (enough to tell the two names).
    line: [u8; 18],
    line_len: usize,
    line_empty: bool,
    seen_cl: bool,
    seen_te: bool,
}

impl<IO> Guard<IO> {
    /// Wraps the plaintext side of a connection (after TLS), raising `flag`.
    pub fn new(io: IO, flag: Ambiguous) -> Guard<IO> {
        Guard {
            io,
            flag,
            line: [0; 18],
            line_len: 0,
            line_empty: true,
            seen_cl: false,
            seen_te: false,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // Only a line's first bytes matter: take what is missing of them, then skip to
            // the end of the line (the bulk of a body is passed over by `position`).
            let newline = bytes.iter().position(|b| *b == b'\n');
            let line = &bytes[..newline.unwrap_or(bytes.len())];
            for &b in line.iter().take(self.line.len() - self.line_len) {
                if b == b'\r' && self.line_empty {
                    continue;
                }
                self.line_empty = false;
                self.line[self.line_len] = b.to_ascii_lowercase();
                self.line_len += 1;
                let l = &self.line[..self.line_len];
                self.seen_cl |= l == b"content-length:";
                self.seen_te |= l == b"transfer-encoding:";
            }
            if line.len() > 1 {
                // Longer than a lone CR: not an empty line, whatever the scan above kept.
                self.line_empty = false;
            }
            let Some(n) = newline else { return };
            if self.line_empty {
                // An empty line: the end of a header block (or a blank body line).
                if self.seen_cl && self.seen_te {
                    self.flag.0.store(true, Ordering::Relaxed);
                }
                self.seen_cl = false;
                self.seen_te = false;
            }
            self.line_len = 0;
            self.line_empty = true;
            bytes = &bytes[n + 1..];
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.scan(&buf.filled()[before..]);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(chunks: &[&[u8]]) -> bool {
        let flag = Ambiguous::default();
        let mut g = Guard::new(tokio::io::empty(), flag.clone());
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
