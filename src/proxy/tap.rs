//! A client connection's plaintext stream, with observers of the bytes it reads: the
//! framing scanner (`framing`) and the connection's activity (`idle`). Writes pass
//! straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees every byte read from the connection, in order, as it arrives.
pub trait ReadObserver {
    fn observe(&mut self, read: &[u8]);
}

impl<A: ReadObserver, B: ReadObserver> ReadObserver for (A, B) {
    fn observe(&mut self, read: &[u8]) {
        self.0.observe(read);
        self.1.observe(read);
    }
}

pub struct Tap<IO, O> {
    io: IO,
    observer: O,
}

impl<IO, O> Tap<IO, O> {
    pub fn new(io: IO, observer: O) -> Tap<IO, O> {
        Tap { io, observer }
    }
}

impl<IO: AsyncRead + Unpin, O: ReadObserver + Unpin> AsyncRead for Tap<IO, O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if matches!(result, Poll::Ready(Ok(()))) && !read.is_empty() {
            this.observer.observe(read);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin, O: Unpin> AsyncWrite for Tap<IO, O> {
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
