//! Plain-text tables: a header, rows, columns padded to fit; text columns
//! left-aligned, the rest right-aligned.

use std::fmt;
use std::time::Duration;

/// A table being built.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    left: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a name starting with `<` is left-aligned
    /// (the `<` is not shown).
    pub fn new(columns: &[&str]) -> Self {
        Table {
            header: columns
                .iter()
                .map(|c| c.trim_start_matches('<').to_owned())
                .collect(),
            left: columns.iter().map(|c| c.starts_with('<')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = self.header.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&self.header[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                if i > 0 {
                    out.push_str("  ");
                }
                if self.left[i] {
                    out.push_str(&format!("{cell:<w$}"));
                } else {
                    out.push_str(&format!("{cell:>w$}"));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &self.header)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// Microseconds as milliseconds with one decimal, or `-`.
pub fn ms(us: Option<u64>) -> String {
    us.map_or_else(
        || "-".to_owned(),
        |us| format!("{:.1}ms", us as f64 / 1000.0),
    )
}

/// A duration as seconds (or milliseconds below one second).
pub fn span(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_and_aligned() {
        let mut t = Table::new(&["<name", "n"]);
        t.row(vec!["lameduck".into(), "0".into()]);
        t.row(vec!["axum".into(), "120".into()]);
        assert_eq!(
            t.to_string(),
            "name        n\nlameduck    0\naxum      120\n"
        );
    }

    #[test]
    fn times_read_well() {
        assert_eq!(ms(Some(51_234)), "51.2ms");
        assert_eq!(ms(None), "-");
        assert_eq!(span(Duration::from_millis(250)), "250ms");
        assert_eq!(span(Duration::from_millis(1500)), "1.50s");
    }
}
