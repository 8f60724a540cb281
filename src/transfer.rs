//! Metering data on its way into or out of a sandbox (bundles over an exec's stdin or
//! stdout): a reader or writer that counts the bytes passing through it and reports them as
//! [`Event::Transfer`] once the transfer has run for a moment ([`QUIET_FOR`]), at most every
//! [`EVERY`], and at its end if anything was reported, so a quick transfer says nothing.
//! Owns only the counting; how a transfer shows is the renderer's.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ops::{Event, Events};

/// A transfer says nothing for this long.
pub const QUIET_FOR: Duration = Duration::from_secs(1);
/// Then it reports at most this often.
pub const EVERY: Duration = Duration::from_millis(100);

/// The count of one transfer and when to report it.
pub struct Meter<'a> {
    events: &'a dyn Events,
    task: Option<String>,
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
}

impl<'a> Meter<'a> {
    /// A transfer of `what` (e.g. "sending the repository"), `total` bytes if known (else 0).
    pub fn new(events: &'a dyn Events, task: Option<&str>, what: &str, total: u64) -> Meter<'a> {
        Meter {
            events,
            task: task.map(str::to_string),
            what: what.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            last: None,
        }
    }

    /// `n` more bytes went through at `now`.
    pub fn add(&mut self, n: u64, now: Instant) {
        self.done += n;
        if now - self.started < QUIET_FOR || self.last.is_some_and(|l| now - l < EVERY) {
            return;
        }
        self.last = Some(now);
        self.emit(now, false);
    }

    /// The transfer ended (said only when something was said before).
    pub fn finish(&mut self, now: Instant) {
        if self.last.take().is_some() {
            self.emit(now, true);
        }
    }

    fn emit(&self, now: Instant, finished: bool) {
        self.events.emit(Event::Transfer {
            task: self.task.clone(),
            what: self.what.clone(),
            done: self.done,
            total: self.total,
            millis: (now - self.started).as_millis() as u64,
            finished,
        });
    }
}

/// A reader or writer counted by a [`Meter`]; [`Metered::finish`] ends the count.
pub struct Metered<'a, T> {
    inner: T,
    meter: Meter<'a>,
}

impl<'a, T> Metered<'a, T> {
    pub fn new(inner: T, meter: Meter<'a>) -> Metered<'a, T> {
        Metered { inner, meter }
    }

    /// The transfer is over.
    pub fn finish(&mut self) {
        self.meter.finish(Instant::now());
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                this.meter.add(n, Instant::now());
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.meter.add(n as u64, Instant::now());
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    fn transfers(c: &Collected) -> Vec<(u64, u64, bool)> {
        c.take()
            .into_iter()
            .map(|e| match e {
                Event::Transfer {
                    done,
                    millis,
                    finished,
                    ..
                } => (done, millis, finished),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_quick_transfer_says_nothing() {
        let c = Collected::default();
        let mut m = Meter::new(&c, None, "sending", 0);
        let t0 = m.started;
        m.add(1 << 20, t0 + Duration::from_millis(500));
        m.finish(t0 + Duration::from_millis(900));
        assert!(c.take().is_empty());
    }

    #[test]
    fn a_long_transfer_reports_sparsely_and_ends() {
        let c = Collected::default();
        let mut m = Meter::new(&c, Some("t"), "sending", 0);
        let t0 = m.started;
        let at = |ms| t0 + Duration::from_millis(ms);
        m.add(100, at(200));
        m.add(100, at(1100));
        m.add(100, at(1150));
        m.add(100, at(1250));
        m.finish(at(1300));
        assert_eq!(
            transfers(&c),
            [(200, 1100, false), (400, 1250, false), (400, 1300, true)]
        );
    }

    #[tokio::test]
    async fn metered_readers_and_writers_count_every_byte() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let c = Collected::default();
        let data = vec![7u8; 100_000];
        let mut r = Metered::new(&data[..], Meter::new(&c, None, "in", 0));
        r.meter.started -= Duration::from_secs(2);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        r.finish();
        assert_eq!(got, data);
        let seen = transfers(&c);
        assert_eq!(seen.last(), Some(&(100_000, seen.last().unwrap().1, true)));

        let mut w = Metered::new(Vec::new(), Meter::new(&c, None, "out", 0));
        w.meter.started -= Duration::from_secs(2);
        w.write_all(&data).await.unwrap();
        w.finish();
        assert_eq!(w.inner.len(), data.len());
        assert_eq!(
            transfers(&c).last().map(|t| (t.0, t.2)),
            Some((100_000, true))
        );
    }
}
