//! Standard output for every command. A reader that goes away (`roster migrate | head -1`)
//! ends the command quietly, as `cat` and `ls` end, instead of the panic `println!` gives on a
//! closed pipe; any other write error is said once and exits 74 (sysexits `EX_IOERR`).

use std::fmt;
use std::io::{ErrorKind, Write};

/// `println!` for command output: see the module doc.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout and flushes it, so a pipe reader sees each line as it comes.
pub fn line(text: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(text).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("roster: cannot write to standard output: {error}");
            std::process::exit(74)
        }
    }
}
