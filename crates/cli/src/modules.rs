//! The modules' commands, listed once: each module's client commands and its benchmark. Adding
//! a module's commands is one variant here and one arm in [`run`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::client::Client;
use crate::{
    bench_contracts, bench_files, bench_monitor, bench_records, bench_research, bench_supply,
    bench_trials, claims, contracts, monitor, records, research, supply, tokens, trials,
};

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Health records over the node's FHIR face: import, read, search, audit, erase.
    Fhir {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: the author, reader or patient.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: records::FhirCommand,
    },
    /// A patient's consent: grant, revoke, delegates.
    Consent {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The patient's (or a delegate's) key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        no_wait: bool,
        #[command(subcommand)]
        command: records::ConsentCommand,
    },
    /// The drug supply chain: register, commission, pack, ship, receive, dispense, recall,
    /// verify, trace, labels, cold chain and EPCIS capture and query.
    Supply {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: supply::SupplyCommand,
    },
    /// Clinical trials: register, amend, verify a protocol, enrol, consent, withdraw, capture,
    /// report and follow adverse events, sign, and the regulator's audit.
    Trial {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: the sponsor, site practitioner, participant or regulator.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: trials::TrialCommand,
    },
    /// Research data sharing: research consent, data requests, matching at a custodian, the
    /// Bulk Data export of a cohort, and a patient's log of releases.
    Research {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: the patient, researcher or custodian's root key.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: research::ResearchCommand,
    },
    /// Tokens: classes by governance, mint, burn, transfers, allowances, escrow, rewards,
    /// balances and statements.
    Token {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
    /// Insurance claims: publish a policy, cover members, submit FHIR Claims, decide the review
    /// queue, appeal, and read ClaimResponses, EOBs and payment reconciliations.
    Claim {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: the payer's, the provider's member, or the patient.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: claims::ClaimCommand,
    },
    /// Remote monitoring: pair devices, alert rules, a simulated device streaming readings,
    /// readings under consent, and a reading proven offline.
    Monitor {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: the patient, the care team's member, or the device.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        command: monitor::MonitorCommand,
    },
    /// Contracts: build a C contract with the SDK, store and propose its deployment, upgrade
    /// or freezing, call and query it, and read its events.
    Contract {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file (not needed to build, query or read).
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(subcommand)]
        command: contracts::ContractCommand,
    },
    /// Governance: propose admitting an organisation or setting a chain parameter, approve any
    /// proposal, and read proposals and parameters.
    Governance {
        #[arg(long, default_value = "http://127.0.0.1:8640", env = "MEDLEDGER_NODE")]
        node: String,
        /// The signer's key file: an organisation's root key.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(subcommand)]
        command: contracts::GovernanceCommand,
    },
    /// Measure health records through the FHIR face: import rate, then consent-checked read
    /// latency at a fixed rate, each read's access event committed first.
    BenchRecords(bench_records::RecordsBenchArgs),
    /// Measure the supply chain: commissioning throughput, verification latency at a fixed
    /// rate, and the recall report of a lot.
    BenchSupply(bench_supply::SupplyBenchArgs),
    /// Measure clinical trials: capture throughput, and adverse-event alerts from report to a
    /// subscriber.
    BenchTrials(bench_trials::TrialsBenchArgs),
    /// Measure research data sharing: cohort matching at a custodian over many patients.
    BenchResearch(bench_research::ResearchBenchArgs),
    /// Measure remote monitoring: readings ingested and anchored per second from a fleet of
    /// simulated devices, on-chain bytes per reading, and alert latency to the care team's stream.
    BenchMonitor(bench_monitor::MonitorBenchArgs),
    /// Measure the contract runtime in process: fuel and time per host call, deploying a
    /// 100 KiB module, and contract calls executed per second beside native token transfers.
    BenchContracts(bench_contracts::ContractsBenchArgs),
    /// Measure genomic files: a generated VCF streamed into a node and back, and the release
    /// path (de-identification and sealing).
    BenchFiles(bench_files::FilesBenchArgs),
}

/// Runs a module's command; returns the process exit code.
pub fn run(command: ModuleCommand) -> Result<i32> {
    match command {
        ModuleCommand::Fhir { node, key, command } => {
            records::run_fhir(&Client::new(&node), &key, command)
        }
        ModuleCommand::Consent {
            node,
            key,
            no_wait,
            command,
        } => records::run_consent(&Client::new(&node), &key, no_wait, command),
        ModuleCommand::Supply { node, key, command } => {
            supply::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Trial { node, key, command } => {
            trials::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Research { node, key, command } => {
            research::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Token { node, key, command } => {
            tokens::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Claim { node, key, command } => {
            claims::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Monitor { node, key, command } => {
            monitor::run(&Client::new(&node), &key, command)
        }
        ModuleCommand::Contract { node, key, command } => {
            contracts::run_contract(&Client::new(&node), key.as_deref(), command)
        }
        ModuleCommand::Governance { node, key, command } => {
            contracts::run_governance(&Client::new(&node), key.as_deref(), command)
        }
        ModuleCommand::BenchRecords(args) => bench_records::run(args).map(|()| 0),
        ModuleCommand::BenchSupply(args) => bench_supply::run(args).map(|()| 0),
        ModuleCommand::BenchTrials(args) => bench_trials::run(args).map(|()| 0),
        ModuleCommand::BenchResearch(args) => bench_research::run(args).map(|()| 0),
        ModuleCommand::BenchMonitor(args) => bench_monitor::run(args).map(|()| 0),
        ModuleCommand::BenchFiles(args) => bench_files::run(args).map(|()| 0),
        ModuleCommand::BenchContracts(args) => bench_contracts::run(args).map(|()| 0),
    }
}
