//! Every setting has two names, a flag and an environment variable; an operator may have used
//! either. Errors name both, read from clap's own command tree so they can never drift from the
//! definitions.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use roster_platform::config::{ConfigError, EXIT_BAD_CONFIG};

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
}
