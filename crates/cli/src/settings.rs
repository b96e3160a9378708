//! Every setting has two names, a flag and an environment variable; an operator may have used
//! either. Errors name both, read from clap's own command tree so they can never drift from the
//! definitions.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use roster_platform::config::{ConfigError, EXIT_BAD_CONFIG, EXIT_UNAVAILABLE};

/// Every argument of `command` and its subcommands.
pub fn all_args(command: &clap::Command) -> Vec<clap::Arg> {
    let mut args: Vec<clap::Arg> = command.get_arguments().cloned().collect();
    for sub in command.get_subcommands() {
        args.extend(all_args(sub));
    }
    args
}

fn env_of(arg: &clap::Arg) -> Option<String> {
    arg.get_env().map(|env| env.to_string_lossy().into_owned())
}

/// The flag set by environment variable `env`, if a setting has one.
fn flag_for_env(command: &clap::Command, env: &str) -> Option<String> {
    all_args(command)
        .iter()
        .find(|arg| env_of(arg).as_deref() == Some(env))
        .and_then(|arg| arg.get_long())
        .map(|long| format!("--{long}"))
}

/// The environment variable of `--long`, if it has one.
fn env_for_flag(command: &clap::Command, long: &str) -> Option<String> {
    all_args(command).iter().find(|arg| arg.get_long() == Some(long)).and_then(env_of)
}

/// Prints a configuration error naming the variable and its flag, and exits 64.
pub fn exit_config(command: &clap::Command, error: &ConfigError) -> ! {
    exit_naming(command, "configuration error", error, EXIT_BAD_CONFIG)
}

/// Prints that a dependency the setting `error.key` points at is down (the database), naming
/// the variable, its flag and the cause, and exits 69.
pub fn exit_unavailable(command: &clap::Command, error: &ConfigError) -> ! {
    exit_naming(command, "unavailable", error, EXIT_UNAVAILABLE)
}

/// One line on stderr, `<what>: <VARIABLE> (--flag): <message>`, then the exit.
fn exit_naming(command: &clap::Command, what: &str, error: &ConfigError, code: i32) -> ! {
    match flag_for_env(command, error.key) {
        Some(flag) => eprintln!("roster: {what}: {} ({flag}): {}", error.key, error.message),
        None => eprintln!("roster: {what}: {}: {}", error.key, error.message),
    }
    std::process::exit(code)
}

/// Prints clap's refusal of a value, adding the environment variable that sets the same thing
/// (the value may well have come from there), and exits 64.
pub fn exit_parse_error(command: &clap::Command, error: &clap::Error) -> ! {
    let _ = error.print();
    if matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation)
        && let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg)
        && let Some(long) = arg.split_whitespace().next().and_then(|flag| flag.strip_prefix("--"))
        && let Some(env) = env_for_flag(command, long)
    {
        let origin = match std::env::var(&env) {
            Ok(value) => format!("; {env} is set to {value:?}"),
            Err(_) => String::new(),
        };
        eprintln!("configuration error: {env} (--{long}) has an invalid value{origin}");
    }
    std::process::exit(EXIT_BAD_CONFIG)
}

/// The `ROSTER_*` variables among `set` that neither the command at `path` (subcommand names
/// under `root`) nor any of the commands at `alike` reads: none of their settings, nor their
/// parents', names them. A variable meant for another command (`ROSTER_JWT_AUDIENCE` under
/// `roster up`, which makes its own keys) or misspelt would otherwise be ignored without a
/// word. The test harness's `ROSTER_TEST_*` are not settings.
pub fn unread_variables(
    root: &clap::Command,
    path: &[String],
    alike: &[&[&str]],
    set: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut command = root.clone();
    command.build();
    let mut read: Vec<String> = command.get_arguments().filter_map(env_of).collect();
    let paths = std::iter::once(path.iter().map(String::as_str).collect::<Vec<_>>())
        .chain(alike.iter().map(|path| path.to_vec()));
    for path in paths {
        let mut here = &command;
        for name in path {
            let Some(sub) = here.find_subcommand(name) else { break };
            read.extend(sub.get_arguments().filter_map(env_of));
            here = sub;
        }
    }
    let mut unread: Vec<String> = set
        .into_iter()
        .filter(|name| name.starts_with("ROSTER_") && !name.starts_with("ROSTER_TEST_"))
        .filter(|name| !read.contains(name))
        .collect();
    unread.sort();
    unread
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    use super::*;

    #[test]
    fn flags_and_variables_map_both_ways_through_subcommands() {
        let command = Command::new("roster")
            .arg(Arg::new("jwks").long("jwks").env("ROSTER_JWKS"))
            .subcommand(
                Command::new("serve").arg(Arg::new("listen").long("identity-listen").env("ROSTER_IDENTITY_LISTEN")),
            )
            .subcommand(Command::new("up").arg(Arg::new("demo").long("demo")));
        assert_eq!(flag_for_env(&command, "ROSTER_IDENTITY_LISTEN").as_deref(), Some("--identity-listen"));
        assert_eq!(flag_for_env(&command, "ROSTER_JWKS").as_deref(), Some("--jwks"));
        assert_eq!(env_for_flag(&command, "identity-listen").as_deref(), Some("ROSTER_IDENTITY_LISTEN"));
        assert_eq!(env_for_flag(&command, "demo"), None);
        assert_eq!(flag_for_env(&command, "ROSTER_NOTHING"), None);
    }

    #[test]
    fn variables_another_command_reads_are_reported_unread() {
        let command = Command::new("roster")
            .arg(Arg::new("data").long("data-dir").env("ROSTER_DATA_DIR").global(true))
            .subcommand(Command::new("serve").arg(Arg::new("aud").long("jwt-audience").env("ROSTER_JWT_AUDIENCE")))
            .subcommand(Command::new("up"));
        let set = ["ROSTER_DATA_DIR", "ROSTER_JWT_AUDIENCE", "ROSTER_TEST_PYTHON", "HOME"].map(String::from);
        assert_eq!(unread_variables(&command, &["up".to_owned()], &[], set.clone()), ["ROSTER_JWT_AUDIENCE"]);
        assert!(unread_variables(&command, &["serve".to_owned()], &[], set.clone()).is_empty());
        assert!(unread_variables(&command, &["up".to_owned()], &[&["serve"]], set).is_empty(), "read alike");
    }
}
