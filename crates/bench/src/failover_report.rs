//! The table of `tandem bench failover`: one row per figure, measured over
//! several runs, with its p50, its maximum and the goal next to it.
//! The rows are built one by one (`FailoverBenchReport::push`), so figures
//! measured elsewhere (switchover time and client-visible pause, resync
//! bytes against divergent bytes) are one more `MeasureRow` each.

use std::fmt;

use crate::replication_report::{write_notes, write_table};

/// One figure over several runs.
#[derive(Debug, Clone, Default)]
pub struct MeasureRow {
    pub name: String,
    /// What the samples count: "ms", "x" (a ratio), "bytes".
    pub unit: String,
    pub samples: Vec<f64>,
    /// The goal, as text, and the largest sample that meets it.
    pub goal: Option<(String, f64)>,
}

impl MeasureRow {
    pub fn new(name: &str, unit: &str) -> MeasureRow {
        MeasureRow {
            name: name.into(),
            unit: unit.into(),
            ..MeasureRow::default()
        }
    }

    /// The goal: every sample at most `max`.
    pub fn with_goal(mut self, text: &str, max: f64) -> MeasureRow {
        self.goal = Some((text.into(), max));
        self
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s: Vec<f64> = self
            .samples
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The nearest-rank median: a measured sample (the lower middle one
    /// of an even count).
    pub fn p50(&self) -> Option<f64> {
        crate::stats::percentile_nearest_rank(&self.sorted(), 50.0)
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// Met (every sample within the goal) or missed, with the worst sample;
    /// `None` without a goal or samples.
    pub fn verdict(&self) -> Option<Result<(), String>> {
        let (_, limit) = self.goal.as_ref()?;
        let worst = self.max()?;
        Some(if worst <= *limit {
            Ok(())
        } else {
            Err(format!("max {} {}", figure(worst), self.unit))
        })
    }
}

fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

#[derive(Debug, Clone, Default)]
pub struct FailoverBenchReport {
    pub header: Vec<String>,
    pub rows: Vec<MeasureRow>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl FailoverBenchReport {
    pub fn push(&mut self, row: MeasureRow) {
        self.rows.push(row);
    }

    pub fn row(&self, prefix: &str) -> Option<&MeasureRow> {
        self.rows.iter().find(|r| r.name.starts_with(prefix))
    }

    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for FailoverBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.header {
            writeln!(f, "{line}")?;
        }
        if !self.header.is_empty() {
            writeln!(f)?;
        }
        let head = ["row", "runs", "p50", "max", "unit", "goal", "result"];
        let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
        let dash = || "-".to_string();
        for r in &self.rows {
            cells.push(vec![
                r.name.clone(),
                r.samples.len().to_string(),
                r.p50().map(figure).unwrap_or_else(dash),
                r.max().map(figure).unwrap_or_else(dash),
                r.unit.clone(),
                r.goal.as_ref().map(|(g, _)| g.clone()).unwrap_or_else(dash),
                match r.verdict() {
                    None => dash(),
                    Some(Ok(())) => "pass".into(),
                    Some(Err(why)) => format!("MISS: {why}"),
                },
            ]);
        }
        write_table(f, &cells, |c| c == 0 || c >= 4)?;
        write_notes(f, &self.notes, &self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p50_max_and_verdicts() {
        let mut report = FailoverBenchReport::default();
        let mut met = MeasureRow::new("failover", "ms").with_goal("< 2000 ms", 2000.0);
        met.samples = vec![300.0, 100.0, 200.0, 1500.0];
        assert_eq!(met.p50(), Some(200.0));
        assert_eq!(met.max(), Some(1500.0));
        assert_eq!(met.verdict(), Some(Ok(())));
        let mut missed = MeasureRow::new("slow", "ms").with_goal("< 1 ms", 1.0);
        missed.samples = vec![0.5, 3.25];
        assert_eq!(missed.verdict(), Some(Err("max 3.250 ms".into())));
        let empty = MeasureRow::new("resync bytes / divergent bytes", "x");
        assert_eq!((empty.p50(), empty.verdict()), (None, None));
        report.push(met);
        report.push(missed);
        report.push(empty);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("| row"), "{text}");
        assert!(lines[1].starts_with("|---"), "{text}");
        assert!(lines[2].contains("pass"), "{text}");
        assert!(lines[3].contains("MISS: max 3.250 ms"), "{text}");
        assert_eq!(
            lines[4].split('|').nth(2).map(str::trim),
            Some("0"),
            "{text}"
        );
        assert!(report.row("resync").is_some());
    }
}
