//! A real SMTP server for tests: `smtp/sink.py`, Python's aiosmtpd, started as a process of
//! its own on a port the test chooses (so it can be down first and come up later). It writes
//! each message it accepts to a directory, refuses `reject*@` recipients with 550 and puts
//! `busy*@` ones off once with 451.
//!
//! The interpreter is `ROSTER_TEST_PYTHON` or `python3`, and must have aiosmtpd (`.ci/run`
//! installs it). Without it a test is skipped with a notice, unless `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::skipped;

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn python() -> String {
    std::env::var("ROSTER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether the interpreter can run the sink; says why not, or fails under `CI=true`.
pub fn available() -> bool {
    let found = Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "an SMTP server is required when CI=true: {} cannot import aiosmtpd (set ROSTER_TEST_PYTHON)",
            python()
        );
        skipped("an SMTP test (no Python with aiosmtpd; set ROSTER_TEST_PYTHON)");
    }
    found
}

impl SmtpSink {
    /// Starts the server on 127.0.0.1:`port` and waits until it listens.
    pub fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a directory for received mail");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp/sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP sink starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut ready).expect("the sink says ready");
        assert_eq!(ready.trim(), "ready", "the SMTP sink did not start");
        Self { child, port, dir }
    }

    /// Every message received so far, as it came over the wire.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("mail directory")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        paths.sort();
        paths.iter().map(|path| std::fs::read(path).expect("a message")).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
