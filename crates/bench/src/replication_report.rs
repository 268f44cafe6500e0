//! The replication bench's one table: every row measured in the same run,
//! each goal of the issue next to the value it judges.

use std::fmt;

/// One line of the table; `None` cells print as "-".
#[derive(Debug, Clone, Default)]
pub struct ReplRow {
    pub name: String,
    /// Client WRITE rate reached (MB/s, 10^6 bytes).
    pub client_mb_s: Option<f64>,
    /// Client bytes over the time from the first WRITE until the replica
    /// acknowledged the last one.
    pub replicated_mb_s: Option<f64>,
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    /// p99 of the status figure lag_ms sampled while writing.
    pub status_lag_p99_ms: Option<f64>,
    /// Data bytes the client changed.
    pub changed_bytes: Option<u64>,
    /// Bytes between the sites (both directions, TLS included).
    pub wire_bytes: Option<u64>,
    pub seconds: Option<f64>,
    /// The goal for this row, if it has one.
    pub goal: Option<String>,
    /// Met or missed, with the reason when missed.
    pub verdict: Option<Result<(), String>>,
}

impl ReplRow {
    pub fn ratio(&self) -> Option<f64> {
        match (self.wire_bytes, self.changed_bytes) {
            (Some(w), Some(c)) if c > 0 => Some(w as f64 / c as f64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplReport {
    pub header: Vec<String>,
    pub rows: Vec<ReplRow>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl ReplReport {
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn row(&self, prefix: &str) -> Option<&ReplRow> {
        self.rows.iter().find(|r| r.name.starts_with(prefix))
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn mib_cell(v: Option<u64>) -> String {
    v.map(|x| format!("{:.2}", tandem_control::api::proto::mib(x)))
        .unwrap_or_else(|| "-".into())
}

impl fmt::Display for ReplReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.header {
            writeln!(f, "{line}")?;
        }
        if !self.header.is_empty() {
            writeln!(f)?;
        }
        let head = [
            "row",
            "client MB/s",
            "replicated MB/s",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "status lag_ms p99",
            "changed MiB",
            "wire MiB",
            "wire/changed",
            "time s",
            "goal",
            "result",
        ];
        let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
        for r in &self.rows {
            cells.push(vec![
                r.name.clone(),
                num(r.client_mb_s, 1),
                num(r.replicated_mb_s, 1),
                num(r.lag_p50_ms, 0),
                num(r.lag_p99_ms, 0),
                num(r.lag_max_ms, 0),
                num(r.status_lag_p99_ms, 0),
                mib_cell(r.changed_bytes),
                mib_cell(r.wire_bytes),
                num(r.ratio(), 3),
                num(r.seconds, 2),
                r.goal.clone().unwrap_or_else(|| "-".into()),
                match &r.verdict {
                    None => "-".into(),
                    Some(Ok(())) => "pass".into(),
                    Some(Err(why)) => format!("MISS: {why}"),
                },
            ]);
        }
        write_table(f, &cells, |c| c == 0 || c >= 11)?;
        write_notes(f, &self.notes, &self.failures)
    }
}

/// The notes under a table, then what failed.
pub(crate) fn write_notes(
    f: &mut fmt::Formatter<'_>,
    notes: &[String],
    failures: &[String],
) -> fmt::Result {
    if !notes.is_empty() {
        writeln!(f)?;
        for n in notes {
            writeln!(f, "* {n}")?;
        }
    }
    if !failures.is_empty() {
        writeln!(f)?;
        writeln!(f, "FAILED:")?;
        for e in failures {
            writeln!(f, "* {e}")?;
        }
    }
    Ok(())
}

/// A Markdown table of `cells` (the first line is the heading): text
/// columns (`is_text`) left-aligned, numbers right-aligned (and marked so
/// in the line under the heading).
pub(crate) fn write_table(
    f: &mut fmt::Formatter<'_>,
    cells: &[Vec<String>],
    is_text: impl Fn(usize) -> bool,
) -> fmt::Result {
    let t = aligned(cells, &is_text, |t| {
        t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    });
    for (i, line) in t.lines().enumerate() {
        if i == 1 {
            writeln!(f, "{}", mark_right_aligned(&line, &is_text))?;
        } else {
            writeln!(f, "{line}")?;
        }
    }
    Ok(())
}

/// A plain table of `cells` (the first line is the heading, ruled off
/// with dashes): columns two spaces apart, text columns (`is_text`)
/// left-aligned, numbers right-aligned; lines end at their last character.
pub(crate) fn plain_table(cells: Vec<Vec<String>>, is_text: impl Fn(usize) -> bool) -> String {
    let mut t = aligned(&cells, &is_text, |t| {
        t.load_preset(comfy_table::presets::NOTHING);
        t.set_style(comfy_table::TableComponent::HeaderLines, '-');
    });
    let last = t.column_iter().count().saturating_sub(1);
    for (c, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if c < last { 2 } else { 0 }));
    }
    t.trim_fmt()
}

fn aligned(
    cells: &[Vec<String>],
    is_text: impl Fn(usize) -> bool,
    style: impl FnOnce(&mut comfy_table::Table),
) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    style(&mut t);
    let mut lines = cells.iter();
    if let Some(head) = lines.next() {
        t.set_header(head.clone());
    }
    t.add_rows(lines.cloned());
    for (c, col) in t.column_iter_mut().enumerate() {
        if !is_text(c) {
            col.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    t
}

/// Ends the dashes of each right-aligned column's heading rule with `:`,
/// Markdown's mark for a right-aligned column.
fn mark_right_aligned(rule: &str, is_text: impl Fn(usize) -> bool) -> String {
    let parts: Vec<&str> = rule.split('|').collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match part.strip_suffix('-') {
            Some(rest) if i > 0 && i < last && !is_text(i - 1) => format!("{rest}:"),
            _ => (*part).to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_separator_and_dashes_for_missing_cells() {
        let report = ReplReport {
            rows: vec![ReplRow {
                name: "mixed".into(),
                changed_bytes: Some(1 << 20),
                wire_bytes: Some(1 << 21),
                goal: Some("<= 1.05".into()),
                verdict: Some(Err("2.000".into())),
                ..ReplRow::default()
            }],
            ..ReplReport::default()
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("| row"), "{text}");
        assert!(lines[1].starts_with("|---"), "{text}");
        assert!(
            lines[1].contains(":|"),
            "numbers are marked right-aligned: {text}"
        );
        assert!(
            lines[2].contains("2.000") && lines[2].contains("MISS: 2.000"),
            "{text}"
        );
        assert!(lines[2].contains(" - |"), "{text}");
        assert_eq!(report.row("mix").and_then(ReplRow::ratio), Some(2.0));
    }
}
