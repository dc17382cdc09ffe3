//! What the tests, the fuzz target and the benchmark drive without a ledger: a host over a map,
//! and `deploy_and_call`, which deploys a module as the chain does and calls every entry point it
//! has under a fuel limit. A panic anywhere, or a call that uses more fuel than it was given, is a
//! bug.

use std::collections::BTreeMap;
use std::ops::Bound;

use medledger_crypto::{Hash, sha256};
use medledger_state::StateError;

use crate::runtime::{Call, End, Entry, Foreign, Host, Outcome, runtime};
use crate::validate::{CodeLimits, CodeRefusal};

/// A host over a map: one contract's committed keys; chain queries answer with the request
/// itself; calls of other contracts are refused.
#[derive(Debug)]
pub struct MapHost {
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What `env()` answers.
    pub env: Vec<u8>,
}

impl Default for MapHost {
    fn default() -> MapHost {
        MapHost {
            state: BTreeMap::new(),
            env: br#"{"block":{"height":1,"time_ms":0},"caller":null}"#.to_vec(),
        }
    }
}

impl Host for MapHost {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.state.get(key).cloned())
    }
    fn next_key(&mut self, after: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .state
            .range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            .next()
            .map(|(key, _)| key.clone()))
    }
    fn query(&mut self, request: &[u8]) -> Result<Vec<u8>, StateError> {
        Ok(request.to_vec())
    }
    fn env(&mut self) -> Result<Vec<u8>, StateError> {
        Ok(self.env.clone())
    }
    fn call(
        &mut self,
        _: Hash,
        _: &[u8],
        _: Entry,
        _: u64,
        _: &Foreign,
    ) -> Result<Outcome, StateError> {
        Ok(Outcome {
            end: End::Refused,
            fuel_used: 0,
            result: b"no other contract".to_vec(),
            writes: BTreeMap::new(),
            foreign: Foreign::new(),
            events: Vec::new(),
            transfers: Vec::new(),
        })
    }
}

/// The chain's default code limits.
pub const LIMITS: CodeLimits = crate::DEFAULT_CODE_LIMITS;

/// Deploys `code` (refused as the chain would refuse it) and, if it passes, calls each entry point
/// with `msg` and at most `fuel`, keeping what each `execute` wrote for the next call.
pub fn deploy_and_call(code: &[u8], msg: &[u8], fuel: u64) -> Result<Vec<Outcome>, CodeRefusal> {
    runtime().check(code, LIMITS)?;
    let code_hash = sha256(code);
    let mut host = MapHost::default();
    let mut outcomes = Vec::new();
    for entry in [
        Entry::Instantiate,
        Entry::Execute,
        Entry::Query,
        Entry::Migrate,
        Entry::Execute,
    ] {
        let mut load = || Ok(code.to_vec());
        let outcome = runtime()
            .call(
                Call {
                    code_hash,
                    address: Hash([7; 32]),
                    entry,
                    message: msg,
                    fuel,
                    memory_pages_max: LIMITS.memory_pages_max,
                },
                &mut load,
                &mut host,
            )
            .expect("the map host never fails");
        assert!(
            outcome.fuel_used <= fuel,
            "a call used {} fuel of {fuel}",
            outcome.fuel_used
        );
        if outcome.end == End::Done {
            for (key, value) in &outcome.writes {
                match value {
                    Some(value) => host.state.insert(key.clone(), value.clone()),
                    None => host.state.remove(key),
                };
            }
        } else {
            assert!(outcome.writes.is_empty() && outcome.events.is_empty());
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
