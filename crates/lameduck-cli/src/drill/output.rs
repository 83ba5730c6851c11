//! Writing the summary and the reports.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lameduck_drill::Report;

use super::Flags as Args;

/// Where each form of the report goes.
pub struct Outputs {
    json: Option<String>,
    html: Option<PathBuf>,
    quiet: bool,
}

impl Outputs {
    /// The outputs the flags ask for, each checked to be writable now: a
    /// path that cannot be written is a usage error before the load starts,
    /// not after a drill that ran for nothing.
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        if let Some(path) = args.json.as_deref().filter(|path| *path != "-") {
            check_writable("--json", Path::new(path))?;
        }
        if let Some(path) = &args.html {
            check_writable("--html", path)?;
        }
        if let Some(path) = &args.server_log {
            check_writable("--server-log", path)?;
        }
        Ok(Outputs {
            json: args.json.clone(),
            html: args.html.clone(),
            quiet: args.quiet,
        })
    }

    /// Writes the summary (to stdout, or to stderr when the JSON goes to
    /// stdout), the JSON and the HTML.
    pub fn write(&self, report: &Report) -> anyhow::Result<()> {
        let json_to_stdout = self.json.as_deref() == Some("-");
        if !self.quiet {
            let summary = report.summary().to_string();
            // A reader that went away (`lameduck drill … | head`) loses
            // the rest of the summary, not the JSON and HTML files below.
            let _ = if json_to_stdout {
                std::io::stderr().lock().write_all(summary.as_bytes())
            } else {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(summary.as_bytes())
                    .and_then(|()| stdout.flush())
            };
        }
        if let Some(path) = &self.json {
            let json = report.to_json();
            if json_to_stdout {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{json}").context("cannot write the JSON report to stdout")?;
            } else {
                std::fs::write(path, json + "\n")
                    .with_context(|| format!("cannot write the JSON report to {path}"))?;
            }
        }
        if let Some(path) = &self.html {
            std::fs::write(path, report.to_html())
                .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
        }
        Ok(())
    }
}

/// Checks that `path` (given to `flag`) can be written: opened for writing
/// if it exists (not truncated: a drill that fails to start keeps the old
/// report), else created and removed again.
fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        anyhow::bail!("{flag} {shown} is a directory, not a file");
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("{flag} {shown}: cannot write the file"))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
