//! The monitoring module through the whole ledger: pairing by the patient or the device's
//! organisation, anchors that refuse replays and count gaps, alert rules set by the care team,
//! alerts raised without values, acknowledged once and escalated only when due; every refusal
//! leaves the module's state as it was. Batches and reading proofs are checked here too.

use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_monitor::readings::{
    Batch, BatchError, ReadingProof, SignedBatch, device_root, reading_leaf, window_root,
};
use medledger_monitor::*;
use medledger_records::{RecordWrite, RecordsOp};
use medledger_state::{MemoryTree, Snapshot, StateRead};
use medledger_types::{InclusionProof, Role};
use proptest::prelude::*;

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

struct World {
    chain: Chain,
    node: SecretKey,
    device: SecretKey,
    patient: SecretKey,
    doctor: SecretKey,
    /// A practitioner of organisation b, which neither holds the patient nor the device.
    outsider: SecretKey,
    patient_id: Hash,
}

impl World {
    /// Organisation a holds patient `patient_id` (bound to `patient`'s key), enrolled `device`
    /// and `doctor`; b enrolled `outsider`.
    fn new() -> World {
        let mut chain = Chain::new();
        let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
        let (device, patient, doctor, outsider) = (
            SecretKey::from_seed(700),
            SecretKey::from_seed(701),
            SecretKey::from_seed(702),
            SecretKey::from_seed(703),
        );
        for (org, key, role) in [
            (&org_a, &device, Role::Device),
            (&org_a, &patient, Role::Patient),
            (&org_a, &doctor, Role::Practitioner),
            (&org_b, &outsider, Role::Practitioner),
        ] {
            assert_eq!(rejected(&chain.enrol(org, key, role)), "committed");
        }
        let node = SecretKey::from_seed(1);
        let patient_id = Hash([70; 32]);
        let mut world = World {
            chain,
            node: node.clone(),
            device,
            patient: patient.clone(),
            doctor,
            outsider,
            patient_id,
        };
        let put = RecordsOp::PutRecords {
            records: vec![RecordWrite {
                record: Hash([71; 32]),
                patient: patient_id,
                resource_type: "Observation".into(),
                category: None,
                version: 1,
                commitment: Hash([1; 32]),
                author: world.doctor.public_key(),
            }],
        };
        world.records(&node, put);
        let bind = RecordsOp::BindPatient {
            patient: patient_id,
            key: patient.public_key(),
        };
        world.records(&node, bind);
        world
    }

    fn records(&mut self, key: &SecretKey, op: RecordsOp) {
        let tx = self.chain.tx(key, op);
        assert_eq!(rejected(&self.chain.one(tx)), "committed");
    }

    fn run(&mut self, key: &SecretKey, op: MonitorOp) -> String {
        let tx = self.chain.tx(key, op);
        rejected(&self.chain.one(tx)).to_string()
    }

    fn ok(&mut self, key: &SecretKey, op: MonitorOp) {
        assert_eq!(self.run(key, op), "committed");
    }

    /// Runs `op`, expects `code`, and checks that the module's state did not change.
    fn refused(&mut self, key: &SecretKey, op: MonitorOp, code: &str) {
        let before = self.monitor_state();
        assert_eq!(self.run(key, op), code);
        assert_eq!(
            self.monitor_state(),
            before,
            "a refused {code} changed state"
        );
    }

    fn monitor_state(&self) -> Vec<Option<Vec<u8>>> {
        let state = snapshot(&self.chain);
        let keys = [
            key_pairing(&self.device.public_key()),
            key_anchor_count("a"),
            key_anchor("a", 0),
            key_anchor("a", 1),
            key_rules(&self.patient_id),
            key_rule(&self.patient_id, "low-spo2"),
            key_alert_count("a"),
            key_alert("a", 0),
            key_alert_event_count("a"),
            key_open(&self.patient_id, "low-spo2"),
            key_patient_alert_count(&self.patient_id),
        ];
        keys.iter()
            .map(|key| state.get(key).expect("read"))
            .collect()
    }

    fn pair(&self) -> MonitorOp {
        MonitorOp::PairDevice {
            device: self.device.public_key(),
            patient: self.patient_id,
        }
    }

    fn anchor(&self, first_seq: u64, last_seq: u64, readings: u32) -> MonitorOp {
        MonitorOp::AnchorWindow {
            window_start_ms: 0,
            window_ms: 60_000,
            root: Hash([9; 32]),
            spans: vec![Span {
                device: self.device.public_key(),
                first_seq,
                last_seq,
                readings,
            }],
        }
    }

    fn pairing(&self) -> Pairing {
        pairing(&snapshot(&self.chain), &self.device.public_key())
            .expect("read")
            .expect("paired")
    }
}

fn low_spo2(escalate_after_ms: Option<u64>) -> AlertRule {
    AlertRule {
        id: "low-spo2".into(),
        code: Code::OxygenSaturation,
        condition: Condition::Below {
            limit: 90,
            for_ms: 300_000,
        },
        escalate_after_ms,
    }
}

/// A device is paired by its patient or its organisation's people, once at a time; unpairing
/// ends it, and a device paired again continues its sequence.
#[test]
fn devices_are_paired_by_the_patient_or_the_care_provider() {
    let mut world = World::new();
    let (node, patient, doctor, outsider) = (
        world.node.clone(),
        world.patient.clone(),
        world.doctor.clone(),
        world.outsider.clone(),
    );
    let pair = world.pair();
    // Not a device: the doctor's own key.
    let not_device = MonitorOp::PairDevice {
        device: doctor.public_key(),
        patient: world.patient_id,
    };
    world.refused(&doctor, not_device, "not_a_device");
    let no_patient = MonitorOp::PairDevice {
        device: world.device.public_key(),
        patient: Hash([99; 32]),
    };
    world.refused(&doctor, no_patient, "unknown_patient");
    world.refused(&outsider, pair.clone(), "not_allowed");
    // A device of organisation b cannot be paired with a's patient.
    let org_b = world.chain.org_b.clone();
    let foreign = SecretKey::from_seed(704);
    assert_eq!(
        rejected(&world.chain.enrol(&org_b, &foreign, Role::Device)),
        "committed"
    );
    let foreign_pair = MonitorOp::PairDevice {
        device: foreign.public_key(),
        patient: world.patient_id,
    };
    world.refused(&outsider, foreign_pair, "not_custodian");
    let device = world.device.clone();
    world.refused(&device, pair.clone(), "not_allowed");
    world.ok(&patient, pair.clone());
    world.refused(&doctor, pair.clone(), "already_paired");
    let found = world.pairing();
    assert_eq!((found.org.as_str(), found.patient), ("a", world.patient_id));
    assert_eq!(found.paired_by, patient.public_key());

    let anchor = world.anchor(0, 2, 30);
    world.ok(&node, anchor);
    let unpair = MonitorOp::UnpairDevice {
        device: world.device.public_key(),
    };
    world.refused(&outsider, unpair.clone(), "not_allowed");
    world.ok(&doctor, unpair.clone());
    world.refused(&doctor, unpair, "not_paired");
    assert!(!world.pairing().active());
    // Paired again by the care provider: the next anchor starts where the last one ended.
    world.ok(&doctor, pair);
    assert_eq!(world.pairing().next_seq, 3);
    let replay = world.anchor(2, 4, 10);
    world.refused(&node, replay, "replay");
}

/// Anchors come from the receiving organisation's node, refuse replays and steps back, count
/// gaps, and hold no values.
#[test]
fn anchors_refuse_replays_and_count_gaps() {
    let mut world = World::new();
    let (node, patient, doctor) = (
        world.node.clone(),
        world.patient.clone(),
        world.doctor.clone(),
    );
    let org_b = world.chain.org_b.clone();
    let anchor = world.anchor(0, 4, 50);
    world.refused(&node, anchor.clone(), "not_paired");
    world.ok(&patient, world.pair());
    world.refused(&doctor, anchor.clone(), "not_a_node");
    world.refused(&org_b, anchor.clone(), "wrong_organisation");
    for (op, field) in [
        (world.anchor(4, 0, 1), "last before first"),
        (world.anchor(0, 0, 0), "no readings"),
        (world.anchor(0, 0, 1_001), "more than a batch holds"),
    ] {
        let before = world.monitor_state();
        assert_eq!(world.run(&node, op), "invalid", "{field}");
        assert_eq!(world.monitor_state(), before);
    }
    let short = MonitorOp::AnchorWindow {
        window_start_ms: 0,
        window_ms: 10,
        root: Hash([9; 32]),
        spans: vec![],
    };
    world.refused(&node, short, "invalid");
    let future = MonitorOp::AnchorWindow {
        window_start_ms: world.chain.time_base_ms + 10_000_000,
        window_ms: 60_000,
        root: Hash([9; 32]),
        spans: vec![Span {
            device: world.device.public_key(),
            first_seq: 0,
            last_seq: 0,
            readings: 1,
        }],
    };
    world.refused(&node, future, "clock_ahead");
    let twice = MonitorOp::AnchorWindow {
        window_start_ms: 0,
        window_ms: 60_000,
        root: Hash([9; 32]),
        spans: vec![
            Span {
                device: world.device.public_key(),
                first_seq: 0,
                last_seq: 0,
                readings: 1,
            };
            2
        ],
    };
    world.refused(&node, twice, "invalid");

    world.ok(&node, anchor.clone());
    world.refused(&node, anchor, "replay");
    // Batches 5 and 6 never arrived: the next anchor starts at 7.
    let after_gap = world.anchor(7, 9, 30);
    world.ok(&node, after_gap);
    let found = world.pairing();
    assert_eq!(
        (
            found.next_seq,
            found.readings,
            found.missing_batches,
            found.anchors
        ),
        (10, 80, 2, 2)
    );
    let state = snapshot(&world.chain);
    assert_eq!(anchor_count(&state, "a").expect("read"), 2);
    let second = medledger_monitor::anchor(&state, "a", 1)
        .expect("read")
        .expect("anchor");
    assert_eq!((second.readings, second.missing_batches), (30, 2));
    assert_eq!(second.root, Hash([9; 32]));
}

/// The care team sets rules; the receiving node raises alerts (no values), one open per rule;
/// practitioners acknowledge once; the node escalates only a due alert of an escalating rule.
#[test]
fn alerts_are_raised_acknowledged_and_escalated_by_the_rules() {
    let mut world = World::new();
    let (node, patient, doctor, outsider) = (
        world.node.clone(),
        world.patient.clone(),
        world.doctor.clone(),
        world.outsider.clone(),
    );
    let patient_id = world.patient_id;
    world.ok(&patient, world.pair());
    let set = |rule| MonitorOp::SetAlertRule {
        patient: patient_id,
        rule,
    };
    world.refused(&outsider, set(low_spo2(None)), "not_care_team");
    world.refused(&patient, set(low_spo2(None)), "not_care_team");
    let mut bad = low_spo2(None);
    bad.condition = Condition::Below {
        limit: 10,
        for_ms: 0,
    };
    world.refused(&doctor, set(bad), "invalid");
    let mut bad = low_spo2(None);
    bad.id = "Low SpO2".into();
    world.refused(&doctor, set(bad), "invalid");
    let mut bad = low_spo2(Some(5));
    bad.id = "quick".into();
    world.refused(&doctor, set(bad), "invalid");
    world.ok(&doctor, set(low_spo2(None)));
    assert_eq!(
        rules(&snapshot(&world.chain), &patient_id).expect("read"),
        [low_spo2(None)]
    );

    let raise = MonitorOp::RaiseAlert {
        patient: patient_id,
        rule: "low-spo2".into(),
        device: world.device.public_key(),
        at_ms: world.chain.time_base_ms,
    };
    world.refused(&doctor, raise.clone(), "not_a_node");
    let unknown_rule = MonitorOp::RaiseAlert {
        patient: patient_id,
        rule: "fever".into(),
        device: world.device.public_key(),
        at_ms: 0,
    };
    world.refused(&node, unknown_rule, "unknown_rule");
    let other_device = MonitorOp::RaiseAlert {
        patient: patient_id,
        rule: "low-spo2".into(),
        device: doctor.public_key(),
        at_ms: 0,
    };
    world.refused(&node, other_device, "not_the_patients_device");
    world.ok(&node, raise.clone());
    world.refused(&node, raise.clone(), "alert_open");
    let state = snapshot(&world.chain);
    let raised = alert(&state, "a", 0).expect("read").expect("alert");
    assert_eq!(raised.state, AlertState::Open);
    assert_eq!(
        patient_alerts(&state, &patient_id, 0, 10).expect("read").0,
        1
    );
    // Nothing escalates a rule without a timeout.
    let escalate = MonitorOp::EscalateAlert {
        org: "a".into(),
        seq: 0,
    };
    world.refused(&node, escalate.clone(), "not_due");
    let ack = MonitorOp::AcknowledgeAlert {
        org: "a".into(),
        seq: 0,
    };
    world.refused(&outsider, ack.clone(), "not_care_team");
    world.refused(&patient, ack.clone(), "not_care_team");
    // The node closes only trial alerts (whose draft its site reported), not the care team's.
    world.refused(&node, ack.clone(), "not_care_team");
    world.ok(&doctor, ack.clone());
    world.refused(&doctor, ack, "acknowledged");
    // Acknowledged, the rule may fire again.
    world.ok(&node, raise.clone());

    // An escalating rule: not before its timeout in block time, then once.
    let remove = MonitorOp::RemoveAlertRule {
        patient: patient_id,
        rule: "low-spo2".into(),
    };
    world.ok(&doctor, remove.clone());
    world.refused(&doctor, remove, "unknown_rule");
    world.ok(&doctor, set(low_spo2(Some(60_000))));
    let ack = MonitorOp::AcknowledgeAlert {
        org: "a".into(),
        seq: 1,
    };
    world.ok(&doctor, ack);
    world.ok(&node, raise);
    let escalate = MonitorOp::EscalateAlert {
        org: "a".into(),
        seq: 2,
    };
    world.refused(&node, escalate.clone(), "not_due");
    world.chain.time_base_ms += 60_000;
    world.refused(&doctor, escalate.clone(), "not_a_node");
    world.ok(&node, escalate.clone());
    world.refused(&node, escalate, "not_due");
    let state = snapshot(&world.chain);
    let escalated = alert(&state, "a", 2).expect("read").expect("alert");
    assert!(matches!(escalated.state, AlertState::Escalated { .. }));
    // No value anywhere in the alert: its JSON names the rule, the device and times only.
    let text = serde_json::to_string(&escalated).expect("json");
    assert!(!text.contains("value") && !text.contains("limit"), "{text}");

    // The feed numbers every change in commit order, refusals none.
    let count = alert_event_count(&state, "a").expect("read");
    let feed: Vec<(u64, u64, AlertChange)> = (0..count)
        .map(|n| {
            let event = alert_event(&state, "a", n).expect("read").expect("event");
            (event.seq, event.alert, event.change)
        })
        .collect();
    assert_eq!(
        feed,
        [
            (0, 0, AlertChange::Raised),
            (1, 0, AlertChange::Acknowledged),
            (2, 1, AlertChange::Raised),
            (3, 1, AlertChange::Acknowledged),
            (4, 2, AlertChange::Raised),
            (5, 2, AlertChange::Escalated),
        ]
    );
}

fn signed(device: &SecretKey, seq: u64, readings: Vec<Reading>) -> SignedBatch {
    SignedBatch::sign(
        "medledger-test",
        Batch {
            device: device.public_key(),
            seq,
            readings,
        },
        device,
    )
}

fn heart(time_ms: u64, value: i64) -> Reading {
    Reading {
        code: Code::HeartRate,
        time_ms,
        value,
    }
}

/// A batch is checked for its signature, its chain, plausibility, order and clock.
#[test]
fn batches_are_checked_before_they_are_kept() {
    let device = SecretKey::from_seed(700);
    let now = 1_800_000_000_000;
    let good = signed(&device, 0, vec![heart(now - 1_000, 72), heart(now, 74)]);
    assert_eq!(good.check("medledger-test", now), Ok(()));
    assert_eq!(
        good.check("another-chain", now),
        Err(BatchError::BadSignature)
    );
    let bytes = good.to_bytes();
    assert_eq!(bytes.len(), 32 + 8 + 4 + 2 * 17 + 64, "17 bytes a reading");
    assert_eq!(SignedBatch::from_bytes(&bytes), Ok(good.clone()));
    let json = serde_json::to_vec(&good).expect("json");
    assert_eq!(SignedBatch::from_json(&json), Ok(good.clone()));
    assert!(matches!(
        SignedBatch::from_bytes(&[bytes.as_slice(), &[0]].concat()),
        Err(BatchError::Malformed(_))
    ));
    let mut tampered = good.clone();
    tampered.batch.readings[0].value = 140;
    assert_eq!(
        tampered.check("medledger-test", now),
        Err(BatchError::BadSignature)
    );
    let cases = [
        (signed(&device, 0, vec![]), "count"),
        (signed(&device, 0, vec![heart(now, 400)]), "implausible"),
        (signed(&device, 0, vec![heart(now + 600_000, 70)]), "ahead"),
        (
            signed(&device, 0, vec![heart(now - 8 * 86_400_000, 70)]),
            "old",
        ),
        (
            signed(&device, 0, vec![heart(now, 70), heart(now - 1, 70)]),
            "order",
        ),
    ];
    for (batch, what) in cases {
        let refused = batch.check("medledger-test", now).expect_err(what);
        let expected = match what {
            "count" => matches!(refused, BatchError::Count(0)),
            "implausible" => matches!(refused, BatchError::Implausible { index: 0, .. }),
            "ahead" => matches!(refused, BatchError::ClockAhead { index: 0, .. }),
            "old" => matches!(refused, BatchError::TooOld { index: 0, .. }),
            _ => matches!(refused, BatchError::OutOfOrder(1)),
        };
        assert!(expected, "{what}: {refused}");
    }
    assert_eq!(Code::BodyTemperature.value_text(3712), "37.12");
    assert_eq!(Code::BodyTemperature.value_text(3705), "37.05");
    assert_eq!(Code::from_loinc("59408-5"), Some(Code::OxygenSaturation));
}

proptest! {
    /// Any reading of any window proves against the window's root, and an altered value, salt or
    /// position does not.
    #[test]
    fn every_reading_proves_and_an_altered_one_does_not(
        sizes in proptest::collection::vec(1usize..20, 1..6),
        pick in any::<usize>(),
        changed in 1i64..50,
    ) {
        let devices: Vec<SecretKey> =
            (0..sizes.len() as u64).map(|i| SecretKey::from_seed(800 + i)).collect();
        let mut device_leaves = Vec::new();
        let mut all = Vec::new();
        for (d, (key, size)) in devices.iter().zip(&sizes).enumerate() {
            let mut leaves = Vec::new();
            for index in 0..*size {
                let reading = heart(1_000 + index as u64, 60 + index as i64);
                let salt = Hash([(d * 31 + index) as u8; 32]);
                leaves.push(reading_leaf(&salt, &key.public_key(), 3, index as u16, &reading));
                all.push((d, index, reading, salt));
            }
            device_leaves.push(leaves);
        }
        let roots: Vec<Hash> = device_leaves.iter().map(|leaves| device_root(leaves)).collect();
        let root = window_root(&roots);
        let (d, index, reading, salt) = all[pick % all.len()];
        let proof = ReadingProof {
            org: "a".into(),
            anchor: 0,
            device: devices[d].public_key(),
            seq: 3,
            index: index as u16,
            reading,
            salt,
            in_device: InclusionProof::build(&device_leaves[d], index).expect("in range"),
            device_root: roots[d],
            in_window: InclusionProof::build(&roots, d).expect("in range"),
        };
        prop_assert!(proof.verify(root));
        let mut altered = proof.clone();
        altered.reading.value += changed;
        prop_assert!(!altered.verify(root));
        let mut altered = proof.clone();
        altered.salt = Hash([0xEE; 32]);
        prop_assert!(!altered.verify(root));
        let mut altered = proof;
        altered.seq += 1;
        prop_assert!(!altered.verify(root));
    }
}

proptest! {
    /// Untrusted bytes (the fuzz target's body, run on random input here): decoding and checking
    /// never panic, and the binary encoding of what decodes is the input itself.
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(batch) = SignedBatch::from_bytes(&bytes) {
            prop_assert_eq!(batch.to_bytes(), bytes.clone());
            let _ = batch.check("medledger-test", 1_800_000_000_000);
        }
        if let Ok(batch) = SignedBatch::from_json(&bytes) {
            let _ = batch.check("medledger-test", 1_800_000_000_000);
        }
    }

    /// A valid batch with any one byte changed is refused or decodes to something whose
    /// signature no longer verifies.
    #[test]
    fn a_changed_byte_never_passes(at in any::<usize>(), flip in 1u8..=255) {
        let device = SecretKey::from_seed(700);
        let now = 1_800_000_000_000;
        let good = signed(&device, 9, vec![heart(now - 5_000, 70), heart(now, 71)]);
        let mut bytes = good.to_bytes();
        let at = at % bytes.len();
        bytes[at] ^= flip;
        if let Ok(batch) = SignedBatch::from_bytes(&bytes) {
            prop_assert!(batch.check("medledger-test", now).is_err());
        }
    }
}

/// The fullest anchor a node may send fits one transaction (a node splits larger windows).
#[test]
fn the_largest_anchor_fits_a_transaction() {
    let chain = Chain::new();
    let spans: Vec<Span> = (0..SPANS_PER_ANCHOR_MAX as u64)
        .map(|n| Span {
            device: SecretKey::from_seed(10_000 + n).public_key(),
            first_seq: u64::MAX / 2,
            last_seq: u64::MAX / 2 + 1,
            readings: u32::MAX,
        })
        .collect();
    let op = MonitorOp::AnchorWindow {
        window_start_ms: u64::MAX / 2,
        window_ms: WINDOW_MS_MAX,
        root: Hash([0xFF; 32]),
        spans,
    };
    let tx = chain.tx(&SecretKey::from_seed(1), op);
    let size = tx.to_bytes().len();
    assert!(size <= medledger_types::TX_BYTES_MAX, "{size} bytes");
}
