//! `medledger devnet`: a local consortium of validators, each a separate `medledger node` process
//! with its own home, keys, data directory and ports.
//!
//! The first run creates the network under `--dir`: one organisation per validator (root key in
//! `keys/`), a shared genesis, and a home per node. Later runs reuse it, so the chain survives a
//! restart. Ctrl-C stops every node with SIGINT and waits for it to exit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use medledger_crypto::SecretKey;
use medledger_types::{Genesis, Organisation, Validator};

use crate::home::{self, Config, ConsensusSection, FollowSection};

/// What `devnet` should run.
#[derive(Debug, Clone)]
pub struct DevnetPlan {
    pub dir: PathBuf,
    pub validators: usize,
    /// Nodes whose keys are not in the genesis validator set; they are numbered after the
    /// validators.
    pub spares: usize,
    /// Written into every node's `[consensus]` section.
    pub idle_block_interval_ms: u64,
    /// Full nodes, numbered after the spares: each follows the validators and never votes; the
    /// devnet enrols each key with role `node` (organisation `i % validators`) when it runs.
    pub full_nodes: usize,
    /// Node `i` serves its API on `api_port + i` and consensus on `p2p_port + i`.
    pub api_port: u16,
    pub p2p_port: u16,
    pub genesis_time_ms: u64,
}

/// The home of node `index` (from 0).
pub fn node_home(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node{index}"))
}

/// Writes a node's home: its key (mode 0600), the genesis and the configuration.
fn write_home(home: &Path, key: &SecretKey, genesis_json: &str, config: &Config) -> Result<()> {
    fs::create_dir_all(home.join("keys"))
        .with_context(|| format!("creating {}", home.display()))?;
    home::write_key(&home.join("keys/validator.key"), key)?;
    fs::write(home.join("genesis.json"), genesis_json)?;
    fs::write(home.join("config.toml"), toml::to_string_pretty(config)?)?;
    Ok(())
}

/// The configuration of node `index`: a validator (`consensus`) or a full node (`follow`).
fn node_config(
    plan: &DevnetPlan,
    index: usize,
    consensus: Option<ConsensusSection>,
    follow: Option<FollowSection>,
) -> Config {
    Config {
        listen: format!("127.0.0.1:{}", plan.api_port + index as u16),
        data_dir: "data".into(),
        genesis: "genesis.json".into(),
        validator_key: "keys/validator.key".into(),
        mempool_txs_max: home::default_mempool(),
        block_txs_max: home::default_block_txs(),
        log_format: home::default_log_format(),
        monitor_window_ms: home::default_monitor_window_ms(),
        portal_origin: None,
        consensus,
        follow,
    }
}

/// Creates the network's files unless they exist. Returns lines to print.
pub fn create(
    plan: &DevnetPlan,
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<Vec<String>> {
    if plan.dir.join("genesis.json").exists() {
        return Ok(vec![format!("using the devnet in {}", plan.dir.display())]);
    }
    if !(1..=16).contains(&plan.validators) {
        bail!("--validators must be between 1 and 16");
    }
    if plan.spares > 16 || plan.full_nodes > 16 {
        bail!("--spares and --full-nodes must each be at most 16");
    }
    fs::create_dir_all(plan.dir.join("keys"))
        .with_context(|| format!("creating {}", plan.dir.display()))?;
    let mut notes = Vec::new();
    let mut organisations = Vec::new();
    let mut validators = Vec::new();
    let mut validator_keys = Vec::new();
    for index in 0..plan.validators {
        let id = format!("org{index}");
        let root = SecretKey::generate(&mut *rng);
        let key_path = plan.dir.join(format!("keys/{id}.key"));
        home::write_key(&key_path, &root)?;
        notes.push(format!(
            "organisation {id}: root key {} in {}",
            root.public_key(),
            key_path.display()
        ));
        organisations.push(Organisation {
            id: id.clone(),
            name: format!("Devnet Organisation {index}"),
            root_key: root.public_key(),
            gs1_prefixes: Vec::new(),
        });
        let validator = SecretKey::generate(&mut *rng);
        validators.push(Validator {
            key: validator.public_key(),
            power: 1,
            org: id,
        });
        validator_keys.push(validator);
    }
    let mut node_keys = validator_keys.clone();
    for index in 0..plan.spares {
        let key = SecretKey::generate(&mut *rng);
        notes.push(format!(
            "spare node {}: key {} (not a validator until governance adds it)",
            plan.validators + index,
            key.public_key()
        ));
        node_keys.push(key);
    }
    let genesis = Genesis {
        chain_id: "medledger-devnet".into(),
        genesis_time_ms: plan.genesis_time_ms,
        organisations,
        validators,
    };
    medledger_ledger::check_genesis(&genesis).context("devnet genesis")?;
    let genesis_json = serde_json::to_string_pretty(&genesis)?;
    let peers: Vec<String> = node_keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            format!(
                "{}@127.0.0.1:{}",
                key.public_key(),
                plan.p2p_port + index as u16
            )
        })
        .collect();
    for (index, key) in node_keys.iter().enumerate() {
        let config = node_config(
            plan,
            index,
            Some(ConsensusSection {
                listen: format!("127.0.0.1:{}", plan.p2p_port + index as u16),
                peers: peers.clone(),
                empty_block_wait_ms: 500,
                idle_block_interval_ms: plan.idle_block_interval_ms,
            }),
            None,
        );
        write_home(&node_home(&plan.dir, index), key, &genesis_json, &config)?;
    }
    let sources: Vec<String> = (0..plan.validators)
        .map(|index| format!("http://127.0.0.1:{}", plan.api_port + index as u16))
        .collect();
    for ordinal in 0..plan.full_nodes {
        let index = node_keys.len() + ordinal;
        let key = SecretKey::generate(&mut *rng);
        let config = node_config(
            plan,
            index,
            None,
            Some(FollowSection {
                sources: sources.clone(),
            }),
        );
        write_home(&node_home(&plan.dir, index), &key, &genesis_json, &config)?;
        notes.push(format!(
            "full node {index}: key {} (org{} enrols it with role node), following the validators",
            key.public_key(),
            ordinal % plan.validators
        ));
    }
    fs::write(plan.dir.join("genesis.json"), &genesis_json)?;
    notes.push(format!(
        "chain {} with genesis {}",
        genesis.chain_id,
        genesis.hash()
    ));
    Ok(notes)
}

/// Starts every node of the devnet in `dir` and waits for Ctrl-C, then stops them.
pub fn run(dir: &Path) -> Result<()> {
    let homes: Vec<PathBuf> = (0..)
        .map(|index| node_home(dir, index))
        .take_while(|home| home.join("config.toml").exists())
        .collect();
    if homes.is_empty() {
        bail!("{} holds no devnet nodes", dir.display());
    }
    let exe = std::env::current_exe().context("finding the medledger binary")?;
    let mut children: Vec<(PathBuf, Child)> = Vec::new();
    for home in &homes {
        let log = fs::File::create(home.join("node.log"))
            .with_context(|| format!("creating {}", home.join("node.log").display()))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--home")
            .arg(home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the node in {}", home.display()))?;
        children.push((home.clone(), child));
    }
    for (home, _) in &children {
        let config = Config::load(home)?;
        let kind = if config.follow.is_some() {
            "full node"
        } else {
            "node"
        };
        println!(
            "{kind} {}: API http://{}, portal {}/portal  (log {})",
            home.display(),
            config.listen,
            config.portal_origin(&config.listen),
            home.join("node.log").display()
        );
    }
    println!(
        "organisation root keys are in {}",
        dir.join("keys").display()
    );
    println!("press Ctrl-C to stop the network");
    // Full nodes are served only once their keys are enrolled with role node; they retry until
    // then.
    let enrolling = dir.to_path_buf();
    let full_nodes = homes.clone();
    std::thread::spawn(move || {
        if let Err(error) = enrol_full_nodes(&enrolling, &full_nodes) {
            eprintln!("enrolling the full nodes failed: {error:#}");
        }
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let exited = runtime.block_on(async {
        // SIGTERM (as from `timeout` or a service manager) stops the network as Ctrl-C does, so
        // no node is left running without its parent.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let terminated = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return None,
                _ = terminated => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            for (home, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(format!("node {} exited with {status}", home.display()));
                }
            }
        }
    });
    stop_all(&mut children);
    if let Some(reason) = exited {
        bail!("{reason}; see its node.log. The other nodes were stopped.");
    }
    println!("devnet stopped");
    Ok(())
}

/// Enrols every full node's key with role `node`, by organisation `i % validators` for the
/// `i`-th full node, unless it already acts on the chain.
fn enrol_full_nodes(dir: &Path, homes: &[PathBuf]) -> Result<()> {
    let mut validators = Vec::new();
    let mut full_nodes = Vec::new();
    for home in homes {
        let config = Config::load(home)?;
        if config.follow.is_some() {
            full_nodes.push(home::read_key(&home.join(&config.validator_key))?.public_key());
        } else if config.consensus.is_some() {
            validators.push(config.listen);
        }
    }
    let (Some(listen), false) = (validators.first(), full_nodes.is_empty()) else {
        return Ok(());
    };
    // Organisations (one per genesis validator) enrol the full nodes in turn; spares are no
    // organisation's.
    let organisations = home::read_genesis(&dir.join("genesis.json"))?
        .organisations
        .len()
        .max(1);
    let client = crate::client::Client::new(&format!("http://{listen}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while client.get_raw("/v1/status").map(|(status, _)| status).ok() != Some(200) {
        if std::time::Instant::now() > deadline {
            bail!("validator 0 did not answer within two minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (ordinal, key) in full_nodes.iter().enumerate() {
        let account = client.get(&format!("/v1/accounts/{key}"))?;
        if !account["authority"].is_null() {
            continue;
        }
        let org = ordinal % organisations;
        let root = home::read_key(&dir.join(format!("keys/org{org}.key")))?;
        let id = client.submit(
            &root,
            medledger_ledger::CoreOp::Enrol {
                member: *key,
                role: medledger_types::Role::Node,
            },
        )?;
        client.wait(&id, Duration::from_secs(60))?;
        println!("full node key {key} enrolled with role node by org{org}");
    }
    Ok(())
}

/// Sends SIGINT to each node, so it finishes its block in progress, and waits for all of them.
pub fn stop_all(children: &mut [(PathBuf, Child)]) {
    for (_, child) in children.iter() {
        // `std` can only send SIGKILL; `kill -INT` asks for the clean stop.
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status();
    }
    for (home, child) in children.iter_mut() {
        match child.wait() {
            Ok(status) => tracing::debug!(home = %home.display(), %status, "node stopped"),
            Err(error) => eprintln!("waiting for {}: {error}", home.display()),
        }
    }
}
