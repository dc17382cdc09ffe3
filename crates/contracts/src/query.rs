//! Chain queries a contract may make (`query_chain`): a narrow, versioned, read-only window on
//! what is already on chain, never personal data. A request is a JSON object with one member
//! naming the query; the answer is a JSON object. Version 1 (`abi::INTERFACE_VERSION`):
//!
//! - `{"member": {"key": "<hex>"}}` → `{"enrolled": bool, "org", "role", "revoked": bool}`: whom a
//!   key acts for (an organisation's root key answers role `organisation`);
//! - `{"organisation": {"id": "<id>"}}` → `{"exists": bool}`;
//! - `{"token_balance": {"symbol", "account": "<hex key>"}}` → `{"amount": "<minor units>"}`.
//!
//! A request that does not parse or names no known query answers `{"error": "<reason>"}`, which
//! the contract may handle; it is not a fault.

use medledger_crypto::PublicKey;
use medledger_module::{Authority, Standing, org_exists, standing};
use medledger_state::{StateError, StateRead};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Member { key: PublicKey },
    Organisation { id: String },
    TokenBalance { symbol: String, account: PublicKey },
}

fn role_name(role: medledger_types::Role) -> Value {
    serde_json::to_value(role).unwrap_or(Value::Null)
}

/// Answers one request, as JSON bytes.
pub fn answer(state: &dyn StateRead, request: &[u8]) -> Result<Vec<u8>, StateError> {
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
    };
    Ok(serde_json::to_vec(&answer).unwrap_or_default())
}
