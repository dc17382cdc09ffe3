//! Chain queries a contract may make (`query_chain`): a narrow, versioned, read-only window on
//! what is already on chain, never personal data. A request is a JSON object with one member
//! naming the query; the answer is a JSON object. Version 1 (`abi::INTERFACE_VERSION`):
//!
//! - `{"member": {"key": "<hex>"}}` → `{"enrolled": bool, "org", "role", "revoked": bool}`: whom a
//!   key acts for (an organisation's root key answers role `organisation`);
//! - `{"organisation": {"id": "<id>"}}` → `{"exists": bool}`;
//! - `{"token_balance": {"symbol", "account": "<hex key>"}}` → `{"amount": "<minor units>"}`;
//! - `{"consent": {"record": "<record id>", "reader": "<hex key>", "purpose": "TREAT"}}` →
//!   `{"decision": "permit" | "deny" | "no_consent" | "erased"}`: whether the record's patient's
//!   consent permits the reader this purpose now, by the records module's one consent rule (no
//!   break-glass; nothing is recorded: an actual read is still an audited access event);
//! - `{"unit": {"gtin": "<GTIN>", "serial": "<serial>"}}` → `{"found": true, "status": "active" |
//!   "dispensed" | "destroyed", "lot", "expiry"}` or `{"found": false}`.
//!
//! A request that does not parse or names no known query answers `{"error": "<reason>"}`, which
//! the contract may handle; it is not a fault.

use medledger_crypto::{Hash, PublicKey};
use medledger_module::{Authority, Standing, org_exists, standing};
use medledger_state::{StateError, StateRead};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Member {
        key: PublicKey,
    },
    Organisation {
        id: String,
    },
    TokenBalance {
        symbol: String,
        account: PublicKey,
    },
    Consent {
        record: Hash,
        reader: PublicKey,
        purpose: medledger_records::Purpose,
    },
    Unit(medledger_supply::UnitId),
}

/// The consent rule's answer for one record, reader and purpose, at `time_ms`.
fn consent(
    state: &dyn StateRead,
    record_id: &Hash,
    reader_key: &PublicKey,
    purpose: medledger_records::Purpose,
    time_ms: u64,
) -> Result<Value, StateError> {
    use medledger_records::{AccessRule, Question, Reader};
    let Some(record) = medledger_records::record(state, record_id)? else {
        return Ok(json!({ "error": "no such record" }));
    };
    let reader = match standing(state, reader_key)? {
        Standing::Acts(Authority::Organisation { org }) => Reader {
            key: *reader_key,
            org,
            role: None,
        },
        Standing::Acts(Authority::Member { org, role }) => Reader {
            key: *reader_key,
            org,
            role: Some(role),
        },
        _ => return Ok(json!({ "error": "the reader is not enrolled" })),
    };
    let patient = medledger_records::patient(state, &record.patient)?;
    let erased = patient
        .as_ref()
        .is_some_and(|entry| entry.erased_at.is_some());
    let grants = match patient.and_then(|entry| entry.key) {
        Some(key) => medledger_records::grants_of(state, &key)?,
        None => Vec::new(),
    };
    let rule = medledger_records::evaluate(
        &grants,
        time_ms,
        &Question {
            reader: &reader,
            record_id,
            record: &record,
            purpose,
            break_glass: false,
            erased,
        },
    );
    let decision = match rule {
        AccessRule::Permit(_) | AccessRule::BreakGlass => "permit",
        AccessRule::Deny(_) => "deny",
        AccessRule::NoConsent => "no_consent",
        AccessRule::Erased => "erased",
    };
    Ok(json!({ "decision": decision }))
}

fn role_name(role: medledger_types::Role) -> Value {
    serde_json::to_value(role).unwrap_or(Value::Null)
}

/// Answers one request, as JSON bytes, at block time `time_ms`.
pub fn answer(state: &dyn StateRead, request: &[u8], time_ms: u64) -> Result<Vec<u8>, StateError> {
    let answer = match serde_json::from_slice::<Request>(request) {
        Err(error) => json!({ "error": format!("unknown or malformed query: {error}") }),
        Ok(Request::Member { key }) => match standing(state, &key)? {
            Standing::Acts(Authority::Organisation { org }) => {
                json!({"enrolled": true, "org": org, "role": "organisation", "revoked": false})
            }
            Standing::Acts(Authority::Member { org, role }) => {
                json!({"enrolled": true, "org": org, "role": role_name(role), "revoked": false})
            }
            Standing::Revoked { .. } => {
                let record = medledger_module::member(state, &key)?;
                json!({
                    "enrolled": true,
                    "org": record.as_ref().map(|r| r.org.clone()),
                    "role": record.map(|r| role_name(r.role)),
                    "revoked": true,
                })
            }
            Standing::Unknown => json!({"enrolled": false, "revoked": false}),
        },
        Ok(Request::Organisation { id }) => json!({ "exists": org_exists(state, &id)? }),
        Ok(Request::TokenBalance { symbol, account }) => {
            let amount = medledger_tokens::balance(state, &symbol, &account)?;
            json!({ "amount": amount.to_string() })
        }
        Ok(Request::Consent {
            record,
            reader,
            purpose,
        }) => consent(state, &record, &reader, purpose, time_ms)?,
        Ok(Request::Unit(id)) => match medledger_supply::unit(state, &id)? {
            Some(unit) => json!({
                "found": true,
                "status": unit.status,
                "lot": unit.lot,
                "expiry": unit.expiry,
            }),
            None => json!({ "found": false }),
        },
    };
    Ok(serde_json::to_vec(&answer).unwrap_or_default())
}
