//! The command line: subcommands, `-c/--config` files, and one flag per configuration key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ordo-server",
    version,
    about = "The Ordo rule engine server: stores rulesets durably and executes them over HTTP.",
    after_help = "Every key can also be set in a config file (-c) or an ORDO_* variable; see docs/configuration.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file (YAML, JSON or TOML by extension). Repeat for several; later ones win.
    #[arg(short = 'c', long = "config", global = true)]
    pub config_files: Vec<PathBuf>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage the database schema (the commit log's tables) as a one-off process.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Import the rules directory into the embedded SQLite commit log as a one-off
    /// process, then exit (a writer's start does the same; it runs this command for a
    /// large import so that the server's own memory stays small).
    Import,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration to the database of `database_url`.
    Up,
    /// List the migrations and whether each is applied; exit code 1 if any is pending.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the configuration's JSON Schema.
    Schema,
    /// Check the configuration (files, environment, flags) without starting.
    Validate,
    /// Print the effective configuration (tokens hidden).
    Show,
    /// Print the reference table of docs/configuration.md.
    Docs,
}

/// One flag per key: `--<key with dashes>` (a nested key keeps its dots, as in
/// `--rate-limit.default-rps`), generated from the configuration's schema so that no key
/// lacks one. Values are kept as text and converted by the same rule as environment
/// variables, so that every bad value of every source is reported together. Unset flags
/// leave lower sources alone.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    given: Vec<(String, String)>,
}

impl Flags {
    /// The flags given, as `(key, text)`.
    pub fn given(&self) -> impl Iterator<Item = (&str, &str)> {
        self.given.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `key` as if `--<key>=<text>` had been given.
    pub fn set(&mut self, key: &str, text: &str) {
        self.given.retain(|(k, _)| k != key);
        self.given.push((key.to_string(), text.to_string()));
    }
}

/// The hint shown for a key's value in `--help`.
fn value_name(prop: &serde_json::Value) -> String {
    if let Some(values) = super::load::enum_values(prop) {
        return values.join("|");
    }
    let ty = |t: &str| match prop.get("type") {
        Some(serde_json::Value::String(s)) => s == t,
        Some(serde_json::Value::Array(a)) => a.iter().any(|x| x == t),
        _ => false,
    };
    if ty("integer") {
        "N".into()
    } else if ty("array") {
        "A[,B...]".into()
    } else {
        "VALUE".into()
    }
}

impl clap::FromArgMatches for Flags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for (key, _) in super::load::leaves() {
            if let Ok(Some(text)) = matches.try_get_one::<String>(key) {
                self.set(key, text);
            }
        }
        Ok(())
    }
}

impl Args for Flags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for (key, prop) in super::load::leaves() {
            let help = prop
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .split("\n\n")
                .next()
                .unwrap_or_default()
                .replace('\n', " ");
            let long = super::load::flag_name(key)
                .trim_start_matches('-')
                .to_string();
            let mut arg = clap::Arg::new(key.clone())
                .long(long)
                .global(true)
                .help(help)
                .action(clap::ArgAction::Set);
            let is_bool = prop.get("type").and_then(serde_json::Value::as_str) == Some("boolean");
            if is_bool {
                // `--watch-rules` alone means true; `=false` turns it off.
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .value_name("BOOL");
            } else {
                arg = arg.value_name(value_name(prop));
            }
            if key == "port" {
                arg = arg.short('p');
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
