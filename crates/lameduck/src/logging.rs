//! A log writer that never loses the last lines (feature `logging`).
//!
//! A service logs through a non-blocking writer so that a slow disk or a
//! full pipe never stalls a request: lines go to a queue, and a thread
//! writes them out. The price is the queue: whatever is in it when the
//! process exits is lost — and the process exits right after its most
//! interesting lines, the shutdown's. [`non_blocking`] gives a writer on
//! `tracing-appender`'s non-blocking writer that fixes each way they get
//! lost:
//!
//! | path | what happens |
//! |---|---|
//! | the end of `run()` (clean, or a deadline passed) | the app's flushes run last, after the report and the `stopped` line: [`LogFlush::flusher`] given to [`AppBuilder::on_flush`](crate::AppBuilder::on_flush) writes out the queue |
//! | a second signal | the signal thread runs the same flushes before it exits the process, even while the runtime is blocked |
//! | the exit watchdog | likewise, before its exit |
//! | a panic | the [panic hook](LogFlush::install_panic_hook) logs the panic as an error event, then, when the panic ends the process (on the main thread, or built with `panic = "abort"`), flushes |
//! | a line logged after the flush | written at once, synchronously, to the same writer: nothing is dropped, not even a watchdog's last word |
//! | a burst | the queue is not lossy: a writer waits for room rather than drop a line |
//!
//! Each flush is bounded: by the budget's `log_flush` in an app, by
//! [`DEFAULT_LOG_FLUSH`](crate::DEFAULT_LOG_FLUSH) in the panic hook.
//!
//! # Examples
//!
//! JSON lines, which need `tracing-subscriber`'s `json` feature
//! (`tracing-subscriber = { version = "0.3", features = ["json"] }`):
//!
//! ```no_run
//! use lameduck::{App, Component};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::fs::OpenOptions::new()
//!     .create(true)
//!     .append(true)
//!     .open("/var/log/orders.log")?;
//! let (writer, logs) = lameduck::logging::non_blocking(file);
//! tracing_subscriber::fmt().json().with_writer(writer).init();
//! logs.install_panic_hook();
//!
//! let app = App::builder("orders")
//!     .on_flush(logs.flusher()) // last of all, on every exit path
//!     .component(Component::new("worker", |ctx| async move {
//!         ctx.ready();
//!         ctx.on_stopping().await;
//!         Ok(())
//!     }))
//!     .build()?;
//! # let _ = app;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// A non-blocking log writer, until [`LogFlush::flush`]; then a blocking
/// one, to the same destination. Give it to `tracing_subscriber`'s
/// `with_writer`; see [`non_blocking`].
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Flushes a [`LogWriter`]'s queue: give [`flusher`](Self::flusher) to the
/// app, and [install the panic hook](Self::install_panic_hook). Clones
/// share one queue; the flush happens once.
#[derive(Clone)]
pub struct LogFlush {
    shared: Arc<Shared>,
}

struct Shared {
    queue: NonBlocking,
    /// The destination itself, written to directly after the flush (and
    /// by the queue's thread before).
    direct: Arc<Mutex<Box<dyn Write + Send>>>,
    /// The queue was flushed and closed: lines go straight to `direct`.
    flushed: AtomicBool,
    /// Writes under way into the queue; the flush waits for them.
    writing: AtomicUsize,
    /// Dropping it makes the queue's thread write everything queued and
    /// flush the destination.
    guard: Mutex<Option<WorkerGuard>>,
}

/// A writer that logs through a queue to `writer` from a thread of its
/// own, and the handle that flushes it; see the [module docs](self).
///
/// The queue holds up to 128,000 lines, and is not lossy: when it is full,
/// logging waits for room.
pub fn non_blocking<W: Write + Send + 'static>(writer: W) -> (LogWriter, LogFlush) {
    let direct: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(writer)));
    let (queue, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("lameduck-log")
        .finish(Direct(direct.clone()));
    let shared = Arc::new(Shared {
        queue,
        direct,
        flushed: AtomicBool::new(false),
        writing: AtomicUsize::new(0),
        guard: Mutex::new(Some(guard)),
    });
    (
        LogWriter {
            shared: shared.clone(),
        },
        LogFlush { shared },
    )
}

/// The destination, shared by the queue's thread and the writers after
/// the flush.
struct Direct(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for Direct {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).flush()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A writer that panicked mid-line leaves the destination as usable as
    // it is; a log line matters more than the poison.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One event's writer, from [`LogWriter`].
pub struct EventWriter<'a> {
    shared: &'a Shared,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = self.shared;
        // SeqCst, with the flush's store of `flushed` and load of
        // `writing`: either the flush sees this write under way and waits
        // for it, or this write sees the flush and goes direct.
        s.writing.fetch_add(1, Ordering::SeqCst);
        let written = if s.flushed.load(Ordering::SeqCst) {
            lock(&s.direct).write_all(buf).map(|()| buf.len())
        } else {
            s.queue.clone().write(buf)
        };
        s.writing.fetch_sub(1, Ordering::SeqCst);
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.shared.flushed.load(Ordering::SeqCst) {
            lock(&self.shared.direct).flush()
        } else {
            Ok(())
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> EventWriter<'a> {
        EventWriter {
            shared: &self.shared,
        }
    }
}

impl LogFlush {
    /// Writes out every queued line and flushes the destination; from
    /// then on lines are written synchronously. Waits as long as the queue
    /// takes (tracing-appender bounds it to about a second); see
    /// [`flush_within`](Self::flush_within) for a bound of your own. Only
    /// the first call does anything.
    pub fn flush(&self) {
        let s = &self.shared;
        if s.flushed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Writes that missed the switch finish into the queue first; a
        // write takes microseconds, so the bound is never reached unless
        // the queue is full and stuck.
        let until = Instant::now() + Duration::from_millis(100);
        while s.writing.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::yield_now();
        }
        drop(lock(&s.guard).take());
        let _ = lock(&s.direct).flush();
    }

    /// [`flush`](Self::flush) on a thread of its own, waiting at most
    /// `bound`: false when it did not finish in time.
    pub fn flush_within(&self, bound: Duration) -> bool {
        let (done, finished) = mpsc::channel();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lameduck-log-flush".into())
            .spawn(move || {
                me.flush();
                let _ = done.send(());
            });
        spawned.is_ok() && finished.recv_timeout(bound).is_ok()
    }

    /// The flush as [`AppBuilder::on_flush`](crate::AppBuilder::on_flush)
    /// takes it: the app runs it last, bounded by the budget's log flush
    /// time, at the end of `run()`, on a forced exit and at the exit
    /// watchdog.
    pub fn flusher(&self) -> impl FnOnce() + Send + 'static {
        let me = self.clone();
        move || me.flush()
    }

    /// Installs a panic hook that logs each panic as an error event
    /// (target `lameduck::panic`: the message, where, which thread), then
    /// calls the hook that was there before (by default, the message on
    /// stderr). When the panic ends the process — on the main thread, or
    /// in a build with `panic = "abort"` — it then flushes the log, within
    /// [`DEFAULT_LOG_FLUSH`](crate::DEFAULT_LOG_FLUSH).
    ///
    /// A panic elsewhere (a task, a thread) is caught by whoever runs it
    /// and does not end the process: the queue stays as it is.
    pub fn install_panic_hook(&self) {
        let me = self.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a non-string payload");
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("unnamed");
            tracing::error!(target: "lameduck::panic", thread = %name, location = %location, "panicked: {message}");
            previous(info);
            if cfg!(panic = "abort") || name == "main" {
                me.flush_within(crate::DEFAULT_LOG_FLUSH);
            }
        }));
    }
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("flushed", &self.shared.flushed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LogFlush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFlush")
            .field("flushed", &self.shared.flushed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EventWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWriter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_before_the_flush_returns_and_lines_after_it_too() {
        let buf = Buf::default();
        let (writer, logs) = non_blocking(buf.clone());
        for i in 0..10_000 {
            writeln!(writer.make_writer(), "line {i}").unwrap();
        }
        logs.flush();
        writeln!(writer.make_writer(), "after the flush").unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_001);
        assert_eq!(lines[9_999], "line 9999");
        assert_eq!(lines[10_000], "after the flush");
    }
}
