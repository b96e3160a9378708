//! How `roster ops` and `roster bulk` print operations (and `roster events` its events as JSON): tables for people, proto3 JSON for scripts (built from
//! the API's own descriptors, so field names and enum names are the ones grpcurl shows), and
//! live progress while one runs: a bar on a terminal, a line per change otherwise.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use roster_proto::operations::v1 as ops;
use serde_json::Value;

use super::{Failure, runtime};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("the API's descriptors are built in")
    })
}

/// The operation in the canonical proto3 JSON mapping.
pub fn json(operation: &ops::Operation) -> Result<Value, Failure> {
    message_json(operation, "roster.operations.v1.Operation")
}

/// Any API message (`name` is its full proto name) in the canonical proto3 JSON mapping.
pub fn message_json(message: &impl Message, name: &str) -> Result<Value, Failure> {
    let descriptor =
        pool().get_message_by_name(name).ok_or_else(|| runtime(format!("the {name} descriptor is missing")))?;
    let message = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(runtime)?;
    let mut value = serde_json::to_value(&message).map_err(runtime)?;
    whole_numbers(&mut value);
    Ok(value)
}

/// A `google.protobuf.Struct` carries every number as a double, so a result's counts would
/// print as `1.0`; whole numbers that a double holds exactly print as integers.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0) {
                // Exact: the guard keeps the value within the range a double holds exactly.
                #[allow(clippy::cast_possible_truncation)]
                let whole = float as i64;
                *number = whole.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// A table as text, without the padding that would follow each row's last cell.
fn trimmed(table: &Table) -> String {
    table.lines().map(|line| line.trim_end().to_owned()).collect::<Vec<_>>().join("\n")
}

/// The state as the API names it, without the enum prefix: `RUNNING`, `FAILED`, ...
pub fn state_name(state: i32) -> &'static str {
    ops::OperationState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("OPERATION_STATE_"))
        .unwrap_or("UNKNOWN")
}

fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        _ => String::new(),
    }
}

/// "2/4 reclaim_licenses", and the retry in progress if there is one; for a bulk operation,
/// its rows: "rows 12/40: 10 succeeded, 2 failed, 0 skipped".
pub fn progress(operation: &ops::Operation) -> String {
    let Some(p) = &operation.progress else { return String::new() };
    if let Some(rows) = &p.rows {
        return format!(
            "rows {}/{}: {} succeeded, {} failed, {} skipped",
            rows.done, rows.total, rows.succeeded, rows.failed, rows.skipped
        );
    }
    let mut text = format!("{}/{} {}", p.steps_done, p.steps_total, p.current_step);
    if p.attempt > 0 && !operation.done {
        text.push_str(&format!(" (attempt {}: {})", p.attempt + 1, p.last_error));
    }
    text
}

fn table() -> Table {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    table
}

pub fn list(operations: &[ops::Operation], as_json: bool) -> Result<(), Failure> {
    if as_json {
        let all = operations.iter().map(json).collect::<Result<Vec<_>, _>>()?;
        out!("{}", serde_json::to_string_pretty(&all).map_err(runtime)?);
        return Ok(());
    }
    if operations.is_empty() {
        out!("No operations.");
        return Ok(());
    }
    let mut table = table();
    table.set_header(["ID", "KIND", "STATE", "PROGRESS", "STARTED BY", "UPDATED"]);
    for operation in operations {
        table.add_row([
            operation.id.clone(),
            operation.kind.clone(),
            state_name(operation.state).to_owned(),
            progress(operation),
            operation.started_by.clone(),
            time(operation.updated_at_ms),
        ]);
    }
    out!("{}", trimmed(&table));
    Ok(())
}

/// One operation, every field that is set.
pub fn show(operation: &ops::Operation, as_json: bool) -> Result<(), Failure> {
    if as_json {
        out!("{}", serde_json::to_string_pretty(&json(operation)?).map_err(runtime)?);
        return Ok(());
    }
    let mut rows = vec![
        ("id", operation.id.clone()),
        ("kind", operation.kind.clone()),
        ("account", operation.account_id.clone()),
        ("subject", operation.subject.clone()),
        ("started by", operation.started_by.clone()),
        ("state", state_name(operation.state).to_owned()),
        ("progress", progress(operation)),
    ];
    if let Some(p) = operation.progress.as_ref().filter(|p| !operation.done && p.next_attempt_at_ms > 0) {
        rows.push(("next attempt", time(p.next_attempt_at_ms)));
    }
    if !operation.cancel_requested_by.is_empty() {
        rows.push(("cancel asked by", operation.cancel_requested_by.clone()));
    }
    if let Some(error) = &operation.error {
        let code = if error.code.is_empty() { String::new() } else { format!(" ({})", error.code) };
        rows.push(("error", format!("{}{code}: {}", error.reason, error.message)));
    }
    if let Some(resolution) = &operation.resolution {
        rows.push((
            "resolved",
            format!("by {} at {}: {}", resolution.resolved_by, time(resolution.resolved_at_ms), resolution.note),
        ));
    }
    if operation.result.is_some() {
        rows.push(("result", json(operation)?["result"].to_string()));
    }
    rows.push(("created", time(operation.created_at_ms)));
    rows.push(("updated", time(operation.updated_at_ms)));
    if operation.finished_at_ms > 0 {
        rows.push(("finished", time(operation.finished_at_ms)));
    }
    // Name and value per line: a long value (a result) runs on rather than widening every row.
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        out!("{name:<width$}  {value}");
    }
    Ok(())
}

/// A dry run's progress in its own words: rows checked, and how many would go ahead or be
/// refused (its operation "succeeds" whatever the rows would do, so its state says little).
fn dry_run_progress(operation: &ops::Operation) -> String {
    match operation.progress.as_ref().and_then(|p| p.rows) {
        Some(rows) => format!(
            "dry run: checked {}/{}: {} would go ahead, {} would be refused",
            rows.done,
            rows.total,
            rows.succeeded,
            rows.failed + rows.skipped
        ),
        None => format!("dry run: {}", state_name(operation.state)),
    }
}

/// How a line of progress reads: the state and progress, or a dry run's own words.
fn progress_line(operation: &ops::Operation, dry_run: bool) -> String {
    if dry_run {
        dry_run_progress(operation)
    } else {
        format!("{} {}", state_name(operation.state), progress(operation))
    }
}

/// Progress while watching.
pub struct Live {
    shown: Shown,
    dry_run: bool,
}

enum Shown {
    /// One JSON object per line, for scripts.
    Json,
    /// A bar on the terminal (stderr), so stdout keeps only the final table.
    Bar(ProgressBar),
    /// A line per change, for logs and pipes.
    Lines,
}

impl Live {
    /// `dry_run` words the progress of a dry run (`validate_only`) as what would happen.
    pub fn new(as_json: bool, terminal: bool, dry_run: bool) -> Self {
        Self { shown: Shown::new(as_json, terminal), dry_run }
    }

    pub fn update(&mut self, operation: &ops::Operation) -> Result<(), Failure> {
        let p = operation.progress.clone().unwrap_or_default();
        match &self.shown {
            Shown::Json => out!("{}", json(operation)?),
            Shown::Bar(bar) => {
                let (done, total) = p.rows.map_or((p.steps_done, p.steps_total), |rows| (rows.done, rows.total));
                if total > 0 {
                    bar.set_length(u64::from(total));
                    bar.set_position(u64::from(done));
                }
                bar.set_message(progress_line(operation, self.dry_run));
            }
            Shown::Lines => out!("{}", progress_line(operation, self.dry_run)),
        }
        Ok(())
    }

    pub fn finish(self) {
        if let Shown::Bar(bar) = self.shown {
            bar.finish_and_clear();
        }
    }
}

impl Shown {
    fn new(as_json: bool, terminal: bool) -> Self {
        if as_json {
            return Self::Json;
        }
        if !terminal {
            return Self::Lines;
        }
        // No length until the first update says how many there are: a bar of 0/0 draws full.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }
}

#[cfg(test)]
mod tests {
    use roster_proto::operations::v1 as ops;
    use serde_json::json;

    use super::{Live, whole_numbers};

    #[test]
    fn the_bar_has_no_length_until_the_operation_says_how_much_there_is() {
        let mut live = Live::new(false, true, false);
        let with_rows = |total: u32, done: u32| ops::Operation {
            progress: Some(ops::Progress {
                rows: Some(ops::RowCounts { total, done, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let length = |live: &Live| match &live.shown {
            super::Shown::Bar(bar) => bar.length(),
            _ => panic!("a terminal gets a bar"),
        };
        assert_eq!(length(&live), None, "not 0/0, which draws a full bar");
        live.update(&with_rows(0, 0)).expect("update");
        assert_eq!(length(&live), None);
        live.update(&with_rows(40, 12)).expect("update");
        assert_eq!(length(&live), Some(40));
        live.finish();
    }

    #[test]
    fn counts_print_as_integers_and_fractions_stay() {
        let mut value = json!({"moved": {"meetings": 1.0, "recordings": 0.0}, "ratio": 0.5, "list": [2.0, "x"]});
        whole_numbers(&mut value);
        assert_eq!(value.to_string(), r#"{"list":[2,"x"],"moved":{"meetings":1,"recordings":0},"ratio":0.5}"#);
    }
}
