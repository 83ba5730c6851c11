//! Where results go: a table on stdout, JSON (and the drill's own reports)
//! under an output directory.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// Writes `value` as pretty JSON to `dir/name`, creating `dir`.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
    write(dir, name, &serde_json::to_string_pretty(value)?)
}

/// Writes `text` to `dir/name`, creating `dir`.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Parses a humantime duration for clap.
///
/// # Errors
///
/// When the text is not a duration.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}
