//! The bulk CSV reader (SPEC R25) on any bytes: it never panics, rows come in increasing line
//! order after the header, every row problem says why, and a file refused for a place in it
//! names the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_identity::domain::bulk::{BulkAction, FileProblem, read_csv};

fuzz_target!(|data: &[u8]| {
    for action in [BulkAction::Deactivate, BulkAction::Unlink] {
        match read_csv(action, data) {
            Ok(input) => {
                let mut last = 1;
                for row in &input.rows {
                    assert!(row.line > last, "line {} after {last}", row.line);
                    last = row.line;
                    if let Err(problem) = &row.entry {
                        assert!(!problem.reason.is_empty(), "a row problem without a reason");
                    }
                }
            }
            Err(FileProblem::Unreadable { line, .. }) => assert!(line >= 1, "an unreadable file without a line"),
            Err(_) => {}
        }
    }
});
