//! `medledger supply ...`: the drug supply chain from the command line, as a manufacturer's
//! packaging line, a wholesaler's dock or a pharmacy's scanner would drive it. Lifecycle steps
//! are transactions the signer signs; verification, recall reports, traces, labels and EPCIS go
//! through the node's API with signed requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::auth::AccessHeaders;
use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::TxBody;
use medledger_supply::{
    Gtin, Item, Place, ProductSpec, Reading, Sscc, SupplyOp, SupplyPayload, TempRange,
    UNITS_PER_COMMISSION_MAX, UnitId, UnitStatus, shipment_id,
};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(Subcommand)]
pub enum SupplyCommand {
    /// Register a product you make (signer: a manufacturer or your organisation's root key).
    Register {
        #[arg(long)]
        gtin: String,
        #[arg(long)]
        name: String,
        /// Storage range in °C, e.g. `2..8` (omit for none).
        #[arg(long)]
        storage: Option<String>,
    },
    /// Register a location (GLN) your organisation operates.
    Location {
        #[arg(long)]
        gln: String,
        #[arg(long)]
        name: String,
    },
    /// Commission serialised units of one lot, in transactions of up to 2,500 units.
    Commission {
        #[arg(long)]
        gtin: String,
        #[arg(long)]
        lot: String,
        /// YYMMDD, as printed in AI (17); day 00 is the month's last day.
        #[arg(long)]
        expiry: String,
        #[command(flatten)]
        serials: SerialArgs,
        #[arg(long)]
        location: Option<String>,
    },
    /// Pack units (`--unit <GS1 code>`) and containers (`--sscc-child`) into a case or pallet.
    Pack(ContainerArgs),
    /// Unpack a container (everything, or the named items).
    Unpack(ContainerArgs),
    /// Ship loose units and containers to another organisation; prints the shipment id.
    Ship {
        #[arg(long)]
        to: String,
        #[arg(long = "unit")]
        units: Vec<String>,
        #[arg(long = "sscc")]
        containers: Vec<String>,
        #[arg(long)]
        location: Option<String>,
    },
    /// Confirm receipt of a shipment addressed to your organisation: custody passes.
    Receive {
        #[arg(long)]
        shipment: String,
        #[arg(long)]
        location: Option<String>,
    },
    /// Dispense units.
    Dispense {
        #[arg(long = "unit", required = true)]
        units: Vec<String>,
    },
    /// Return dispensed units to stock.
    Return {
        #[arg(long = "unit", required = true)]
        units: Vec<String>,
    },
    /// Destroy units.
    Destroy {
        #[arg(long = "unit", required = true)]
        units: Vec<String>,
    },
    /// Recall a lot (signer: the product's manufacturer).
    Recall {
        #[arg(long)]
        gtin: String,
        #[arg(long)]
        lot: String,
        #[arg(long)]
        reason: String,
    },
    /// Place a sensor device of your organisation on a shipment or at a location.
    AttachSensor {
        #[arg(long)]
        device: String,
        #[arg(
            long,
            conflicts_with = "location",
            required_unless_present = "location"
        )]
        shipment: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// The alarm band kept at a location, in °C, e.g. `2..8`.
        #[arg(long)]
        band: Option<String>,
    },
    /// Report temperature readings as a sensor device (signer: the device), e.g. `--celsius 9.5`.
    Reading {
        #[arg(long = "celsius", required = true, allow_hyphen_values = true)]
        values: Vec<String>,
    },
    /// Verify a scanned code: prints the verdict; exits 0 for genuine, 3 for suspect.
    Verify { code: String },
    /// Every unit of a lot with its custodian, location and containers.
    RecallReport {
        #[arg(long)]
        gtin: String,
        #[arg(long)]
        lot: String,
    },
    /// The custody timeline of a unit (its GS1 code) or a container (`--sscc`).
    Trace {
        code: Option<String>,
        #[arg(long, conflicts_with = "code")]
        sscc: Option<String>,
    },
    /// Render a unit's label: its GS1 DataMatrix or the QR code of its Digital Link.
    Label {
        code: String,
        /// `datamatrix` or `qr`.
        #[arg(long, default_value = "datamatrix")]
        symbol: String,
        /// `png` or `svg`.
        #[arg(long, default_value = "png")]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Capture an EPCIS 2.0 document (JSON-LD) through your organisation's node.
    Capture { file: PathBuf },
    /// Query captured EPCIS events; prints an EPCISQueryDocument.
    Events {
        #[arg(long)]
        epc: Option<String>,
        #[arg(long)]
        biz_step: Option<String>,
        /// RFC 3339, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339, exclusive.
        #[arg(long)]
        until: Option<String>,
    },
}

/// A container and the items to put in or take out of it.
#[derive(clap::Args)]
pub struct ContainerArgs {
    #[arg(long)]
    sscc: String,
    #[arg(long = "unit")]
    units: Vec<String>,
    #[arg(long = "sscc-child")]
    containers: Vec<String>,
    #[arg(long)]
    location: Option<String>,
}

impl ContainerArgs {
    fn parts(self) -> Result<(Sscc, Vec<Item>, Option<String>)> {
        Ok((
            Sscc::parse(&self.sscc)?,
            items(&self.units, &self.containers)?,
            self.location,
        ))
    }
}

/// Parses a GS1 code naming a unit.
fn unit_id(code: &str) -> Result<UnitId> {
    let scan =
        medledger_gs1::parse_scan(code).map_err(|error| anyhow::anyhow!("{code:?}: {error}"))?;
    let (Some(gtin), Some(serial)) = (scan.get("01"), scan.get("21")) else {
        bail!("{code:?} names no serialised unit: it needs AI (01) and (21)");
    };
    Ok(UnitId {
        gtin: Gtin::parse(gtin)?,
        serial: serial.to_string(),
    })
}

fn items(units: &[String], containers: &[String]) -> Result<Vec<Item>> {
    let mut out: Vec<Item> = units
        .iter()
        .map(|code| unit_id(code).map(Item::Unit))
        .collect::<Result<_>>()?;
    for sscc in containers {
        out.push(Item::Container(Sscc::parse(sscc)?));
    }
    Ok(out)
}

/// Degrees Celsius as decimal text (`-2.5`, `8`) in milli-degrees, without floating point.
pub fn milli_celsius(text: &str) -> Result<i32> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || fraction.len() > 3
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        bail!("{text:?} is not a temperature in °C with at most three decimals");
    }
    let whole: i32 = whole
        .parse()
        .with_context(|| format!("{text:?} is out of range"))?;
    let fraction: i32 = format!("{fraction:0<3}").parse().unwrap_or(0);
    let value = whole
        .checked_mul(1000)
        .and_then(|milli| milli.checked_add(fraction))
        .with_context(|| format!("{text:?} is out of range"))?;
    Ok(if negative { -value } else { value })
}

fn range(text: &str) -> Result<TempRange> {
    let (min, max) = text
        .split_once("..")
        .with_context(|| format!("{text:?} is not a range like 2..8"))?;
    Ok(TempRange {
        min_milli_c: milli_celsius(min)?,
        max_milli_c: milli_celsius(max)?,
    })
}

/// The serials of a commissioning. A GS1 serial (AI 21) may hold commas, dots and a leading
/// `-`, so a serial is only ever given whole: one per `--serial`, or one per line of a file.
/// Only `--range` reads structure, and only decimal numbers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SerialArgs {
    /// One serial, exactly as written (repeat the flag for more); `--serial -7` and
    /// `--serial 'AB,CD'` are single serials.
    #[arg(long = "serial", allow_hyphen_values = true)]
    pub serial: Vec<String>,
    /// A range `FIRST..LAST` of decimal numbers, the width of FIRST kept (`0001..0100` gives
    /// zero-padded serials); repeat for more.
    #[arg(long = "range")]
    pub range: Vec<String>,
    /// A file of serials, one per line exactly as written (`-` for standard input); blank lines
    /// are skipped and a line's trailing carriage return is dropped.
    #[arg(long = "serials-from")]
    pub serials_from: Option<PathBuf>,
}

/// The most serials one command commissions.
pub const SERIALS_MAX: usize = 10_000_000;

impl SerialArgs {
    /// Every serial, in the order given: the `--serial`s, then the file's, then the ranges'.
    /// Refuses none at all, a serial given twice, and a malformed or oversized range.
    pub fn expand(&self) -> Result<Vec<String>> {
        let mut out = self.serial.clone();
        if let Some(path) = &self.serials_from {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading serials from stdin")?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading serials from {}", path.display()))?
            };
            out.extend(
                text.lines()
                    .map(|line| line.strip_suffix('\r').unwrap_or(line))
                    .filter(|line| !line.is_empty())
                    .map(str::to_string),
            );
        }
        for range in &self.range {
            let numbers = range.split_once("..").filter(|(first, last)| {
                [first, last].iter().all(|side| {
                    !side.is_empty() && side.len() <= 20 && side.bytes().all(|b| b.is_ascii_digit())
                })
            });
            let Some((first, last)) = numbers else {
                bail!(
                    "--range {range:?} is not FIRST..LAST of decimal numbers; give a serial \
                     holding '..' with --serial"
                );
            };
            let width = first.len();
            let (from, to): (u64, u64) = (
                first.parse().context("range start")?,
                last.parse().context("range end")?,
            );
            if to < from || to - from >= SERIALS_MAX as u64 {
                bail!("--range {range} is empty or longer than {SERIALS_MAX}");
            }
            out.extend((from..=to).map(|n| format!("{n:0width$}")));
            if out.len() > SERIALS_MAX {
                bail!("more than {SERIALS_MAX} serials in one command");
            }
        }
        if out.is_empty() {
            bail!("no serials given: use --serial, --range or --serials-from");
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = out.iter().find(|serial| !seen.insert(serial.as_str())) {
            bail!("serial {twice:?} is given twice");
        }
        Ok(out)
    }
}

fn ops_tx(client: &Client, key: &SecretKey, ops: Vec<SupplyOp>) -> Result<i32> {
    let id = client.submit(key, SupplyPayload::Supply { ops })?;
    finish(client, &id)
}

fn finish(client: &Client, id: &Hash) -> Result<i32> {
    let result = client.wait(id, Duration::from_secs(60))?;
    crate::print(&result);
    Ok(match result["status"].as_str() {
        Some("committed") => 0,
        _ => {
            eprintln!("the supply transaction was not applied");
            2
        }
    })
}

/// Sends a signed request and fails on an error status with the API's message.
fn call(
    client: &Client,
    key: &SecretKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let (status, bytes) = signed(client, key, method, path, body, &AccessHeaders::default())?;
    if !(200..300).contains(&status) {
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let reasons = value["error"]["reasons"]
            .as_array()
            .map(|reasons| {
                reasons
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|reason| format!("\n  - {reason}"))
                    .collect::<String>()
            })
            .unwrap_or_default();
        bail!("the node answered {status}: {message}{reasons}");
    }
    Ok((status, bytes))
}

fn call_json(
    client: &Client,
    key: &SecretKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Value> {
    let (_, bytes) = call(client, key, method, path, body)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn query_value(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn run(client: &Client, key: &Path, command: SupplyCommand) -> Result<i32> {
    let key = home::read_key(key)?;
    match command {
        SupplyCommand::Register {
            gtin,
            name,
            storage,
        } => {
            let product = ProductSpec {
                gtin: Gtin::parse(&gtin)?,
                name,
                storage: storage.as_deref().map(range).transpose()?,
            };
            ops_tx(client, &key, vec![SupplyOp::RegisterProduct { product }])
        }
        SupplyCommand::Location { gln, name } => {
            ops_tx(client, &key, vec![SupplyOp::RegisterLocation { gln, name }])
        }
        SupplyCommand::Commission {
            gtin,
            lot,
            expiry,
            serials,
            location,
        } => commission(
            client,
            &key,
            Gtin::parse(&gtin)?,
            &lot,
            &expiry,
            &serials.expand()?,
            location,
        ),
        SupplyCommand::Pack(args) => {
            let (parent, children, location) = args.parts()?;
            ops_tx(
                client,
                &key,
                vec![SupplyOp::Pack {
                    parent,
                    children,
                    location,
                }],
            )
        }
        SupplyCommand::Unpack(args) => {
            let (parent, children, location) = args.parts()?;
            ops_tx(
                client,
                &key,
                vec![SupplyOp::Unpack {
                    parent,
                    children,
                    location,
                }],
            )
        }
        SupplyCommand::Ship {
            to,
            units,
            containers,
            location,
        } => {
            let id = client.submit(
                &key,
                SupplyPayload::Supply {
                    ops: vec![SupplyOp::Ship {
                        to,
                        items: items(&units, &containers)?,
                        location,
                    }],
                },
            )?;
            let code = finish(client, &id)?;
            if code == 0 {
                println!("shipment {}", shipment_id(&id, 0));
            }
            Ok(code)
        }
        SupplyCommand::Receive { shipment, location } => ops_tx(
            client,
            &key,
            vec![SupplyOp::Receive {
                shipment: crate::parse_hash(&shipment, "shipment id")?,
                location,
            }],
        ),
        SupplyCommand::Dispense { units } => status(client, &key, &units, UnitStatus::Dispensed),
        SupplyCommand::Return { units } => status(client, &key, &units, UnitStatus::Active),
        SupplyCommand::Destroy { units } => status(client, &key, &units, UnitStatus::Destroyed),
        SupplyCommand::Recall { gtin, lot, reason } => ops_tx(
            client,
            &key,
            vec![SupplyOp::Recall {
                gtin: Gtin::parse(&gtin)?,
                lot,
                reason,
            }],
        ),
        SupplyCommand::AttachSensor {
            device,
            shipment,
            location,
            band,
        } => {
            let place = match (shipment, location) {
                (Some(shipment), None) => {
                    Place::Shipment(crate::parse_hash(&shipment, "shipment id")?)
                }
                (None, Some(location)) => Place::Location(location),
                _ => bail!("give exactly one of --shipment and --location"),
            };
            ops_tx(
                client,
                &key,
                vec![SupplyOp::AttachSensor {
                    device: crate::parse_key(&device)?,
                    place,
                    band: band.as_deref().map(range).transpose()?,
                }],
            )
        }
        SupplyCommand::Reading { values } => {
            let time_ms = crate::records::now_ms();
            let readings = values
                .iter()
                .map(|value| {
                    Ok(Reading {
                        time_ms,
                        milli_c: milli_celsius(value)?,
                    })
                })
                .collect::<Result<_>>()?;
            ops_tx(
                client,
                &key,
                vec![SupplyOp::Readings {
                    device: key.public_key(),
                    place: None,
                    readings,
                }],
            )
        }
        SupplyCommand::Verify { code } => {
            let body = serde_json::to_vec(&json!({ "code": code }))?;
            let verdict = call_json(client, &key, "POST", "/v1/supply/verify", &body)?;
            crate::print(&verdict);
            Ok(if verdict["verdict"] == "genuine" {
                0
            } else {
                3
            })
        }
        SupplyCommand::RecallReport { gtin, lot } => {
            let path = format!(
                "/v1/supply/recall-report?gtin={}&lot={}",
                query_value(&gtin),
                query_value(&lot)
            );
            crate::print(&call_json(client, &key, "GET", &path, b"")?);
            Ok(0)
        }
        SupplyCommand::Trace { code, sscc } => {
            let path = match (code, sscc) {
                (Some(code), None) => format!("/v1/supply/trace?code={}", query_value(&code)),
                (None, Some(sscc)) => format!("/v1/supply/trace?sscc={}", query_value(&sscc)),
                _ => bail!("give a unit's code or --sscc"),
            };
            crate::print(&call_json(client, &key, "GET", &path, b"")?);
            Ok(0)
        }
        SupplyCommand::Label {
            code,
            symbol,
            format,
            out,
        } => {
            let path = format!(
                "/v1/supply/label?code={}&symbol={}&format={}",
                query_value(&code),
                query_value(&symbol),
                query_value(&format)
            );
            let (_, bytes) = call(client, &key, "GET", &path, b"")?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
            Ok(0)
        }
        SupplyCommand::Capture { file } => {
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            crate::print(&call_json(client, &key, "POST", "/epcis/capture", &body)?);
            Ok(0)
        }
        SupplyCommand::Events {
            epc,
            biz_step,
            from,
            until,
        } => {
            let mut params = Vec::new();
            for (name, value) in [
                ("MATCH_epc", epc),
                ("EQ_bizStep", biz_step),
                ("GE_eventTime", from),
                ("LT_eventTime", until),
            ] {
                if let Some(value) = value {
                    params.push(format!("{name}={}", query_value(&value)));
                }
            }
            let path = if params.is_empty() {
                "/epcis/events".to_string()
            } else {
                format!("/epcis/events?{}", params.join("&"))
            };
            crate::print(&call_json(client, &key, "GET", &path, b"")?);
            Ok(0)
        }
    }
}

fn status(client: &Client, key: &SecretKey, units: &[String], status: UnitStatus) -> Result<i32> {
    let units = units
        .iter()
        .map(|code| unit_id(code))
        .collect::<Result<_>>()?;
    ops_tx(client, key, vec![SupplyOp::SetStatus { units, status }])
}

/// Commissions serials in transactions of up to `UNITS_PER_COMMISSION_MAX`, signed with
/// consecutive nonces and submitted together, then waits for every receipt.
pub fn commission(
    client: &Client,
    key: &SecretKey,
    gtin: Gtin,
    lot: &str,
    expiry: &str,
    serials: &[String],
    location: Option<String>,
) -> Result<i32> {
    let chain_id = client.chain_id()?;
    let mut nonce = client.next_nonce(&key.public_key())?;
    let txs: Vec<_> = serials
        .chunks(UNITS_PER_COMMISSION_MAX)
        .map(|chunk| {
            let tx = TxBody {
                chain_id: chain_id.clone(),
                sender: key.public_key(),
                nonce,
                payload: SupplyPayload::Supply {
                    ops: vec![SupplyOp::Commission {
                        gtin,
                        lot: lot.to_string(),
                        expiry: expiry.to_string(),
                        serials: chunk.to_vec(),
                        location: location.clone(),
                    }],
                }
                .into(),
            }
            .sign(key);
            nonce += 1;
            tx
        })
        .collect();
    // Sixteen transactions (about 1 MB) per request, well under the API's body limit.
    for batch in txs.chunks(16) {
        for result in client.submit_batch(batch)? {
            if let Some(error) = result.get("error") {
                bail!("a commissioning transaction was refused: {error}");
            }
        }
    }
    let mut refused = 0;
    for tx in &txs {
        let result = client.wait(&tx.id(), Duration::from_secs(60))?;
        if result["status"] != "committed" {
            refused += 1;
            eprintln!("transaction {} was not applied: {result}", tx.id());
        }
    }
    crate::print(&json!({
        "gtin": gtin,
        "lot": lot,
        "units": serials.len(),
        "transactions": txs.len(),
        "refused": refused,
    }));
    Ok(if refused == 0 { 0 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: SerialArgs, expected: Result<&[&str], &str>) {
        match (args.expand(), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(error), Err(want)) => {
                assert!(error.to_string().contains(want), "{error} lacks {want:?}")
            }
            (got, want) => panic!("{got:?} where {want:?} was expected"),
        }
    }

    fn given(serial: &[&str], range: &[&str]) -> SerialArgs {
        SerialArgs {
            serial: serial.iter().map(|s| s.to_string()).collect(),
            range: range.iter().map(|s| s.to_string()).collect(),
            serials_from: None,
        }
    }

    /// A serial is taken whole whatever it holds; only `--range` reads structure, and only
    /// decimal numbers; nothing, duplicates and malformed ranges are refused.
    #[test]
    fn serials_are_unambiguous() {
        check(given(&["AB,CD"], &[]), Ok(&["AB,CD"]));
        check(
            given(&["A..B", "-7", " x "], &[]),
            Ok(&["A..B", "-7", " x "]),
        );
        check(
            given(&["Z"], &["08..11"]),
            Ok(&["Z", "08", "09", "10", "11"]),
        );
        check(given(&[], &["1..1", "5..6"]), Ok(&["1", "5", "6"]));
        check(given(&[], &[]), Err("no serials given"));
        check(given(&["7", "7"], &[]), Err("\"7\" is given twice"));
        check(given(&["10"], &["9..10"]), Err("\"10\" is given twice"));
        for bad in [
            "A..B",
            "1..",
            "..5",
            "1-5",
            "1,2",
            "-1..3",
            "1..99999999999999999999999",
        ] {
            check(
                given(&[], &[bad]),
                Err("is not FIRST..LAST of decimal numbers"),
            );
        }
        check(given(&[], &["5..4"]), Err("is empty or longer than"));
        check(given(&[], &["0..10000000"]), Err("is empty or longer than"));
    }

    /// A file gives one serial per line, commas and all, with CRLF endings and blank lines
    /// tolerated; a missing file is named.
    #[test]
    fn serials_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serials.txt");
        std::fs::write(&path, "AB,CD\r\n\r\n-12\n0001..0003\n").expect("write");
        let args = SerialArgs {
            serials_from: Some(path),
            ..given(&["first"], &["7..8"])
        };
        check(args, Ok(&["first", "AB,CD", "-12", "0001..0003", "7", "8"]));
        let missing = SerialArgs {
            serials_from: Some(dir.path().join("none.txt")),
            ..SerialArgs::default()
        };
        check(missing, Err("none.txt"));
    }
}
