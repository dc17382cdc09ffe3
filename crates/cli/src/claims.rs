//! `medledger claim ...`: insurance claims from the command line. A payer publishes a policy,
//! covers members, and decides its review queue and appeals (transactions it signs); a provider
//! submits FHIR Claims at its node (a signed `POST /fhir/Claim`) and appeals denials; anyone who
//! is a party reads the ClaimResponse, the ExplanationOfBenefit and payment reconciliations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::auth::AccessHeaders;
use medledger_claims::{AppealReason, ClaimsOp, CoverageInput, Date, PolicyInput};
use medledger_crypto::{Hash, PublicKey, SecretKey};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::{expect_ok, signed};

#[derive(Subcommand)]
pub enum ClaimCommand {
    /// Publish the next version of a plan's policy (the payer's root key or an insurer): a JSON
    /// file of the policy (plan, effective, symbol, account, deductible, copay, coinsurance_bp,
    /// services, edits, ...).
    Publish { file: PathBuf },
    /// A plan's payer, versions and latest policy.
    Plan { plan: String },
    /// Name the contract that adjudicates a plan's items after the built-in checks (the payer's
    /// root key or an insurer): those with `--code`, or all; `--none` stops consulting one.
    SetRuleContract {
        #[arg(long)]
        plan: String,
        #[arg(long, required_unless_present = "none")]
        contract: Option<String>,
        /// A code the contract decides; repeatable (default: every code).
        #[arg(long = "code")]
        codes: Vec<String>,
        #[arg(long, conflicts_with = "contract")]
        none: bool,
    },
    /// Cover a member (a patient's key) under a plan from a date; prints the coverage id.
    Cover {
        #[arg(long)]
        plan: String,
        #[arg(long)]
        member: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: Option<String>,
    },
    /// End a coverage on a date (its last day covered).
    EndCoverage {
        #[arg(long)]
        id: String,
        #[arg(long)]
        end: String,
    },
    /// Submit a FHIR R4 Claim (use claim or preauthorization) at the provider's node, signed by
    /// a member of the provider; prints the ClaimResponse of its adjudication.
    Submit { file: PathBuf },
    /// Read a claim as its ClaimResponse, ExplanationOfBenefit, the FHIR Claim (at the
    /// provider) or the ledger's JSON.
    Show {
        id: String,
        /// response, eob, claim or json.
        #[arg(long, default_value = "response")]
        r#as: String,
    },
    /// Read a coverage as FHIR Coverage.
    Coverage { id: String },
    /// List claims: a provider's, a member's (a patient's key; the signer's by default) or a
    /// payer's review queue.
    List {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        member: Option<String>,
        #[arg(long)]
        review: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Decide a claim or pre-authorisation in the payer's review queue.
    Decide {
        id: String,
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        approve: bool,
        #[arg(long)]
        deny: bool,
    },
    /// Appeal a claim's denials, once (the provider).
    Appeal {
        id: String,
        /// medical_necessity, coding_corrected, authorisation_obtained, coverage_in_force,
        /// not_a_duplicate or other.
        #[arg(long)]
        reason: String,
    },
    /// Decide an appeal (the payer).
    DecideAppeal {
        id: String,
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        approve: bool,
        #[arg(long)]
        deny: bool,
    },
    /// What a payer paid a provider for claims over a period, as FHIR PaymentReconciliation.
    Reconcile {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        payer: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Day after the last, YYYY-MM-DD.
        #[arg(long)]
        to: String,
    },
}

fn hash(text: &str, what: &str) -> Result<Hash> {
    Hash::from_hex(text.trim()).with_context(|| format!("{what} is 32 bytes in hex"))
}

fn date(text: &str) -> Result<Date> {
    text.parse().map_err(anyhow::Error::msg)
}

fn send(client: &Client, key: &SecretKey, op: ClaimsOp) -> Result<(i32, Value)> {
    let id = client.submit(key, op)?;
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    let code = match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    };
    result["id"] = json!(id);
    Ok((code, result))
}

fn read(client: &Client, key: &SecretKey, path: &str) -> Result<Value> {
    let (status, body) = signed(client, key, "GET", path, b"", &AccessHeaders::default())?;
    expect_ok(status, &body)
}

pub fn run(client: &Client, key_path: &std::path::Path, command: ClaimCommand) -> Result<i32> {
    let key = home::read_key(key_path)?;
    let op = match command {
        ClaimCommand::Publish { file } => {
            let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let policy: PolicyInput = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a policy", file.display()))?;
            ClaimsOp::PublishPolicy { policy }
        }
        ClaimCommand::Plan { plan } => {
            crate::print(&client.get(&format!("/v1/claims/plans/{plan}"))?);
            return Ok(0);
        }
        ClaimCommand::Cover {
            plan,
            member,
            start,
            end,
        } => {
            let mut id = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            let coverage = CoverageInput {
                id: Hash(id),
                plan,
                member: PublicKey::from_hex(member.trim()).context("--member is a patient's key")?,
                start: date(&start)?,
                end: end.as_deref().map(date).transpose()?,
            };
            let (code, mut result) = send(client, &key, ClaimsOp::Cover { coverage })?;
            result["coverage"] = json!(Hash(id));
            crate::print(&result);
            return Ok(code);
        }
        ClaimCommand::EndCoverage { id, end } => ClaimsOp::EndCoverage {
            id: hash(&id, "--id")?,
            end: date(&end)?,
        },
        ClaimCommand::Submit { file } => {
            let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (status, answer) =
                signed(client, &key, "POST", "/fhir/Claim", &body, &AccessHeaders::default())?;
            let response = expect_ok(status, &answer)?;
            crate::print(&response);
            return Ok(0);
        }
        ClaimCommand::Show { id, r#as } => {
            let path = match r#as.as_str() {
                "response" => format!("/fhir/ClaimResponse/{id}"),
                "eob" => format!("/fhir/ExplanationOfBenefit/{id}"),
                "claim" => format!("/fhir/Claim/{id}"),
                "json" => format!("/v1/claims/{id}"),
                other => bail!("--as {other:?} is response, eob, claim or json"),
            };
            crate::print(&read(client, &key, &path)?);
            return Ok(0);
        }
        ClaimCommand::Coverage { id } => {
            crate::print(&read(client, &key, &format!("/fhir/Coverage/{id}"))?);
            return Ok(0);
        }
        ClaimCommand::List {
            provider,
            member,
            review,
            offset,
            limit,
        } => {
            let which = match (provider, member, review) {
                (Some(org), None, None) => format!("provider={org}"),
                (None, None, Some(org)) => format!("review={org}"),
                (None, member, None) => format!(
                    "member={}",
                    member.unwrap_or_else(|| key.public_key().to_hex())
                ),
                _ => bail!("name one of --provider, --member or --review"),
            };
            let path = format!("/v1/claims?{which}&offset={offset}&limit={limit}");
            crate::print(&read(client, &key, &path)?);
            return Ok(0);
        }
        ClaimCommand::Decide { id, approve, .. } => ClaimsOp::Decide {
            claim: hash(&id, "the claim id")?,
            approve,
        },
        ClaimCommand::Appeal { id, reason } => ClaimsOp::Appeal {
            claim: hash(&id, "the claim id")?,
            reason: serde_json::from_value::<AppealReason>(json!(reason)).map_err(|_| {
                anyhow::anyhow!("--reason {reason:?} is medical_necessity, coding_corrected, authorisation_obtained, coverage_in_force, not_a_duplicate or other")
            })?,
            commitment: None,
        },
        ClaimCommand::SetRuleContract {
            plan,
            contract,
            codes,
            none: _,
        } => ClaimsOp::SetRuleContract {
            plan,
            contract: contract
                .map(|contract| hash(&contract, "the contract address"))
                .transpose()?,
            codes,
        },
        ClaimCommand::DecideAppeal { id, approve, .. } => ClaimsOp::DecideAppeal {
            claim: hash(&id, "the claim id")?,
            approve,
        },
        ClaimCommand::Reconcile {
            provider,
            payer,
            from,
            to,
        } => {
            date(&from)?;
            date(&to)?;
            let path = format!(
                "/fhir/PaymentReconciliation?requestor={provider}&payment-issuer={payer}&created=ge{from}&created=lt{to}"
            );
            crate::print(&read(client, &key, &path)?);
            return Ok(0);
        }
    };
    let (code, result) = send(client, &key, op)?;
    crate::print(&result);
    Ok(code)
}
