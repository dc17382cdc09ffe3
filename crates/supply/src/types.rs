//! The drug supply chain on chain: products, serialised units, cases and pallets, shipments,
//! sensors and recalls (PRODUCT.md modules 5 to 7), in GS1's identifiers.
//!
//! A unit is an SGTIN (GTIN + serial) commissioned with its lot and expiry; a container is an
//! SSCC. Custody is held by organisations. A unit packed into a container follows it: shipping a
//! pallet moves every case and unit inside without touching them, so the unit's own `owner`,
//! `location` and `shipment` fields describe it only while it is loose (`parent == None`).
//!
//! **Invariant:** nothing here names a patient. A dispensed unit records which organisation
//! dispensed it and when, never to whom.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use serde::{Deserialize, Serialize};

pub use medledger_gs1::{Gtin, Sscc, check_digit as gs1_check_digit};

use medledger_types::Height;

/// The most serial numbers one commissioning may carry: at up to 24 bytes each on the wire, a
/// full batch fits in one transaction (`TX_BYTES_MAX`).
pub const UNITS_PER_COMMISSION_MAX: usize = 2_500;
/// The most items (units or containers) one pack, unpack, ship or status change may name.
pub const ITEMS_PER_OP_MAX: usize = 2_500;
/// The most operations one supply transaction may carry.
pub const OPS_PER_TX_MAX: usize = 256;
/// The most children a container may hold (so unpacking all of them is one operation's worth).
pub const CONTAINER_CHILDREN_MAX: usize = ITEMS_PER_OP_MAX;
/// The most distinct GTINs a container may hold at any depth.
pub const PRODUCTS_PER_CONTAINER_MAX: usize = 64;
/// The most units and containers one transaction may touch, over all its operations: it bounds
/// a block's work whatever the transaction's size.
pub const ITEMS_PER_TX_MAX: usize = 10_000;
/// History steps kept free for the steps that end a journey (receive, unpack, dispense,
/// destroy), so goods can never be trapped by a full history.
pub const HISTORY_STEPS_RESERVED: usize = 8;
/// The most excursion episodes kept per location; older ones give way.
pub const LOCATION_EPISODES_MAX: usize = 256;
/// Readings at one location closer than this join one episode.
pub const EPISODE_GAP_MS: u64 = 60 * 60 * 1000;
/// How deep containers may nest (a unit in a case in a pallet is depth 2).
pub const NESTING_DEPTH_MAX: usize = 8;
/// The most steps a unit's or container's own history may hold.
pub const HISTORY_STEPS_MAX: usize = 256;
/// The most excursions kept on one unit, container or shipment; later ones only count.
pub const EXCURSIONS_KEPT_MAX: usize = 16;
/// The most readings one sensor report may carry.
pub const READINGS_PER_REPORT_MAX: usize = 4_096;
/// The most EPCIS events one capture transaction may carry.
pub const EVENTS_PER_CAPTURE_MAX: usize = 1_024;
/// The longest product name, recall reason or location name.
pub const SUPPLY_TEXT_BYTES_MAX: usize = 128;
/// The longest EPCIS event body kept on chain (it must fit in one transaction with its steps).
pub const EVENT_BYTES_MAX: usize = 48 * 1024;

/// A serialised unit: GTIN plus serial (AI 21, up to 20 characters of GS1's CSET 82).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct UnitId {
    pub gtin: Gtin,
    pub serial: String,
}

impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(01){}(21){}", self.gtin, self.serial)
    }
}

/// Something custody applies to: a unit or a container.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    Unit(UnitId),
    Container(Sscc),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Unit(unit) => unit.fmt(f),
            Item::Container(sscc) => write!(f, "(00){sscc}"),
        }
    }
}

/// A storage temperature range in milli-degrees Celsius, inclusive (2–8 °C is 2000..=8000).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct TempRange {
    pub min_milli_c: i32,
    pub max_milli_c: i32,
}

impl TempRange {
    pub fn contains(&self, milli_c: i32) -> bool {
        (self.min_milli_c..=self.max_milli_c).contains(&milli_c)
    }
}

/// A product as its manufacturer registers it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProductSpec {
    pub gtin: Gtin,
    pub name: String,
    /// `None` for a product with no temperature requirement.
    pub storage: Option<TempRange>,
}

/// A calendar date, as the ledger stores expiry dates: `year * 10_000 + month * 100 + day`.
pub type Date = u32;

/// A unit's life state.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum UnitStatus {
    Active = 0,
    Dispensed = 1,
    Destroyed = 2,
}

/// Where a sensor's readings apply.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// Everything in a shipment while it travels.
    Shipment(Hash),
    /// A storage location of the sensor's organisation, by GLN (13 digits).
    Location(String),
    /// The named units and containers (an EPCIS event's objects).
    Items(Vec<Item>),
}

/// One temperature reading, as the device timed it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Reading {
    pub time_ms: u64,
    pub milli_c: i32,
}

/// One step of the supply chain, acted by the sender's organisation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SupplyOp {
    /// A manufacturer registers a product it makes.
    RegisterProduct { product: ProductSpec },
    /// An organisation registers a location (GLN) it operates, so EPCIS events naming it can be
    /// attributed and sensors placed there.
    RegisterLocation { gln: String, name: String },
    /// The product's manufacturer commissions serialised units of one lot.
    Commission {
        gtin: Gtin,
        lot: String,
        /// YYMMDD as printed (AI 17); day 00 means the month's last day.
        expiry: String,
        serials: Vec<String>,
        location: Option<String>,
    },
    /// The custodian packs loose items into a case or pallet (created if new).
    Pack {
        parent: Sscc,
        children: Vec<Item>,
        location: Option<String>,
    },
    /// The custodian unpacks items from a container; an empty list unpacks all of them.
    Unpack {
        parent: Sscc,
        children: Vec<Item>,
        location: Option<String>,
    },
    /// The custodian sends loose items to another organisation. Custody stays with the sender
    /// until the receiver confirms. The shipment's id is derived from the transaction and the
    /// operation's position (`shipment_id`).
    Ship {
        to: String,
        items: Vec<Item>,
        location: Option<String>,
    },
    /// The receiver confirms a shipment: custody passes.
    Receive {
        shipment: Hash,
        location: Option<String>,
    },
    /// The custodian dispenses or destroys units, or returns dispensed units to stock.
    SetStatus {
        units: Vec<UnitId>,
        status: UnitStatus,
    },
    /// The product's manufacturer recalls a lot.
    Recall {
        gtin: Gtin,
        lot: String,
        reason: String,
    },
    /// An organisation places one of its sensor devices on a shipment it sends or receives, or
    /// at one of its locations with the alarm band kept there.
    AttachSensor {
        device: PublicKey,
        place: Place,
        band: Option<TempRange>,
    },
    /// Temperature readings from a sensor device: signed by the device itself, or captured by its
    /// organisation. `place` defaults to where the device is attached.
    Readings {
        device: PublicKey,
        place: Option<Place>,
        readings: Vec<Reading>,
    },
}

/// One EPCIS event as captured: its GS1 event hash, the event exactly as received (JSON), and
/// the supply-chain steps it maps to (none for an event about goods this chain does not track).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CapturedEvent {
    /// SHA-256 digest of the canonical event (the hex in `ni:///sha-256;<hex>?ver=CBV2.0`).
    pub hash: Hash,
    pub body: String,
    pub ops: Vec<SupplyOp>,
}

/// A sensor excursion: a reading outside a range that mattered.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Excursion {
    pub device: PublicKey,
    pub time_ms: u64,
    pub milli_c: i32,
    pub height: Height,
}

/// What happened at one step of an item's history.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    Commissioned,
    Packed { into: Sscc },
    Unpacked { from: Sscc },
    Shipped { shipment: Hash, to: String },
    Received { shipment: Hash },
    Dispensed,
    ReturnedToStock,
    Destroyed,
}

/// One step of a unit's or container's custody history, with where it is proven: the block,
/// the transaction and the operation's position in it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Step {
    pub height: Height,
    /// The transaction's position in its block.
    pub index: u32,
    pub tx: Hash,
    /// The operation's position in its transaction.
    pub op: u32,
    pub time_ms: u64,
    pub org: String,
    pub location: Option<String>,
    #[serde(flatten)]
    pub kind: StepKind,
}

impl Step {
    /// The order of steps on the chain: block, transaction, operation.
    pub fn order(&self) -> (Height, u32, u32) {
        (self.height, self.index, self.op)
    }
}

/// A commissioned unit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Unit {
    pub lot: String,
    pub expiry: Date,
    pub status: UnitStatus,
    pub owner: String,
    pub location: Option<String>,
    pub parent: Option<Sscc>,
    pub shipment: Option<Hash>,
    pub excursions: Vec<Excursion>,
    pub history: Vec<Step>,
}

/// A case or pallet.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Container {
    pub owner: String,
    pub location: Option<String>,
    pub parent: Option<Sscc>,
    pub shipment: Option<Hash>,
    pub children: Vec<Item>,
    /// The GTINs inside, at any depth, sorted (a cold-chain reading is checked against them).
    pub products: Vec<Gtin>,
    /// How many levels of containers this one has held below it (a case of units is 1). It never
    /// shrinks, so it bounds every walk down or up a nest.
    pub depth: u32,
    pub excursions: Vec<Excursion>,
    pub history: Vec<Step>,
}

/// A registered product.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Product {
    pub spec: ProductSpec,
    pub owner: String,
    pub registered_at: Height,
}

/// A recall of a lot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecallNotice {
    pub reason: String,
    pub height: Height,
    pub time_ms: u64,
    pub tx: Hash,
}

/// A lot of a product: its expiry, how its units were commissioned (`lot-batch/..` entries) and
/// whether it is recalled.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Lot {
    pub expiry: Date,
    pub units: u64,
    pub batches: u32,
    pub recall: Option<RecallNotice>,
}

/// The serials one commissioning added to a lot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct LotBatch {
    pub tx: Hash,
    pub serials: Vec<String>,
}

/// A shipment between two organisations.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Shipment {
    pub from: String,
    pub to: String,
    pub items: Vec<Item>,
    /// The GTINs inside, at any depth, sorted.
    pub products: Vec<Gtin>,
    pub shipped_at: Height,
    pub shipped_ms: u64,
    pub received_at: Option<Height>,
    pub received_ms: Option<u64>,
    pub excursions: Vec<Excursion>,
    pub excursions_count: u64,
}

/// A run of out-of-band readings at one location: readings less than `EPISODE_GAP_MS` apart
/// join one episode, which keeps its time span and its extremes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Episode {
    pub device: PublicKey,
    pub start_ms: u64,
    pub end_ms: u64,
    pub min_milli_c: i32,
    pub max_milli_c: i32,
    pub height: Height,
}

/// The excursion episodes seen at a location, most recent last, at most
/// `LOCATION_EPISODES_MAX`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct LocationExcursions {
    pub episodes: Vec<Episode>,
    /// Every out-of-band reading ever recorded here, kept or not.
    pub readings_count: u64,
}

/// A registered location.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct LocationEntry {
    pub org: String,
    pub name: String,
}

/// Where a sensor device is placed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SensorEntry {
    pub org: String,
    pub place: Place,
    pub band: Option<TempRange>,
}

/// An EPCIS event on record: where it was captured, for idempotent capture.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EventRecord {
    pub height: Height,
    pub tx: Hash,
    pub index: u32,
    pub org: String,
}

/// The id of the shipment made by the `op`-th operation of transaction `tx`.
pub fn shipment_id(tx: &Hash, op: u32) -> Hash {
    medledger_crypto::hash_tagged(b"medledger/shipment", &[tx.as_bytes(), &op.to_be_bytes()])
}

/// Checks an AI (10) lot or AI (21) serial: 1 to 20 characters of GS1's CSET 82 (the printable
/// ASCII a GS1 DataMatrix can carry in an alphanumeric AI).
pub fn check_cset82(what: &str, value: &str) -> Result<(), String> {
    const CSET82_PUNCT: &str = "!\"%&'()*+,-./:;<=>?_";
    if value.is_empty() || value.len() > 20 {
        return Err(format!(
            "{what} must be 1 to 20 characters, got {}",
            value.len()
        ));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || CSET82_PUNCT.contains(*c)))
    {
        Some(c) => Err(format!("{what} {value:?} holds {c:?}, outside GS1 CSET 82")),
        None => Ok(()),
    }
}

/// Checks a GLN: 13 digits with a GS1 check digit.
pub fn check_gln(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    if bytes.len() != 13 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(format!("a GLN is 13 digits, got {value:?}"));
    }
    if gs1_check_digit(&bytes[..12]) != bytes[12] {
        return Err(format!("GLN {value} has a bad check digit"));
    }
    Ok(())
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), by Howard Hinnant's algorithm.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (year_of_era + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// The date an AI (17)-style YYMMDD value names, with the century chosen as the GS1 General
/// Specifications prescribe (§7.12: the year lies from 49 years before to 50 years after
/// `reference_year`) and day 00 meaning the month's last day.
pub fn expiry_date(yymmdd: &str, reference_year: i32) -> Result<Date, String> {
    let (year, month, day) = medledger_gs1::expand_yymmdd(yymmdd, reference_year)
        .map_err(|error| format!("expiry {yymmdd:?}: {error}"))?;
    Ok(year.max(0) as u32 * 10_000 + u32::from(month) * 100 + u32::from(day))
}

/// The date of a block time.
pub fn date_of_ms(time_ms: u64) -> Date {
    let (year, month, day) = civil_from_days((time_ms / 86_400_000) as i64);
    year.max(0) as u32 * 10_000 + month * 100 + day
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_of_ms(1_709_164_800_000), 20240229);
        assert_eq!(expiry_date("240200", 2026), Ok(20240229));
        assert_eq!(expiry_date("250200", 2026), Ok(20250228));
        assert_eq!(expiry_date("761231", 2026), Ok(20761231));
        assert_eq!(expiry_date("771231", 2026), Ok(19771231));
        assert!(expiry_date("250230", 2026).is_err());
        assert!(expiry_date("251301", 2026).is_err());
        assert!(expiry_date("2512", 2026).is_err());
    }

    #[test]
    fn lots_serials_and_glns_are_checked() {
        assert!(check_cset82("serial", "ABC-12/3").is_ok());
        assert!(check_cset82("serial", "").is_err());
        assert!(check_cset82("serial", "123456789012345678901").is_err());
        assert!(check_cset82("lot", "A B").is_err());
        assert!(check_cset82("lot", "é").is_err());
        assert!(check_gln("0614141000005").is_ok());
        assert!(check_gln("0614141000006").is_err());
        assert!(check_gln("061414100000").is_err());
    }
}
