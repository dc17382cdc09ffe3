//! The supply-chain service: verification of scanned packs, recall reports and traces over the
//! committed state, and the EPCIS 2.0 repository: capture (validated, mapped onto ledger steps,
//! committed by this node for a member of its organisation) and queries over an index of every
//! committed EPCIS event.
//!
//! **Invariant:** the EPCIS index (`epcis.redb`) is derived from committed blocks only and can be
//! rebuilt from them; it holds nothing the chain does not.
//! **Invariant:** verification reads one committed state and judges it at that block's time, so
//! two nodes at the same height give the same verdict.

use std::collections::BTreeMap;
use std::path::Path;

use medledger_crypto::{Hash, PublicKey};
use medledger_epcis::{Action, Epc, Event, EventKind};
use medledger_ledger::{Authority, Payload, TxError};
use medledger_state::StateRead;
use medledger_supply::{self as ledger, Claim, RecallReport, TraceStep, Verdict};
use medledger_supply::{
    CapturedEvent, EVENT_BYTES_MAX, Gtin, ITEMS_PER_OP_MAX, Item, Place, Reading, Sscc, SupplyOp,
    SupplyPayload, UNITS_PER_COMMISSION_MAX, UnitId, UnitStatus,
};
use medledger_types::{Height, Role, TX_BYTES_MAX};

mod index;

pub use index::{
    EVENTS_PAGE_MAX, EVENTS_SCANNED_PER_PAGE_MAX, EpcisIndex, EventPage, EventQuery, biz_step_short,
};

use crate::Node;
use crate::service::{Service, ServiceError, wait_committed};

/// The most events one capture document may carry.
pub const CAPTURE_EVENTS_MAX: usize = 10_000;

/// What a capture did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaptureReport {
    /// Events newly recorded on chain.
    pub captured: usize,
    /// Events already on record (captured before, or twice in this document).
    pub duplicates: usize,
    pub events: Vec<CapturedSummary>,
    /// The transactions that carried them, in order.
    pub txs: Vec<Hash>,
    pub height: Option<Height>,
}

/// One event of a capture.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CapturedSummary {
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// The ledger steps it maps to (`commission`, `pack`, `ship`, ...), empty for an event about
    /// goods this chain does not track.
    pub steps: Vec<&'static str>,
    pub duplicate: bool,
}

/// The supply-chain service of one node.
#[derive(Clone, Debug)]
pub struct Supply {
    node: Node,
    index: EpcisIndex,
}

fn not_found(error: TxError) -> ServiceError {
    match error {
        TxError::State(error) => ServiceError::Node(error.into()),
        other => ServiceError::NotFound(other.to_string()),
    }
}

/// A unit named by a scanned code: GTIN and serial, and what the code claims about lot and
/// expiry.
pub fn parse_unit_code(code: &str) -> Result<(UnitId, Claim), ServiceError> {
    let scan = medledger_gs1::parse_scan(code.trim()).map_err(|error| {
        ServiceError::Invalid(format!("the code is not a valid GS1 code: {error}"))
    })?;
    let (Some(gtin), Some(serial)) = (scan.get("01"), scan.get("21")) else {
        return Err(ServiceError::Invalid(
            "the code names no serialised unit: it needs AI (01) GTIN and AI (21) serial".into(),
        ));
    };
    let gtin = Gtin::parse(gtin).map_err(|error| ServiceError::Invalid(error.to_string()))?;
    let claim = Claim {
        lot: scan.get("10").map(str::to_string),
        expiry: scan.get("17").map(str::to_string),
    };
    Ok((
        UnitId {
            gtin,
            serial: serial.to_string(),
        },
        claim,
    ))
}

/// A verification's answer: the whole verdict, or what a patient may see of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Verified {
    Full(Verdict),
    Patient(medledger_supply::PatientVerdict),
}

impl Supply {
    /// Opens (or creates) the EPCIS index in `dir` and brings it up to the chain's head.
    /// Opens the service with its EPCIS index in `dir`, and brings the index up to the head.
    pub fn open(node: Node, dir: &Path) -> Result<Supply, ServiceError> {
        let supply = Supply {
            index: EpcisIndex::open(dir)?,
            node,
        };
        supply
            .node
            .register_database(&dir.join("epcis.redb"), &supply.index.db);
        let head = supply.node.status()?.height;
        supply.index.index_through(&supply.node, head)?;
        Ok(supply)
    }

    /// Answers a query from the EPCIS index.
    pub fn events(&self, query: &EventQuery) -> Result<EventPage, ServiceError> {
        self.index.events(query)
    }

    /// Waits until the EPCIS index covers `height`.
    pub async fn indexed(&self, height: Height) -> Result<(), ServiceError> {
        self.index.indexed(height).await
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The organisation a key verifies for: its own when it handles goods (custody is then
    /// checked), none for other roles (an auditor or regulator checks a pack without holding it).
    fn verifier_org(authority: &Authority) -> Option<String> {
        match authority {
            Authority::Organisation { org } => Some(org.clone()),
            Authority::Member {
                org,
                role: Role::Validator | Role::Manufacturer | Role::Distributor | Role::Pharmacy,
            } => Some(org.clone()),
            Authority::Member { .. } => None,
        }
    }

    /// Verifies a scanned code for an enrolled verifier, at the head: the whole verdict, or for a
    /// patient the verdict and its reasons' codes only.
    pub fn verify(
        &self,
        verifier: &PublicKey,
        code: &str,
    ) -> Result<(Height, Verified), ServiceError> {
        let (unit, claim) = parse_unit_code(code)?;
        let (height, verdict) = self.node.read_head(|state| {
            let authority = medledger_ledger::authority(state, verifier)?;
            let head = medledger_ledger::chain_head(state)?;
            let org = Self::verifier_org(&authority);
            let verdict = ledger::verify(state, head.time_ms, org.as_deref(), &unit, &claim)?;
            // Patients may not read custody, recalls or cold-chain records.
            Ok(match authority {
                Authority::Member {
                    role: Role::Patient,
                    ..
                } => Verified::Patient(verdict.for_patient()),
                _ => Verified::Full(verdict),
            })
        })?;
        match verdict {
            Ok(verdict) => Ok((height, verdict)),
            Err(TxError::State(error)) => Err(ServiceError::Node(error.into())),
            Err(error) => Err(ServiceError::Unauthenticated(format!(
                "the verifier is not an enrolled, unrevoked member: {error}"
            ))),
        }
    }

    /// A page of the recall report of a lot at the head (see `ledger::supply::recall_report`).
    pub fn recall_report(
        &self,
        gtin: &Gtin,
        lot: &str,
        from_batch: u32,
    ) -> Result<(Height, RecallReport), ServiceError> {
        let (height, report) = self
            .node
            .read_head(|state| Ok(ledger::recall_report(state, gtin, lot, from_batch)?))?;
        match report.map_err(not_found)? {
            Some(report) => Ok((height, report)),
            None => Err(ServiceError::NotFound(format!(
                "no lot {lot} of GTIN {gtin}"
            ))),
        }
    }

    /// The custody timeline of a unit or container at the head, with the state key a light
    /// client proves it by.
    pub fn trace(&self, item: &Item) -> Result<(Height, Vec<TraceStep>), ServiceError> {
        let (height, steps) = self
            .node
            .read_head(|state| Ok(ledger::trace(state, item)?))?;
        let steps = steps.map_err(not_found)?;
        if steps.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "{item} is not on the chain"
            )));
        }
        Ok((height, steps))
    }

    /// A registered product.
    pub fn product(&self, gtin: &Gtin) -> Result<medledger_supply::Product, ServiceError> {
        let (_, found) = self
            .node
            .read_head(|state| Ok(ledger::product(state, gtin)?))?;
        found
            .map_err(not_found)?
            .ok_or_else(|| ServiceError::NotFound(format!("no product with GTIN {gtin}")))
    }

    /// A unit with its lot, for labels.
    pub fn unit(&self, id: &UnitId) -> Result<medledger_supply::Unit, ServiceError> {
        let (_, found) = self.node.read_head(|state| Ok(ledger::unit(state, id)?))?;
        found
            .map_err(not_found)?
            .ok_or_else(|| ServiceError::NotFound(format!("unit {id} is not on the chain")))
    }

    // -----------------------------------------------------------------------------------------
    // EPCIS capture.

    /// Captures an EPCIS document for `capturer`, a member of this node's organisation: the
    /// document is checked against the EPCIS 2.0 schema (nothing is stored if it fails), each
    /// event is identified by its GS1 event hash, mapped onto ledger steps, and committed. A
    /// document whose events fit one transaction is all or nothing; a larger one is committed in
    /// several, in order, and a refusal stops it there (the answer names what was captured).
    pub async fn capture(
        &self,
        capturer: PublicKey,
        body: &[u8],
    ) -> Result<CaptureReport, ServiceError> {
        let this = self.clone();
        let body = body.to_vec();
        let planned = tokio::task::spawn_blocking(move || this.plan_capture(&capturer, &body))
            .await
            .map_err(|error| ServiceError::Unavailable(error.to_string()))??;
        let (mut report, chunks) = planned;
        for events in chunks {
            let count = events.len();
            let payload = Payload::from(SupplyPayload::CaptureEpcis { capturer, events });
            let committed = match self
                .node
                .submit_own_checked(payload, |_| Ok::<(), ServiceError>(()))
            {
                Ok(tx) => {
                    report.txs.push(tx);
                    wait_committed(&self.node, tx).await
                }
                Err(error) => Err(error),
            };
            match committed {
                Ok(height) => report.height = Some(height),
                // Earlier transactions of a large document stay committed: say which.
                Err(ServiceError::Refused { code, reason }) if report.txs.len() > 1 => {
                    let done = &report.txs[..report.txs.len() - 1];
                    return Err(ServiceError::Refused {
                        code,
                        reason: format!(
                            "{reason}; the {count} events of this transaction were not captured, but the earlier transactions {done:?} were"
                        ),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }

    fn plan_capture(
        &self,
        capturer: &PublicKey,
        body: &[u8],
    ) -> Result<(CaptureReport, Vec<Vec<CapturedEvent>>), ServiceError> {
        let document = medledger_epcis::parse_document(body).map_err(|error| match error {
            medledger_epcis::EpcisError::Schema { reasons } => ServiceError::InvalidDocument {
                message: "the document fails the EPCIS 2.0 JSON schema; nothing was stored".into(),
                reasons,
            },
            other => ServiceError::Invalid(format!("not an EPCIS 2.0 document: {other}")),
        })?;
        if document.events.len() > CAPTURE_EVENTS_MAX {
            return Err(ServiceError::Invalid(format!(
                "a capture carries at most {CAPTURE_EVENTS_MAX} events"
            )));
        }
        let node_key = self.node.key();
        let (_, planned) = self.node.read_head(|state| {
            let authority = medledger_ledger::authority(state, capturer)?;
            let node_org = match medledger_ledger::authority(state, &node_key)? {
                Authority::Organisation { org } | Authority::Member { org, .. } => org,
            };
            let role = match &authority {
                Authority::Member { org, role } if *org == node_org => Some(*role),
                Authority::Organisation { org } if *org == node_org => None,
                _ => {
                    return Ok(Err(ServiceError::Forbidden(format!(
                        "only members of {node_org} capture through this node; capture through your organisation's node"
                    ))));
                }
            };
            let mut report = CaptureReport {
                captured: 0,
                duplicates: 0,
                events: Vec::new(),
                txs: Vec::new(),
                height: None,
            };
            let mut seen = std::collections::BTreeSet::new();
            let mut captured = Vec::new();
            let mut mapper = Mapper::new(state, &node_org, capturer, role);
            for event in &document.events {
                let hash = record_key(event)?;
                let duplicate = !seen.insert(hash) || ledger::event(state, &node_org, &hash)?.is_some();
                let ops = if duplicate { Vec::new() } else {
                    match mapper.map(event) {
                        Ok(ops) => ops,
                        Err(message) => return Ok(Err(ServiceError::Invalid(format!(
                            "event {}: {message}", event.hash
                        )))),
                    }
                };
                report.events.push(CapturedSummary {
                    event_id: event.hash.clone(),
                    steps: ops.iter().map(step_name).collect(),
                    duplicate,
                });
                if duplicate {
                    report.duplicates += 1;
                    continue;
                }
                // The event carries its document's context, so it reads on its own later (its
                // CURIEs resolve) and re-parses as a bare event; its hash does not change.
                let json = medledger_epcis::event_with_context(&event.json, &document.context);
                let body = serde_json::to_string(&json).map_err(|error| {
                    TxError::State(medledger_state::StateError::Store(error.to_string()))
                })?;
                if body.len() > EVENT_BYTES_MAX {
                    return Ok(Err(ServiceError::Invalid(format!(
                        "event {} is {} bytes; the ledger keeps events of at most {EVENT_BYTES_MAX} bytes (split its EPC list)",
                        event.hash,
                        body.len()
                    ))));
                }
                report.captured += 1;
                captured.push(CapturedEvent { hash, body, ops });
            }
            Ok(Ok((report, chunk_events(captured))))
        })?;
        planned.map_err(not_found)?
    }
}

/// What an event is on record under: its GS1 event hash, except for an error declaration,
/// which the GS1 hash leaves out (it names the event it corrects) and which must not be taken
/// for a second capture of that event.
fn record_key(event: &Event) -> Result<Hash, TxError> {
    let digest = event_digest(&event.hash)?;
    if !event.is_error_declaration {
        return Ok(digest);
    }
    let declaration = event
        .json
        .get("errorDeclaration")
        .map(|value| value.to_string());
    Ok(medledger_crypto::hash_tagged(
        b"medledger/epcis-error-declaration",
        &[
            digest.as_bytes(),
            declaration.unwrap_or_default().as_bytes(),
        ],
    ))
}

/// The SHA-256 digest inside an `ni:///sha-256;<hex>?ver=CBV2.0` event hash.
fn event_digest(ni: &str) -> Result<Hash, TxError> {
    let hex = ni
        .strip_prefix("ni:///sha-256;")
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_default();
    Hash::from_hex(hex).map_err(|error| {
        TxError::State(medledger_state::StateError::Store(format!(
            "event hash {ni:?}: {error}"
        )))
    })
}

/// The location as the ledger names it: the GLN of an SGLN or Digital Link (with its extension
/// after a dot when it has one other than 0), so EPCIS stays match the GLNs organisations
/// register and place sensors at; anything else as written.
fn location_key(id: &str) -> String {
    match Epc::parse(id) {
        Epc::Sgln {
            gln,
            extension: None,
        } => gln,
        Epc::Sgln {
            gln,
            extension: Some(extension),
        } if extension == "0" => gln,
        Epc::Sgln {
            gln,
            extension: Some(extension),
        } => format!("{gln}.{extension}"),
        _ => id.to_string(),
    }
}

/// The GLN an EPCIS party or location names: an SGLN or PGLN URN, or a Digital Link with AI 414
/// or 417.
fn gln_of(id: &str) -> Option<String> {
    if let Epc::Sgln { gln, .. } = Epc::parse(id) {
        return Some(gln);
    }
    if let Some(body) = id.strip_prefix("urn:epc:id:pgln:") {
        let digits: String = body.split('.').collect();
        if digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let check = medledger_supply::gs1_check_digit(digits.as_bytes()) as char;
            return Some(format!("{digits}{check}"));
        }
        return None;
    }
    let mut segments = id.split('/');
    while let Some(segment) = segments.next() {
        if segment == "417" || segment == "414" {
            return segments.next().map(str::to_string);
        }
    }
    None
}

fn step_name(op: &SupplyOp) -> &'static str {
    match op {
        SupplyOp::RegisterProduct { .. } => "register_product",
        SupplyOp::RegisterLocation { .. } => "register_location",
        SupplyOp::Commission { .. } => "commission",
        SupplyOp::Pack { .. } => "pack",
        SupplyOp::Unpack { .. } => "unpack",
        SupplyOp::Ship { .. } => "ship",
        SupplyOp::Receive { .. } => "receive",
        SupplyOp::SetStatus {
            status: UnitStatus::Dispensed,
            ..
        } => "dispense",
        SupplyOp::SetStatus {
            status: UnitStatus::Destroyed,
            ..
        } => "destroy",
        SupplyOp::SetStatus { .. } => "return_to_stock",
        SupplyOp::Recall { .. } => "recall",
        SupplyOp::AttachSensor { .. } => "attach_sensor",
        SupplyOp::Readings { .. } => "readings",
    }
}

/// Splits events into transactions that fit `TX_BYTES_MAX` with room for the envelope.
fn chunk_events(events: Vec<CapturedEvent>) -> Vec<Vec<CapturedEvent>> {
    let budget = TX_BYTES_MAX - 1_024;
    let mut chunks: Vec<Vec<CapturedEvent>> = Vec::new();
    let mut size = 0;
    for event in events {
        let event_size = medledger_types::encode(&event).len();
        if chunks.is_empty() || size + event_size > budget {
            chunks.push(Vec::new());
            size = 0;
        }
        size += event_size;
        if let Some(last) = chunks.last_mut() {
            last.push(event);
        }
    }
    chunks
}

/// Maps EPCIS events onto ledger steps, following the CBV business steps. Only goods this chain
/// tracks (a registered GTIN, a known or newly packed SSCC) get steps; events about anything
/// else are recorded as they are.
struct Mapper<'a> {
    state: &'a dyn StateRead,
    org: &'a str,
    capturer: &'a PublicKey,
    role: Option<Role>,
    /// Containers this capture creates, so later events of the same document can use them.
    new_containers: std::collections::BTreeSet<Sscc>,
    tracked: BTreeMap<Gtin, bool>,
    /// Shipments this document already receives.
    received: std::collections::BTreeSet<Hash>,
}

impl<'a> Mapper<'a> {
    fn new(
        state: &'a dyn StateRead,
        org: &'a str,
        capturer: &'a PublicKey,
        role: Option<Role>,
    ) -> Self {
        Mapper {
            state,
            org,
            capturer,
            role,
            new_containers: Default::default(),
            tracked: BTreeMap::new(),
            received: Default::default(),
        }
    }

    fn is_tracked(&mut self, gtin: &Gtin) -> Result<bool, String> {
        if let Some(known) = self.tracked.get(gtin) {
            return Ok(*known);
        }
        let known = ledger::product(self.state, gtin)
            .map_err(|error| error.to_string())?
            .is_some();
        self.tracked.insert(*gtin, known);
        Ok(known)
    }

    /// The EPC as an item this chain tracks, if it is one.
    fn item(&mut self, epc: &Epc) -> Result<Option<Item>, String> {
        match epc {
            Epc::Sgtin { gtin, serial } => {
                let Ok(gtin) = Gtin::parse(gtin) else {
                    return Ok(None);
                };
                Ok(self.is_tracked(&gtin)?.then(|| {
                    Item::Unit(UnitId {
                        gtin,
                        serial: serial.clone(),
                    })
                }))
            }
            Epc::Sscc(sscc) => {
                let Ok(sscc) = Sscc::parse(sscc) else {
                    return Ok(None);
                };
                let known = self.new_containers.contains(&sscc)
                    || ledger::container(self.state, &sscc)
                        .map_err(|error| error.to_string())?
                        .is_some();
                Ok(known.then_some(Item::Container(sscc)))
            }
            _ => Ok(None),
        }
    }

    fn items(&mut self, epcs: &[Epc]) -> Result<Vec<Item>, String> {
        let mut out = Vec::new();
        for epc in epcs {
            if let Some(item) = self.item(epc)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    fn map(&mut self, event: &Event) -> Result<Vec<SupplyOp>, String> {
        let step = event.biz_step.as_deref().unwrap_or("");
        let location = event
            .biz_location
            .as_deref()
            .or(event.read_point.as_deref())
            .map(location_key);
        let mut ops = Vec::new();
        if event.is_error_declaration {
            // An error declaration corrects the record; the ledger keeps both and undoes nothing.
            return Ok(ops);
        }
        match (event.kind, event.action) {
            (EventKind::Object, Some(Action::Add)) if step == "commissioning" => {
                let mut by_gtin: BTreeMap<Gtin, Vec<String>> = BTreeMap::new();
                for item in self.items(&event.epc_list)? {
                    if let Item::Unit(unit) = item {
                        by_gtin.entry(unit.gtin).or_default().push(unit.serial);
                    }
                }
                for (gtin, serials) in by_gtin {
                    let (Some(lot), Some(expiry)) = (&event.lot, &event.expiry) else {
                        return Err(format!(
                            "commissioning units of registered GTIN {gtin} needs ilmd lotNumber and itemExpirationDate"
                        ));
                    };
                    let expiry = yymmdd(expiry)?;
                    for chunk in serials.chunks(UNITS_PER_COMMISSION_MAX) {
                        ops.push(SupplyOp::Commission {
                            gtin,
                            lot: lot.clone(),
                            expiry: expiry.clone(),
                            serials: chunk.to_vec(),
                            location: location.clone(),
                        });
                    }
                }
            }
            (EventKind::Aggregation, Some(Action::Add)) => {
                let children = self.items(&event.child_epcs)?;
                if let (Some(Epc::Sscc(parent)), false) = (&event.parent_id, children.is_empty()) {
                    let parent = Sscc::parse(parent).map_err(|error| error.to_string())?;
                    self.new_containers.insert(parent);
                    for chunk in children.chunks(ITEMS_PER_OP_MAX) {
                        ops.push(SupplyOp::Pack {
                            parent,
                            children: chunk.to_vec(),
                            location: location.clone(),
                        });
                    }
                }
            }
            (EventKind::Aggregation, Some(Action::Delete)) => {
                if let Some(Item::Container(parent)) = event
                    .parent_id
                    .as_ref()
                    .map(|p| self.item(p))
                    .transpose()?
                    .flatten()
                {
                    // No childEPCs means everything; named children that this chain does not track
                    // mean nothing to unpack here.
                    let children = self.items(&event.child_epcs)?;
                    if event.child_epcs.is_empty() || !children.is_empty() {
                        ops.push(SupplyOp::Unpack {
                            parent,
                            children,
                            location: location.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        // Movement and end-of-life steps apply to the event's objects: its EPC list, or the
        // parent of an aggregation observed as a whole.
        let mut objects = self.items(&event.epc_list)?;
        if event.kind != EventKind::Object
            && let Some(parent) = &event.parent_id
            && let Some(item) = self.item(parent)?
        {
            objects.push(item);
        }
        let objects_are_new = ops
            .iter()
            .any(|op| matches!(op, SupplyOp::Commission { .. }));
        if !objects.is_empty() && !objects_are_new {
            match step {
                // CBV: shipping and receiving transfer custody; departing and arriving only move.
                "shipping" => {
                    if let Some(to) = self.destination_org(event)? {
                        for chunk in objects.chunks(ITEMS_PER_OP_MAX) {
                            ops.push(SupplyOp::Ship {
                                to: to.clone(),
                                items: chunk.to_vec(),
                                location: location.clone(),
                            });
                        }
                    }
                }
                "receiving" => {
                    let mut shipments = std::collections::BTreeSet::new();
                    for item in &objects {
                        match self.in_shipment(item)? {
                            Some(id) => {
                                shipments.insert(id);
                            }
                            None => {
                                return Err(format!(
                                    "{item} is not in a shipment, so there is nothing to receive"
                                ));
                            }
                        }
                    }
                    // One receipt per shipment, even when the document receives it case by case.
                    for shipment in shipments {
                        if self.received.insert(shipment) {
                            ops.push(SupplyOp::Receive {
                                shipment,
                                location: location.clone(),
                            });
                        }
                    }
                }
                "dispensing" | "retail_selling" => {
                    ops.extend(self.status(&objects, UnitStatus::Dispensed))
                }
                "destroying" | "decommissioning" => {
                    ops.extend(self.status(&objects, UnitStatus::Destroyed))
                }
                _ => {}
            }
        }
        // Temperature readings from a sensor device apply to the objects, or the location.
        if self.role == Some(Role::Device) {
            let readings: Vec<Reading> = event
                .sensor_readings
                .iter()
                // Temperatures the crate converted to Celsius; one in an unknown unit is kept
                // in the event but cannot be judged against a storage range.
                .filter(|reading| {
                    reading
                        .sensor_type
                        .as_deref()
                        .is_some_and(|kind| kind.ends_with("Temperature"))
                        && reading.uom.as_deref() == Some("CEL")
                })
                // The value, and the extremes of a summarised report, each count.
                .flat_map(|reading| {
                    [reading.value_milli, reading.min_milli, reading.max_milli]
                        .into_iter()
                        .flatten()
                        .filter_map(|milli_c| {
                            Some(Reading {
                                time_ms: u64::try_from(reading.time_ms).ok()?,
                                milli_c: i32::try_from(milli_c).ok()?,
                            })
                        })
                })
                .collect();
            if !readings.is_empty() {
                let place = if !objects.is_empty() {
                    Some(Place::Items(objects.clone()))
                } else {
                    location.clone().map(Place::Location)
                };
                for chunk in readings.chunks(medledger_supply::READINGS_PER_REPORT_MAX) {
                    ops.push(SupplyOp::Readings {
                        device: *self.capturer,
                        place: place.clone(),
                        readings: chunk.to_vec(),
                    });
                }
            }
        }
        Ok(ops)
    }

    fn status(&self, objects: &[Item], status: UnitStatus) -> Vec<SupplyOp> {
        let units: Vec<UnitId> = objects
            .iter()
            .filter_map(|item| match item {
                Item::Unit(unit) => Some(unit.clone()),
                Item::Container(_) => None,
            })
            .collect();
        units
            .chunks(ITEMS_PER_OP_MAX)
            .map(|chunk| SupplyOp::SetStatus {
                units: chunk.to_vec(),
                status,
            })
            .collect()
    }

    /// The shipment an item travels in, through the containers around it.
    fn in_shipment(&self, item: &Item) -> Result<Option<Hash>, String> {
        let fields = match item {
            Item::Unit(id) => ledger::unit(self.state, id)
                .map_err(|error| error.to_string())?
                .map(|unit| (unit.owner, unit.location, unit.shipment, unit.parent)),
            Item::Container(sscc) => ledger::container(self.state, sscc)
                .map_err(|error| error.to_string())?
                .map(|found| (found.owner, found.location, found.shipment, found.parent)),
        };
        let Some((owner, location, shipment, parent)) = fields else {
            return Ok(None);
        };
        let (custody, _) = ledger::resolve(
            self.state,
            &owner,
            &location,
            shipment,
            parent,
            &mut BTreeMap::new(),
        )
        .map_err(|error| error.to_string())?;
        Ok(custody.shipment)
    }

    /// The organisation an event ships to: the owner of a GLN in its destination list. `None`
    /// when every destination is the capturer's own (a transfer inside the organisation).
    fn destination_org(&self, event: &Event) -> Result<Option<String>, String> {
        let mut internal = false;
        for (_, id) in &event.destinations {
            if let Some(gln) = gln_of(id)
                && let Some(entry) =
                    ledger::location(self.state, &gln).map_err(|error| error.to_string())?
            {
                if entry.org != self.org {
                    return Ok(Some(entry.org));
                }
                internal = true;
            }
        }
        if internal {
            return Ok(None);
        }
        Err(
            "shipping goods this chain tracks needs a destinationList naming a GLN another organisation registered"
                .into(),
        )
    }
}

/// An EPCIS `itemExpirationDate` (YYYY-MM-DD) as the YYMMDD of AI (17).
fn yymmdd(date: &str) -> Result<String, String> {
    let bytes = date.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && digits_at(0..4)
        && digits_at(5..7)
        && digits_at(8..10)
    {
        Ok(format!("{}{}{}", &date[2..4], &date[5..7], &date[8..10]))
    } else if bytes.len() == 6 && bytes.iter().all(u8::is_ascii_digit) {
        Ok(date.to_string())
    } else {
        Err(format!("itemExpirationDate {date:?} is not YYYY-MM-DD"))
    }
}

impl Service for Supply {
    const FOLLOWING: Option<&'static str> = Some("indexing EPCIS events");

    /// Indexes the EPCIS events of committed blocks.
    fn follow(&self, head: Height) -> Result<(), ServiceError> {
        self.index.index_through(&self.node, head)
    }
}
