//! Every setting has two names, a flag and an environment variable; an operator may have used
//! either. Errors name both, read from clap's own command tree so they can never drift from the
//! definitions.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use roster_platform::config::{ConfigError, EXIT_BAD_CONFIG};

/// Every argument of `command` and its subcommands.
fn all_args(command: &clap::Command) -> Vec<clap::Arg> {
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
    match flag_for_env(command, error.key) {
        Some(flag) => eprintln!("configuration error: {} ({flag}): {}", error.key, error.message),
        None => eprintln!("{error}"),
    }
    std::process::exit(EXIT_BAD_CONFIG)
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::commands::Cli;

    #[test]
    fn flags_and_variables_map_both_ways() {
        let command = Cli::command();
        assert_eq!(flag_for_env(&command, "ROSTER_IDENTITY_LISTEN").as_deref(), Some("--identity-listen"));
        assert_eq!(flag_for_env(&command, "ROSTER_JWKS").as_deref(), Some("--jwks"));
        assert_eq!(env_for_flag(&command, "shutdown-grace-ms").as_deref(), Some("ROSTER_SHUTDOWN_GRACE_MS"));
        assert_eq!(env_for_flag(&command, "demo"), None);
    }

    #[test]
    fn every_setting_with_a_variable_has_a_flag_and_help() {
        for arg in all_args(&Cli::command()) {
            if let Some(env) = env_of(&arg) {
                assert!(arg.get_long().is_some(), "{env} has no flag");
                assert!(arg.get_help().is_some(), "--{} ({env}) has no help text", arg.get_long().unwrap_or("?"));
            }
        }
    }
}
