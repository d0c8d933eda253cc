//! Socket writes coalesced across the calls of one HTTP/2 connection.
//!
//! hyper and h2 flush a connection as soon as any stream queues a frame,
//! and tokio runs the woken connection task right after the stream task
//! that woke it. Under load that is one `writev` per response: the system
//! call and the loopback or network stack's work on both ends, paid for
//! every call. [`CoalescedWrites`] accepts the bytes, lets the first flush
//! step aside for one turn of the scheduler so the other streams that are
//! ready can queue theirs, and then writes them all at once. An idle
//! connection loses nothing but that one turn: with no other task ready,
//! the connection task runs again at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write goes out whether or not the flush has waited.
const CAPACITY: usize = 16 * 1024;
/// A larger buffer, grown by a large message, is given back once written.
const RETAINED: usize = 4 * 1024;

/// A connection whose writes are held until a flush, and whose first flush
/// with bytes waiting yields once to the scheduler (see the module docs).
#[derive(Debug)]
pub struct CoalescedWrites<T> {
    inner: T,
    /// Accepted bytes not yet written, of which `written` already are.
    pending: Vec<u8>,
    written: usize,
    /// The flush of the bytes in `pending` has already stepped aside.
    yielded: bool,
}

impl<T> CoalescedWrites<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes every pending byte to the connection.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.pending.capacity() > RETAINED {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for `incoming` bytes: drains the buffer when they would
    /// overflow it. `true` when they are too many to buffer at all and
    /// should go straight to the connection.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, incoming: usize) -> Poll<io::Result<bool>> {
        if self.pending.len() + incoming <= CAPACITY {
            return Poll::Ready(Ok(false));
        }
        std::task::ready!(self.poll_drain(cx))?;
        Poll::Ready(Ok(incoming > CAPACITY))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if std::task::ready!(this.poll_room_for(cx, buf.len()))? {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|buf| buf.len()).sum();
        if std::task::ready!(this.poll_room_for(cx, total))? {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.pending.extend_from_slice(buf);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            this.yielded = false;
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.yielded {
            // Waking itself puts the task at the back of the run queue
            // (tokio treats it as a yield), behind the stream tasks that
            // are about to queue frames on this connection.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for CoalescedWrites<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: hyper_util::client::legacy::connect::Connection>
    hyper_util::client::legacy::connect::Connection for CoalescedWrites<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A connection that records each write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(io: &mut CoalescedWrites<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) {
        let written = Pin::new(io).poll_write(cx, bytes);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == bytes.len()));
    }

    #[test]
    fn writes_before_a_flush_go_out_together_after_one_yield() {
        let waker = Arc::new(CountingWaker::default());
        let task_waker = waker.clone().into();
        let mut cx = Context::from_waker(&task_waker);
        let mut io = CoalescedWrites::new(Recorder::default());

        write(&mut io, &mut cx, b"headers");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert_eq!(waker.0.load(Ordering::SeqCst), 1, "the task is woken again");
        write(&mut io, &mut cx, b"+data");
        assert!(
            io.inner.writes.is_empty(),
            "nothing is written while yielding"
        );

        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.inner.writes, [b"headers+data".to_vec()]);
        assert_eq!(io.inner.flushes, 1);

        // The next batch yields once again.
        write(&mut io, &mut cx, b"trailers");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.inner.writes.len(), 2);
    }

    #[test]
    fn a_flush_with_nothing_pending_does_not_yield() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut io = CoalescedWrites::new(Recorder::default());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.inner.flushes, 1);
    }

    #[test]
    fn a_full_buffer_is_written_before_more_is_taken_and_large_writes_go_straight_through() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut io = CoalescedWrites::new(Recorder::default());
        let chunk = vec![1_u8; CAPACITY / 2 + 1];
        write(&mut io, &mut cx, &chunk);
        write(&mut io, &mut cx, &chunk);
        assert_eq!(
            io.inner.writes,
            std::slice::from_ref(&chunk),
            "the first chunk made room"
        );

        let large = vec![2_u8; CAPACITY + 1];
        write(&mut io, &mut cx, &large);
        assert_eq!(io.inner.writes, [chunk.clone(), chunk, large]);
        assert!(io.pending.is_empty());
    }

    #[test]
    fn vectored_writes_are_gathered_and_shutdown_writes_what_is_pending() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut io = CoalescedWrites::new(Recorder::default());
        let parts = [io::IoSlice::new(b"frame "), io::IoSlice::new(b"payload")];
        let written = Pin::new(&mut io).poll_write_vectored(&mut cx, &parts);
        assert!(matches!(written, Poll::Ready(Ok(13))));
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(io.inner.writes, [b"frame payload".to_vec()]);
        assert!(io.inner.shut);
    }
}
