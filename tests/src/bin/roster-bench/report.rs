//! The table `roster-bench` prints: each of Roster's figures beside its baseline and goal.

use std::time::Duration;

use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::measure::Figures;

/// What a row must show.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Roster's calls per second over the baseline's, at least this.
    Ratio(f64),
    /// The 99th-percentile latency, at most this.
    P99(Duration),
}

/// One comparison: Roster's figures, the baseline's rate, and the goal.
pub struct Row {
    name: &'static str,
    roster: Figures,
    baseline: Option<(&'static str, f64)>,
    goal: Option<Goal>,
    /// For sagas: steps per saga, and commits per saga where they could be counted.
    saga: Option<(usize, Option<f64>)>,
}

impl Row {
    pub fn new(name: &'static str, roster: Figures) -> Self {
        Self { name, roster, baseline: None, goal: None, saga: None }
    }

    pub fn against(self, baseline: &'static str, rate: f64, goal: Option<Goal>) -> Self {
        self.against_some(baseline, Some(rate), goal)
    }

    /// A baseline that may not have run (no PostgreSQL): then the row shows none.
    pub fn against_some(mut self, baseline: &'static str, rate: Option<f64>, goal: Option<Goal>) -> Self {
        self.baseline = rate.map(|rate| (baseline, rate));
        self.goal = goal.filter(|_| rate.is_some());
        self
    }

    pub fn with_goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    pub fn sagas(mut self, steps: usize, commits_per_saga: Option<f64>) -> Self {
        self.saga = Some((steps, commits_per_saga));
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|(_, rate)| *rate > 0.0).map(|(_, rate)| self.roster.rps / rate)
    }

    fn verdict(&self) -> &'static str {
        match self.goal {
            Some(Goal::Ratio(goal)) => match self.ratio() {
                Some(ratio) if ratio >= goal => "met",
                Some(_) => "NOT met",
                None => "-",
            },
            Some(Goal::P99(most)) if self.roster.p99 <= most => "met",
            Some(Goal::P99(_)) => "NOT met",
            None => "-",
        }
    }
}

pub fn print(rows: &[Row]) {
    // The same table renderer as `roster ops list`, with right-aligned figures.
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(["call", "calls/s", "p50", "p99", "CPU/call", "baseline", "base/s", "ratio", "goal", ""]);
    for row in rows {
        let (base_name, base_rate) = row
            .baseline
            .map_or(("-".to_owned(), "-".to_owned()), |(name, rate)| (name.to_owned(), format!("{rate:.0}")));
        let goal = match row.goal {
            Some(Goal::Ratio(goal)) => format!(">={goal:.2}"),
            Some(Goal::P99(most)) => format!("p99<={}ms", most.as_millis()),
            None => "-".to_owned(),
        };
        table.add_row([
            row.name.to_owned(),
            format!("{:.0}", row.roster.rps),
            format!("{:.2?}", row.roster.p50),
            format!("{:.2?}", row.roster.p99),
            format!("{:.0}us", row.roster.cpu_us_per_call),
            base_name,
            base_rate,
            row.ratio().map_or("-".to_owned(), |ratio| format!("{ratio:.2}")),
            goal,
            row.verdict().to_owned(),
        ]);
    }
    for figure in [1, 2, 3, 4, 6, 7] {
        if let Some(column) = table.column_mut(figure) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("\n{table}");
    for row in rows.iter().filter(|row| row.roster.errors > 0) {
        println!(
            "  {}: {} of {} calls failed: {}",
            row.name, row.roster.errors, row.roster.calls, row.roster.first_error
        );
    }
    let sagas: Vec<&Row> = rows.iter().filter(|row| row.saga.is_some()).collect();
    if sagas.is_empty() {
        return;
    }
    println!("\ncommits per saga (transactions that wrote, both services and the outbox; goal: steps + 2)");
    for row in sagas {
        let Some((steps, commits)) = row.saga else { continue };
        let (measured, verdict) = match commits {
            Some(c) if c <= (steps + 2) as f64 + 0.05 => (format!("{c:.2}"), "met"),
            Some(c) => (format!("{c:.2}"), "NOT met"),
            None => ("- (counted on PostgreSQL only)".to_owned(), "-"),
        };
        println!("  {:<36} {steps} steps: {measured} commits, goal <= {}  {verdict}", row.name, steps + 2);
    }
}
