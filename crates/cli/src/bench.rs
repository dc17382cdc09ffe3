//! `medledger bench`: a load generator that drives a node through its public API, as clients
//! would, and reports committed throughput and commit latency.
//!
//! It enrols fresh sender keys with an organisation's root key, signs every transaction before
//! the clock starts (signing is the clients' cost, not the node's), then submits batches from
//! several client threads. Commit latency is measured on a sample of transactions: from the
//! moment their batch was sent to the moment a long-polling observer sees their receipt, so it
//! is an upper bound that includes the observer's own polling delay.
//!
//! Given several nodes (`--node a,b,c`), client threads are spread over them round-robin, as a
//! consortium's clients would be, and each sample is observed on the node it was sent to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::{CoreOp, Payload, Tx, TxBody};
use medledger_types::Role;

use crate::client::Client;
use crate::home;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// The node(s) to load, comma-separated; client threads are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8640")]
    node: Vec<String>,
    /// An organisation's root key file, used to enrol the benchmark's sender keys.
    #[arg(long)]
    key: PathBuf,
    /// How many transactions to commit.
    #[arg(long, default_value_t = 200_000)]
    txs: usize,
    /// How many distinct sender keys.
    #[arg(long, default_value_t = 500)]
    senders: usize,
    /// Transactions per HTTP request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent client threads submitting batches.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Measure latency on one transaction in this many.
    #[arg(long, default_value_t = 200)]
    sample_every: usize,
    /// Offered load in transactions per second; unlimited when absent (saturation).
    #[arg(long)]
    rate: Option<u64>,
    /// The node's home, to report bytes on disk per transaction.
    #[arg(long)]
    home: Option<PathBuf>,
    /// What each transaction does: `anchor` (a commitment under a fresh id), `transfer` (one
    /// minor unit of a token class the bench creates, between its senders) or `claims` (a
    /// two-line professional claim, adjudicated and settled; `--senders` patients are covered).
    /// `transfer` and `claims` need a chain whose organisation alone is two thirds, such as
    /// `medledger dev`.
    #[arg(long, default_value = "anchor")]
    workload: String,
    /// The `contract` workload: each transaction calls this module's `execute` with
    /// `--contract-call` (e.g. contracts/examples/counter.wasm), deployed first with
    /// `--contract-init`. With the `claims` workload: the payer's rule contract, named for every
    /// code of the plan, deployed with `--contract-init`.
    #[arg(long)]
    contract: Option<PathBuf>,
    #[arg(long, default_value = r#"{"start": 0}"#)]
    contract_init: String,
    #[arg(long, default_value = r#"{"increment": {"by": 1}}"#)]
    contract_call: String,
    /// Grow the chain to this many state entries in steps of `--txs` transactions, measuring
    /// throughput and latency at each step (the curve goes to `--curve-out`).
    #[arg(long)]
    grow_to: Option<u64>,
    /// Where a `--grow-to` curve goes: a CSV, and an SVG chart beside it (same name, .svg).
    #[arg(long, default_value = "bench-curve.csv")]
    curve_out: PathBuf,
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The state entries at the head of the node `client` talks to.
fn state_entries(client: &Client) -> Result<u64> {
    client.get("/v1/status")?["state_entries"]
        .as_u64()
        .context("the node's status has no state_entries (an older node?)")
}

/// Grows the chain to `--grow-to` state entries, one run of `--txs` at a time, and writes the
/// curve as a CSV and an SVG chart.
fn curve(args: BenchArgs, grow_to: u64) -> Result<()> {
    let client = Client::new(args.node.first().context("--node")?);
    let mut rows = Vec::new();
    let mut csv =
        String::from("step,entries_before,entries_after,txs,tps,p50_ms,p99_ms,db_bytes\n");
    loop {
        let before = state_entries(&client)?;
        if before >= grow_to {
            break;
        }
        let measured = run_once(&args)?;
        let after = state_entries(&client)?;
        let db = disk_bytes(&args.home).unwrap_or(0);
        println!(
            "step {}: {before} -> {after} state entries: {:.0} tx/s, p50 {:.1} ms, p99 {:.1} ms",
            rows.len() + 1,
            measured.tps,
            measured.p50_ms,
            measured.p99_ms
        );
        csv.push_str(&format!(
            "{},{before},{after},{},{:.0},{:.1},{:.1},{db}\n",
            rows.len() + 1,
            args.txs,
            measured.tps,
            measured.p50_ms,
            measured.p99_ms
        ));
        std::fs::write(&args.curve_out, &csv)
            .with_context(|| format!("writing {}", args.curve_out.display()))?;
        rows.push((after, measured));
    }
    let svg = args.curve_out.with_extension("svg");
    std::fs::write(&svg, curve_svg(&rows)).with_context(|| format!("writing {}", svg.display()))?;
    println!("curve: {} and {}", args.curve_out.display(), svg.display());
    Ok(())
}

/// A line chart of throughput (left axis) and p99 commit latency (right axis) against state
/// entries, as plain SVG.
fn curve_svg(rows: &[(u64, Measured)]) -> String {
    let (width, height, left, right, top, bottom) = (760.0, 380.0, 70.0, 70.0, 30.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_x = rows.iter().map(|(x, _)| *x).max().unwrap_or(1).max(1) as f64;
    let max_tps = rows.iter().map(|(_, m)| m.tps).fold(1.0, f64::max) * 1.1;
    let max_p99 = rows.iter().map(|(_, m)| m.p99_ms).fold(1.0, f64::max) * 1.1;
    let x = |value: f64| left + value / max_x * plot_w;
    let y = |value: f64, max: f64| top + plot_h - value / max * plot_h;
    let line = |pick: &dyn Fn(&Measured) -> f64, max: f64| {
        rows.iter()
            .map(|(entries, m)| format!("{:.1},{:.1}", x(*entries as f64), y(pick(m), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for tick in 0..=5 {
        let fraction = f64::from(tick) / 5.0;
        let tx = left + fraction * plot_w;
        let ty = top + plot_h - fraction * plot_h;
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1f77b4\">{:.0}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\">{:.0}</text>\n\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}M</text>\n",
            left + plot_w,
            left - 6.0,
            ty + 4.0,
            fraction * max_tps,
            left + plot_w + 6.0,
            ty + 4.0,
            fraction * max_p99,
            top + plot_h + 18.0,
            fraction * max_x / 1e6
        ));
    }
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n\
         <polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"5,3\" points=\"{}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">state entries</text>\n\
         <text x=\"{left}\" y=\"18\" fill=\"#1f77b4\">committed tx/s</text>\n\
         <text x=\"{:.1}\" y=\"18\" text-anchor=\"end\" fill=\"#d62728\">p99 commit latency, ms (dashed)</text>\n</svg>\n",
        line(&|m| m.tps, max_tps),
        line(&|m| m.p99_ms, max_p99),
        left + plot_w / 2.0,
        height - 12.0,
        left + plot_w
    ));
    svg
}

/// Creates a token class issued by `org`'s organisation and mints each sender a balance;
/// returns the class's symbol.
fn token_setup(
    client: &Client,
    org: &SecretKey,
    chain_id: &str,
    senders: &[SecretKey],
    seed: u64,
    batch: usize,
) -> Result<String> {
    use medledger_tokens::{Amount, ClassSpec, TokensOp};
    let symbol = format!("BENCH{}", seed % 1_000_000);
    let account = client.get(&format!("/v1/accounts/{}", org.public_key()))?;
    let issuer = account["authority"]["org"]
        .as_str()
        .context("--key is not an organisation's root key")?
        .to_string();
    let propose = client.submit(
        org,
        TokensOp::ProposeClass {
            spec: ClassSpec {
                symbol: symbol.clone(),
                name: "benchmark".into(),
                decimals: 0,
                issuers: vec![issuer],
            },
        },
    )?;
    client.wait(&propose, Duration::from_secs(60))?;
    let (status, _) = client.get_raw(&format!("/v1/tokens/classes/{symbol}"))?;
    let class = client.get(&format!("/v1/tokens/classes/{symbol}"))?;
    if status != 200 || !class["entry"]["class"].is_object() {
        bail!(
            "the class awaits other organisations' approval: run the transfer workload on a chain whose organisation alone decides (medledger dev)"
        );
    }
    let mints: Vec<Payload> = senders
        .iter()
        .map(|sender| {
            TokensOp::Mint {
                symbol: symbol.clone(),
                to: sender.public_key(),
                amount: Amount(1_000_000_000),
                reference: None,
            }
            .into()
        })
        .collect();
    if !mints.is_empty() {
        setup(
            client,
            org,
            chain_id,
            mints,
            batch,
            "minting the senders' balances",
        )?;
    }
    Ok(symbol)
}

/// Signs `payloads` with `org`'s consecutive nonces, submits them and waits for the last.
fn setup(
    client: &Client,
    org: &SecretKey,
    chain_id: &str,
    payloads: Vec<Payload>,
    batch: usize,
    what: &str,
) -> Result<()> {
    let first = client.next_nonce(&org.public_key())?;
    let txs: Vec<Tx> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            TxBody {
                chain_id: chain_id.to_string(),
                sender: org.public_key(),
                nonce: first + i as u64,
                payload,
            }
            .sign(org)
        })
        .collect();
    for chunk in txs.chunks(batch) {
        submit_all(client, chunk)?;
    }
    let last = txs.last().context("nothing to set up")?;
    let done = client.wait(&last.id(), Duration::from_secs(120))?;
    if done["status"] != "committed" {
        bail!("{what} failed: {done}");
    }
    Ok(())
}

/// What the claims workload bills: a plan of `CLAIM_CODES` services, and patients each with an
/// Encounter on record, bound to an enrolled key and covered.
struct ClaimsWorld {
    provider: medledger_crypto::PublicKey,
    plan: String,
    /// (patient id, encounter record, coverage), one per patient.
    patients: Vec<(Hash, Hash, Hash)>,
}

/// The service codes the claims workload bills, two per claim.
const CLAIM_CODES: usize = 20;

/// Sets up the claims workload on a chain whose organisation alone decides: a settlement class,
/// a payer account (an insurer member) funded by it, a plan, and `patients` covered patients
/// with an Encounter each. The organisation is provider and payer at once; its root key renders
/// the services and is paid.
fn claims_setup(
    client: &Client,
    org: &SecretKey,
    chain_id: &str,
    seed: u64,
    patients: usize,
    batch: usize,
) -> Result<ClaimsWorld> {
    use medledger_claims::{ClaimsOp, CoverageInput, Date, PolicyInput, PriorAuth, ServiceRule};
    use medledger_tokens::{Amount, TokensOp};
    let symbol = token_setup(client, org, chain_id, &[], seed, batch)?;
    let payer = SecretKey::from_seed(seed ^ 0x5eed);
    let mut payloads: Vec<Payload> = vec![
        CoreOp::Enrol {
            member: payer.public_key(),
            role: Role::Insurer,
        }
        .into(),
        TokensOp::Mint {
            symbol: symbol.clone(),
            to: payer.public_key(),
            amount: Amount(u128::from(u64::MAX)),
            reference: None,
        }
        .into(),
        ClaimsOp::PublishPolicy {
            policy: PolicyInput {
                plan: format!("bench{}", seed % 1_000_000),
                effective: Date::from_ymd(2025, 1, 1).context("a date")?,
                symbol,
                account: payer.public_key(),
                deductible: Amount(5_000),
                copay: Amount(1_000),
                coinsurance_bp: 2_000,
                annual_limit: None,
                payment_consent_required: false,
                review_charge_ratio_bp: 30_000,
                authorisation_days: 90,
                escrow_authorisations: false,
                services: (0..CLAIM_CODES)
                    .map(|c| ServiceRule {
                        code: format!("{}", 99_200 + c),
                        allowed: Amount(10_000 + 500 * c as u128),
                        units_per_day_max: 1,
                        annual_units_max: None,
                        prior_auth: PriorAuth::NotRequired,
                    })
                    .collect(),
                edits: Vec::new(),
            },
        }
        .into(),
    ];
    let plan = format!("bench{}", seed % 1_000_000);
    let mut world = ClaimsWorld {
        provider: org.public_key(),
        plan: plan.clone(),
        patients: Vec::with_capacity(patients),
    };
    for p in 0..patients as u64 {
        let key = SecretKey::from_seed(seed.wrapping_add(1_000_000 + p));
        let tag = |what: &str| sha256(format!("{seed}/{what}/{p}").as_bytes());
        let (patient, encounter, coverage) = (tag("patient"), tag("encounter"), tag("coverage"));
        payloads.push(
            CoreOp::Enrol {
                member: key.public_key(),
                role: Role::Patient,
            }
            .into(),
        );
        payloads.push(
            medledger_records::RecordsOp::PutRecords {
                records: vec![medledger_records::RecordWrite {
                    record: encounter,
                    patient,
                    resource_type: "Encounter".into(),
                    category: None,
                    version: 1,
                    commitment: tag("commitment"),
                    author: org.public_key(),
                }],
            }
            .into(),
        );
        payloads.push(
            medledger_records::RecordsOp::BindPatient {
                patient,
                key: key.public_key(),
            }
            .into(),
        );
        payloads.push(
            ClaimsOp::Cover {
                coverage: CoverageInput {
                    id: coverage,
                    plan: plan.clone(),
                    member: key.public_key(),
                    start: Date::from_ymd(2025, 1, 1).context("a date")?,
                    end: None,
                },
            }
            .into(),
        );
        world.patients.push((patient, encounter, coverage));
    }
    setup(
        client,
        org,
        chain_id,
        payloads,
        batch,
        "setting up the claims workload",
    )?;
    Ok(world)
}

/// Claim `i`: two services for one patient on one day, no two claims billing the same code for
/// the same patient and day (so none is a duplicate).
fn bench_claim(world: &ClaimsWorld, seed: u64, i: usize) -> Result<Payload> {
    use medledger_claims::{ClaimItem, ClaimKind, ClaimSubmission, ClaimUse, ClaimsOp, Date};
    let patients = world.patients.len();
    let pairs = CLAIM_CODES / 2;
    let (patient, encounter, coverage) = world.patients[i % patients];
    let pair = (i / patients) % pairs;
    let day = (i / (patients * pairs)) as u32;
    let service_date = Date(Date::from_ymd(2025, 1, 1).context("a date")?.0 + day);
    let item = |n: usize| ClaimItem {
        sequence: n as u32 + 1,
        code: format!("{}", 99_200 + 2 * pair + n),
        service_date,
        units: 1,
        charge: medledger_tokens::Amount(15_000),
    };
    Ok(ClaimsOp::Submit {
        claim: ClaimSubmission {
            id: sha256(format!("{seed}/claim/{i}").as_bytes()),
            use_: ClaimUse::Claim,
            kind: ClaimKind::Professional,
            coverage,
            patient,
            provider: world.provider,
            payee: world.provider,
            encounter: Some(encounter),
            authorisation: None,
            diagnoses: vec!["E11.9".into()],
            items: vec![item(0), item(1)],
            commitment: sha256(format!("{seed}/commitment/{i}").as_bytes()),
        },
    }
    .into())
}

/// Stores and deploys a contract on a chain whose organisation alone decides; answers its address.
fn contract_setup(
    client: &Client,
    org: &SecretKey,
    chain_id: &str,
    wasm: &std::path::Path,
    init: &str,
    batch: usize,
) -> Result<Hash> {
    use medledger_contracts::{ContractsAction, ContractsOp, PART_BYTES_MAX, address_of};
    use medledger_ledger::governance::{Action, GovernanceOp};
    let code = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let code_hash = sha256(&code);
    let (status, _) = client.get_raw(&format!("/v1/contracts/code/{code_hash}"))?;
    if status != 200 {
        let parts: Vec<Payload> = code
            .chunks(PART_BYTES_MAX)
            .enumerate()
            .map(|(part, bytes)| {
                ContractsOp::UploadCode {
                    code_hash,
                    size: code.len() as u64,
                    part: part as u32,
                    bytes: bytes.to_vec(),
                }
                .into()
            })
            .collect();
        setup(client, org, chain_id, parts, batch, "storing the contract")?;
    }
    let height = client.get("/v1/status")?["height"]
        .as_u64()
        .context("status has no height")?;
    let propose = client.submit(
        org,
        GovernanceOp::Propose {
            action: Action::Contracts(ContractsAction::DeployContract {
                code_hash,
                label: "bench".into(),
                msg: init.into(),
            }),
            expires_at: height + 1_000,
        },
    )?;
    client.wait(&propose, Duration::from_secs(60))?;
    let address = address_of(&propose);
    let (status, _) = client.get_raw(&format!("/v1/contracts/{address}"))?;
    if status != 200 {
        bail!(
            "the contract was not deployed (it awaits other organisations' approval, or its instantiate failed: see /v1/governance/proposals/{propose}): run the contract workload on a chain whose organisation alone decides (medledger dev)"
        );
    }
    Ok(address)
}

fn style(bar: &ProgressBar, what: &str) {
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
}

/// The size of the node's ledger file, when its home is known.
pub(crate) fn disk_bytes(home: &Option<PathBuf>) -> Option<u64> {
    let home = home.as_ref()?;
    let config = home::Config::load(home).ok()?;
    std::fs::metadata(home.join(config.data_dir).join("ledger.redb"))
        .ok()
        .map(|meta| meta.len())
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.grow_to {
        Some(grow_to) => curve(args, grow_to),
        None => run_once(&args).map(|_| ()),
    }
}

fn run_once(args: &BenchArgs) -> Result<Measured> {
    if args.senders == 0 || args.batch == 0 || args.clients == 0 || args.sample_every == 0 {
        bail!("--senders, --batch, --clients and --sample-every must be positive");
    }
    if args.node.is_empty() {
        bail!("--node needs at least one address");
    }
    let nodes: Vec<Client> = args.node.iter().map(|url| Client::new(url)).collect();
    let client = nodes[0].clone();
    let org = home::read_key(&args.key)?;
    let chain_id = client.chain_id()?;
    let disk_before = disk_bytes(&args.home);

    // Fresh sender keys every run: a key can be enrolled only once.
    let mut seed_bytes = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed_bytes);
    let seed = u64::from_le_bytes(seed_bytes);
    let senders: Vec<SecretKey> = (0..args.senders as u64)
        .map(|i| SecretKey::from_seed(seed.wrapping_add(i)))
        .collect();
    let first_nonce = client.next_nonce(&org.public_key())?;
    let enrolments: Vec<Tx> = senders
        .iter()
        .enumerate()
        .map(|(i, sender)| {
            TxBody {
                chain_id: chain_id.clone(),
                sender: org.public_key(),
                nonce: first_nonce + i as u64,
                payload: CoreOp::Enrol {
                    member: sender.public_key(),
                    role: Role::Device,
                }
                .into(),
            }
            .sign(&org)
        })
        .collect();
    for chunk in enrolments.chunks(args.batch) {
        submit_all(&client, chunk)?;
    }
    let last = enrolments.last().context("no senders")?;
    // Every node must know the senders before it is sent their transactions.
    for node in &nodes {
        let state = node.wait(&last.id(), Duration::from_secs(120))?;
        if state["status"] != "committed" {
            bail!("enrolling the benchmark's senders failed: {}", state);
        }
    }
    eprintln!("enrolled {} sender keys", senders.len());
    let mut contract = None;
    let (symbol, claims) = match args.workload.as_str() {
        "anchor" => (None, None),
        "contract" => {
            let wasm = args
                .contract
                .as_ref()
                .context("the contract workload needs --contract <module.wasm>")?;
            contract = Some(contract_setup(
                &client,
                &org,
                &chain_id,
                wasm,
                &args.contract_init,
                args.batch,
            )?);
            (None, None)
        }
        "transfer" => (
            Some(token_setup(
                &client, &org, &chain_id, &senders, seed, args.batch,
            )?),
            None,
        ),
        "claims" => (
            None,
            Some(claims_setup(
                &client,
                &org,
                &chain_id,
                seed,
                args.senders,
                args.batch,
            )?),
        ),
        other => bail!("--workload {other:?} is anchor, transfer, contract or claims"),
    };
    if let (Some(world), Some(wasm)) = (&claims, &args.contract) {
        let address = contract_setup(
            &client,
            &org,
            &chain_id,
            wasm,
            &args.contract_init,
            args.batch,
        )?;
        setup(
            &client,
            &org,
            &chain_id,
            vec![
                medledger_claims::ClaimsOp::SetRuleContract {
                    plan: world.plan.clone(),
                    contract: Some(address),
                    codes: Vec::new(),
                }
                .into(),
            ],
            1,
            "naming the rule contract",
        )?;
        eprintln!("rule contract {address} adjudicates the plan's items");
    }
    if let Some(address) = &contract {
        eprintln!("contract {address} deployed");
    }
    if let Some(symbol) = &symbol {
        eprintln!("token class {symbol} created and every sender funded");
    }
    if let Some(world) = &claims {
        eprintln!(
            "plan published and {} patients covered, each with an Encounter",
            world.patients.len()
        );
    }

    // Sign everything up front, on every core.
    let bar = ProgressBar::new(args.txs as u64);
    style(&bar, "signing");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut txs: Vec<Tx> = Vec::with_capacity(args.txs);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                let (senders, chain_id, bar, symbol, claims, contract) =
                    (&senders, &chain_id, &bar, &symbol, &claims, &contract);
                let call = &args.contract_call;
                let total = args.txs;
                scope.spawn(move || {
                    (part..total)
                        .step_by(threads)
                        .map(|i| {
                            let sender = &senders[i % senders.len()];
                            let payload = match (symbol, claims, contract) {
                                (_, _, Some(address)) => {
                                    medledger_contracts::ContractsOp::ExecuteContract {
                                        contract: *address,
                                        msg: call.clone(),
                                    }
                                    .into()
                                }
                                (_, Some(world), None) => match bench_claim(world, seed, i) {
                                    Ok(payload) => payload,
                                    Err(_) => return None,
                                },
                                // One minor unit to the next sender.
                                (Some(symbol), None, None) => {
                                    medledger_tokens::TokensOp::Transfer {
                                        symbol: symbol.clone(),
                                        to: senders[(i + 1) % senders.len()].public_key(),
                                        amount: medledger_tokens::Amount(1),
                                        reason: medledger_tokens::Reason::Transfer,
                                        reference: None,
                                    }
                                    .into()
                                }
                                (None, None, None) => CoreOp::Anchor {
                                    id: sha256(
                                        &[&seed.to_le_bytes()[..], &(i as u64).to_le_bytes()]
                                            .concat(),
                                    ),
                                    commitment: sha256(&(i as u64).to_be_bytes()),
                                }
                                .into(),
                            };
                            let tx = TxBody {
                                chain_id: chain_id.clone(),
                                sender: sender.public_key(),
                                nonce: (i / senders.len()) as u64 + 1,
                                payload,
                            }
                            .sign(sender);
                            bar.inc(1);
                            Some((i, tx))
                        })
                        .collect::<Option<Vec<_>>>()
                        .unwrap_or_default()
                })
            })
            .collect();
        let mut all: Vec<(usize, Tx)> = handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        txs.extend(all.into_iter().map(|(_, tx)| tx));
    });
    bar.finish_and_clear();
    if txs.len() != args.txs {
        bail!("a signing thread failed");
    }

    // Submit from several clients; observers long-poll sampled receipts.
    let batches: Vec<&[Tx]> = txs.chunks(args.batch).collect();
    let next = AtomicUsize::new(0);
    // Which node each batch went to, so its transactions are awaited where they are known.
    let sent_to: Vec<AtomicUsize> = batches.iter().map(|_| AtomicUsize::new(0)).collect();
    let (sample_tx, sample_rx) = mpsc::channel::<(Instant, Hash, usize)>();
    let sample_rx = std::sync::Mutex::new(sample_rx);
    let bar = ProgressBar::new(args.txs as u64);
    style(&bar, "submitting");
    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let observers: Vec<_> = (0..2)
            .map(|_| {
                let (nodes, sample_rx) = (&nodes, &sample_rx);
                scope.spawn(move || -> Result<(Vec<Duration>, Vec<String>)> {
                    let (mut seen, mut failed) = (Vec::new(), Vec::new());
                    loop {
                        let next = sample_rx
                            .lock()
                            .map_err(|_| anyhow::anyhow!("observer lock poisoned"))?
                            .recv();
                        let Ok((sent, id, node)) = next else {
                            return Ok((seen, failed));
                        };
                        let state = nodes[node].wait(&id, Duration::from_secs(300))?;
                        if state["status"] == "committed" {
                            seen.push(sent.elapsed());
                        } else {
                            failed.push(state.to_string());
                        }
                    }
                })
            })
            .collect();
        let submitters: Vec<_> = (0..args.clients)
            .map(|thread| {
                let node = thread % nodes.len();
                let (client, batches, next, bar, sample_tx, sent_to) = (
                    nodes[node].clone(),
                    &batches,
                    &next,
                    &bar,
                    sample_tx.clone(),
                    &sent_to,
                );
                scope.spawn(move || -> Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(batch) = batches.get(index) else {
                            return Ok(());
                        };
                        if let Some(rate) = args.rate.filter(|rate| *rate > 0) {
                            let due = started
                                + Duration::from_secs_f64(
                                    (index * args.batch) as f64 / rate as f64,
                                );
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        }
                        let sent = Instant::now();
                        sent_to[index].store(node, Ordering::SeqCst);
                        submit_all(&client, batch)?;
                        for (position, tx) in batch.iter().enumerate() {
                            if (index * args.batch + position).is_multiple_of(args.sample_every) {
                                let _ = sample_tx.send((sent, tx.id(), node));
                            }
                        }
                        bar.inc(batch.len() as u64);
                    }
                })
            })
            .collect();
        drop(sample_tx);
        for submitter in submitters {
            submitter
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        bar.finish_and_clear();
        // The run ends when each sender's last transaction has committed. Transactions go to
        // senders round-robin, so the last `senders.len()` of them are those.
        for (position, last) in txs.iter().enumerate().rev().take(senders.len()) {
            let node = sent_to[position / args.batch].load(Ordering::SeqCst);
            let state = nodes[node].wait(&last.id(), Duration::from_secs(300))?;
            if state["status"] != "committed" {
                failures.push(state.to_string());
            }
        }
        for observer in observers {
            let (seen, failed) = observer
                .join()
                .map_err(|_| anyhow::anyhow!("an observer thread panicked"))??;
            latencies.extend(seen);
            failures.extend(failed);
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let tps = args.txs as f64 / elapsed.as_secs_f64();
    println!(
        "transactions committed: {} in {:.2} s",
        args.txs,
        elapsed.as_secs_f64()
    );
    println!("throughput:             {tps:.0} tx/s");
    println!(
        "commit latency:         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(50).as_secs_f64() * 1e3,
        percentile(99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len()
    );
    if let (Some(before), Some(after)) = (disk_before, disk_bytes(&args.home)) {
        println!(
            "bytes on disk per tx:   {:.0} (database file grew {} bytes)",
            after.saturating_sub(before) as f64 / args.txs as f64,
            after.saturating_sub(before)
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} sampled transactions did not commit; first: {}",
            failures.len(),
            failures[0]
        );
    }
    Ok(Measured {
        tps,
        p50_ms: percentile(50).as_secs_f64() * 1e3,
        p99_ms: percentile(99).as_secs_f64() * 1e3,
    })
}

/// Submits a batch, resubmitting what the node refuses only because its mempool is full.
fn submit_all(client: &Client, txs: &[Tx]) -> Result<()> {
    let mut pending: Vec<Tx> = txs.to_vec();
    for _ in 0..600 {
        let results = client.submit_batch(&pending)?;
        let mut retry = Vec::new();
        for (tx, result) in pending.iter().zip(&results) {
            match result["error"]["code"].as_str() {
                None => {}
                Some("mempool_full") => retry.push(tx.clone()),
                Some(_) => bail!("the node refused a benchmark transaction: {result}"),
            }
        }
        if retry.is_empty() {
            return Ok(());
        }
        pending = retry;
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the mempool stayed full for 30 s")
}

/// `medledger bench-crypto`: the machine's limits for the node's hot path, measured one core at
/// a time: Ed25519 verification alone and batched, SHA-256, and an fsync'd 4 KiB append.
pub fn crypto(dir: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let count = 20_000;
    let keys: Vec<SecretKey> = (0..64).map(SecretKey::from_seed).collect();
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i: u32| [&i.to_le_bytes()[..], &[7u8; 150]].concat())
        .collect();
    let signed: Vec<(
        medledger_crypto::PublicKey,
        &[u8],
        medledger_crypto::Signature,
    )> = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            (
                keys[i % 64].public_key(),
                message.as_slice(),
                keys[i % 64].sign(message),
            )
        })
        .collect();
    let started = Instant::now();
    for (key, message, signature) in &signed {
        key.verify(message, signature)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    let single = count as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in signed.chunks(1_000) {
        if !medledger_crypto::verify_batch(chunk).is_empty() {
            bail!("batch verification failed");
        }
    }
    let batched = count as f64 / started.elapsed().as_secs_f64();
    let data = vec![0x5au8; 64 << 20];
    let started = Instant::now();
    let digest = sha256(&data);
    let sha_gbps = data.len() as f64 / started.elapsed().as_secs_f64() / 1e9;
    let path = dir.join(format!(".medledger-fsync-probe-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&[1u8; 4096])?;
        file.sync_data()?;
    }
    let fsync_ms = started.elapsed().as_secs_f64() * 1e3 / rounds as f64;
    drop(file);
    std::fs::remove_file(&path)?;
    println!("ed25519 verify, one at a time: {single:.0} signatures/s per core");
    println!("ed25519 verify, batches of 1000: {batched:.0} signatures/s per core");
    println!(
        "sha-256: {sha_gbps:.2} GB/s per core (digest {})",
        &digest.to_hex()[..8]
    );
    println!(
        "fsync'd 4 KiB append in {}: {fsync_ms:.2} ms each ({:.0}/s)",
        dir.display(),
        1e3 / fsync_ms
    );
    Ok(())
}

#[cfg(test)]
mod curve_tests {
    use super::*;

    /// The chart draws one point per step on each line, and labels both axes up to their
    /// largest value.
    #[test]
    fn the_curve_chart_plots_every_step() {
        let step = |tps: f64, p99_ms: f64| Measured {
            tps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
        };
        let rows = vec![
            (1_000_000, step(20_000.0, 90.0)),
            (2_000_000, step(15_000.0, 120.0)),
            (3_000_000, step(12_000.0, 150.0)),
        ];
        let svg = curve_svg(&rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let polylines: Vec<&str> = svg
            .lines()
            .filter(|line| line.starts_with("<polyline"))
            .collect();
        assert_eq!(polylines.len(), 2);
        for line in polylines {
            let points = line
                .split("points=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("points");
            assert_eq!(points.split(' ').count(), rows.len(), "{line}");
        }
        assert!(svg.contains(">3.0M<"), "the x axis reaches the last step");
        assert!(
            svg.contains(">22000<"),
            "the throughput axis tops at 110% of the best"
        );
    }
}
