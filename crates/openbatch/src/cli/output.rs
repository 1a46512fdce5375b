//! How the CLI prints: aligned tables or JSON to stdout, progress bars to stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::OutputFormat;

/// Rows with a header, printed with columns padded to their widest cell.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: a header line, then one line per row; the last column is not padded.
    pub(crate) fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate().take(cols) {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i + 1 < cols {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    text.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut self.headers.iter().copied());
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str));
        }
        out
    }

    pub(crate) fn print(&self) -> anyhow::Result<()> {
        write_stdout(self.render().as_bytes())
    }
}

/// A show view: one `field  value` line per property, for a single object.
pub(crate) struct Fields {
    table: Table,
}

impl Fields {
    pub(crate) fn new() -> Self {
        Self {
            table: Table::new(&["FIELD", "VALUE"]),
        }
    }

    pub(crate) fn add(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.table.row(vec![name.to_owned(), value.to_string()]);
        self
    }

    pub(crate) fn opt(&mut self, name: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.add(name, v);
        }
        self
    }

    pub(crate) fn print(&self) -> anyhow::Result<()> {
        // Skip the FIELD/VALUE header: a show view reads better as plain aligned pairs.
        let text = self.table.render();
        let body = text.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
        write_stdout(body.as_bytes())
    }
}

/// Pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

/// Prints `value` as JSON, or runs `table` to print it as a table.
pub(crate) fn emit<T: Serialize + ?Sized>(
    format: OutputFormat,
    value: &T,
    table: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => print_json(value),
        OutputFormat::Table => table(value),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes a download to `dest`, or to stdout without one. A file is written under a temporary
/// name and renamed when complete, so an interrupted download leaves no truncated file behind.
pub(crate) async fn save_download(
    mut download: openbatch_client::FileDownload,
    dest: Option<&std::path::Path>,
) -> anyhow::Result<u64> {
    use anyhow::Context;
    let mut written = 0u64;
    let Some(dest) = dest else {
        while let Some(chunk) = download.chunk().await.map_err(super::api)? {
            written += chunk.len() as u64;
            write_stdout(&chunk)?;
        }
        return Ok(written);
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_owned());
    let tmp = dest.with_file_name(format!(".{name}.partial"));
    let result = async {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        while let Some(chunk) = download.chunk().await.map_err(super::api)? {
            written += chunk.len() as u64;
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| written)
}

/// `2026-01-22 08:35:56` (UTC).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `-` for a missing value.
pub(crate) fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `1.5 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr when stderr is a terminal, and a hidden one otherwise, so that
/// logs and CI output stay free of redraw noise.
pub(crate) fn progress(len: u64, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner:.green} {msg:<28} [{bar:30.cyan/blue}] {pos}/{len} ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::new(len).with_style(style);
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["ID", "STATE", "NODES"]);
        t.row(vec!["pool-a".into(), "active".into(), "2/2".into()]);
        t.row(vec!["p".into(), "deleting".into(), "0/0".into()]);
        assert_eq!(
            t.render(),
            "ID      STATE     NODES\npool-a  active    2/2\np       deleting  0/0\n"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(or_dash(None::<i32>), "-");
    }
}
