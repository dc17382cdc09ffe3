//! `medledger contract ...` and `medledger governance ...`: building a contract from C with the
//! SDK, storing its code, proposing its deployment, upgrade or freezing, calling and querying it
//! and reading its events; and the consortium's proposals (admitting an organisation, setting a
//! chain parameter, approving any proposal).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_contracts::validate::validate;
use medledger_contracts::{
    ContractsAction, ContractsOp, DEFAULT_CODE_LIMITS, PART_BYTES_MAX, address_of,
};
use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::Payload;
use medledger_ledger::governance::{Action, CoreAction, GovernanceOp};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;

/// The SDK header, written beside the source for each build.
const SDK_HEADER: &str = include_str!("../../../contracts/sdk/medledger.h");

/// How long a proposal stays open by default, in blocks.
const EXPIRES_IN_DEFAULT: u64 = 10_000;

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Compile a C contract to WebAssembly with the SDK (needs clang and lld: see
    /// scripts/contract-toolchain.sh), and check it as the chain will.
    Build {
        /// The contract's C source.
        source: PathBuf,
        /// Where to write the module (default: the source with `.wasm`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A preprocessor definition, `NAME` or `NAME=VALUE`; repeatable.
        #[arg(short = 'D', long = "define")]
        defines: Vec<String>,
    },
    /// Store a module's code on chain (an organisation's root key or node), in parts if large.
    Upload { wasm: PathBuf },
    /// Propose deploying a module (stored first if need be); prints the proposal and the address
    /// the contract will have once two thirds of the organisations approve.
    ProposeDeploy {
        wasm: PathBuf,
        #[arg(long)]
        label: String,
        /// The instantiate message, JSON.
        #[arg(long, default_value = "{}")]
        msg: String,
        #[arg(long, default_value_t = EXPIRES_IN_DEFAULT)]
        expires_in: u64,
    },
    /// Propose moving a contract to a new module, whose `migrate` runs with `--msg`.
    ProposeUpgrade {
        #[arg(long)]
        contract: String,
        wasm: PathBuf,
        #[arg(long, default_value = "{}")]
        msg: String,
        #[arg(long, default_value_t = EXPIRES_IN_DEFAULT)]
        expires_in: u64,
    },
    /// Propose freezing (or with --unfreeze, unfreezing) a contract.
    ProposeFreeze {
        #[arg(long)]
        contract: String,
        #[arg(long)]
        unfreeze: bool,
        #[arg(long, default_value_t = EXPIRES_IN_DEFAULT)]
        expires_in: u64,
    },
    /// Call a contract's `execute` with a JSON message and wait for the result.
    Call {
        #[arg(long)]
        contract: String,
        #[arg(long)]
        msg: String,
    },
    /// Ask a contract's `query` (read-only, nothing signed).
    Query {
        #[arg(long)]
        contract: String,
        #[arg(long)]
        msg: String,
    },
    /// A contract's events.
    Events {
        #[arg(long)]
        contract: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// A contract as deployed, or every contract.
    Show {
        #[arg(long)]
        contract: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum GovernanceCommand {
    /// Propose admitting an organisation with its root key (an organisation's root key).
    ProposeAdmit {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// The new organisation's root public key, hex.
        #[arg(long)]
        root_key: String,
        #[arg(long, default_value_t = EXPIRES_IN_DEFAULT)]
        expires_in: u64,
    },
    /// Propose setting a chain parameter (see `parameters`).
    ProposeParameter {
        #[arg(long)]
        name: String,
        #[arg(long)]
        value: u64,
        #[arg(long, default_value_t = EXPIRES_IN_DEFAULT)]
        expires_in: u64,
    },
    /// Approve any proposal (an organisation's root key).
    Approve {
        #[arg(long)]
        proposal: String,
    },
    /// A proposal and its state, or every proposal.
    Show {
        #[arg(long)]
        proposal: Option<String>,
    },
    /// The chain parameters in force.
    Parameters,
}

fn hash(text: &str, what: &str) -> Result<Hash> {
    Hash::from_hex(text).with_context(|| format!("{what} must be 64 hex digits"))
}

fn key(path: Option<&Path>) -> Result<SecretKey> {
    home::read_key(path.context("this command signs: give --key")?)
}

/// Sends a payload and waits for its receipt; exit code 2 if refused.
fn send(client: &Client, key: &SecretKey, payload: impl Into<Payload>) -> Result<(i32, Value)> {
    let id = client.submit(key, payload)?;
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    let code = match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    };
    result["id"] = json!(id);
    Ok((code, result))
}

fn head(client: &Client) -> Result<u64> {
    client.get("/v1/status")?["height"]
        .as_u64()
        .context("node status has no height")
}

/// Compiles `source` with clang for wasm32 and the SDK; returns the module's bytes.
pub fn build(source: &Path, defines: &[String]) -> Result<Vec<u8>> {
    let sdk = tempfile::tempdir().context("creating a directory for the SDK")?;
    std::fs::write(sdk.path().join("medledger.h"), SDK_HEADER).context("writing the SDK")?;
    let output = sdk.path().join("contract.wasm");
    let mut command = Command::new("clang");
    command
        .args([
            "--target=wasm32-unknown-unknown",
            "-O2",
            "-ffreestanding",
            "-nostdlib",
            "-fno-builtin",
            "-Wall",
            "-Wno-unused-function",
            "-Werror=implicit-function-declaration",
            "-Wl,--no-entry",
            "-Wl,--strip-all",
            "-Wl,-z,stack-size=65536",
        ])
        .arg("-I")
        .arg(sdk.path())
        .args(defines.iter().map(|define| format!("-D{define}")))
        .arg("-o")
        .arg(&output)
        .arg(source);
    let status = match command.status() {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "clang is not installed: run scripts/contract-toolchain.sh (Debian's clang and lld)"
        ),
        Err(error) => return Err(error).context("running clang"),
    };
    if !status.success() {
        bail!("clang failed to build {}", source.display());
    }
    std::fs::read(&output).context("reading the built module")
}

/// Stores `code` unless the chain has it; returns its hash.
fn upload(client: &Client, key: &SecretKey, code: &[u8]) -> Result<Hash> {
    let code_hash = sha256(code);
    let (status, _) = client.get_raw(&format!("/v1/contracts/code/{code_hash}"))?;
    if status == 200 {
        let found = client.get(&format!("/v1/contracts/code/{code_hash}"))?;
        if found.get("code").is_some() {
            return Ok(code_hash);
        }
    }
    for (part, bytes) in code.chunks(PART_BYTES_MAX).enumerate() {
        let (exit, result) = send(
            client,
            key,
            ContractsOp::UploadCode {
                code_hash,
                size: code.len() as u64,
                part: part as u32,
                bytes: bytes.to_vec(),
            },
        )?;
        if exit != 0 {
            crate::print(&result);
            bail!("storing part {part} of the code was refused");
        }
    }
    Ok(code_hash)
}

fn propose(
    client: &Client,
    key: &SecretKey,
    action: Action,
    expires_in: u64,
) -> Result<(i32, Value)> {
    let expires_at = head(client)? + expires_in.max(2);
    send(client, key, GovernanceOp::Propose { action, expires_at })
}

fn check_json(msg: &str) -> Result<()> {
    serde_json::from_str::<Value>(msg)
        .map(|_| ())
        .context("the message must be JSON")
}

pub fn run_contract(
    client: &Client,
    key_path: Option<&Path>,
    command: ContractCommand,
) -> Result<i32> {
    match command {
        ContractCommand::Build {
            source,
            output,
            defines,
        } => {
            let code = build(&source, &defines)?;
            let facts = validate(&code, DEFAULT_CODE_LIMITS)
                .with_context(|| format!("the chain would refuse {}", source.display()))?;
            let output = output.unwrap_or_else(|| source.with_extension("wasm"));
            std::fs::write(&output, &code)
                .with_context(|| format!("writing {}", output.display()))?;
            crate::print(&json!({
                "wasm": output,
                "code_hash": sha256(&code),
                "size": code.len(),
                "imports": facts.imports,
                "migrates": facts.migrates,
            }));
            Ok(0)
        }
        ContractCommand::Upload { wasm } => {
            let key = key(key_path)?;
            let code =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let code_hash = upload(client, &key, &code)?;
            crate::print(&client.get(&format!("/v1/contracts/code/{code_hash}"))?);
            Ok(0)
        }
        ContractCommand::ProposeDeploy {
            wasm,
            label,
            msg,
            expires_in,
        } => {
            check_json(&msg)?;
            let key = key(key_path)?;
            let code =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let code_hash = upload(client, &key, &code)?;
            let action = Action::Contracts(ContractsAction::DeployContract {
                code_hash,
                label,
                msg,
            });
            let (exit, mut result) = propose(client, &key, action, expires_in)?;
            if let Some(id) = result["id"].as_str().and_then(|id| Hash::from_hex(id).ok()) {
                result["proposal"] = json!(id);
                result["contract"] = json!(address_of(&id));
            }
            crate::print(&result);
            Ok(exit)
        }
        ContractCommand::ProposeUpgrade {
            contract,
            wasm,
            msg,
            expires_in,
        } => {
            check_json(&msg)?;
            let contract = hash(&contract, "--contract")?;
            let key = key(key_path)?;
            let code =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let code_hash = upload(client, &key, &code)?;
            let action = Action::Contracts(ContractsAction::UpgradeContract {
                contract,
                code_hash,
                msg,
            });
            let (exit, result) = propose(client, &key, action, expires_in)?;
            crate::print(&result);
            Ok(exit)
        }
        ContractCommand::ProposeFreeze {
            contract,
            unfreeze,
            expires_in,
        } => {
            let contract = hash(&contract, "--contract")?;
            let key = key(key_path)?;
            let action = Action::Contracts(if unfreeze {
                ContractsAction::UnfreezeContract { contract }
            } else {
                ContractsAction::FreezeContract { contract }
            });
            let (exit, result) = propose(client, &key, action, expires_in)?;
            crate::print(&result);
            Ok(exit)
        }
        ContractCommand::Call { contract, msg } => {
            check_json(&msg)?;
            let contract = hash(&contract, "--contract")?;
            let key = key(key_path)?;
            let (exit, mut result) =
                send(client, &key, ContractsOp::ExecuteContract { contract, msg })?;
            if exit == 0
                && let Some(id) = result["id"].as_str()
            {
                result["call"] = client.get(&format!("/v1/contracts/calls/{id}"))?;
            }
            crate::print(&result);
            Ok(exit)
        }
        ContractCommand::Query { contract, msg } => {
            let message: Value = serde_json::from_str(&msg).context("the message must be JSON")?;
            let contract = hash(&contract, "--contract")?;
            let (status, body) =
                client.post_raw(&format!("/v1/contracts/{contract}/query"), &message)?;
            crate::print(&body);
            Ok(if status == 200 && body["status"] == "done" {
                0
            } else {
                2
            })
        }
        ContractCommand::Events { contract, from } => {
            let contract = hash(&contract, "--contract")?;
            crate::print(&client.get(&format!("/v1/contracts/{contract}/events?from={from}"))?);
            Ok(0)
        }
        ContractCommand::Show { contract } => {
            match contract {
                Some(contract) => {
                    let contract = hash(&contract, "--contract")?;
                    crate::print(&client.get(&format!("/v1/contracts/{contract}"))?);
                }
                None => crate::print(&client.get("/v1/contracts")?),
            }
            Ok(0)
        }
    }
}

pub fn run_governance(
    client: &Client,
    key_path: Option<&Path>,
    command: GovernanceCommand,
) -> Result<i32> {
    match command {
        GovernanceCommand::ProposeAdmit {
            id,
            name,
            root_key,
            expires_in,
        } => {
            let root_key = medledger_crypto::PublicKey::from_hex(&root_key)
                .context("--root-key must be a public key, hex")?;
            let key = key(key_path)?;
            let action = Action::Core(CoreAction::AdmitOrganisation { id, name, root_key });
            let (exit, result) = propose(client, &key, action, expires_in)?;
            crate::print(&result);
            Ok(exit)
        }
        GovernanceCommand::ProposeParameter {
            name,
            value,
            expires_in,
        } => {
            let key = key(key_path)?;
            let action = Action::Core(CoreAction::SetParameter { name, value });
            let (exit, result) = propose(client, &key, action, expires_in)?;
            crate::print(&result);
            Ok(exit)
        }
        GovernanceCommand::Approve { proposal } => {
            let proposal = hash(&proposal, "--proposal")?;
            let key = key(key_path)?;
            let (exit, mut result) =
                send(client, &key, GovernanceOp::ApproveProposal { proposal })?;
            if exit == 0 {
                result["proposal"] = client.get(&format!("/v1/governance/proposals/{proposal}"))?;
            }
            crate::print(&result);
            Ok(exit)
        }
        GovernanceCommand::Show { proposal } => {
            match proposal {
                Some(proposal) => {
                    let proposal = hash(&proposal, "--proposal")?;
                    crate::print(&client.get(&format!("/v1/governance/proposals/{proposal}"))?);
                }
                None => crate::print(&client.get("/v1/governance/proposals")?),
            }
            Ok(0)
        }
        GovernanceCommand::Parameters => {
            crate::print(&client.get("/v1/governance/parameters")?);
            Ok(0)
        }
    }
}
