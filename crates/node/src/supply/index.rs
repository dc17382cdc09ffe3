//! The EPCIS index (`data/epcis/epcis.redb`): the EPCIS events of committed blocks, by capture
//! sequence, and sequence numbers by hash, canonical EPC and business step, for EPCIS queries.
//!
//! **Invariant:** the index holds only what committed blocks hold, and is rebuilt from them: it
//! follows the chain, up to `INDEX_HEIGHTS_PER_COMMIT` heights per index transaction.

use std::path::Path;
use std::sync::Arc;

use medledger_crypto::Hash;
use medledger_epcis::{Epc, Event};
use medledger_ledger::Payload;
use medledger_supply::{CapturedEvent, SupplyPayload};
use medledger_types::{Height, Outcome};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::Node;
use crate::service::ServiceError;

/// The most events one `GET /epcis/events` page returns.
pub const EVENTS_PAGE_MAX: usize = 1_000;
/// The most index entries one page of a query reads.
pub const EVENTS_SCANNED_PER_PAGE_MAX: usize = 10_000;
// The EPCIS index: events by sequence number, and sequence numbers by hash, EPC, bizStep and
// event time. Index keys are (value, sequence) so a range scan of one value lists its events
// in capture order.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const BY_HASH: TableDefinition<&[u8; 32], u64> = TableDefinition::new("by_hash");
const BY_EPC: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_epc");
const BY_STEP: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_biz_step");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_INDEXED_THROUGH: &str = "indexed_through";
const META_NEXT_SEQ: &str = "next_seq";

/// How many heights one index transaction covers at most.
const INDEX_HEIGHTS_PER_COMMIT: Height = 1_024;

/// The index's tables, open in one write transaction.
struct IndexTables<'txn> {
    events: redb::Table<'txn, u64, &'static [u8]>,
    by_hash: redb::Table<'txn, &'static [u8; 32], u64>,
    by_epc: redb::Table<'txn, (&'static str, u64), ()>,
    by_step: redb::Table<'txn, (&'static str, u64), ()>,
}

impl IndexTables<'_> {
    /// Adds one event under sequence number `seq` (then advanced), unless its hash is indexed
    /// already. Returns whether it was added.
    fn add(&mut self, indexed: &IndexedEvent, seq: &mut u64) -> Result<bool, ServiceError> {
        // The same event captured again is indexed once; another body under the same hash (one
        // organisation's node can commit anything under its own name) is indexed beside it.
        let key = medledger_crypto::hash_tagged(
            b"medledger/epcis-index",
            &[indexed.hash.as_bytes(), indexed.body.as_bytes()],
        );
        if self
            .by_hash
            .get(key.as_bytes())
            .map_err(index_error)?
            .is_some()
        {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(indexed).map_err(index_error)?;
        self.events
            .insert(*seq, bytes.as_slice())
            .map_err(index_error)?;
        self.by_hash
            .insert(key.as_bytes(), *seq)
            .map_err(index_error)?;
        for epc in &indexed.epcs {
            self.by_epc
                .insert((epc.as_str(), *seq), ())
                .map_err(index_error)?;
        }
        if let Some(step) = &indexed.biz_step {
            self.by_step
                .insert((step.as_str(), *seq), ())
                .map_err(index_error)?;
        }
        *seq += 1;
        Ok(true)
    }
}

/// One indexed event, as stored in the index.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct IndexedEvent {
    height: Height,
    tx: Hash,
    hash: Hash,
    event_time_ms: i64,
    biz_step: Option<String>,
    epcs: Vec<String>,
    body: String,
}

/// A query of the EPCIS repository (the EPCIS 2.0 query parameters this node serves).
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// `MATCH_epc`: an EPC URN or Digital Link in the event's EPC lists or parent.
    pub epc: Option<String>,
    /// `EQ_bizStep`.
    pub biz_step: Option<String>,
    /// `GE_eventTime`, in ms since the epoch.
    pub from_ms: Option<i64>,
    /// `LT_eventTime`, in ms since the epoch.
    pub until_ms: Option<i64>,
    pub per_page: usize,
    /// Continue after this sequence number (the `nextPageToken` of the previous page).
    pub after: Option<u64>,
}

/// A page of query results.
#[derive(Clone, Debug)]
pub struct EventPage {
    pub events: Vec<serde_json::Value>,
    pub next: Option<u64>,
}

/// The index and the height it has reached.
#[derive(Clone, Debug)]
pub struct EpcisIndex {
    pub(crate) db: Arc<redb::Database>,
    indexed_through: Arc<tokio::sync::watch::Sender<Height>>,
}

pub(crate) fn index_error(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(format!("EPCIS index: {error}"))
}

impl EpcisIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<EpcisIndex, ServiceError> {
        std::fs::create_dir_all(dir).map_err(index_error)?;
        let db = redb::Database::create(dir.join("epcis.redb")).map_err(index_error)?;
        let write = db.begin_write().map_err(index_error)?;
        let through = {
            write.open_table(EVENTS).map_err(index_error)?;
            write.open_table(BY_HASH).map_err(index_error)?;
            write.open_table(BY_EPC).map_err(index_error)?;
            write.open_table(BY_STEP).map_err(index_error)?;
            let meta = write.open_table(META).map_err(index_error)?;
            meta.get(META_INDEXED_THROUGH)
                .map_err(index_error)?
                .map_or(0, |value| value.value())
        };
        write.commit().map_err(index_error)?;
        Ok(EpcisIndex {
            db: Arc::new(db),
            indexed_through: Arc::new(tokio::sync::watch::channel(through).0),
        })
    }

    /// Waits until the index covers `height`.
    pub async fn indexed(&self, height: Height) -> Result<(), ServiceError> {
        let mut through = self.indexed_through.subscribe();
        tokio::time::timeout(
            crate::service::COMMIT_WAIT,
            through.wait_for(|through| *through >= height),
        )
        .await
        .map_err(|_| ServiceError::Unavailable("the EPCIS index is behind the chain".into()))?
        .map_err(|_| ServiceError::Unavailable("the EPCIS index stopped".into()))?;
        Ok(())
    }

    /// Indexes the EPCIS events of blocks up to `target`, up to `INDEX_HEIGHTS_PER_COMMIT`
    /// heights per index transaction. The index is derived and indexing a height again changes
    /// nothing (events are keyed by hash), so a commit that indexed no event skips its fsync
    /// (`Durability::None`); one in `INDEX_HEIGHTS_PER_COMMIT` heights, and every commit that
    /// indexed an event, is durable. A crash only makes the index redo some heights.
    pub fn index_through(&self, node: &Node, target: Height) -> Result<(), ServiceError> {
        // A node started from a snapshot indexes the events of the blocks it holds, after its
        // base.
        let mut height = (*self.indexed_through.borrow()).max(node.base_height()?);
        while height < target {
            let last = target.min(height + INDEX_HEIGHTS_PER_COMMIT);
            let mut write = self.db.begin_write().map_err(index_error)?;
            let mut indexed_any = false;
            {
                let mut tables = IndexTables {
                    events: write.open_table(EVENTS).map_err(index_error)?,
                    by_hash: write.open_table(BY_HASH).map_err(index_error)?,
                    by_epc: write.open_table(BY_EPC).map_err(index_error)?,
                    by_step: write.open_table(BY_STEP).map_err(index_error)?,
                };
                let mut meta = write.open_table(META).map_err(index_error)?;
                let mut seq = meta
                    .get(META_NEXT_SEQ)
                    .map_err(index_error)?
                    .map_or(0, |value| value.value());
                while height < last {
                    height += 1;
                    for (tx, receipt) in node.committed_txs(height)? {
                        let applied = receipt.is_some_and(|r| r.outcome == Outcome::Committed);
                        if let (Payload::Supply(SupplyPayload::CaptureEpcis { events, .. }), true) =
                            (&tx.body.payload, applied)
                        {
                            for entry in events
                                .iter()
                                .filter_map(|event| index_entry(height, tx.id(), event))
                            {
                                indexed_any |= tables.add(&entry, &mut seq)?;
                            }
                        }
                    }
                }
                meta.insert(META_NEXT_SEQ, seq).map_err(index_error)?;
                meta.insert(META_INDEXED_THROUGH, height)
                    .map_err(index_error)?;
            }
            let durable = indexed_any || height.is_multiple_of(INDEX_HEIGHTS_PER_COMMIT);
            write
                .set_durability(if durable {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                })
                .map_err(index_error)?;
            write.commit().map_err(index_error)?;
            self.indexed_through.send_replace(height);
        }
        Ok(())
    }

    /// Answers a query from the index: events in capture order, at most `per_page`.
    pub fn events(&self, query: &EventQuery) -> Result<EventPage, ServiceError> {
        let per_page = query.per_page.clamp(1, EVENTS_PAGE_MAX);
        let read = self.db.begin_read().map_err(index_error)?;
        let events = read.open_table(EVENTS).map_err(index_error)?;
        let start = match query.after {
            None => 0,
            Some(after) => after.checked_add(1).ok_or_else(|| {
                ServiceError::Invalid(format!("nextPageToken {after} names no page"))
            })?,
        };
        // Candidates come from the most selective index given, in sequence order.
        let candidates: Box<dyn Iterator<Item = Result<u64, ServiceError>>> = if let Some(epc) =
            &query.epc
        {
            let epc = canonical_epc(epc);
            let table = read.open_table(BY_EPC).map_err(index_error)?;
            let range = table
                .range((epc.as_str(), start)..=(epc.as_str(), u64::MAX))
                .map_err(index_error)?;
            Box::new(range.map(|entry| entry.map(|(key, _)| key.value().1).map_err(index_error)))
        } else if let Some(step) = &query.biz_step {
            let step = biz_step_short(step);
            let table = read.open_table(BY_STEP).map_err(index_error)?;
            let range = table
                .range((step.as_str(), start)..=(step.as_str(), u64::MAX))
                .map_err(index_error)?;
            Box::new(range.map(|entry| entry.map(|(key, _)| key.value().1).map_err(index_error)))
        } else {
            let range = events.range(start..).map_err(index_error)?;
            Box::new(range.map(|entry| entry.map(|(key, _)| key.value()).map_err(index_error)))
        };
        let mut page = EventPage {
            events: Vec::new(),
            next: None,
        };
        let mut last = None;
        for (scanned, seq) in candidates.enumerate() {
            let seq = seq?;
            // A page reads a bounded number of candidates: a query that matches little among
            // many events answers in pages, each continuing where the last stopped.
            if scanned >= EVENTS_SCANNED_PER_PAGE_MAX {
                page.next = Some(seq - 1).filter(|_| seq > 0).or(last);
                break;
            }
            let Some(bytes) = events.get(seq).map_err(index_error)? else {
                continue;
            };
            let indexed: IndexedEvent =
                serde_json::from_slice(bytes.value()).map_err(index_error)?;
            let step_matches = query.biz_step.as_ref().is_none_or(|step| {
                indexed.biz_step.as_deref() == Some(biz_step_short(step).as_str())
            });
            let time_matches = query
                .from_ms
                .is_none_or(|from| indexed.event_time_ms >= from)
                && query
                    .until_ms
                    .is_none_or(|until| indexed.event_time_ms < until);
            if !(step_matches && time_matches) {
                continue;
            }
            if page.events.len() == per_page {
                // There is more: the next page starts after the last event of this one.
                page.next = last;
                break;
            }
            last = Some(seq);
            // Bodies were checked when indexed; one that no longer parses is left out.
            if let Ok(body) = serde_json::from_str(&indexed.body) {
                page.events.push(body);
            }
        }
        Ok(page)
    }
}

/// The index entry of a committed event, or `None` for a body that is not a valid EPCIS event
/// (another organisation's node could commit one): it is skipped, so it cannot break queries.
fn index_entry(height: Height, tx: Hash, event: &CapturedEvent) -> Option<IndexedEvent> {
    // Each body on chain is a bare event with its own context: it parses on its own.
    let parsed = medledger_epcis::parse_document(event.body.as_bytes())
        .ok()?
        .events
        .into_iter()
        .next()?;
    Some(IndexedEvent {
        height,
        tx,
        hash: event.hash,
        event_time_ms: parsed.event_time_ms,
        biz_step: parsed.biz_step.clone(),
        epcs: event_epcs(&parsed),
        body: event.body.clone(),
    })
}

/// Every EPC an event names, in canonical form.
fn event_epcs(event: &Event) -> Vec<String> {
    let mut out: Vec<String> = event
        .epc_list
        .iter()
        .chain(&event.child_epcs)
        .chain(&event.input_epc_list)
        .chain(&event.output_epc_list)
        .chain(event.parent_id.iter())
        .map(epc_key)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The canonical form of an EPC: its GS1 Digital Link on id.gs1.org where it is a GS1 key, so
/// an EPC URN and any Digital Link of the same object match.
fn epc_key(epc: &Epc) -> String {
    match epc.to_digital_link() {
        Some(link) => link,
        None => match epc {
            Epc::Other(text) => text.clone(),
            other => format!("{other:?}"),
        },
    }
}

fn canonical_epc(text: &str) -> String {
    epc_key(&Epc::parse(text))
}

/// A CBV business step's short name (`shipping`) from any of its forms: the bare name, the
/// `cbv:` CURIE, the `https://ref.gs1.org/cbv/BizStep-` URI or the EPCIS 1.x URN.
pub fn biz_step_short(text: &str) -> String {
    let text = text.trim();
    for prefix in [
        "https://ref.gs1.org/cbv/BizStep-",
        "urn:epcglobal:cbv:bizstep:",
        "cbv:BizStep-",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text.to_string()
}
