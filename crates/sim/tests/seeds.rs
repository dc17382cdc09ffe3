//! Runs the simulation over many seeds and checks every run.
//!
//! - `MEDLEDGER_SIM_SEED=<seed>` runs that one seed (the replay of a failure) and prints its run.
//! - `MEDLEDGER_SIM_SEEDS=<count>` runs seeds `MEDLEDGER_SIM_FIRST_SEED` (default 0) onwards.
//! - Otherwise the first [`CI_SEEDS`] seeds run.
//! - `MEDLEDGER_SIM_RESTREAM=own` runs with the adapter's first, broken restream rule instead of
//!   Tendermint's, which the adapter now follows (see `medledger_sim::Restream`).

use std::sync::Mutex;

use medledger_sim::{Report, Restream, Stats, replay_command, run_with};

/// Seeds run by a plain `cargo test`: about 30 s of a debug build on two cores.
const CI_SEEDS: u64 = 48;
/// Seeds that stall under the adapter's first restream rule (found by sweeping 500 seeds with
/// `--restream-own` and the current timeouts; a change of timeouts, or of the genesis encoding,
/// changes every run, so sweep again after one: seed 18 stopped stalling when genesis gained GS1
/// company prefixes, and seeds 0 to 400 were swept again). They run in CI too, as regression
/// tests of the fix.
const REGRESSION_SEEDS: [u64; 3] = [78, 383, 395];

fn restream() -> Restream {
    match std::env::var("MEDLEDGER_SIM_RESTREAM").as_deref() {
        Ok("any") | Err(_) => Restream::AnyLockedBlock,
        Ok("own") => Restream::OwnBlocksOnly,
        Ok(other) => panic!("MEDLEDGER_SIM_RESTREAM={other:?}: expected `own` or `any`"),
    }
}

fn run(seed: u64) -> Result<Report, medledger_sim::SimError> {
    run_with(seed, restream())
}

fn replay(seed: u64) -> String {
    match restream() {
        Restream::AnyLockedBlock => replay_command(seed),
        Restream::OwnBlocksOnly => format!("MEDLEDGER_SIM_RESTREAM=own {}", replay_command(seed)),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(error) => panic!("{name}={text:?} is not a number: {error}"),
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("MEDLEDGER_SIM_SEED") {
        return vec![seed];
    }
    let first = env_u64("MEDLEDGER_SIM_FIRST_SEED").unwrap_or(0);
    match env_u64("MEDLEDGER_SIM_SEEDS") {
        Some(count) => (first..first + count).collect(),
        None => (first..first + CI_SEEDS).chain(REGRESSION_SEEDS).collect(),
    }
}

/// Runs the seeds on every core; returns each seed's report or error text, in seed order.
fn run_all(seeds: &[u64]) -> Vec<(u64, Result<Report, String>)> {
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(seeds.len().max(1));
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    let verbose = std::env::var_os("MEDLEDGER_SIM_SEED").is_some()
        || std::env::var_os("MEDLEDGER_SIM_VERBOSE").is_some();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut next = next.lock().expect("no worker panics holding the lock");
                        let index = *next;
                        *next += 1;
                        index
                    };
                    let Some(&seed) = seeds.get(index) else {
                        return;
                    };
                    let result = run(seed).map_err(|error| error.to_string());
                    if verbose {
                        match &result {
                            Ok(report) => println!("{report}"),
                            Err(error) => println!("seed {seed}: {error}"),
                        }
                    }
                    results
                        .lock()
                        .expect("no worker panics holding the lock")
                        .push((seed, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("workers are done");
    results.sort_by_key(|(seed, _)| *seed);
    results
}

/// Every seed's run keeps agreement and equal state roots, refuses the Byzantine validator's
/// invalid blocks, and progresses once the faults end; a failure names the command replaying it.
#[test]
fn seeds_hold_invariants() {
    let seeds = seeds();
    let results = run_all(&seeds);
    let mut failures = Vec::new();
    let mut total = Stats::default();
    for (seed, result) in &results {
        match result {
            Ok(report) if report.passed() => add(&mut total, &report.stats),
            Ok(report) => failures.push(format!("{report}\n  replay: {}", replay(*seed))),
            Err(error) => failures.push(format!(
                "seed {seed}: the run failed: {error}\n  replay: {}",
                replay(*seed)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    println!("{} seeds passed: {total:?}", seeds.len());
}

fn add(total: &mut Stats, stats: &Stats) {
    for (sum, count) in total.sent.iter_mut().zip(stats.sent) {
        *sum += count;
    }
    for (sum, count) in total.delivered.iter_mut().zip(stats.delivered) {
        *sum += count;
    }
    total.dropped += stats.dropped;
    total.duplicated += stats.duplicated;
    total.crashes += stats.crashes;
    total.wal_entries_replayed += stats.wal_entries_replayed;
    total.synced_values += stats.synced_values;
    total.equivocated_votes += stats.equivocated_votes;
    total.equivocated_proposals += stats.equivocated_proposals;
    total.invalid_proposals += stats.invalid_proposals;
    total.silent_proposals += stats.silent_proposals;
    total.evidence += stats.evidence;
    total.restored_block_decides += stats.restored_block_decides;
    total.txs_committed += stats.txs_committed;
}

/// The same seed gives the same run: equal trace digests, decisions and message counts.
#[test]
fn same_seed_same_run() {
    let seed = env_u64("MEDLEDGER_SIM_SEED").unwrap_or(3);
    let first = run(seed).expect("the run completes");
    let second = run(seed).expect("the run completes");
    assert_eq!(
        first.digest, second.digest,
        "seed {seed} is not deterministic"
    );
    assert_eq!(first.stats, second.stats);
    assert_eq!(first.heads, second.heads);
    let other = run(seed + 1).expect("the run completes");
    assert_ne!(first.digest, other.digest, "the digest ignores the run");
}

/// The first seeds exercise every fault: loss, duplication, partitions, crashes with log replay
/// and catch-up, and each kind of Byzantine misbehaviour, which the honest engines record as
/// evidence. Without this, a simulation whose faults never fire would pass.
#[test]
fn faults_are_exercised() {
    let results = run_all(&(0..8).collect::<Vec<u64>>());
    let mut total = Stats::default();
    let mut partitions = 0;
    for (seed, result) in &results {
        let report = match result {
            Ok(report) => report,
            Err(error) => panic!("seed {seed}: {error}"),
        };
        add(&mut total, &report.stats);
        partitions += report.plan.partitions.len();
        assert!(
            report.stats.txs_committed > 0,
            "seed {seed} committed no transactions"
        );
    }
    assert!(total.dropped > 0 && total.duplicated > 0, "{total:?}");
    assert!(partitions > 0);
    assert!(
        total.crashes > 0 && total.wal_entries_replayed > 0,
        "{total:?}"
    );
    assert!(total.synced_values > 0, "{total:?}");
    assert!(
        total.equivocated_votes > 0 && total.equivocated_proposals > 0,
        "{total:?}"
    );
    assert!(
        total.invalid_proposals > 0 && total.silent_proposals > 0,
        "{total:?}"
    );
    assert!(total.evidence > 0, "{total:?}");
}

/// The simulation can fail: under the adapter's first restream rule, a seed the sweep found
/// stalls, and the checker reports it rather than passing.
#[test]
fn the_old_restream_rule_stalls_a_known_seed() {
    let report = run_with(REGRESSION_SEEDS[0], Restream::OwnBlocksOnly).expect("the run completes");
    assert!(!report.passed(), "{report}");
    let fixed = run_with(REGRESSION_SEEDS[0], Restream::AnyLockedBlock).expect("the run completes");
    assert!(fixed.passed(), "{fixed}");
}
