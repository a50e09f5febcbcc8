//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: exactly what `.ci/run` runs: the module-layer check, format check, clippy and
//!   rustdoc with warnings denied, the tests.
//! - `layers [--verbose]`: checks the library crates' modules: no import cycles between them,
//!   no file over 500 lines outside its tests, test modules last.
//! - `dev-agent [args]`: starts consul-dev (default `--http-addr 127.0.0.1:8500`), a local
//!   stand-in for a Consul agent.
//! - `bench [args]`: the benchmarks, which print their figures (`cargo bench --workspace`,
//!   so every `[[bench]]` of every crate: `balance` and `propagation` in `examples`,
//!   `watch_cost` and `fleet` in `consul-api`, `wakeup` in `consul-dev`; `--bench NAME`
//!   runs one). BENCHMARKS.md at the root holds the last results of the discovery ones.

mod layers;

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

/// The test command README.md gives; CI runs this and nothing else for tests.
const TEST: &[&str] = &["test", "--workspace"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "ci" => {
            layers::run(workspace_root()?, &[])?;
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            // Rustdoc warnings (broken intra-doc links among them) fail CI too.
            cargo_with_env(
                &["doc", "--workspace", "--no-deps"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )?;
            cargo(TEST)
        }
        "test" => cargo(TEST),
        "layers" => layers::run(workspace_root()?, &rest),
        "dev-agent" => {
            let mut argv = vec!["run", "--release", "--package", "consul-dev", "--"];
            argv.extend(rest.iter().map(String::as_str));
            cargo(&argv)
        }
        "bench" => {
            let mut argv = vec!["bench", "--workspace"];
            argv.extend(rest.iter().map(String::as_str));
            cargo(&argv)
        }
        "" | "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <ci | test | layers [--verbose] | dev-agent [consul-dev args] | bench [args]>"
            );
            Ok(())
        }
        other => bail!("unknown command {other:?}; try `cargo xtask help`"),
    }
}

/// The workspace's root directory, xtask's parent.
fn workspace_root() -> anyhow::Result<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
