//! `medledger`: the node binary and the consortium administrator's command-line tool.
// A shell: it reads the wall clock for genesis time, progress and benchmark timing, never for
// ledger decisions.
#![allow(clippy::disallowed_methods)]

mod backup;
mod bench;
mod bench_contracts;
mod bench_files;
mod bench_monitor;
mod bench_records;
mod bench_research;
mod bench_supply;
mod bench_trials;
mod claims;
mod client;
mod contracts;
mod devnet;
mod feed;
mod follow;
mod home;
mod modules;
mod monitor;
mod portal;
mod records;
mod research;
mod supply;
mod tokens;
mod trials;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use medledger_consensus::{EngineSettings, Peer};
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::CoreOp;
use medledger_ledger::light::LightProof;
use medledger_node::{BlockSource, Node, NodeConfig};
use medledger_types::{Genesis, Role, Validator, ValidatorChange};
use serde_json::Value;

use crate::client::Client;
use crate::home::{Config, InitPlan};

#[derive(Parser)]
#[command(
    name = "medledger",
    version,
    about = "A permissioned ledger for healthcare consortia"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new Ed25519 key file (mode 0600) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a node home: keys, genesis.json and config.toml.
    Init {
        #[arg(long)]
        home: PathBuf,
        #[arg(long, default_value = "medledger-local")]
        chain_id: String,
        /// An organisation to found the chain with, as `id` or `id=Display Name`; repeatable.
        /// The first one runs this node's validator. Each gets a fresh root key in keys/.
        #[arg(long = "org", default_value = "dev-org=Development Organisation")]
        orgs: Vec<String>,
        /// A GS1 company prefix an organisation holds, as `id=prefix`; repeatable. GTINs, GLNs
        /// and SSCCs under it can then be registered only by that organisation.
        #[arg(long = "gs1-prefix")]
        gs1_prefixes: Vec<String>,
        /// Join an existing chain with this genesis file instead of founding one.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Use this key file as the validator key instead of generating one.
        #[arg(long)]
        validator_key: Option<PathBuf>,
        #[arg(long, default_value = home::DEFAULT_LISTEN)]
        listen: String,
        /// Make this home a full node that follows the chain from this validator's API (e.g.
        /// `http://10.0.0.5:8640`); repeatable. Needs --genesis. It never votes.
        #[arg(long)]
        follow: Vec<String>,
    },
    /// Run a node from its home.
    Node {
        #[arg(long)]
        home: PathBuf,
        /// Override the listen address of config.toml.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run a single-node development chain, creating its home on first use.
    Dev {
        #[arg(long, default_value = ".medledger-dev")]
        home: PathBuf,
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run a local network of validators, each a separate node process, creating it on first
    /// use. Ctrl-C stops them all.
    Devnet {
        #[arg(long, default_value = ".medledger-devnet")]
        dir: PathBuf,
        /// How many validators to create (first run only).
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Node i serves its API on this port + i.
        #[arg(long, default_value_t = 8640)]
        api_port: u16,
        /// Node i listens for its peers on this port + i.
        #[arg(long, default_value_t = 26700)]
        p2p_port: u16,
        /// Extra nodes to create outside the validator set (first run only): each runs, is refused
        /// by the validators, and joins once a governance change adds its key.
        #[arg(long, default_value_t = 0)]
        spares: usize,
        /// How long an idle network goes without a block, in milliseconds (first run only; 0
        /// starts each height at once, as a loaded network does).
        #[arg(long, default_value_t = home::default_idle_block_interval_ms())]
        idle_block_interval_ms: u64,
        /// Full nodes to create after the validators and spares (first run only): each follows
        /// the validators' certified blocks, serves the read API and never votes.
        #[arg(long, default_value_t = 0)]
        full_nodes: usize,
        /// Create the network's files and exit without starting it.
        #[arg(long)]
        init_only: bool,
    },
    /// Sign a transaction, submit it, and wait for its receipt.
    Tx {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// Return once admitted, without waiting for the receipt.
        #[arg(long)]
        no_wait: bool,
        #[command(subcommand)]
        payload: TxCommand,
    },
    /// Read from a node: status, blocks, transactions, receipts, accounts and state.
    Query {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        #[command(subcommand)]
        what: QueryCommand,
    },
    /// Light-client proofs.
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Re-check a stopped node's whole store from genesis and name the first tampered block.
    Verify {
        #[arg(long)]
        home: PathBuf,
    },
    /// Take a consistent backup of the node running from a home, while it runs: the chain store,
    /// the vault, the indexes and the module stores, with the configuration and genesis, into
    /// one gzip'd tar (mode 0600; it holds the vault's keys slots: keep it as secret as the
    /// home).
    Backup {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Also pack the home's keys/, encrypted under the passphrase in the first line of this
        /// file (Argon2id, AES-256-GCM).
        #[arg(long)]
        keys_passphrase_file: Option<PathBuf>,
    },
    /// Export a snapshot of the running node's state at its head (into its data directory's
    /// snapshots/), for full nodes to start from with `statesync`.
    Snapshot {
        #[arg(long)]
        home: PathBuf,
        /// Leaves (state entries) per chunk.
        #[arg(long, default_value_t = medledger_node::snapshot::CHUNK_LEAVES_DEFAULT)]
        chunk_leaves: usize,
    },
    /// Start a new full node from the newest state snapshot its `[follow]` validators serve,
    /// instead of replaying the chain: the manifest is checked against genesis, every chunk
    /// against the certified state root; an interrupted run resumes. Then run `medledger node`.
    Statesync {
        #[arg(long)]
        home: PathBuf,
        /// A snapshot's height (default: the newest).
        #[arg(long)]
        height: Option<u64>,
        /// Stop as a crash would after fetching this many chunks (for testing resumption).
        #[arg(long, hide = true)]
        stop_after_chunks: Option<usize>,
    },
    /// Restore a backup into a new home; every file is checked against the backup's manifest
    /// first, and a refused backup leaves nothing. Start it with `medledger node`: it catches
    /// up with the network. Never run it while the node it was taken from still runs.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        home: PathBuf,
        /// The passphrase file that opens the backup's keys.
        #[arg(long)]
        keys_passphrase_file: Option<PathBuf>,
    },
    /// The web portal: invite members of your organisation to sign in with a passkey.
    Portal {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The organisation's root key file.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: portal::PortalCommand,
    },
    /// The modules' commands (`fhir`, `consent`, `supply`, their benchmarks): see modules.rs.
    #[command(flatten)]
    Module(modules::ModuleCommand),
    /// Load a node with signed transactions and report throughput and commit latency.
    Bench(bench::BenchArgs),
    /// Measure this machine's limits: signature verification, hashing and fsync.
    BenchCrypto {
        /// Where to measure fsync: put it on the disk the node's data lives on.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TxCommand {
    /// Enrol a member key into the signer's organisation (the signer must be its root key).
    Enrol {
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
    /// Revoke a member of the signer's organisation.
    Revoke {
        #[arg(long)]
        member: String,
    },
    /// Anchor an opaque commitment under an opaque id (both 32 bytes of hex).
    Anchor {
        #[arg(long)]
        id: String,
        #[arg(long)]
        commitment: String,
    },
    /// Propose adding or removing a validator from a height (signer: an organisation's root
    /// key). It takes effect once two thirds of the organisations approve; the printed id is
    /// the proposal's.
    ProposeValidator {
        /// The validator key to add.
        #[arg(long, conflicts_with = "remove", required_unless_present = "remove")]
        add: Option<String>,
        /// The organisation that runs the added validator.
        #[arg(long, requires = "add")]
        org: Option<String>,
        /// The added validator's voting power.
        #[arg(long, default_value_t = 1, requires = "add")]
        power: u64,
        /// The validator key to remove.
        #[arg(long)]
        remove: Option<String>,
        /// The first height the changed set decides.
        #[arg(long)]
        effective_height: u64,
    },
    /// Approve a pending validator-set proposal (signer: an organisation's root key).
    ApproveValidator {
        #[arg(long)]
        proposal: String,
    },
}

#[derive(Subcommand)]
enum QueryCommand {
    Status,
    /// The head block, or the block at a height.
    Block {
        height: Option<u64>,
    },
    BlockHash {
        hash: String,
    },
    /// A transaction, with its status.
    Tx {
        id: String,
    },
    Receipt {
        id: String,
    },
    Account {
        key: String,
    },
    /// A state entry with its proof, e.g. `member/<key>` or `chain/validators`.
    State {
        key: String,
        #[arg(long)]
        height: Option<u64>,
        /// Write the light-client proof to this file.
        #[arg(long)]
        proof_out: Option<PathBuf>,
    },
    /// The inclusion proof of a committed transaction.
    TxProof {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Check a proof offline against a genesis file: the certificate, then the Merkle path.
    Verify {
        #[arg(long)]
        proof: PathBuf,
        #[arg(long)]
        genesis: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}

/// Prints a JSON answer. A closed pipe (`medledger ... | head`) ends the program quietly, as
/// Unix tools do, instead of panicking in `println!`.
pub(crate) fn print(value: &Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the answer: {error}");
        std::process::exit(1);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Keygen { out } => {
            let key = SecretKey::generate(rand_core::OsRng);
            home::write_key(&out, &key)?;
            println!("{}", key.public_key());
        }
        Command::Init {
            home,
            chain_id,
            orgs,
            gs1_prefixes,
            genesis,
            validator_key,
            listen,
            follow,
        } => {
            let orgs: Vec<(String, String)> = orgs
                .iter()
                .map(|org| match org.split_once('=') {
                    Some((id, name)) => (id.to_string(), name.to_string()),
                    None => (org.clone(), org.clone()),
                })
                .collect();
            let gs1_prefixes = gs1_prefixes
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(id, prefix)| (id.to_string(), prefix.to_string()))
                        .with_context(|| format!("--gs1-prefix {pair:?} is not id=prefix"))
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some((id, _)) = gs1_prefixes
                .iter()
                .find(|(id, _)| !orgs.iter().any(|(org, _)| org == id))
            {
                bail!("--gs1-prefix names {id}, which is not one of the --org organisations");
            }
            let plan = InitPlan {
                home: home.clone(),
                chain_id,
                orgs,
                gs1_prefixes,
                genesis,
                validator_key,
                listen,
                genesis_time_ms: now_ms(),
                follow,
            };
            for note in home::init(&plan, &mut rand_core::OsRng)? {
                println!("{note}");
            }
            println!("start it with: medledger node --home {}", home.display());
        }
        Command::Node { home, listen } => run_node(&home, listen)?,
        Command::Dev { home, listen } => {
            if !home.join("config.toml").exists() {
                let plan = InitPlan {
                    home: home.clone(),
                    chain_id: "medledger-dev".into(),
                    orgs: vec![("dev-org".into(), "Development Organisation".into())],
                    gs1_prefixes: Vec::new(),
                    genesis: None,
                    validator_key: None,
                    listen: home::DEFAULT_LISTEN.into(),
                    genesis_time_ms: now_ms(),
                    follow: Vec::new(),
                };
                for note in home::init(&plan, &mut rand_core::OsRng)? {
                    println!("{note}");
                }
            }
            run_node(&home, listen)?;
        }
        Command::Devnet {
            dir,
            validators,
            api_port,
            p2p_port,
            spares,
            idle_block_interval_ms,
            full_nodes,
            init_only,
        } => {
            let plan = devnet::DevnetPlan {
                dir: dir.clone(),
                validators,
                spares,
                idle_block_interval_ms,
                full_nodes,
                api_port,
                p2p_port,
                genesis_time_ms: now_ms(),
            };
            for note in devnet::create(&plan, &mut rand_core::OsRng)? {
                println!("{note}");
            }
            if !init_only {
                devnet::run(&dir)?;
            }
        }
        Command::Tx {
            node,
            key,
            no_wait,
            payload,
        } => return run_tx(&Client::new(&node), &key, no_wait, payload),
        Command::Query { node, what } => run_query(&Client::new(&node), what)?,
        Command::Module(command) => return modules::run(command),
        Command::Proof {
            command: ProofCommand::Verify { proof, genesis },
        } => return verify_proof(&proof, &genesis),
        Command::Verify { home } => return verify_store(&home),
        Command::Backup {
            home,
            out,
            keys_passphrase_file,
        } => {
            let summary = backup::backup(&home, &out, keys_passphrase_file.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Snapshot { home, chunk_leaves } => {
            let config = Config::load(&home)?;
            let key = home::read_key(&home.join(&config.validator_key))?;
            let client = Client::with_timeout(
                &format!("http://{}", config.listen),
                Duration::from_secs(3600),
            );
            let (status, body) = records::signed(
                &client,
                &key,
                "POST",
                &format!("/v1/admin/snapshot?chunk_leaves={chunk_leaves}"),
                b"",
                &medledger_api::auth::AccessHeaders::default(),
            )?;
            let answer: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if status != 200 {
                bail!(
                    "the node refused the snapshot ({status}): {}",
                    answer["error"]["message"]
                        .as_str()
                        .unwrap_or("no reason given")
                );
            }
            println!(
                "{}",
                serde_json::json!({
                    "height": answer["height"],
                    "state_root": answer["state_root"],
                    "leaves": answer["leaves"],
                    "chunks": answer["chunks"].as_array().map_or(0, Vec::len),
                })
            );
        }
        Command::Statesync {
            home,
            height,
            stop_after_chunks,
        } => {
            let config = Config::load(&home)?;
            let follow = config.follow.as_ref().context(
                "statesync starts a full node: its config.toml needs a [follow] section (medledger init --follow)",
            )?;
            let key = home::read_key(&home.join(&config.validator_key))?;
            let genesis = home::read_genesis(&home.join(&config.genesis))?;
            let mut source =
                follow::HttpSnapshots::new(&follow.sources, key, genesis.chain_id.clone());
            #[allow(clippy::disallowed_methods)] // CLI: the sync's duration, for the operator.
            let started = std::time::Instant::now();
            let synced = medledger_node::snapshot::state_sync(
                &home.join(&config.data_dir),
                &genesis,
                &mut source,
                height,
                stop_after_chunks,
            )?;
            let mut report = serde_json::to_value(&synced)?;
            report["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!("start it with: medledger node --home {}", home.display());
        }
        Command::Restore {
            from,
            home,
            keys_passphrase_file,
        } => {
            let summary = backup::restore(&from, &home, keys_passphrase_file.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            if summary["node_key_present"] != true {
                println!(
                    "no node key was restored: put the node's key file where config.toml's                      validator_key names it before starting the node"
                );
            }
            println!("start it with: medledger node --home {}", home.display());
        }
        Command::Portal { node, key, command } => {
            return portal::run(&node, &key, command);
        }
        Command::Bench(args) => bench::run(args)?,
        Command::BenchCrypto { dir } => bench::crypto(&dir)?,
    }
    Ok(0)
}

/// The log filter when `RUST_LOG` is not set: this node's own events at info, and the consensus
/// engine and its network only when something is wrong. The engine logs several lines at info
/// for every height (about 2.7 KB a height, 0.9 GB a day on an idle devnet before idle blocks);
/// heights, rounds and empty blocks are counted in `/metrics` instead. `RUST_LOG=info` or
/// `RUST_LOG=arc_malachitebft=debug` brings the engine's lines back.
const LOG_FILTER_DEFAULT: &str = "info,arc_malachitebft=warn,libp2p=warn";

fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| LOG_FILTER_DEFAULT.into());
    // Colour codes only for a person at a terminal, never in a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run_node(home: &Path, listen: Option<String>) -> Result<()> {
    let config = Config::load(home)?;
    init_logging(&config.log_format);
    let genesis = home::read_genesis(&home.join(&config.genesis))?;
    let validator_key = home::read_key(&home.join(&config.validator_key))?;
    let listen: SocketAddr = listen
        .unwrap_or(config.listen.clone())
        .parse()
        .context("listen must be an address such as 127.0.0.1:8640")?;
    // Parse the consensus settings before building anything.
    let engine = match &config.consensus {
        None => None,
        Some(section) => Some(EngineSettings {
            wal_dir: home.join(&config.data_dir).join("wal"),
            moniker: validator_key.public_key().to_hex()[..8].to_string(),
            listen: section
                .listen
                .parse()
                .context("[consensus] listen must be an address such as 127.0.0.1:26700")?,
            peers: section
                .peers
                .iter()
                .map(|peer| peer.parse::<Peer>().map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?,
            timeouts: EngineSettings::lan_timeouts(),
            empty_block_wait: Duration::from_millis(section.empty_block_wait_ms),
            idle_block_interval: Duration::from_millis(section.idle_block_interval_ms),
        }),
    };
    let node = Node::start(NodeConfig {
        data_dir: home.join(&config.data_dir),
        genesis,
        validator_key: validator_key.clone(),
        mempool_txs_max: config.mempool_txs_max,
        block_txs_max: config.block_txs_max,
        block_source: match (&engine, &config.follow) {
            (Some(_), _) => BlockSource::Consensus,
            (None, Some(_)) => BlockSource::Follower,
            (None, None) => BlockSource::Producer,
        },
    })
    .context("starting the node")?;
    if let Some(follow) = &config.follow {
        let feed = follow::HttpFeed::new(
            &follow.sources,
            validator_key.clone(),
            node.genesis().chain_id.clone(),
        );
        node.spawn_follower(Box::new(feed))
            .context("following the chain")?;
        follow::spawn_forwarder(&node, &follow.sources).context("forwarding transactions")?;
        tracing::info!(
            sources = follow.sources.len(),
            key = %validator_key.public_key(),
            "full node: following the validators' certified blocks"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Why the node stopped, when it was not asked to.
    let stopped_by = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let status = node.status()?;
        let running = match engine {
            None => None,
            Some(settings) => {
                let p2p = settings.listen;
                let running = medledger_consensus::start(node.clone(), validator_key, settings)
                    .await
                    .context("starting consensus")?;
                tracing::info!(%p2p, "consensus started");
                Some(running)
            }
        };
        tracing::info!(api = %format!("http://{listen}"), chain_id = %status.chain_id, height = status.height, "node started");
        let portal_origin = config.portal_origin(&listen.to_string());
        println!("medledger node for chain {} at height {}; API on http://{listen}, portal on {portal_origin}/portal", status.chain_id, status.height);
        let (progress, engine_task) = match running {
            Some(running) => (Some(running.progress), Some(running.task)),
            None => (None, None),
        };
        if let Some(progress) = progress {
            tokio::spawn(catch_up_bar(progress));
        }
        // The modules' services (the records vault, the EPCIS index), settled against the chain
        // at start, each following committed blocks from then on.
        let settings = medledger_node::ServiceSettings {
            monitor_window_ms: config.monitor_window_ms,
        };
        let services = medledger_node::open_services(&node, &home.join(&config.data_dir), &settings)
            .context("opening the module services")?;
        services.spawn_followers(&node);
        let engine_failed = async {
            match engine_task {
                Some(task) => match task.await {
                    Ok(Ok(())) => "consensus stopped".to_string(),
                    Ok(Err(error)) => format!("consensus failed: {error}"),
                    Err(error) => format!("consensus failed: {error}"),
                },
                None => std::future::pending().await,
            }
        };
        let engine_stop = stopped_by.clone();
        medledger_api::serve(listener, node.clone(), services, Some(portal_origin), async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
                reason = engine_failed => {
                    tracing::error!(%reason, "stopping");
                    *engine_stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
                }
            }
        })
        .await
        .context("serving the API")
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    node.stop();
    // A node whose consensus stopped exits with an error, so a supervisor (systemd) restarts it
    // rather than taking it for a clean stop.
    let reason = stopped_by
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    match reason {
        Some(reason) => bail!("the node stopped: {reason}"),
        None => Ok(()),
    }
}

/// Shows a progress bar while this node is more than a few blocks behind its peers.
async fn catch_up_bar(mut progress: tokio::sync::watch::Receiver<medledger_consensus::CatchUp>) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    while progress.changed().await.is_ok() {
        let state = *progress.borrow();
        let behind = state.target.saturating_sub(state.height);
        match (&bar, behind > 10) {
            (None, true) => {
                let new = indicatif::ProgressBar::new(state.target);
                new.set_style(
                    indicatif::ProgressStyle::with_template(
                        "catching up {bar:40} {pos}/{len} blocks ({per_sec}, eta {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar = Some(new);
            }
            (Some(current), false) => {
                current.set_position(state.height);
                current.finish_with_message("caught up");
                tracing::info!(height = state.height, "caught up; following the head");
                bar = None;
            }
            _ => {}
        }
        if let Some(bar) = &bar {
            bar.set_length(state.target);
            bar.set_position(state.height);
        }
    }
}

fn parse_key(text: &str) -> Result<PublicKey> {
    PublicKey::from_hex(text).with_context(|| {
        format!("{text:?} is not a public key (64 hex digits of a valid Ed25519 key)")
    })
}

fn parse_hash(text: &str, what: &str) -> Result<Hash> {
    Hash::from_hex(text).with_context(|| format!("{what} {text:?} must be 64 hex digits"))
}

fn run_tx(client: &Client, key: &Path, no_wait: bool, command: TxCommand) -> Result<i32> {
    let key = home::read_key(key)?;
    let payload = match command {
        TxCommand::Enrol { member, role } => CoreOp::Enrol {
            member: parse_key(&member)?,
            role: role.parse::<Role>().map_err(anyhow::Error::msg)?,
        },
        TxCommand::Revoke { member } => CoreOp::Revoke {
            member: parse_key(&member)?,
        },
        TxCommand::Anchor { id, commitment } => CoreOp::Anchor {
            id: parse_hash(&id, "id")?,
            commitment: parse_hash(&commitment, "commitment")?,
        },
        TxCommand::ProposeValidator {
            add,
            org,
            power,
            remove,
            effective_height,
        } => {
            let change = match (add, remove) {
                (Some(key), None) => ValidatorChange::Add(Validator {
                    key: parse_key(&key)?,
                    power,
                    org: org.context("--add needs --org, the organisation running it")?,
                }),
                (None, Some(key)) => ValidatorChange::Remove {
                    key: parse_key(&key)?,
                },
                _ => bail!("give exactly one of --add and --remove"),
            };
            CoreOp::ProposeValidatorChange {
                change,
                effective_height,
            }
        }
        TxCommand::ApproveValidator { proposal } => CoreOp::ApproveValidatorChange {
            proposal: parse_hash(&proposal, "proposal")?,
        },
    };
    let id = client.submit(&key, payload)?;
    if no_wait {
        print(&serde_json::json!({"id": id, "status": "pending"}));
        return Ok(0);
    }
    let result = client.wait(&id, Duration::from_secs(60))?;
    print(&result);
    Ok(match result["status"].as_str() {
        Some("committed") => 0,
        Some("pending") => {
            eprintln!("still pending after 60 s");
            3
        }
        _ => {
            eprintln!("transaction was rejected");
            2
        }
    })
}

fn run_query(client: &Client, what: QueryCommand) -> Result<()> {
    let value = match what {
        QueryCommand::Status => client.get("/v1/status")?,
        QueryCommand::Block { height: None } => client.get("/v1/blocks/head")?,
        QueryCommand::Block {
            height: Some(height),
        } => client.get(&format!("/v1/blocks/{height}"))?,
        QueryCommand::BlockHash { hash } => client.get(&format!(
            "/v1/blocks/hash/{}",
            parse_hash(&hash, "block hash")?
        ))?,
        QueryCommand::Tx { id } => {
            client.get(&format!("/v1/txs/{}", parse_hash(&id, "transaction id")?))?
        }
        QueryCommand::Receipt { id } => client.get(&format!(
            "/v1/txs/{}/receipt",
            parse_hash(&id, "transaction id")?
        ))?,
        QueryCommand::Account { key } => {
            client.get(&format!("/v1/accounts/{}", parse_key(&key)?))?
        }
        QueryCommand::State {
            key,
            height,
            proof_out,
        } => {
            let path = match height {
                Some(height) => format!("/v1/state/{key}?height={height}"),
                None => format!("/v1/state/{key}"),
            };
            let value = client.get(&path)?;
            if let Some(out) = proof_out {
                std::fs::write(&out, serde_json::to_string_pretty(&value["proof"])?)?;
                eprintln!("proof written to {}", out.display());
            }
            value
        }
        QueryCommand::TxProof { id, out } => {
            let value = client.get(&format!(
                "/v1/txs/{}/proof",
                parse_hash(&id, "transaction id")?
            ))?;
            if let Some(out) = out {
                std::fs::write(&out, serde_json::to_string_pretty(&value)?)?;
                eprintln!("proof written to {}", out.display());
            }
            value
        }
    };
    print(&value);
    Ok(())
}

fn verify_proof(proof: &Path, genesis: &Path) -> Result<i32> {
    let genesis: Genesis = home::read_genesis(genesis)?;
    let text =
        std::fs::read_to_string(proof).with_context(|| format!("reading {}", proof.display()))?;
    let proof: LightProof = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a medledger proof", proof.display()))?;
    match proof.verify(&genesis) {
        Ok(()) => {
            let header = proof.header();
            match &proof {
                LightProof::State { proof, .. } => println!(
                    "valid: state key {} {} after block {} (state root {})",
                    String::from_utf8_lossy(&proof.key),
                    match &proof.value {
                        Some(value) => format!("= {}", hex::encode(value)),
                        None => "is absent".to_string(),
                    },
                    header.height,
                    header.state_root
                ),
                LightProof::Tx { tx, receipt, .. } => println!(
                    "valid: transaction {} is number {} of block {} with outcome {}",
                    tx.id(),
                    receipt.index,
                    header.height,
                    serde_json::to_string(&receipt.outcome)?
                ),
            }
            Ok(0)
        }
        Err(error) => {
            println!("INVALID: {error}");
            Ok(2)
        }
    }
}

fn verify_store(home: &Path) -> Result<i32> {
    let config = Config::load(home)?;
    let path = home.join(&config.data_dir).join("ledger.redb");
    if !path.exists() {
        bail!("{} does not exist; has this node ever run?", path.display());
    }
    let store = match medledger_storage::Store::open(&path) {
        Ok(store) => store,
        // redb checks its own page checksums when it opens a file that was not closed cleanly.
        Err(error @ medledger_storage::StoreError::CorruptFile(_)) => {
            println!(
                "TAMPERED: the database file fails its own checksums before any block can be read: {error}"
            );
            return Ok(2);
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("opening {} (stop the node first)", path.display()));
        }
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} blocks ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("verifying");
    let result = medledger_node::audit_store(&store, |height, head| {
        bar.set_length(head);
        bar.set_position(height);
    });
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            let from = if report.from_height == 0 {
                "genesis".to_string()
            } else {
                format!(
                    "the certified snapshot at height {} (this node started from it; the state there was rebuilt and checked against the certified root)",
                    report.from_height
                )
            };
            println!(
                "ok: chain {} verified from {from} to height {}: {} transactions, {} signatures, {} state values; head {} state root {}",
                report.chain_id,
                report.height,
                report.txs,
                report.signatures,
                report.state_values,
                report.head_hash,
                report.state_root
            );
            Ok(0)
        }
        Err(error) => {
            match error.height() {
                Some(height) => println!("TAMPERED: first bad block is height {height}: {error}"),
                None => println!("FAILED: {error}"),
            }
            Ok(2)
        }
    }
}
