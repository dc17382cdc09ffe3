//! A node's home directory: `config.toml`, `genesis.json`, key files and the data directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use medledger_crypto::{PublicKey, SecretKey};
use medledger_types::{Genesis, Organisation, Validator};
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8640";

/// The node's configuration file. Paths are relative to the home directory.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub validator_key: PathBuf,
    #[serde(default = "default_mempool")]
    pub mempool_txs_max: usize,
    #[serde(default = "default_block_txs")]
    pub block_txs_max: usize,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How often the node anchors its devices' readings (1,000 to 3,600,000 ms): longer windows
    /// put more batches under each device's entry, so fewer bytes per reading on chain.
    #[serde(default = "default_monitor_window_ms")]
    pub monitor_window_ms: u64,
    /// Where people open the portal, e.g. `https://portal.hospital.example` (passkeys are bound
    /// to its host); by default `http://localhost:<API port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_origin: Option<String>,
    /// Present on a validator of a multi-validator network; absent, the node is the chain's only
    /// validator and cuts blocks itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<ConsensusSection>,
    /// Present on a full node: it follows the chain from these validators and never votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowSection>,
}

/// `[follow]`: the validators a full node fetches certified blocks from and forwards
/// transactions to. Its key (`validator_key`) must be enrolled with role `node`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowSection {
    /// The validators' API URLs, e.g. `http://127.0.0.1:8640`; tried in turn.
    pub sources: Vec<String>,
}

/// `[consensus]`: where this validator listens for its peers, and who they are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    /// The consensus (peer-to-peer) address, e.g. `127.0.0.1:26700`.
    pub listen: String,
    /// Every validator as `<validator public key>@<ip>:<port>`; this node's own entry is skipped.
    pub peers: Vec<String>,
    /// How long a proposer with nothing to propose waits before proposing an empty block.
    #[serde(default = "default_empty_block_wait_ms")]
    pub empty_block_wait_ms: u64,
    /// How long an idle network goes without a block: after a block, a validator with nothing
    /// to propose waits this long past the block's time before it starts the next height, unless
    /// a transaction or a peer's proposal arrives first (0: start at once).
    #[serde(default = "default_idle_block_interval_ms")]
    pub idle_block_interval_ms: u64,
}

pub const fn default_idle_block_interval_ms() -> u64 {
    medledger_consensus::host::IDLE_BLOCK_INTERVAL_DEFAULT.as_millis() as u64
}

fn default_empty_block_wait_ms() -> u64 {
    medledger_consensus::host::EMPTY_BLOCK_WAIT_DEFAULT.as_millis() as u64
}

pub fn default_mempool() -> usize {
    medledger_node::MEMPOOL_TXS_MAX
}
pub fn default_monitor_window_ms() -> u64 {
    medledger_node::monitor::WINDOW_MS_DEFAULT
}
pub fn default_block_txs() -> usize {
    10_000
}
pub fn default_log_format() -> String {
    "text".into()
}

impl Config {
    /// Where people open the portal when the API listens on `listen`: the configured origin,
    /// or `http://localhost:<port>` (browsers take passkeys on localhost without TLS, and never
    /// on an IP address).
    pub fn portal_origin(&self, listen: &str) -> String {
        self.portal_origin.clone().unwrap_or_else(|| {
            let port = listen.rsplit(':').next().unwrap_or("8640");
            format!("{}:{port}", medledger_api::PORTAL_ORIGIN_DEFAULT)
        })
    }

    pub fn load(home: &Path) -> Result<Config> {
        let path = home.join("config.toml");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}; run `medledger init --home {}` first",
                path.display(),
                home.display()
            )
        })?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if !matches!(config.log_format.as_str(), "text" | "json") {
            bail!(
                "{}: log_format must be \"text\" or \"json\"",
                path.display()
            );
        }
        if config.consensus.is_some() && config.follow.is_some() {
            bail!(
                "{}: a node is a validator ([consensus]) or a full node ([follow]), not both",
                path.display()
            );
        }
        if let Some(follow) = &config.follow {
            if follow.sources.is_empty() {
                bail!(
                    "{}: [follow] sources must name at least one validator's API",
                    path.display()
                );
            }
            if let Some(bad) = follow
                .sources
                .iter()
                .find(|source| !source.starts_with("http://") && !source.starts_with("https://"))
            {
                bail!(
                    "{}: [follow] source {bad:?} must be a URL such as http://127.0.0.1:8640",
                    path.display()
                );
            }
        }
        if config.block_txs_max == 0 || config.mempool_txs_max == 0 {
            bail!(
                "{}: block_txs_max and mempool_txs_max must be positive",
                path.display()
            );
        }
        Ok(config)
    }
}

/// A key file: JSON with the public and the secret key, readable by its owner only.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    public_key: PublicKey,
    secret_key: String,
}

pub fn write_key(path: &Path, key: &SecretKey) -> Result<()> {
    let file = KeyFile {
        public_key: key.public_key(),
        secret_key: hex::encode(key.to_bytes()),
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    out.write_all(serde_json::to_string_pretty(&file)?.as_bytes())?;
    out.sync_all()?;
    Ok(())
}

pub fn read_key(path: &Path) -> Result<SecretKey> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a medledger key file", path.display()))?;
    let bytes: [u8; 32] = hex::decode(&file.secret_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("{}: secret_key must be 64 hex digits", path.display()))?;
    let key = SecretKey::from_bytes(bytes);
    if key.public_key() != file.public_key {
        bail!(
            "{}: the public key does not belong to the secret key",
            path.display()
        );
    }
    Ok(key)
}

pub fn read_genesis(path: &Path) -> Result<Genesis> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading genesis {}", path.display()))?;
    let genesis: Genesis = serde_json::from_str(&text)
        .with_context(|| format!("parsing genesis {}", path.display()))?;
    medledger_ledger::check_genesis(&genesis)
        .with_context(|| format!("genesis {} is invalid", path.display()))?;
    Ok(genesis)
}

/// What `init` should create.
#[derive(Debug)]
pub struct InitPlan {
    pub home: PathBuf,
    pub chain_id: String,
    /// (id, name) of organisations to create with fresh root keys; the first runs the validator.
    pub orgs: Vec<(String, String)>,
    /// (organisation id, GS1 company prefix) pairs for genesis.
    pub gs1_prefixes: Vec<(String, String)>,
    pub genesis: Option<PathBuf>,
    pub validator_key: Option<PathBuf>,
    pub listen: String,
    pub genesis_time_ms: u64,
    /// Validators' API URLs: the home is a full node's, following them (needs `genesis`).
    pub follow: Vec<String>,
}

/// Creates a home directory. Fails, touching nothing, if it already holds a configuration.
pub fn init(
    plan: &InitPlan,
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<Vec<String>> {
    let home = &plan.home;
    if !plan.follow.is_empty() && plan.genesis.is_none() {
        bail!("a full node (--follow) joins an existing chain: give its --genesis file");
    }
    if home.join("config.toml").exists() {
        bail!(
            "{} already holds a node configuration; choose another --home",
            home.display()
        );
    }
    let mut notes = Vec::new();
    let validator_key = match &plan.validator_key {
        Some(path) => read_key(path)?,
        None => SecretKey::generate(&mut *rng),
    };
    let mut org_keys = Vec::new();
    let genesis = match &plan.genesis {
        Some(path) => read_genesis(path)?,
        None => {
            let mut organisations = Vec::new();
            for (id, name) in &plan.orgs {
                let key = SecretKey::generate(&mut *rng);
                organisations.push(Organisation {
                    id: id.clone(),
                    name: name.clone(),
                    root_key: key.public_key(),
                    gs1_prefixes: plan
                        .gs1_prefixes
                        .iter()
                        .filter(|(org, _)| org == id)
                        .map(|(_, prefix)| prefix.clone())
                        .collect(),
                });
                org_keys.push((id.clone(), key));
            }
            let first = plan
                .orgs
                .first()
                .map(|(id, _)| id.clone())
                .context("name at least one organisation with --org")?;
            let genesis = Genesis {
                chain_id: plan.chain_id.clone(),
                genesis_time_ms: plan.genesis_time_ms,
                organisations,
                validators: vec![Validator {
                    key: validator_key.public_key(),
                    power: 1,
                    org: first,
                }],
            };
            medledger_ledger::check_genesis(&genesis)
                .context("the genesis these options describe is invalid")?;
            genesis
        }
    };
    // A full node's key is not a validator's: it is enrolled with role node instead.
    if plan.follow.is_empty()
        && genesis
            .validators
            .iter()
            .all(|validator| validator.key != validator_key.public_key())
    {
        bail!(
            "the validator key {} is not in the genesis validator set",
            validator_key.public_key()
        );
    }
    fs::create_dir_all(home.join("keys"))
        .with_context(|| format!("creating {}", home.display()))?;
    write_key(&home.join("keys/validator.key"), &validator_key)?;
    for (id, key) in &org_keys {
        let path = home.join(format!("keys/{id}.key"));
        write_key(&path, key)?;
        notes.push(format!(
            "organisation {id}: root key {} in {}",
            key.public_key(),
            path.display()
        ));
    }
    fs::write(
        home.join("genesis.json"),
        serde_json::to_string_pretty(&genesis)?,
    )?;
    let config = Config {
        listen: plan.listen.clone(),
        data_dir: "data".into(),
        genesis: "genesis.json".into(),
        validator_key: "keys/validator.key".into(),
        mempool_txs_max: default_mempool(),
        block_txs_max: default_block_txs(),
        log_format: default_log_format(),
        monitor_window_ms: default_monitor_window_ms(),
        portal_origin: None,
        consensus: None,
        follow: (!plan.follow.is_empty()).then(|| FollowSection {
            sources: plan.follow.clone(),
        }),
    };
    fs::write(home.join("config.toml"), toml::to_string_pretty(&config)?)?;
    if plan.follow.is_empty() {
        notes.push(format!(
            "validator key {} in {}",
            validator_key.public_key(),
            home.join("keys/validator.key").display()
        ));
    } else {
        notes.push(format!(
            "full node key {} in {}: an organisation enrols it with role node \
             (medledger tx --key <root key> enrol --member {} --role node) before validators serve it",
            validator_key.public_key(),
            home.join("keys/validator.key").display(),
            validator_key.public_key()
        ));
    }
    notes.push(format!(
        "chain {} with genesis {}",
        genesis.chain_id,
        genesis.hash()
    ));
    Ok(notes)
}
