//! Project automation, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`). It has
//! no dependencies, so it builds in a second.
//!
//! - `cargo xtask sim --seeds <count> [--first <seed>] [--release]`: runs the deterministic
//!   simulation (`crates/sim`) over `count` seeds from `first` (default 0), on every core.
//! - `cargo xtask sim --seed <seed> [--release]`: replays one seed and prints its run.
//! - `--flaw <name>` runs either with a deliberately wrong rule injected into the consensus host
//!   (see `medledger_sim::Flaw`), to see what the checkers make of it.

use std::process::{Command, ExitCode};

const USAGE: &str = "usage:
  cargo xtask sim --seeds <count> [--first <seed>] [--release] [--flaw <name>]
  cargo xtask sim --seed <seed> [--release] [--flaw <name>]";

/// What `cargo xtask sim` was asked to run.
#[derive(Debug, PartialEq, Eq)]
struct SimArgs {
    seed: Option<u64>,
    seeds: Option<u64>,
    first: Option<u64>,
    release: bool,
    /// A deliberately wrong host rule, by the name `MEDLEDGER_SIM_FLAW` takes.
    flaw: Option<String>,
}

fn parse_sim(args: &[String]) -> Result<SimArgs, String> {
    let mut parsed = SimArgs {
        seed: None,
        seeds: None,
        first: None,
        release: false,
        flaw: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?;
            value
                .parse()
                .map_err(|error| format!("{name} {value:?}: {error}"))
        };
        match arg.as_str() {
            "--seed" => parsed.seed = Some(number("--seed")?),
            "--seeds" => parsed.seeds = Some(number("--seeds")?),
            "--first" => parsed.first = Some(number("--first")?),
            "--release" => parsed.release = true,
            "--flaw" => parsed.flaw = Some(args.next().ok_or("--flaw needs a name")?.clone()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.seed.is_some() && (parsed.seeds.is_some() || parsed.first.is_some()) {
        return Err("--seed replays one seed; it does not combine with --seeds or --first".into());
    }
    if parsed.seed.is_none() && parsed.seeds.is_none() {
        return Err("name --seed or --seeds".into());
    }
    Ok(parsed)
}

/// The `cargo test` invocation and its environment for a simulation run.
fn sim_command(args: &SimArgs) -> (Vec<String>, Vec<(&'static str, String)>) {
    let mut cargo: Vec<String> = ["test", "-p", "medledger-sim", "--test", "seeds"]
        .map(String::from)
        .to_vec();
    if args.release {
        cargo.push("--release".into());
    }
    cargo.extend(["--", "seeds_hold_invariants", "--nocapture"].map(String::from));
    let mut env = Vec::new();
    if let Some(flaw) = &args.flaw {
        env.push(("MEDLEDGER_SIM_FLAW", flaw.clone()));
    }
    if let Some(seed) = args.seed {
        env.push(("MEDLEDGER_SIM_SEED", seed.to_string()));
    }
    if let Some(seeds) = args.seeds {
        env.push(("MEDLEDGER_SIM_SEEDS", seeds.to_string()));
        env.push((
            "MEDLEDGER_SIM_FIRST_SEED",
            args.first.unwrap_or(0).to_string(),
        ));
        env.push(("MEDLEDGER_SIM_VERBOSE", "1".into()));
    }
    (cargo, env)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.split_first() {
        Some((task, rest)) if task == "sim" => parse_sim(rest),
        _ => Err("unknown task".into()),
    };
    let sim = match parsed {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("xtask: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (cargo_args, env) = sim_command(&sim);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: {cargo} {}", cargo_args.join(" "));
    match Command::new(&cargo).args(&cargo_args).envs(env).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: running {cargo}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    /// `--seeds` sweeps from `--first`, `--seed` replays one seed, `--flaw` names a host flaw, and
    /// bad arguments are refused.
    #[test]
    fn parses_sim_arguments() {
        let sweep = parse_sim(&args("--seeds 1000 --first 5")).expect("valid");
        let (_, env) = sim_command(&sweep);
        assert!(env.contains(&("MEDLEDGER_SIM_SEEDS", "1000".into())));
        assert!(env.contains(&("MEDLEDGER_SIM_FIRST_SEED", "5".into())));
        let one = parse_sim(&args("--seed 42 --release")).expect("valid");
        let (cargo, env) = sim_command(&one);
        assert_eq!(env, vec![("MEDLEDGER_SIM_SEED", "42".into())]);
        assert!(cargo.contains(&"--release".to_string()));
        let flawed = parse_sim(&args("--seed 7 --flaw own-blocks-only")).expect("valid");
        let (_, env) = sim_command(&flawed);
        assert!(env.contains(&("MEDLEDGER_SIM_FLAW", "own-blocks-only".into())));
        for bad in [
            "",
            "--seed 1 --flaw",
            "--seed",
            "--seed x",
            "--seed 1 --seeds 2",
            "--frobnicate",
        ] {
            assert!(parse_sim(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
