//! The drug supply chain, as a ledger module: products by GTIN, serialised units, cases and
//! pallets (SSCC), shipments with custody that passes only on receipt, dispensing, recalls,
//! cold-chain readings and EPCIS capture (PRODUCT.md modules 5 to 7); plus the pure queries that
//! read them back (verification, recall report, trace).

mod machine;
mod types;

pub use machine::*;
pub use types::*;

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::PublicKey;
use medledger_module::{Module, TxContext, View};
use medledger_state::encode_value;
use medledger_types::Genesis;
use serde::{Deserialize, Serialize};

/// The supply module's operations. Their order is their payload tag (from the registry's base):
/// never reorder or remove one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SupplyPayload {
    /// Supply-chain steps, each acted by the sender's organisation, applied in order, all or
    /// nothing.
    Supply { ops: Vec<SupplyOp> },
    /// An organisation's node records EPCIS events captured from `capturer`, a member of its
    /// organisation, with the supply-chain steps they map to. An event already on record is
    /// skipped, so capturing it again changes nothing.
    CaptureEpcis {
        capturer: PublicKey,
        events: Vec<CapturedEvent>,
    },
}

/// The supply-chain module.
#[derive(Clone, Copy, Debug)]
pub struct Supply;

/// Company prefixes are 4 to 12 digits, and no prefix held by one organisation may begin another
/// (nor repeat it), so every GS1 key has at most one holder.
pub fn check_gs1_prefixes(genesis: &Genesis) -> Result<(), String> {
    let mut all: Vec<(&str, &str)> = Vec::new();
    for organisation in &genesis.organisations {
        for prefix in &organisation.gs1_prefixes {
            if !(4..=12).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "organisation {} has GS1 company prefix {prefix:?}, not 4 to 12 digits",
                    organisation.id
                ));
            }
            all.push((prefix, &organisation.id));
        }
    }
    all.sort();
    for pair in all.windows(2) {
        if pair[1].0.starts_with(pair[0].0) {
            return Err(format!(
                "GS1 company prefix {} of {} overlaps {} of {}",
                pair[0].0, pair[0].1, pair[1].0, pair[1].1
            ));
        }
    }
    Ok(())
}

impl Module for Supply {
    const NAME: &'static str = "supply";
    const PREFIXES: &'static [&'static str] = &[
        "product/",
        "unit/",
        "container/",
        "lot/",
        "lot-batch/",
        "shipment/",
        "location/",
        "gs1-prefix/",
        "sensor/",
        "location-excursions/",
        "epcis-event/",
    ];
    const KINDS: &'static [&'static str] = &["supply", "capture_epcis"];
    type Op = SupplyPayload;
    type Error = SupplyError;

    fn kind(op: &SupplyPayload) -> &'static str {
        match op {
            SupplyPayload::Supply { .. } => "supply",
            SupplyPayload::CaptureEpcis { .. } => "capture_epcis",
        }
    }

    /// The organisations' GS1 company prefixes (`Organisation::gs1_prefixes`, a field of the
    /// genesis encoding, which is frozen).
    fn check_genesis(genesis: &Genesis) -> Result<(), String> {
        check_gs1_prefixes(genesis)
    }

    fn genesis(genesis: &Genesis, state: &mut View<'_, '_>) {
        for organisation in &genesis.organisations {
            for prefix in &organisation.gs1_prefixes {
                state.put(key_gs1_prefix(prefix), encode_value(&organisation.id));
            }
        }
    }

    fn apply(
        op: &SupplyPayload,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), SupplyError> {
        match op {
            SupplyPayload::Supply { ops } => apply_supply(state, tx, ops),
            SupplyPayload::CaptureEpcis { capturer, events } => {
                capture_epcis(state, tx, capturer, events)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_types::{Organisation, Validator};

    fn genesis(prefixes: [&[&str]; 2]) -> Genesis {
        let organisation = |n: u64, prefixes: &[&str]| Organisation {
            id: format!("org{n}"),
            name: format!("Org {n}"),
            root_key: medledger_crypto::SecretKey::from_seed(n).public_key(),
            gs1_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        };
        Genesis {
            chain_id: "test".into(),
            genesis_time_ms: 0,
            organisations: vec![organisation(1, prefixes[0]), organisation(2, prefixes[1])],
            validators: vec![Validator {
                key: medledger_crypto::SecretKey::from_seed(9).public_key(),
                power: 1,
                org: "org1".into(),
            }],
        }
    }

    #[test]
    fn every_gs1_key_has_at_most_one_prefix_holder() {
        assert!(
            genesis([&["0614141"], &["9520011", "0614142"]])
                .validate()
                .is_ok()
                && check_gs1_prefixes(&genesis([&["0614141"], &["9520011", "0614142"]])).is_ok()
        );
        for bad in [
            [&["0614141"][..], &["061414"][..]],
            [&["0614141"][..], &["0614141"][..]],
            [&["0614141", "06141419"][..], &[][..]],
            [&["061"][..], &[][..]],
            [&["0614141234567"][..], &[][..]],
            [&["06141a1"][..], &[][..]],
        ] {
            assert!(check_gs1_prefixes(&genesis(bad)).is_err(), "{bad:?}");
        }
    }
}
