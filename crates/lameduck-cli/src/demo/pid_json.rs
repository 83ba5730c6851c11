//! JSON log lines that carry the process id.
//!
//! During a zero-downtime restart the old and the new process run at once
//! and often write to the same place (a terminal, a journal, a pod's log):
//! every line must say which process wrote it. tracing-subscriber's JSON
//! format has no place for a field of the process, so this wraps it and
//! puts `"pid"` first in each line.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// A JSON event format whose lines start with `{"pid":<this process>,`.
/// An event that has a `pid` field of its own keeps it, alone.
#[derive(Debug)]
pub(super) struct WithPid<F> {
    inner: F,
    pid: u32,
}

impl<F> WithPid<F> {
    pub(super) fn new(inner: F) -> Self {
        Self {
            inner,
            pid: std::process::id(),
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithPid<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let own_pid = event.metadata().fields().field("pid").is_some();
        match line.strip_prefix('{') {
            Some(rest) if !own_pid => write!(writer, "{{\"pid\":{},{rest}", self.pid),
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::JsonFields;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buffer::default();
        let format = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .fmt_fields(JsonFields::new())
            .event_format(WithPid::new(format))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn every_json_line_carries_the_pid() {
        let got = lines(|| {
            tracing::info!(target: "demo", "db: connected");
            tracing::warn!(phase = "draining", "phase changed");
        });
        assert_eq!(got.len(), 2);
        for line in &got {
            assert_eq!(line["pid"], std::process::id(), "{line}");
        }
        assert_eq!(got[1]["phase"], "draining");
    }

    #[test]
    fn an_event_with_a_pid_of_its_own_keeps_it_alone() {
        // A repeated key would make the line ambiguous JSON.
        let buf = lines(|| tracing::info!(pid = 7u32, "child started"));
        assert_eq!(buf[0]["pid"], 7);
    }
}
