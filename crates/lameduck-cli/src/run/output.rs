//! lameduck's own events, on stderr, apart from the program's: lines that
//! start with `lameduck[PID]:` for a person, JSON lines (target
//! `lameduck…`) for a log collector.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human lines on a terminal, JSON otherwise.
    Auto,
    /// Lines prefixed `lameduck[PID]:`.
    Human,
    /// JSON lines.
    Json,
}

/// Installs the subscriber. `RUST_LOG` overrides the levels (default: info
/// for lameduck, warnings for the rest).
pub fn init(output: Output) {
    let human = match output {
        Output::Auto => std::io::stderr().is_terminal(),
        Output::Human => true,
        Output::Json => false,
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,lameduck=info"));
    // Colour only for a person at a terminal who did not ask for none.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // A log line that cannot be written (the terminal closed, the reader of
    // the pipe died) is dropped: tracing-subscriber's default reports it
    // with `eprintln!`, which panics on that same stderr and took down the
    // task that logged, the signal handler's among them.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .log_internal_errors(false);
    let _ = if human {
        builder.event_format(Prefixed).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}

/// `lameduck[PID]: warning: message key=value`.
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "lameduck[{}]: ", std::process::id())?;
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
