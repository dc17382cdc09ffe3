//! The contracts service: read-only queries of contracts at the head, and the chain's log of
//! contract events as a feed (a server-sent event stream and webhooks, like the modules' alert
//! feeds). Contracts keep nothing off chain: every read comes from the committed state, so a query
//! answers the same on every node at the same height.

use std::path::Path;
use std::sync::Arc;

use medledger_contracts::runtime::{End, Outcome};
use medledger_contracts::{self as ledger, ContractsError, EventRecord};
use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::TxError;
use medledger_types::Height;
use serde::Serialize;

use crate::Node;
use crate::service::{Service, ServiceError};

/// Events one page of the feed holds.
pub const EVENTS_PAGE_MAX: u64 = 256;

#[derive(Clone)]
pub struct Contracts {
    node: Node,
    inner: Arc<Inner>,
}

struct Inner {
    webhooks: crate::webhooks::Webhooks,
}

impl std::fmt::Debug for Contracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contracts").finish_non_exhaustive()
    }
}

/// A query's answer.
#[derive(Clone, Debug, Serialize)]
pub struct QueryAnswer {
    pub height: Height,
    /// `done`, `refused` or the fault's code (`out_of_fuel`, `trap`, ...).
    pub status: String,
    /// The contract's answer: JSON if it parses as JSON, else text.
    pub result: serde_json::Value,
    /// Why it failed, for a fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub fuel_used: u64,
}

fn answer(height: Height, outcome: Outcome) -> QueryAnswer {
    let result = serde_json::from_slice(&outcome.result).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&outcome.result).into_owned())
    });
    let (status, reason) = match &outcome.end {
        End::Done => ("done".to_string(), None),
        End::Refused => ("refused".to_string(), None),
        End::Fault(fault) => (fault.code().to_string(), Some(fault.to_string())),
    };
    QueryAnswer {
        height,
        status,
        result,
        reason,
        fuel_used: outcome.fuel_used,
    }
}

fn refusal(error: ContractsError) -> ServiceError {
    use medledger_module::ModuleError;
    match error {
        ContractsError::UnknownContract(_) => ServiceError::NotFound(error.to_string()),
        ContractsError::State(error) => ServiceError::Node(error.into()),
        other => ServiceError::Refused {
            code: other.code().to_string(),
            reason: other.to_string(),
        },
    }
}

fn read_error(error: TxError) -> ServiceError {
    match error {
        TxError::State(error) => ServiceError::Node(error.into()),
        other => ServiceError::Invalid(other.to_string()),
    }
}

impl Contracts {
    pub fn open(node: Node, dir: &Path) -> Result<Contracts, ServiceError> {
        let webhooks = crate::webhooks::Webhooks::open(dir)?;
        let contracts = Contracts {
            node,
            inner: Arc::new(Inner { webhooks }),
        };
        crate::webhooks::Webhooks::spawn_all(&contracts);
        Ok(contracts)
    }

    /// Runs a contract's `query` entry point at the head (or at `height`).
    pub fn query(
        &self,
        address: Hash,
        msg: String,
        height: Option<Height>,
    ) -> Result<QueryAnswer, ServiceError> {
        let (height, found) = self.node.read_at(height, move |view| {
            Ok(ledger::query_contract(view, &address, &msg)?)
        })?;
        let outcome = found.map_err(read_error)?.map_err(refusal)?;
        Ok(answer(height, outcome))
    }
}

/// Every contract's events, in the chain's order, to any enrolled member: they are on chain.
impl crate::webhooks::AlertFeed for Contracts {
    type Alert = EventRecord;
    const SIGNATURE_DOMAIN: &'static [u8] = b"medledger/contract-event-webhook/v1";

    fn node(&self) -> &Node {
        &self.node
    }

    fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    fn page(
        &self,
        subscriber: &PublicKey,
        cursor: u64,
    ) -> Result<(Vec<EventRecord>, u64), ServiceError> {
        self.node.authenticate(subscriber)?;
        let (_, found) = self.node.read_head(move |view| {
            let count = ledger::events_count(view)?;
            let end = count.min(cursor.saturating_add(EVENTS_PAGE_MAX));
            let mut events = Vec::new();
            for seq in cursor..end {
                events.extend(ledger::event(view, seq)?);
            }
            Ok((events, end.max(cursor)))
        })?;
        found.map_err(read_error)
    }

    fn seq(event: &EventRecord) -> u64 {
        event.seq
    }

    fn kind(_: &EventRecord) -> &'static str {
        "contract_event"
    }
}

impl Service for Contracts {
    /// Nothing follows blocks here: queries and events are read from the committed state.
    const FOLLOWING: Option<&'static str> = None;
}
