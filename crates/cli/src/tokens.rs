//! `medledger token ...`: the token ledger from the command line. Each operation is a
//! transaction the signer sends; reads come from `/v1/tokens`. Amounts are integers in the
//! class's minor units (cents for a class of 2 decimals).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_tokens::{Amount, ClassSpec, Reason, RewardProgram, RewardPurpose, TokensOp};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Propose a token class (an organisation's root key); it exists once two thirds of the
    /// organisations approved.
    Propose {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 2)]
        decimals: u8,
        /// An issuing organisation (repeat for more).
        #[arg(long = "issuer", required = true)]
        issuers: Vec<String>,
    },
    /// Approve a proposed class (an organisation's root key).
    ApproveClass {
        #[arg(long)]
        symbol: String,
    },
    /// Issue tokens to an account (an issuer's root key).
    Mint {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reference: Option<String>,
    },
    /// Withdraw tokens from the issuer's own balance (an issuer's root key).
    Burn {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reference: Option<String>,
    },
    /// Pay an account.
    Transfer {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        /// settlement, patient_share, refund, reward, adjustment, fee or transfer.
        #[arg(long, default_value = "transfer")]
        reason: String,
        #[arg(long)]
        reference: Option<String>,
    },
    /// Set a spender's allowance to `--amount` if it is `--expected` now (compare-and-set).
    Allow {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        spender: String,
        #[arg(long, default_value = "0")]
        expected: String,
        #[arg(long)]
        amount: String,
    },
    /// Raise (or with `--decrease`, lower) a spender's allowance by an amount.
    Allowance {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        spender: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        decrease: bool,
    },
    /// Pay from another account's balance, within the allowance it gave the signer.
    TransferFrom {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        #[arg(long, default_value = "transfer")]
        reason: String,
        #[arg(long)]
        reference: Option<String>,
    },
    /// Lock funds in escrow for a payee, decided by an arbiter organisation; prints its id.
    Lock {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        payee: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        arbiter: String,
        /// The claim or authorisation it is locked against (32 bytes, hex).
        #[arg(long)]
        reference: Option<String>,
    },
    /// Release an escrow to its payee (the arbiter).
    Release {
        #[arg(long)]
        id: String,
    },
    /// Return an escrow to its payer (the arbiter).
    Return {
        #[arg(long)]
        id: String,
    },
    /// Start a reward program (an issuer's root key).
    RewardProgram {
        #[arg(long)]
        id: String,
        #[arg(long)]
        symbol: String,
        /// research-sharing or adherence.
        #[arg(long)]
        purpose: String,
        /// The most one patient receives in one period.
        #[arg(long)]
        cap: String,
        #[arg(long, default_value_t = 30 * 86_400_000)]
        period_ms: u64,
        /// The program's rule: what each event of its purpose pays without the issuer (each
        /// patient of a research release; a care plan attested), within the cap.
        #[arg(long)]
        per_event: Option<String>,
    },
    /// Attest that a care plan met its goals (a practitioner of its custodian, or its root key):
    /// the adherence program's rule pays its patient, once per plan and period.
    AttestAdherence {
        #[arg(long)]
        program: String,
        /// The CarePlan: `CarePlan/<id>` held at this node, or its ledger record id (hex).
        #[arg(long)]
        care_plan: String,
    },
    /// Reward a patient under a program (its issuer's root key).
    Reward {
        #[arg(long)]
        program: String,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reference: Option<String>,
    },
    /// A class (or its proposal), with its supply.
    Class {
        #[arg(long)]
        symbol: String,
    },
    /// An account's balance (the signer's by default).
    Balance {
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        account: Option<String>,
    },
    /// Every movement that touched an account (the signer's by default).
    Statement {
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

fn amount(text: &str) -> Result<Amount> {
    Amount::try_from(text.to_string()).map_err(anyhow::Error::msg)
}

/// An account: a member's key, or a contract's address (which is no curve point, so the token
/// module, not the parser, decides whether it may hold tokens).
fn account(text: &str) -> Result<PublicKey> {
    text.trim()
        .parse::<PublicKey>()
        .with_context(|| format!("{text:?} is not an account (a key or a contract address, hex)"))
}

fn reference(text: &Option<String>) -> Result<Option<Hash>> {
    text.as_deref()
        .map(|text| Hash::from_hex(text.trim()).context("--reference is 32 bytes in hex"))
        .transpose()
}

/// A CarePlan's ledger record id: given, or resolved at the custodian's node from its FHIR id.
fn care_plan_id(client: &Client, key: &SecretKey, text: &str) -> Result<Hash> {
    let Some(id) = text.strip_prefix("CarePlan/") else {
        return Hash::from_hex(text.trim())
            .context("--care-plan is CarePlan/<id> or a ledger record id (hex)");
    };
    let (status, body) = crate::records::signed(
        client,
        key,
        "GET",
        &format!("/v1/records/ids/CarePlan/{id}"),
        b"",
        &Default::default(),
    )?;
    let found = crate::records::expect_ok(status, &body)?;
    let record = found["record"]
        .as_str()
        .context("the node named no record id")?;
    Hash::from_hex(record).context("the node's record id")
}

fn reason(text: &str) -> Result<Reason> {
    serde_json::from_value(json!(text)).map_err(|_| {
        anyhow::anyhow!(
            "reason {text:?} is not one of settlement, patient_share, refund, reward, adjustment, fee, transfer"
        )
    })
}

/// Sends `op` signed by `key` and waits for its receipt; exit code 2 if refused.
fn send(client: &Client, key: &SecretKey, op: TokensOp) -> Result<(i32, Value)> {
    let id = client.submit(key, op)?;
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    let code = match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    };
    result["id"] = json!(id);
    Ok((code, result))
}

pub fn run(client: &Client, key_path: &std::path::Path, command: TokenCommand) -> Result<i32> {
    let key = home::read_key(key_path)?;
    let op = match command {
        TokenCommand::Propose {
            symbol,
            name,
            decimals,
            issuers,
        } => TokensOp::ProposeClass {
            spec: ClassSpec {
                symbol,
                name,
                decimals,
                issuers,
            },
        },
        TokenCommand::ApproveClass { symbol } => TokensOp::ApproveClass { symbol },
        TokenCommand::Mint {
            symbol,
            to,
            amount: how_much,
            reference: refers,
        } => TokensOp::Mint {
            symbol,
            to: account(&to)?,
            amount: amount(&how_much)?,
            reference: reference(&refers)?,
        },
        TokenCommand::Burn {
            symbol,
            amount: how_much,
            reference: refers,
        } => TokensOp::Burn {
            symbol,
            amount: amount(&how_much)?,
            reference: reference(&refers)?,
        },
        TokenCommand::Transfer {
            symbol,
            to,
            amount: how_much,
            reason: why,
            reference: refers,
        } => TokensOp::Transfer {
            symbol,
            to: account(&to)?,
            amount: amount(&how_much)?,
            reason: reason(&why)?,
            reference: reference(&refers)?,
        },
        TokenCommand::Allow {
            symbol,
            spender,
            expected,
            amount: how_much,
        } => TokensOp::Approve {
            symbol,
            spender: account(&spender)?,
            expected: amount(&expected)?,
            amount: amount(&how_much)?,
        },
        TokenCommand::Allowance {
            symbol,
            spender,
            by,
            decrease,
        } => {
            let (spender, by) = (account(&spender)?, amount(&by)?);
            if decrease {
                TokensOp::DecreaseAllowance {
                    symbol,
                    spender,
                    by,
                }
            } else {
                TokensOp::IncreaseAllowance {
                    symbol,
                    spender,
                    by,
                }
            }
        }
        TokenCommand::TransferFrom {
            symbol,
            from,
            to,
            amount: how_much,
            reason: why,
            reference: refers,
        } => TokensOp::TransferFrom {
            symbol,
            from: account(&from)?,
            to: account(&to)?,
            amount: amount(&how_much)?,
            reason: reason(&why)?,
            reference: reference(&refers)?,
        },
        TokenCommand::Lock {
            symbol,
            payee,
            amount: how_much,
            arbiter,
            reference: refers,
        } => {
            let mut id = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            TokensOp::Lock {
                id: Hash(id),
                symbol,
                payee: account(&payee)?,
                amount: amount(&how_much)?,
                arbiter,
                reference: reference(&refers)?,
            }
        }
        TokenCommand::Release { id } => TokensOp::Release {
            id: Hash::from_hex(id.trim()).context("--id is an escrow id (hex)")?,
        },
        TokenCommand::Return { id } => TokensOp::Return {
            id: Hash::from_hex(id.trim()).context("--id is an escrow id (hex)")?,
        },
        TokenCommand::RewardProgram {
            id,
            symbol,
            purpose,
            cap,
            period_ms,
            per_event,
        } => {
            let purpose = match purpose.as_str() {
                "research-sharing" => RewardPurpose::ResearchSharing,
                "adherence" => RewardPurpose::Adherence,
                other => bail!("purpose {other:?} is research-sharing or adherence"),
            };
            let issuer = client.get(&format!("/v1/accounts/{}", key.public_key()))?;
            let issuer = issuer["authority"]["org"]
                .as_str()
                .context("the signer is not an enrolled member or organisation")?
                .to_string();
            TokensOp::CreateRewardProgram {
                program: RewardProgram {
                    id,
                    symbol,
                    issuer,
                    purpose,
                    cap_per_period: amount(&cap)?,
                    period_ms,
                    per_event: per_event.as_deref().map(amount).transpose()?,
                },
            }
        }
        TokenCommand::Reward {
            program,
            patient,
            amount: how_much,
            reference: refers,
        } => TokensOp::Reward {
            program,
            patient: account(&patient)?,
            amount: amount(&how_much)?,
            reference: reference(&refers)?,
        },
        TokenCommand::AttestAdherence { program, care_plan } => TokensOp::AttestAdherence {
            program,
            care_plan: care_plan_id(client, &key, &care_plan)?,
        },
        TokenCommand::Class { symbol } => {
            crate::print(&client.get(&format!("/v1/tokens/classes/{symbol}"))?);
            return Ok(0);
        }
        TokenCommand::Balance { symbol, account } => {
            let account = account.unwrap_or_else(|| key.public_key().to_hex());
            crate::print(&client.get(&format!("/v1/tokens/classes/{symbol}/balances/{account}"))?);
            return Ok(0);
        }
        TokenCommand::Statement {
            account,
            offset,
            limit,
        } => {
            let account = account.unwrap_or_else(|| key.public_key().to_hex());
            crate::print(&client.get(&format!(
                "/v1/tokens/statements/{account}?offset={offset}&limit={limit}"
            ))?);
            return Ok(0);
        }
    };
    let escrow = match &op {
        TokensOp::Lock { id, .. } => Some(*id),
        _ => None,
    };
    let (code, mut result) = send(client, &key, op)?;
    if let Some(id) = escrow {
        result["escrow"] = json!(id);
    }
    crate::print(&result);
    Ok(code)
}
