//! The table printed at the end of a run.

use std::fmt;

use serde::Serialize;

use crate::options::ServerKind;
use crate::replication_report::plain_table;

/// One workload row: each server's rate and Tandem's ratio to Ganesha.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub workload: String,
    pub unit: &'static str,
    /// Rate per server that ran this row (median of its samples).
    pub values: Vec<(ServerKind, f64)>,
    /// Every measurement, per server, in the order taken.
    pub samples: Vec<(ServerKind, Vec<f64>)>,
    /// Tandem / Ganesha, when both ran.
    pub ratio: Option<f64>,
}

impl ReportRow {
    pub fn value(&self, server: ServerKind) -> Option<f64> {
        self.values
            .iter()
            .find(|(s, _)| *s == server)
            .map(|(_, v)| *v)
    }
}

/// What `tandem bench` prints; `Display` is the table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Lines above the table: setup, sizes, fairness notes.
    pub header: Vec<String>,
    /// Column order (Tandem first when it ran).
    pub servers: Vec<ServerKind>,
    pub rows: Vec<ReportRow>,
    /// Lines below the table: what each server told us.
    pub notes: Vec<String>,
    /// Servers that failed to start or to finish, with the error.
    pub failures: Vec<String>,
}

impl BenchReport {
    /// Every requested server ran every row.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// The smallest Tandem/Ganesha ratio over all rows, if both ran.
    pub fn min_ratio(&self) -> Option<f64> {
        self.rows
            .iter()
            .filter_map(|r| r.ratio)
            .min_by(|a, b| a.total_cmp(b))
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.header {
            writeln!(f, "{line}")?;
        }
        if !self.header.is_empty() {
            writeln!(f)?;
        }
        let both = self.servers.contains(&ServerKind::Tandem)
            && self.servers.contains(&ServerKind::Ganesha);
        let mut head: Vec<String> = vec!["workload".into(), "unit".into()];
        head.extend(self.servers.iter().map(|s| s.name().to_string()));
        if both {
            head.push("Tandem/Ganesha".into());
        }
        let mut cells: Vec<Vec<String>> = vec![head];
        for r in &self.rows {
            let mut line = vec![r.workload.clone(), r.unit.to_string()];
            for s in &self.servers {
                line.push(r.value(*s).map(fmt_rate).unwrap_or_else(|| "-".into()));
            }
            if both {
                line.push(
                    r.ratio
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            cells.push(line);
        }
        writeln!(f, "{}", plain_table(cells, |c| c < 2))?;
        if self
            .rows
            .iter()
            .any(|r| r.samples.iter().any(|(_, v)| v.len() > 1))
        {
            writeln!(f)?;
            writeln!(f, "samples, in the order taken:")?;
            for r in &self.rows {
                let per_server: Vec<String> = r
                    .samples
                    .iter()
                    .map(|(k, v)| {
                        let v: Vec<String> = v.iter().map(|x| fmt_rate(*x)).collect();
                        format!("{k} {}", v.join(" "))
                    })
                    .collect();
                writeln!(f, "  {}: {}", r.workload, per_server.join("; "))?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for line in &self.notes {
                writeln!(f, "{line}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f)?;
            for line in &self.failures {
                writeln!(f, "FAILED: {line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_ratio_column_when_both_ran() {
        let report = BenchReport {
            header: vec!["h".into()],
            servers: vec![ServerKind::Tandem, ServerKind::Ganesha],
            rows: vec![ReportRow {
                workload: "sequential write".into(),
                unit: "MiB/s",
                values: vec![(ServerKind::Tandem, 300.0), (ServerKind::Ganesha, 200.0)],
                ratio: Some(1.5),
                samples: vec![],
            }],
            notes: vec![],
            failures: vec![],
        };
        let text = report.to_string();
        assert!(text.contains("Tandem/Ganesha"), "{text}");
        assert!(text.contains("1.50"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let heading = lines.iter().position(|l| l.starts_with("workload"));
        let rule = heading.and_then(|i| lines.get(i + 1));
        assert!(
            rule.is_some_and(
                |r| r.chars().all(|c| c == '-') && Some(r.len()) == heading.map(|i| lines[i].len())
            ),
            "the heading is ruled off to its width: {text}"
        );
        assert_eq!(report.min_ratio(), Some(1.5));
    }

    #[test]
    fn one_server_has_no_ratio() {
        let report = BenchReport {
            header: vec![],
            servers: vec![ServerKind::Ganesha],
            rows: vec![ReportRow {
                workload: "x".into(),
                unit: "ops/s",
                values: vec![(ServerKind::Ganesha, 12.345)],
                ratio: None,
                samples: vec![],
            }],
            notes: vec![],
            failures: vec![],
        };
        let text = report.to_string();
        assert!(!text.contains("Tandem/Ganesha"), "{text}");
        assert!(text.contains("12.3"), "{text}");
    }
}
