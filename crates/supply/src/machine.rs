//! The drug supply chain: products, serialised units, packing, shipments with custody that passes
//! only on receipt, dispensing, recalls and cold-chain readings; plus the queries that read them
//! back (verification, recall report, trace).
//!
//! **Invariant:** custody belongs to the outermost loose item. A packed unit's own owner,
//! location and shipment are stale until it is unpacked; every reader resolves custody through
//! [`resolve`], which walks up at most `NESTING_DEPTH_MAX` containers.
//! **Invariant:** histories are append-only and each step names its block, transaction and
//! operation, so a trace can be proven step by step.
//! **Invariant:** a verification is a pure function of the state and the block time it is asked
//! at; it reads no clock.

use std::collections::BTreeMap;

use medledger_crypto::{Hash, PublicKey};
use medledger_module::{Authority, BlockContext, TxContext, View, key_org, member, read};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::Role;

use crate::types::{
    CONTAINER_CHILDREN_MAX, CapturedEvent, Container, EVENT_BYTES_MAX, EVENTS_PER_CAPTURE_MAX,
    EXCURSIONS_KEPT_MAX, EventRecord, Excursion, Gtin, HISTORY_STEPS_MAX, ITEMS_PER_OP_MAX, Item,
    LocationEntry, Lot, LotBatch, NESTING_DEPTH_MAX, OPS_PER_TX_MAX, Place, Product, ProductSpec,
    READINGS_PER_REPORT_MAX, Reading, RecallNotice, SUPPLY_TEXT_BYTES_MAX, SensorEntry, Shipment,
    Sscc, Step, StepKind, SupplyOp, TempRange, UNITS_PER_COMMISSION_MAX, Unit, UnitId, UnitStatus,
    check_cset82, check_gln, date_of_ms, expiry_date, shipment_id,
};
use crate::types::{
    EPISODE_GAP_MS, Episode, HISTORY_STEPS_RESERVED, ITEMS_PER_TX_MAX, LOCATION_EPISODES_MAX,
    LocationExcursions, PRODUCTS_PER_CONTAINER_MAX,
};

/// Why a supply-chain step was refused.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{key} may not act in the supply chain ({why})")]
    NotASupplyActor { key: PublicKey, why: &'static str },
    #[error("GTIN {0} is already registered")]
    ProductExists(Gtin),
    #[error("no product with GTIN {0} is registered")]
    UnknownProduct(Gtin),
    #[error("GTIN {gtin} belongs to {owner}; only its manufacturer may {what}")]
    NotTheManufacturer {
        gtin: Gtin,
        owner: String,
        what: &'static str,
    },
    #[error("location {0} is already registered")]
    LocationExists(String),
    #[error("unit {0} is already commissioned")]
    UnitExists(UnitId),
    #[error("{0} is named twice")]
    Duplicate(Item),
    #[error("lot {lot} expires on {on_chain}, not on {got}")]
    LotExpiryMismatch {
        lot: String,
        on_chain: u32,
        got: u32,
    },
    #[error("no lot {lot} of GTIN {gtin}")]
    UnknownLot { gtin: Gtin, lot: String },
    #[error("lot {lot} of GTIN {gtin} is already recalled")]
    AlreadyRecalled { gtin: Gtin, lot: String },
    #[error("{0} is not on the chain")]
    UnknownItem(Item),
    #[error("{item} is in the custody of {custodian}, not of {org}")]
    NotInCustody {
        item: Item,
        custodian: String,
        org: String,
    },
    #[error("{item} is packed in {parent}; unpack it first")]
    Packed { item: Item, parent: Sscc },
    #[error("{item} is in shipment {shipment}, which has not been received")]
    InTransit { item: Item, shipment: Hash },
    #[error("unit {unit} is {status:?}")]
    NotActive { unit: UnitId, status: UnitStatus },
    #[error("{0} is not in container {1}")]
    NotInContainer(Item, Sscc),
    #[error("container {0} would nest deeper than the limit")]
    TooDeep(Sscc),
    #[error("container {0} is full")]
    ContainerFull(Sscc),
    #[error("{0} has reached the most history steps")]
    HistoryFull(Item),
    #[error("no shipment {0}")]
    UnknownShipment(Hash),
    #[error("shipment {shipment} is addressed to {to}, not to {org}")]
    NotTheReceiver {
        shipment: Hash,
        to: String,
        org: String,
    },
    #[error("shipment {0} was already received")]
    AlreadyReceived(Hash),
    #[error("an organisation cannot ship to itself")]
    ShipToSelf,
    #[error("unit {unit} cannot go from {from:?} to {to:?}")]
    BadStatusChange {
        unit: UnitId,
        from: UnitStatus,
        to: UnitStatus,
    },
    #[error("{0} is not an enrolled sensor device of this organisation")]
    NotADevice(PublicKey),
    #[error("sensor {0} is not attached anywhere; name a place")]
    SensorNotAttached(PublicKey),
    #[error("organisation {0} does not exist")]
    UnknownOrganisation(String),
    #[error("{key} is under GS1 company prefix {prefix}, which {holder} holds")]
    PrefixOfAnother {
        key: String,
        prefix: String,
        holder: String,
    },
    #[error("only an organisation's node or root key may {0}")]
    NotACustodian(&'static str),
    #[error(transparent)]
    State(#[from] StateError),
}

impl medledger_module::ModuleError for SupplyError {
    fn code(&self) -> &'static str {
        match self {
            SupplyError::Invalid(_) => "invalid_supply_op",
            SupplyError::NotASupplyActor { .. } => "not_a_supply_actor",
            SupplyError::ProductExists(_) => "product_exists",
            SupplyError::UnknownProduct(_) => "unknown_product",
            SupplyError::NotTheManufacturer { .. } => "not_the_manufacturer",
            SupplyError::LocationExists(_) => "location_exists",
            SupplyError::UnitExists(_) => "unit_exists",
            SupplyError::Duplicate(_) => "duplicate_item",
            SupplyError::LotExpiryMismatch { .. } => "lot_expiry_mismatch",
            SupplyError::UnknownLot { .. } => "unknown_lot",
            SupplyError::AlreadyRecalled { .. } => "already_recalled",
            SupplyError::UnknownItem(_) => "unknown_item",
            SupplyError::NotInCustody { .. } => "not_in_custody",
            SupplyError::Packed { .. } => "packed",
            SupplyError::InTransit { .. } => "in_transit",
            SupplyError::NotActive { .. } => "not_active",
            SupplyError::NotInContainer(..) => "not_in_container",
            SupplyError::TooDeep(_) => "too_deep",
            SupplyError::ContainerFull(_) => "container_full",
            SupplyError::HistoryFull(_) => "history_full",
            SupplyError::UnknownShipment(_) => "unknown_shipment",
            SupplyError::NotTheReceiver { .. } => "not_the_receiver",
            SupplyError::AlreadyReceived(_) => "already_received",
            SupplyError::ShipToSelf => "ship_to_self",
            SupplyError::BadStatusChange { .. } => "bad_status_change",
            SupplyError::NotADevice(_) => "not_a_device",
            SupplyError::SensorNotAttached(_) => "sensor_not_attached",
            SupplyError::UnknownOrganisation(_) => "unknown_organisation",
            SupplyError::PrefixOfAnother { .. } => "prefix_of_another",
            SupplyError::NotACustodian(_) => "not_a_custodian",
            SupplyError::State(_) => "state_error",
        }
    }
}

fn invalid(message: impl Into<String>) -> SupplyError {
    SupplyError::Invalid(message.into())
}

// State keys. Readable text, so a proof names what it proves.
pub fn key_product(gtin: &Gtin) -> Vec<u8> {
    format!("product/{gtin}").into_bytes()
}
pub fn key_unit(unit: &UnitId) -> Vec<u8> {
    format!("unit/{}/{}", unit.gtin, unit.serial).into_bytes()
}
pub fn key_container(sscc: &Sscc) -> Vec<u8> {
    format!("container/{sscc}").into_bytes()
}
pub fn key_lot(gtin: &Gtin, lot: &str) -> Vec<u8> {
    format!("lot/{gtin}/{lot}").into_bytes()
}
/// Zero-padded, so a lot's batches sort in order.
pub fn key_lot_batch(gtin: &Gtin, lot: &str, batch: u32) -> Vec<u8> {
    format!("lot-batch/{gtin}/{batch:010}/{lot}").into_bytes()
}
pub fn key_shipment(id: &Hash) -> Vec<u8> {
    format!("shipment/{id}").into_bytes()
}
pub fn key_location(id: &str) -> Vec<u8> {
    format!("location/{id}").into_bytes()
}
/// The organisation holding a GS1 company prefix (from genesis).
pub fn key_gs1_prefix(prefix: &str) -> Vec<u8> {
    format!("gs1-prefix/{prefix}").into_bytes()
}
pub fn key_sensor(device: &PublicKey) -> Vec<u8> {
    format!("sensor/{device}").into_bytes()
}
pub fn key_location_excursions(location: &str) -> Vec<u8> {
    format!("location-excursions/{location}").into_bytes()
}
/// Per capturing organisation, so one organisation cannot pre-empt another's event.
pub fn key_event(org: &str, hash: &Hash) -> Vec<u8> {
    format!("epcis-event/{org}/{hash}").into_bytes()
}

pub fn product(state: &dyn StateRead, gtin: &Gtin) -> Result<Option<Product>, StateError> {
    read(state, &key_product(gtin))
}
pub fn unit(state: &dyn StateRead, id: &UnitId) -> Result<Option<Unit>, StateError> {
    read(state, &key_unit(id))
}
pub fn container(state: &dyn StateRead, sscc: &Sscc) -> Result<Option<Container>, StateError> {
    read(state, &key_container(sscc))
}
pub fn lot(state: &dyn StateRead, gtin: &Gtin, lot: &str) -> Result<Option<Lot>, StateError> {
    read(state, &key_lot(gtin, lot))
}
pub fn lot_batch(
    state: &dyn StateRead,
    gtin: &Gtin,
    lot: &str,
    batch: u32,
) -> Result<Option<LotBatch>, StateError> {
    read(state, &key_lot_batch(gtin, lot, batch))
}
pub fn shipment(state: &dyn StateRead, id: &Hash) -> Result<Option<Shipment>, StateError> {
    read(state, &key_shipment(id))
}
pub fn location(state: &dyn StateRead, id: &str) -> Result<Option<LocationEntry>, StateError> {
    read(state, &key_location(id))
}
pub fn sensor(
    state: &dyn StateRead,
    device: &PublicKey,
) -> Result<Option<SensorEntry>, StateError> {
    read(state, &key_sensor(device))
}
pub fn event(
    state: &dyn StateRead,
    org: &str,
    hash: &Hash,
) -> Result<Option<EventRecord>, StateError> {
    read(state, &key_event(org, hash))
}
pub fn location_excursions(
    state: &dyn StateRead,
    location: &str,
) -> Result<LocationExcursions, StateError> {
    Ok(read(state, &key_location_excursions(location))?.unwrap_or_default())
}

/// Who acts in a supply-chain step: an organisation, through one of its keys with a role.
#[derive(Clone, Debug)]
pub struct Actor {
    pub org: String,
    pub key: PublicKey,
    /// `None` for the organisation's root key.
    pub role: Option<Role>,
}

impl Actor {
    /// The actor of a `Supply` transaction: its sender.
    pub fn of_sender(tx: &TxContext<'_>) -> Actor {
        match tx.authority {
            Authority::Organisation { org } => Actor {
                org: org.clone(),
                key: tx.sender,
                role: None,
            },
            Authority::Member { org, role } => Actor {
                org: org.clone(),
                key: tx.sender,
                role: Some(*role),
            },
        }
    }

    /// Keys that handle goods: the organisation's root key, its node, and its manufacturing,
    /// distribution and pharmacy members.
    fn handles_goods(&self) -> bool {
        matches!(
            self.role,
            None | Some(Role::Validator | Role::Manufacturer | Role::Distributor | Role::Pharmacy)
        )
    }
}

/// Where the operation runs: the block, the transaction and the operation's position in it.
#[derive(Clone, Copy, Debug)]
pub struct OpContext<'a> {
    pub block: &'a BlockContext,
    pub index: u32,
    pub tx: Hash,
    pub op: u32,
    /// Units and containers the transaction may still touch (`ITEMS_PER_TX_MAX` in all).
    pub budget: &'a std::cell::Cell<usize>,
}

impl OpContext<'_> {
    /// Checks that an operation names 1 to `max` items, and counts them against the
    /// transaction's budget.
    fn items(&self, what: &str, count: usize, max: usize) -> Result<(), SupplyError> {
        check_count(what, count, max)?;
        self.spend(count)
    }

    /// Counts `items` against the transaction's budget.
    fn spend(&self, items: usize) -> Result<(), SupplyError> {
        let left = self.budget.get().checked_sub(items).ok_or_else(|| {
            invalid(format!(
                "a transaction may touch at most {ITEMS_PER_TX_MAX} units and containers"
            ))
        })?;
        self.budget.set(left);
        Ok(())
    }

    fn step(&self, actor: &Actor, location: Option<String>, kind: StepKind) -> Step {
        Step {
            height: self.block.height,
            index: self.index,
            tx: self.tx,
            op: self.op,
            time_ms: self.block.time_ms,
            org: actor.org.clone(),
            location,
            kind,
        }
    }
}

/// Applies a `Supply` transaction: every operation in order, all or nothing.
pub fn apply_supply(
    state: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    ops: &[SupplyOp],
) -> Result<(), SupplyError> {
    let (ctx, index) = (tx.block, tx.index);
    if ops.is_empty() || ops.len() > OPS_PER_TX_MAX {
        return Err(invalid(format!(
            "a supply transaction carries 1 to {OPS_PER_TX_MAX} operations, got {}",
            ops.len()
        )));
    }
    let actor = Actor::of_sender(tx);
    let tx_id = tx.id;
    let budget = std::cell::Cell::new(ITEMS_PER_TX_MAX);
    for (op, operation) in ops.iter().enumerate() {
        let op_ctx = OpContext {
            block: ctx,
            index,
            tx: tx_id,
            op: op as u32,
            budget: &budget,
        };
        apply_op(state, &op_ctx, &actor, operation)?;
    }
    Ok(())
}

/// Applies a `CaptureEpcis` transaction. Only an organisation's root key or node may send it,
/// for a capturer of the same organisation; each event not yet on record is recorded and its
/// operations applied, acted by the capturer.
pub fn capture_epcis(
    state: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    capturer: &PublicKey,
    events: &[CapturedEvent],
) -> Result<(), SupplyError> {
    let (ctx, index) = (tx.block, tx.index);
    let org = medledger_module::custodian_of(tx.authority)
        .ok_or(SupplyError::NotACustodian("record EPCIS events"))?
        .to_string();
    if events.is_empty() || events.len() > EVENTS_PER_CAPTURE_MAX {
        return Err(invalid(format!(
            "a capture carries 1 to {EVENTS_PER_CAPTURE_MAX} events, got {}",
            events.len()
        )));
    }
    let actor = if *capturer == tx.sender {
        Actor::of_sender(tx)
    } else {
        match member(state, capturer)? {
            Some(record) if record.org == org && record.revoked_at.is_none() => Actor {
                org,
                key: *capturer,
                role: Some(record.role),
            },
            _ => {
                return Err(SupplyError::NotASupplyActor {
                    key: *capturer,
                    why: "the capturer is not an unrevoked member of the node's organisation",
                });
            }
        }
    };
    let tx_id = tx.id;
    let budget = std::cell::Cell::new(ITEMS_PER_TX_MAX);
    let mut op = 0u32;
    for (position, captured) in events.iter().enumerate() {
        if captured.body.len() > EVENT_BYTES_MAX {
            return Err(invalid(format!(
                "an EPCIS event on chain is at most {EVENT_BYTES_MAX} bytes"
            )));
        }
        if captured.ops.len() > OPS_PER_TX_MAX {
            return Err(invalid(format!(
                "an event maps to at most {OPS_PER_TX_MAX} operations"
            )));
        }
        let key = key_event(&actor.org, &captured.hash);
        if state.get(&key)?.is_some() {
            // Captured before: the event and its effects are already on record.
            continue;
        }
        state.put(
            key,
            encode_value(&EventRecord {
                height: ctx.height,
                tx: tx_id,
                index: position as u32,
                org: actor.org.clone(),
            }),
        );
        for operation in &captured.ops {
            let op_ctx = OpContext {
                block: ctx,
                index,
                tx: tx_id,
                op,
                budget: &budget,
            };
            apply_op(state, &op_ctx, &actor, operation)?;
            op += 1;
        }
    }
    Ok(())
}

/// Checks that no other organisation holds the GS1 company prefix of a key (`digits` from the
/// company prefix on: a GTIN-14 or SSCC without its first digit, a GLN whole). A key under no
/// declared prefix is open to whoever registers it first.
fn check_prefix(
    state: &dyn StateRead,
    actor: &Actor,
    key: &str,
    digits: &str,
) -> Result<(), SupplyError> {
    for length in 4..=12.min(digits.len()) {
        let prefix = &digits[..length];
        if let Some(holder) = read::<String>(state, &key_gs1_prefix(prefix))?
            && holder != actor.org
        {
            return Err(SupplyError::PrefixOfAnother {
                key: key.to_string(),
                prefix: prefix.to_string(),
                holder,
            });
        }
    }
    Ok(())
}

fn check_text(what: &str, value: &str) -> Result<(), SupplyError> {
    if value.is_empty()
        || value.len() > SUPPLY_TEXT_BYTES_MAX
        || value.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "{what} must be 1 to {SUPPLY_TEXT_BYTES_MAX} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_location(location: &Option<String>) -> Result<(), SupplyError> {
    match location {
        Some(location) => check_text("a location", location),
        None => Ok(()),
    }
}

fn check_count(what: &str, count: usize, max: usize) -> Result<(), SupplyError> {
    if count == 0 || count > max {
        return Err(invalid(format!(
            "{what} must name 1 to {max} items, got {count}"
        )));
    }
    Ok(())
}

fn require_goods(actor: &Actor) -> Result<(), SupplyError> {
    if actor.handles_goods() {
        Ok(())
    } else {
        Err(SupplyError::NotASupplyActor {
            key: actor.key,
            why: "only an organisation's root key, node, manufacturers, distributors and pharmacies handle goods",
        })
    }
}

fn push_step(history: &mut Vec<Step>, item: &Item, step: Step) -> Result<(), SupplyError> {
    // The last few places are kept for steps that end a journey, so a full history never traps
    // goods in a shipment or a case.
    let ends_a_journey = matches!(
        step.kind,
        StepKind::Received { .. }
            | StepKind::Unpacked { .. }
            | StepKind::Dispensed
            | StepKind::Destroyed
    );
    let limit = if ends_a_journey {
        HISTORY_STEPS_MAX
    } else {
        HISTORY_STEPS_MAX - HISTORY_STEPS_RESERVED
    };
    if history.len() >= limit {
        return Err(SupplyError::HistoryFull(item.clone()));
    }
    history.push(step);
    Ok(())
}

fn push_excursion(list: &mut Vec<Excursion>, excursion: Excursion) {
    if list.len() < EXCURSIONS_KEPT_MAX {
        list.push(excursion);
    }
}

/// A unit or container as stored, for code that handles either.
#[derive(Clone, Debug)]
enum Stored {
    Unit(UnitId, Unit),
    Container(Sscc, Container),
}

impl Stored {
    fn load(state: &dyn StateRead, item: &Item) -> Result<Stored, SupplyError> {
        match item {
            Item::Unit(id) => match unit(state, id)? {
                Some(found) => Ok(Stored::Unit(id.clone(), found)),
                None => Err(SupplyError::UnknownItem(item.clone())),
            },
            Item::Container(sscc) => match container(state, sscc)? {
                Some(found) => Ok(Stored::Container(*sscc, found)),
                None => Err(SupplyError::UnknownItem(item.clone())),
            },
        }
    }

    fn item(&self) -> Item {
        match self {
            Stored::Unit(id, _) => Item::Unit(id.clone()),
            Stored::Container(sscc, _) => Item::Container(*sscc),
        }
    }

    fn save(&self, state: &mut View<'_, '_>) {
        match self {
            Stored::Unit(id, value) => state.put(key_unit(id), encode_value(value)),
            Stored::Container(sscc, value) => state.put(key_container(sscc), encode_value(value)),
        }
    }

    fn parent(&self) -> Option<Sscc> {
        match self {
            Stored::Unit(_, unit) => unit.parent,
            Stored::Container(_, container) => container.parent,
        }
    }

    fn owner(&self) -> &str {
        match self {
            Stored::Unit(_, unit) => &unit.owner,
            Stored::Container(_, container) => &container.owner,
        }
    }

    fn shipment(&self) -> Option<Hash> {
        match self {
            Stored::Unit(_, unit) => unit.shipment,
            Stored::Container(_, container) => container.shipment,
        }
    }

    fn products(&self) -> Vec<Gtin> {
        match self {
            Stored::Unit(id, _) => vec![id.gtin],
            Stored::Container(_, container) => container.products.clone(),
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Stored::Unit(..) => 0,
            Stored::Container(_, container) => container.depth,
        }
    }

    fn history_mut(&mut self) -> &mut Vec<Step> {
        match self {
            Stored::Unit(_, unit) => &mut unit.history,
            Stored::Container(_, container) => &mut container.history,
        }
    }

    fn excursions_mut(&mut self) -> &mut Vec<Excursion> {
        match self {
            Stored::Unit(_, unit) => &mut unit.excursions,
            Stored::Container(_, container) => &mut container.excursions,
        }
    }

    fn set_custody(&mut self, owner: &str, location: Option<String>, shipment: Option<Hash>) {
        let (owner_field, location_field, shipment_field) = match self {
            Stored::Unit(_, unit) => (&mut unit.owner, &mut unit.location, &mut unit.shipment),
            Stored::Container(_, container) => (
                &mut container.owner,
                &mut container.location,
                &mut container.shipment,
            ),
        };
        owner.clone_into(owner_field);
        if location.is_some() {
            *location_field = location;
        }
        *shipment_field = shipment;
    }

    /// Sets the location, clearing it when `None`.
    fn set_location(&mut self, location: Option<String>) {
        match self {
            Stored::Unit(_, unit) => unit.location = location,
            Stored::Container(_, container) => container.location = location,
        }
    }

    /// The height at which this item last went into a container: excursions that container
    /// recorded from then on concern it.
    fn packed_since(&self) -> u64 {
        let history = match self {
            Stored::Unit(_, unit) => &unit.history,
            Stored::Container(_, container) => &container.history,
        };
        packed_since(history)
    }

    fn push_step(&mut self, step: Step) -> Result<(), SupplyError> {
        let item = self.item();
        push_step(self.history_mut(), &item, step)
    }

    /// Checks that `org` holds this item loose and at rest (not packed, not travelling).
    fn check_loose_held(&self, org: &str) -> Result<(), SupplyError> {
        let item = self.item();
        if let Some(parent) = self.parent() {
            return Err(SupplyError::Packed { item, parent });
        }
        if self.owner() != org {
            return Err(SupplyError::NotInCustody {
                item,
                custodian: self.owner().to_string(),
                org: org.to_string(),
            });
        }
        if let Some(shipment) = self.shipment() {
            return Err(SupplyError::InTransit { item, shipment });
        }
        Ok(())
    }

    /// Like [`Stored::check_loose_held`], and a unit must also be active.
    fn check_loose_in_custody(&self, org: &str) -> Result<(), SupplyError> {
        self.check_loose_held(org)?;
        if let Stored::Unit(id, unit) = self
            && unit.status != UnitStatus::Active
        {
            return Err(SupplyError::NotActive {
                unit: id.clone(),
                status: unit.status,
            });
        }
        Ok(())
    }
}

fn load_distinct(state: &dyn StateRead, items: &[Item]) -> Result<Vec<Stored>, SupplyError> {
    let mut seen = std::collections::BTreeSet::new();
    items
        .iter()
        .map(|item| {
            if !seen.insert(item) {
                return Err(SupplyError::Duplicate(item.clone()));
            }
            Stored::load(state, item)
        })
        .collect()
}

fn merge_products(into: &mut Vec<Gtin>, more: &[Gtin]) {
    into.extend_from_slice(more);
    into.sort();
    into.dedup();
}

fn apply_op(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    operation: &SupplyOp,
) -> Result<(), SupplyError> {
    // A device only reports readings; everything else handles goods.
    if !matches!(operation, SupplyOp::Readings { .. }) {
        require_goods(actor)?;
    }
    match operation {
        SupplyOp::RegisterProduct { product } => register_product(state, op, actor, product),
        SupplyOp::RegisterLocation { gln, name } => {
            check_gln(gln).map_err(invalid)?;
            check_prefix(state, actor, gln, gln)?;
            check_text("a location name", name)?;
            if location(state, gln)?.is_some() {
                return Err(SupplyError::LocationExists(gln.clone()));
            }
            state.put(
                key_location(gln),
                encode_value(&LocationEntry {
                    org: actor.org.clone(),
                    name: name.clone(),
                }),
            );
            Ok(())
        }
        SupplyOp::Commission {
            gtin,
            lot,
            expiry,
            serials,
            location,
        } => commission(state, op, actor, gtin, lot, expiry, serials, location),
        SupplyOp::Pack {
            parent,
            children,
            location,
        } => pack(state, op, actor, parent, children, location),
        SupplyOp::Unpack {
            parent,
            children,
            location,
        } => unpack(state, op, actor, parent, children, location),
        SupplyOp::Ship {
            to,
            items,
            location,
        } => ship(state, op, actor, to, items, location),
        SupplyOp::Receive { shipment, location } => receive(state, op, actor, shipment, location),
        SupplyOp::SetStatus { units, status } => set_status(state, op, actor, units, *status),
        SupplyOp::Recall { gtin, lot, reason } => {
            check_text("a recall reason", reason)?;
            let registered = product(state, gtin)?.ok_or(SupplyError::UnknownProduct(*gtin))?;
            if registered.owner != actor.org {
                return Err(SupplyError::NotTheManufacturer {
                    gtin: *gtin,
                    owner: registered.owner,
                    what: "recall its lots",
                });
            }
            let mut entry =
                self::lot(state, gtin, lot)?.ok_or_else(|| SupplyError::UnknownLot {
                    gtin: *gtin,
                    lot: lot.clone(),
                })?;
            if entry.recall.is_some() {
                return Err(SupplyError::AlreadyRecalled {
                    gtin: *gtin,
                    lot: lot.clone(),
                });
            }
            entry.recall = Some(RecallNotice {
                reason: reason.clone(),
                height: op.block.height,
                time_ms: op.block.time_ms,
                tx: op.tx,
            });
            state.put(key_lot(gtin, lot), encode_value(&entry));
            Ok(())
        }
        SupplyOp::AttachSensor {
            device,
            place,
            band,
        } => attach_sensor(state, actor, device, place, band),
        SupplyOp::Readings {
            device,
            place,
            readings,
        } => record_readings(state, op, actor, device, place, readings),
    }
}

fn register_product(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    spec: &ProductSpec,
) -> Result<(), SupplyError> {
    if !matches!(
        actor.role,
        None | Some(Role::Validator | Role::Manufacturer)
    ) {
        return Err(SupplyError::NotASupplyActor {
            key: actor.key,
            why: "only a manufacturer registers products",
        });
    }
    check_text("a product name", &spec.name)?;
    // The indicator digit comes before the company prefix.
    check_prefix(state, actor, spec.gtin.as_str(), &spec.gtin.as_str()[1..])?;
    if let Some(range) = spec.storage
        && range.min_milli_c > range.max_milli_c
    {
        return Err(invalid("a storage range's minimum is above its maximum"));
    }
    if product(state, &spec.gtin)?.is_some() {
        return Err(SupplyError::ProductExists(spec.gtin));
    }
    state.put(
        key_product(&spec.gtin),
        encode_value(&Product {
            spec: spec.clone(),
            owner: actor.org.clone(),
            registered_at: op.block.height,
        }),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn commission(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    gtin: &Gtin,
    lot: &str,
    expiry: &str,
    serials: &[String],
    location: &Option<String>,
) -> Result<(), SupplyError> {
    let registered = product(state, gtin)?.ok_or(SupplyError::UnknownProduct(*gtin))?;
    if registered.owner != actor.org {
        return Err(SupplyError::NotTheManufacturer {
            gtin: *gtin,
            owner: registered.owner,
            what: "commission its units",
        });
    }
    check_cset82("a lot", lot).map_err(invalid)?;
    op.items("a commissioning", serials.len(), UNITS_PER_COMMISSION_MAX)?;
    check_location(location)?;
    let reference_year = (date_of_ms(op.block.time_ms) / 10_000) as i32;
    let expiry = expiry_date(expiry, reference_year).map_err(invalid)?;
    let mut entry = self::lot(state, gtin, lot)?.unwrap_or(Lot {
        expiry,
        units: 0,
        batches: 0,
        recall: None,
    });
    if entry.expiry != expiry {
        return Err(SupplyError::LotExpiryMismatch {
            lot: lot.to_string(),
            on_chain: entry.expiry,
            got: expiry,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for serial in serials {
        check_cset82("a serial", serial).map_err(invalid)?;
        let id = UnitId {
            gtin: *gtin,
            serial: serial.clone(),
        };
        if !seen.insert(serial) {
            return Err(SupplyError::Duplicate(Item::Unit(id)));
        }
        let key = key_unit(&id);
        if state.get(&key)?.is_some() {
            return Err(SupplyError::UnitExists(id));
        }
        let unit = Unit {
            lot: lot.to_string(),
            expiry,
            status: UnitStatus::Active,
            owner: actor.org.clone(),
            location: location.clone(),
            parent: None,
            shipment: None,
            excursions: Vec::new(),
            history: vec![op.step(actor, location.clone(), StepKind::Commissioned)],
        };
        state.put(key, encode_value(&unit));
    }
    state.put(
        key_lot_batch(gtin, lot, entry.batches),
        encode_value(&LotBatch {
            tx: op.tx,
            serials: serials.to_vec(),
        }),
    );
    entry.batches += 1;
    entry.units += serials.len() as u64;
    state.put(key_lot(gtin, lot), encode_value(&entry));
    Ok(())
}

fn pack(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    parent: &Sscc,
    children: &[Item],
    location: &Option<String>,
) -> Result<(), SupplyError> {
    op.items("a pack", children.len(), ITEMS_PER_OP_MAX)?;
    check_location(location)?;
    let parent_item = Item::Container(*parent);
    let mut parent_entry = match container(state, parent)? {
        Some(existing) => {
            let stored = Stored::Container(*parent, existing);
            stored.check_loose_in_custody(&actor.org)?;
            let Stored::Container(_, existing) = stored else {
                unreachable!("loaded as a container")
            };
            existing
        }
        None => {
            // A new case or pallet: its SSCC must not be under another holder's prefix (the
            // extension digit comes first).
            check_prefix(state, actor, parent.as_str(), &parent.as_str()[1..])?;
            Container {
                owner: actor.org.clone(),
                location: location.clone(),
                parent: None,
                shipment: None,
                children: Vec::new(),
                products: Vec::new(),
                depth: 1,
                excursions: Vec::new(),
                history: vec![op.step(actor, location.clone(), StepKind::Commissioned)],
            }
        }
    };
    if parent_entry.children.len() + children.len() > CONTAINER_CHILDREN_MAX {
        return Err(SupplyError::ContainerFull(*parent));
    }
    for mut child in load_distinct(state, children)? {
        if child.item() == parent_item {
            return Err(invalid(format!(
                "{parent_item} cannot be packed into itself"
            )));
        }
        child.check_loose_in_custody(&actor.org)?;
        // The parent is loose, so it has no ancestors a child could be: no cycle can form.
        let depth = child.depth() + 1;
        if depth as usize > NESTING_DEPTH_MAX {
            return Err(SupplyError::TooDeep(*parent));
        }
        parent_entry.depth = parent_entry.depth.max(depth);
        merge_products(&mut parent_entry.products, &child.products());
        if parent_entry.products.len() > PRODUCTS_PER_CONTAINER_MAX {
            return Err(invalid(format!(
                "container {parent} would hold more than {PRODUCTS_PER_CONTAINER_MAX} products"
            )));
        }
        parent_entry.children.push(child.item());
        match &mut child {
            Stored::Unit(_, unit) => unit.parent = Some(*parent),
            Stored::Container(_, nested) => nested.parent = Some(*parent),
        }
        child.push_step(op.step(actor, location.clone(), StepKind::Packed { into: *parent }))?;
        child.save(state);
    }
    if location.is_some() {
        parent_entry.location = location.clone();
    }
    state.put(key_container(parent), encode_value(&parent_entry));
    Ok(())
}

fn unpack(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    parent: &Sscc,
    children: &[Item],
    location: &Option<String>,
) -> Result<(), SupplyError> {
    if children.len() > ITEMS_PER_OP_MAX {
        return Err(invalid(format!(
            "an unpack names at most {ITEMS_PER_OP_MAX} items"
        )));
    }
    check_location(location)?;
    let stored = Stored::load(state, &Item::Container(*parent))?;
    stored.check_loose_in_custody(&actor.org)?;
    let Stored::Container(_, mut parent_entry) = stored else {
        unreachable!("loaded as a container")
    };
    let chosen: Vec<Item> = if children.is_empty() {
        parent_entry.children.clone()
    } else {
        children.to_vec()
    };
    op.spend(chosen.len())?;
    {
        let inside: std::collections::BTreeSet<&Item> = parent_entry.children.iter().collect();
        if let Some(missing) = chosen.iter().find(|item| !inside.contains(item)) {
            return Err(SupplyError::NotInContainer(missing.clone(), *parent));
        }
    }
    let wanted: std::collections::BTreeSet<&Item> = chosen.iter().collect();
    parent_entry
        .children
        .retain(|child| !wanted.contains(child));
    let place = location.clone().or_else(|| parent_entry.location.clone());
    for mut child in load_distinct(state, &chosen)? {
        match &mut child {
            Stored::Unit(_, unit) => unit.parent = None,
            Stored::Container(_, nested) => nested.parent = None,
        }
        child.set_custody(&actor.org, place.clone(), None);
        // Excursions the container saw while this child was inside stay with the child.
        let since = child.packed_since();
        for excursion in &parent_entry.excursions {
            if excursion.height >= since {
                push_excursion(child.excursions_mut(), excursion.clone());
            }
        }
        child.push_step(op.step(actor, place.clone(), StepKind::Unpacked { from: *parent }))?;
        child.save(state);
    }
    // `products` and `depth` stay as they were: a superset only makes a reading be recorded
    // on the container for a product no longer inside, and each unit judges excursions against
    // its own product's range, so no verdict changes; recomputing would read every child.
    state.put(key_container(parent), encode_value(&parent_entry));
    Ok(())
}

fn ship(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    to: &str,
    items: &[Item],
    location: &Option<String>,
) -> Result<(), SupplyError> {
    op.items("a shipment", items.len(), ITEMS_PER_OP_MAX)?;
    check_location(location)?;
    if to == actor.org {
        return Err(SupplyError::ShipToSelf);
    }
    if state.get(&key_org(to))?.is_none() {
        return Err(SupplyError::UnknownOrganisation(to.to_string()));
    }
    let id = shipment_id(&op.tx, op.op);
    let mut products = Vec::new();
    for mut stored in load_distinct(state, items)? {
        stored.check_loose_in_custody(&actor.org)?;
        merge_products(&mut products, &stored.products());
        stored.set_custody(&actor.org, location.clone(), Some(id));
        stored.push_step(op.step(
            actor,
            location.clone(),
            StepKind::Shipped {
                shipment: id,
                to: to.to_string(),
            },
        ))?;
        stored.save(state);
    }
    state.put(
        key_shipment(&id),
        encode_value(&Shipment {
            from: actor.org.clone(),
            to: to.to_string(),
            items: items.to_vec(),
            products,
            shipped_at: op.block.height,
            shipped_ms: op.block.time_ms,
            received_at: None,
            received_ms: None,
            excursions: Vec::new(),
            excursions_count: 0,
        }),
    );
    Ok(())
}

fn receive(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    id: &Hash,
    location: &Option<String>,
) -> Result<(), SupplyError> {
    check_location(location)?;
    let mut entry = shipment(state, id)?.ok_or(SupplyError::UnknownShipment(*id))?;
    if entry.to != actor.org {
        return Err(SupplyError::NotTheReceiver {
            shipment: *id,
            to: entry.to,
            org: actor.org.clone(),
        });
    }
    if entry.received_at.is_some() {
        return Err(SupplyError::AlreadyReceived(*id));
    }
    op.spend(entry.items.len())?;
    for item in &entry.items {
        let mut stored = Stored::load(state, item)?;
        stored.set_custody(&actor.org, None, None);
        // The goods are where the receiver says, or nowhere named: never still at the sender's.
        stored.set_location(location.clone());
        stored.push_step(op.step(
            actor,
            location.clone(),
            StepKind::Received { shipment: *id },
        ))?;
        stored.save(state);
    }
    entry.received_at = Some(op.block.height);
    entry.received_ms = Some(op.block.time_ms);
    state.put(key_shipment(id), encode_value(&entry));
    Ok(())
}

fn set_status(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    units: &[UnitId],
    status: UnitStatus,
) -> Result<(), SupplyError> {
    op.items("a status change", units.len(), ITEMS_PER_OP_MAX)?;
    let items: Vec<Item> = units.iter().cloned().map(Item::Unit).collect();
    for stored in load_distinct(state, &items)? {
        stored.check_loose_held(&actor.org)?;
        let Stored::Unit(id, mut entry) = stored else {
            unreachable!("loaded as a unit")
        };
        let from = entry.status;
        let kind = match (from, status) {
            (UnitStatus::Active, UnitStatus::Dispensed) => StepKind::Dispensed,
            (UnitStatus::Active | UnitStatus::Dispensed, UnitStatus::Destroyed) => {
                StepKind::Destroyed
            }
            (UnitStatus::Dispensed, UnitStatus::Active) => StepKind::ReturnedToStock,
            _ => {
                return Err(SupplyError::BadStatusChange {
                    unit: id,
                    from,
                    to: status,
                });
            }
        };
        entry.status = status;
        let location = entry.location.clone();
        push_step(
            &mut entry.history,
            &Item::Unit(id.clone()),
            op.step(actor, location, kind),
        )?;
        state.put(key_unit(&id), encode_value(&entry));
    }
    Ok(())
}

fn attach_sensor(
    state: &mut View<'_, '_>,
    actor: &Actor,
    device: &PublicKey,
    place: &Place,
    band: &Option<TempRange>,
) -> Result<(), SupplyError> {
    match member(state, device)? {
        Some(record)
            if record.org == actor.org
                && record.role == Role::Device
                && record.revoked_at.is_none() => {}
        _ => return Err(SupplyError::NotADevice(*device)),
    }
    if let Some(range) = band
        && range.min_milli_c > range.max_milli_c
    {
        return Err(invalid("an alarm band's minimum is above its maximum"));
    }
    check_place(state, actor, place)?;
    state.put(
        key_sensor(device),
        encode_value(&SensorEntry {
            org: actor.org.clone(),
            place: place.clone(),
            band: *band,
        }),
    );
    Ok(())
}

fn check_place(state: &dyn StateRead, actor: &Actor, place: &Place) -> Result<(), SupplyError> {
    match place {
        Place::Shipment(id) => {
            let entry = shipment(state, id)?.ok_or(SupplyError::UnknownShipment(*id))?;
            if entry.from != actor.org && entry.to != actor.org {
                return Err(invalid(format!(
                    "shipment {id} is neither from nor to {}",
                    actor.org
                )));
            }
        }
        // A sensor reports only on places its organisation answers for: a location it registered,
        // goods it holds.
        Place::Location(gln) => match location(state, gln)? {
            Some(entry) if entry.org == actor.org => {}
            _ => {
                return Err(invalid(format!(
                    "location {gln:?} is not a GLN registered by {}",
                    actor.org
                )));
            }
        },
        Place::Items(items) => {
            check_count("a sensor's items", items.len(), ITEMS_PER_OP_MAX)?;
            for item in items {
                let custodian = custodian(state, item)?;
                if custodian != actor.org {
                    return Err(SupplyError::NotInCustody {
                        item: item.clone(),
                        custodian,
                        org: actor.org.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The organisation that holds an item now, through the containers around it.
fn custodian(state: &dyn StateRead, item: &Item) -> Result<String, SupplyError> {
    let (owner, location, shipment, parent) = match Stored::load(state, item)? {
        Stored::Unit(_, unit) => (unit.owner, unit.location, unit.shipment, unit.parent),
        Stored::Container(_, container) => (
            container.owner,
            container.location,
            container.shipment,
            container.parent,
        ),
    };
    let (custody, _) = resolve(
        state,
        &owner,
        &location,
        shipment,
        parent,
        &mut BTreeMap::new(),
    )?;
    Ok(custody.custodian)
}

/// Records readings. A reading counts as an excursion where it leaves a range that matters
/// there: the storage range of any product in the shipment or item it travels with, or, at a
/// location, the alarm band the sensor was attached with (every reading when it has none). The
/// verdict for a unit then checks each excursion against that unit's own product range.
fn record_readings(
    state: &mut View<'_, '_>,
    op: &OpContext<'_>,
    actor: &Actor,
    device: &PublicKey,
    place: &Option<Place>,
    readings: &[Reading],
) -> Result<(), SupplyError> {
    check_count("a sensor report", readings.len(), READINGS_PER_REPORT_MAX)?;
    // The device itself, or a goods-handling key of the device's organisation.
    let entry = sensor(state, device)?;
    let device_org = match member(state, device)? {
        Some(record) if record.role == Role::Device && record.revoked_at.is_none() => record.org,
        _ => return Err(SupplyError::NotADevice(*device)),
    };
    if device_org != actor.org || (actor.key != *device && !actor.handles_goods()) {
        return Err(SupplyError::NotADevice(*device));
    }
    let (place, band) = match (place, &entry) {
        (Some(place), _) => {
            check_place(state, actor, place)?;
            let band = entry
                .as_ref()
                .filter(|attached| attached.place == *place)
                .and_then(|attached| attached.band);
            (place.clone(), band)
        }
        (None, Some(attached)) => (attached.place.clone(), attached.band),
        (None, None) => return Err(SupplyError::SensorNotAttached(*device)),
    };
    let excursion = |reading: &Reading| Excursion {
        device: *device,
        time_ms: reading.time_ms,
        milli_c: reading.milli_c,
        height: op.block.height,
    };
    match &place {
        Place::Shipment(id) => {
            let mut shipment_entry =
                shipment(state, id)?.ok_or(SupplyError::UnknownShipment(*id))?;
            let ranges = storage_ranges(state, &shipment_entry.products)?;
            // A logger read out at delivery reports the whole trip: what it measured between
            // dispatch and receipt concerns the goods. Those two times are block times, and
            // EPCIS steps may be captured late, so the window is widened by
            // `SHIPMENT_WINDOW_SLACK_MS` each way: a cold-chain check would rather flag a pack
            // too many than miss one.
            let window = shipment_entry
                .shipped_ms
                .saturating_sub(SHIPMENT_WINDOW_SLACK_MS)
                ..=shipment_entry.received_ms.map_or(u64::MAX, |received| {
                    received.saturating_add(SHIPMENT_WINDOW_SLACK_MS)
                });
            for reading in readings {
                if window.contains(&reading.time_ms)
                    && ranges.iter().any(|range| !range.contains(reading.milli_c))
                {
                    shipment_entry.excursions_count += 1;
                    push_excursion(&mut shipment_entry.excursions, excursion(reading));
                }
            }
            state.put(key_shipment(id), encode_value(&shipment_entry));
        }
        Place::Location(location) => {
            let mut log = location_excursions(state, location)?;
            for reading in readings {
                if band.is_none_or(|band| !band.contains(reading.milli_c)) {
                    log.readings_count += 1;
                    add_to_episodes(&mut log.episodes, device, reading, op.block.height);
                }
            }
            state.put(key_location_excursions(location), encode_value(&log));
        }
        Place::Items(items) => {
            op.spend(items.len())?;
            for mut stored in load_distinct(state, items)? {
                let ranges = storage_ranges(state, &stored.products())?;
                let mut changed = false;
                for reading in readings {
                    if ranges.iter().any(|range| !range.contains(reading.milli_c)) {
                        push_excursion(stored.excursions_mut(), excursion(reading));
                        changed = true;
                    }
                }
                if changed {
                    stored.save(state);
                }
            }
        }
    }
    Ok(())
}

/// How far outside its dispatch and receipt block times a shipment's readings still count.
pub const SHIPMENT_WINDOW_SLACK_MS: u64 = 24 * 60 * 60 * 1000;

/// Adds an out-of-band reading to a location's episodes: it extends the latest episode when it
/// falls within `EPISODE_GAP_MS` of it, else opens a new one (the oldest gives way beyond
/// `LOCATION_EPISODES_MAX`).
fn add_to_episodes(
    episodes: &mut Vec<Episode>,
    device: &PublicKey,
    reading: &Reading,
    height: u64,
) {
    if let Some(last) = episodes.last_mut()
        && last.device == *device
        && reading.time_ms.abs_diff(last.end_ms) <= EPISODE_GAP_MS
        && reading.time_ms.saturating_add(EPISODE_GAP_MS) >= last.start_ms
    {
        last.start_ms = last.start_ms.min(reading.time_ms);
        last.end_ms = last.end_ms.max(reading.time_ms);
        last.min_milli_c = last.min_milli_c.min(reading.milli_c);
        last.max_milli_c = last.max_milli_c.max(reading.milli_c);
        return;
    }
    if episodes.len() >= LOCATION_EPISODES_MAX {
        episodes.remove(0);
    }
    episodes.push(Episode {
        device: *device,
        start_ms: reading.time_ms,
        end_ms: reading.time_ms,
        min_milli_c: reading.milli_c,
        max_milli_c: reading.milli_c,
        height,
    });
}

fn storage_ranges(state: &dyn StateRead, gtins: &[Gtin]) -> Result<Vec<TempRange>, SupplyError> {
    let mut ranges = Vec::new();
    for gtin in gtins {
        if let Some(found) = product(state, gtin)?
            && let Some(range) = found.spec.storage
        {
            ranges.push(range);
        }
    }
    Ok(ranges)
}

// ---------------------------------------------------------------------------------------------
// Queries: custody, verification, recall report, trace. Pure reads of one state.

/// Who holds an item now, resolved through the containers it is packed in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Custody {
    pub custodian: String,
    pub location: Option<String>,
    /// The shipment the outermost container (or the item) travels in.
    pub shipment: Option<Hash>,
    /// The containers around the item, innermost first.
    pub containers: Vec<Sscc>,
}

/// Containers already resolved: their custody and the excursions they and their ancestors saw.
pub type ResolvedContainers = BTreeMap<Sscc, (Custody, Vec<Excursion>)>;

/// Resolves a unit's custody (see [`resolve`]).
pub fn resolve_unit(
    state: &dyn StateRead,
    found: &Unit,
    cache: &mut ResolvedContainers,
) -> Result<(Custody, Vec<Excursion>), StateError> {
    resolve(
        state,
        &found.owner,
        &found.location,
        found.shipment,
        found.parent,
        cache,
    )
}

/// Resolves custody by walking up from a loose-or-packed item's own fields. `cache` remembers
/// containers already resolved, so a report over many units reads each container once.
pub fn resolve(
    state: &dyn StateRead,
    owner: &str,
    location: &Option<String>,
    shipment: Option<Hash>,
    parent: Option<Sscc>,
    cache: &mut ResolvedContainers,
) -> Result<(Custody, Vec<Excursion>), StateError> {
    let Some(parent) = parent else {
        return Ok((
            Custody {
                custodian: owner.to_string(),
                location: location.clone(),
                shipment,
                containers: Vec::new(),
            },
            Vec::new(),
        ));
    };
    // Walk up iteratively, then fill the cache from the top down.
    let mut chain: Vec<(Sscc, Container)> = Vec::new();
    let mut next = Some(parent);
    let mut top: Option<(Custody, Vec<Excursion>)> = None;
    while let Some(sscc) = next {
        if let Some(known) = cache.get(&sscc) {
            top = Some(known.clone());
            break;
        }
        if chain.len() > NESTING_DEPTH_MAX {
            return Err(StateError::Store(format!(
                "container {sscc} nests deeper than {NESTING_DEPTH_MAX}"
            )));
        }
        let Some(found) = container(state, &sscc)? else {
            return Err(StateError::Store(format!("container {sscc} is missing")));
        };
        next = found.parent;
        chain.push((sscc, found));
    }
    let (mut custody, mut excursions) = top.unwrap_or_else(|| {
        let (_, outermost) = chain.last().expect("the chain holds at least the parent");
        (
            Custody {
                custodian: outermost.owner.clone(),
                location: outermost.location.clone(),
                shipment: outermost.shipment,
                containers: Vec::new(),
            },
            Vec::new(),
        )
    });
    for (sscc, found) in chain.into_iter().rev() {
        custody.containers.insert(0, sscc);
        excursions.extend(found.excursions.iter().cloned());
        cache.insert(sscc, (custody.clone(), excursions.clone()));
    }
    Ok((custody, excursions))
}

/// Why a scanned pack is suspect.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Suspect {
    UnknownGtin,
    UnknownSerial,
    LotMismatch {
        on_chain: String,
    },
    ExpiryMismatch {
        #[serde(serialize_with = "date_text")]
        on_chain: u32,
    },
    Expired {
        #[serde(serialize_with = "date_text")]
        expiry: u32,
    },
    Dispensed,
    Destroyed,
    Recalled {
        reason: String,
        height: u64,
    },
    NotInCustody {
        custodian: String,
    },
    ColdChainExcursion {
        excursions: Vec<Excursion>,
    },
}

/// A stored date (`YYYYMMDD` as a number) as ISO 8601 text, `2027-12-31`.
fn date_text<S: serde::Serializer>(date: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!(
        "{:04}-{:02}-{:02}",
        date / 10_000,
        date / 100 % 100,
        date % 100
    ))
}

fn optional_date_text<S: serde::Serializer>(
    date: &Option<u32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => date_text(date, serializer),
        None => serializer.serialize_none(),
    }
}

/// The answer to a verification.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub verdict: &'static str,
    pub reasons: Vec<Suspect>,
    pub unit: UnitId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_date_text"
    )]
    pub expiry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<UnitStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custody: Option<Custody>,
}

impl Suspect {
    /// The reason's code, without its details (`recalled`, `not_in_custody`).
    pub fn code(&self) -> &'static str {
        match self {
            Suspect::UnknownGtin => "unknown_gtin",
            Suspect::UnknownSerial => "unknown_serial",
            Suspect::LotMismatch { .. } => "lot_mismatch",
            Suspect::ExpiryMismatch { .. } => "expiry_mismatch",
            Suspect::Expired { .. } => "expired",
            Suspect::Dispensed => "dispensed",
            Suspect::Destroyed => "destroyed",
            Suspect::Recalled { .. } => "recalled",
            Suspect::NotInCustody { .. } => "not_in_custody",
            Suspect::ColdChainExcursion { .. } => "cold_chain_excursion",
        }
    }
}

/// What a patient learns from a scan: the verdict and the codes of its reasons, with what the
/// pack itself says (unit, lot, expiry); not who holds the unit, why it was recalled, or its
/// cold-chain record, which patients may not read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PatientVerdict {
    pub verdict: &'static str,
    pub reasons: Vec<&'static str>,
    pub unit: UnitId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_date_text"
    )]
    pub expiry: Option<u32>,
}

impl Verdict {
    /// The verdict as a patient may see it.
    pub fn for_patient(&self) -> PatientVerdict {
        PatientVerdict {
            verdict: self.verdict,
            reasons: self.reasons.iter().map(Suspect::code).collect(),
            unit: self.unit.clone(),
            lot: self.lot.clone(),
            expiry: self.expiry,
        }
    }
}

/// What a scan claims about a unit.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    pub lot: Option<String>,
    /// YYMMDD as scanned.
    pub expiry: Option<String>,
}

/// Verifies a scanned unit against the state at block time `now_ms`. `verifier_org` is the
/// verifying organisation when it handles goods (custody is checked for it), `None` for
/// auditors and regulators.
pub fn verify(
    state: &dyn StateRead,
    now_ms: u64,
    verifier_org: Option<&str>,
    id: &UnitId,
    claim: &Claim,
) -> Result<Verdict, StateError> {
    let mut verdict = Verdict {
        verdict: "suspect",
        reasons: Vec::new(),
        unit: id.clone(),
        lot: None,
        expiry: None,
        status: None,
        custody: None,
    };
    let Some(registered) = product(state, &id.gtin)? else {
        verdict.reasons.push(Suspect::UnknownGtin);
        return Ok(verdict);
    };
    let Some(found) = unit(state, id)? else {
        verdict.reasons.push(Suspect::UnknownSerial);
        return Ok(verdict);
    };
    let today = date_of_ms(now_ms);
    if let Some(lot) = &claim.lot
        && *lot != found.lot
    {
        verdict.reasons.push(Suspect::LotMismatch {
            on_chain: found.lot.clone(),
        });
    }
    if let Some(expiry) = &claim.expiry {
        let scanned = expiry_date(expiry, (today / 10_000) as i32).ok();
        if scanned != Some(found.expiry) {
            verdict.reasons.push(Suspect::ExpiryMismatch {
                on_chain: found.expiry,
            });
        }
    }
    if found.expiry < today {
        verdict.reasons.push(Suspect::Expired {
            expiry: found.expiry,
        });
    }
    match found.status {
        UnitStatus::Active => {}
        UnitStatus::Dispensed => verdict.reasons.push(Suspect::Dispensed),
        UnitStatus::Destroyed => verdict.reasons.push(Suspect::Destroyed),
    }
    if let Some(notice) = lot(state, &id.gtin, &found.lot)?.and_then(|entry| entry.recall) {
        verdict.reasons.push(Suspect::Recalled {
            reason: notice.reason,
            height: notice.height,
        });
    }
    let (custody, inherited) = resolve_unit(state, &found, &mut BTreeMap::new())?;
    if let Some(org) = verifier_org {
        // A receiver verifying goods addressed to it, before it confirms receipt, is entitled.
        let addressed_to_verifier = match custody.shipment {
            Some(id) => shipment(state, &id)?.is_some_and(|entry| entry.to == org),
            None => false,
        };
        if custody.custodian != org && !addressed_to_verifier {
            verdict.reasons.push(Suspect::NotInCustody {
                custodian: custody.custodian.clone(),
            });
        }
    }
    if let Some(range) = registered.spec.storage {
        let excursions = cold_chain_excursions(state, now_ms, id, &found, &inherited, range)?;
        if !excursions.is_empty() {
            verdict
                .reasons
                .push(Suspect::ColdChainExcursion { excursions });
        }
    }
    if verdict.reasons.is_empty() {
        verdict.verdict = "genuine";
    }
    verdict.lot = Some(found.lot);
    verdict.expiry = Some(found.expiry);
    verdict.status = Some(found.status);
    verdict.custody = Some(custody);
    Ok(verdict)
}

/// Every recorded reading outside `range` that this unit was exposed to: on the unit, on the
/// containers around it, in the shipments it travelled in, and at the locations it stayed at
/// while it stayed there. At most `EXCURSIONS_KEPT_MAX` are returned.
fn cold_chain_excursions(
    state: &dyn StateRead,
    now_ms: u64,
    id: &UnitId,
    found: &Unit,
    inherited: &[Excursion],
    range: TempRange,
) -> Result<Vec<Excursion>, StateError> {
    let mut out: Vec<Excursion> = Vec::new();
    let mut add = |excursion: &Excursion| {
        if !range.contains(excursion.milli_c)
            && out.len() < EXCURSIONS_KEPT_MAX
            && !out.contains(excursion)
        {
            out.push(excursion.clone());
        }
    };
    found.excursions.iter().for_each(&mut add);
    // The containers around the unit count only what they recorded since the unit went in
    // (by block: devices' clocks and capture times differ, and a logger read out late still
    // speaks of the trip the unit made).
    let since = packed_since(&found.history);
    inherited
        .iter()
        .filter(|excursion| excursion.height >= since)
        .for_each(&mut add);
    // The unit is loaded already: trace from its history rather than read it again.
    let mut steps = Vec::new();
    trace_into(
        state,
        &Item::Unit(id.clone()),
        &found.history,
        None,
        0,
        &mut steps,
    )?;
    for (position, entry) in steps.iter().enumerate() {
        if let StepKind::Shipped {
            shipment: ship_id, ..
        } = &entry.step.kind
        {
            if let Some(found) = shipment(state, ship_id)? {
                found.excursions.iter().for_each(&mut add);
            }
            // Shipping ends the stay where the goods left from.
            continue;
        }
        let Some(location) = &entry.step.location else {
            continue;
        };
        let log = location_excursions(state, location)?;
        if log.episodes.is_empty() {
            continue;
        }
        let until = steps
            .get(position + 1)
            .map_or(now_ms, |next| next.step.time_ms);
        for episode in &log.episodes {
            if episode.end_ms >= entry.step.time_ms && episode.start_ms <= until {
                for milli_c in [episode.min_milli_c, episode.max_milli_c] {
                    add(&Excursion {
                        device: episode.device,
                        time_ms: episode.start_ms,
                        milli_c,
                        height: episode.height,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The height at which an item last went into a container (0 if never): what a container
/// recorded before then does not concern it.
fn packed_since(history: &[Step]) -> u64 {
    history
        .iter()
        .rev()
        .find(|step| matches!(step.kind, StepKind::Packed { .. }))
        .map_or(0, |step| step.height)
}

/// One step of a trace, with the item whose history it comes from (the unit itself or a
/// container it was packed in at the time).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceStep {
    pub item: Item,
    #[serde(flatten)]
    pub step: Step,
}

/// The full custody timeline of an item: its own steps, and while it was packed, the steps of
/// the containers around it, in chain order. Empty for an unknown item.
pub fn trace(state: &dyn StateRead, item: &Item) -> Result<Vec<TraceStep>, StateError> {
    let history = load_history(state, item)?;
    let mut out = Vec::new();
    trace_into(state, item, &history, None, 0, &mut out)?;
    Ok(out)
}

fn load_history(state: &dyn StateRead, item: &Item) -> Result<Vec<Step>, StateError> {
    Ok(match item {
        Item::Unit(id) => unit(state, id)?.map(|found| found.history),
        Item::Container(sscc) => container(state, sscc)?.map(|found| found.history),
    }
    .unwrap_or_default())
}

type Order = (u64, u32, u32);

/// Appends `item`'s steps from `history` (inside `window`), with the steps of the containers it
/// was packed in meanwhile.
fn trace_into(
    state: &dyn StateRead,
    item: &Item,
    history: &[Step],
    window: Option<(Order, Order)>,
    depth: usize,
    out: &mut Vec<TraceStep>,
) -> Result<(), StateError> {
    if depth > NESTING_DEPTH_MAX {
        return Ok(());
    }
    let inside = |step: &Step| match window {
        Some((from, to)) => step.order() > from && step.order() < to,
        None => true,
    };
    let steps: Vec<&Step> = history.iter().filter(|step| inside(step)).collect();
    for (position, step) in steps.iter().enumerate() {
        out.push(TraceStep {
            item: item.clone(),
            step: (*step).clone(),
        });
        if let StepKind::Packed { into } = &step.kind {
            let end = steps
                .get(position + 1)
                .map_or((u64::MAX, u32::MAX, u32::MAX), |next| next.order());
            let end = match window {
                Some((_, to)) => end.min(to),
                None => end,
            };
            let container = Item::Container(*into);
            trace_into(
                state,
                &container,
                &load_history(state, &container)?,
                Some((step.order(), end)),
                depth + 1,
                out,
            )?;
        }
    }
    Ok(())
}

/// One affected unit in a recall report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    pub serial: String,
    pub status: UnitStatus,
    #[serde(flatten)]
    pub custody: Custody,
}

/// A recall report: every unit of the lot with its current custodian and location.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecallReport {
    pub gtin: Gtin,
    pub lot: String,
    pub recall: Option<RecallNotice>,
    pub units_count: u64,
    /// The commissioning batches this page covers start here.
    pub from_batch: u32,
    /// Where the next page starts, if the lot has more.
    pub next_batch: Option<u32>,
    pub units: Vec<Affected>,
}

/// The most units one page of a recall report lists (whole commissioning batches, so a page
/// may hold one batch more than this).
pub const REPORT_UNITS_PER_PAGE_MAX: usize = 250_000;

/// Lists the units of a lot, from commissioning batch `from_batch` on, whole batches up to about
/// `REPORT_UNITS_PER_PAGE_MAX` units, with custody resolved through cases and pallets. `None`
/// for an unknown lot.
pub fn recall_report(
    state: &dyn StateRead,
    gtin: &Gtin,
    lot_id: &str,
    from_batch: u32,
) -> Result<Option<RecallReport>, StateError> {
    let Some(entry) = lot(state, gtin, lot_id)? else {
        return Ok(None);
    };
    let mut units = Vec::with_capacity((entry.units as usize).min(REPORT_UNITS_PER_PAGE_MAX));
    let mut cache = BTreeMap::new();
    let mut next_batch = None;
    for batch in from_batch..entry.batches {
        if units.len() >= REPORT_UNITS_PER_PAGE_MAX {
            next_batch = Some(batch);
            break;
        }
        let Some(found) = lot_batch(state, gtin, lot_id, batch)? else {
            return Err(StateError::Store(format!(
                "lot {lot_id} of {gtin} is missing batch {batch}"
            )));
        };
        for serial in found.serials {
            let id = UnitId {
                gtin: *gtin,
                serial,
            };
            let Some(found) = unit(state, &id)? else {
                return Err(StateError::Store(format!("unit {id} is missing")));
            };
            let (custody, _) = resolve_unit(state, &found, &mut cache)?;
            units.push(Affected {
                serial: id.serial,
                status: found.status,
                custody,
            });
        }
    }
    Ok(Some(RecallReport {
        gtin: *gtin,
        lot: lot_id.to_string(),
        recall: entry.recall,
        units_count: entry.units,
        from_batch,
        next_batch,
        units,
    }))
}
