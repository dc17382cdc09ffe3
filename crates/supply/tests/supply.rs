//! Tests of the supply chain: the lifecycle of units and containers, custody that passes only on
//! receipt, the verification verdict with each of its reasons, cold chain, recall and trace.

use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_state::{MemoryTree, Snapshot};
use medledger_supply::{
    self as supply, CapturedEvent, Claim, Gtin, Item, Place, ProductSpec, Reading, Sscc, StepKind,
    SupplyOp, SupplyPayload, Suspect, TempRange, UnitId, UnitStatus, shipment_id,
};
use medledger_types::{Outcome, Role};

/// 2026-01-01T00:00:00Z.
const JAN_2026_MS: u64 = 1_767_225_600_000;

fn gtin() -> Gtin {
    Gtin::parse("09506000134352").expect("valid GTIN")
}
fn other_gtin() -> Gtin {
    Gtin::parse("09506000134369").expect("valid GTIN")
}
fn sscc(n: u8) -> Sscc {
    let body = format!("1061414100000000{n}");
    let check = supply::gs1_check_digit(body.as_bytes()) as char;
    Sscc::parse(&format!("{body}{check}")).expect("valid SSCC")
}
fn unit(serial: &str) -> UnitId {
    UnitId {
        gtin: gtin(),
        serial: serial.into(),
    }
}
fn item(serial: &str) -> Item {
    Item::Unit(unit(serial))
}

/// A chain with a manufacturer (org `a`, through a manufacturer member) and a pharmacy (org `b`,
/// through a pharmacy member), a registered 2–8 °C product and a lot `L1` of serials 1 to 6.
struct Supply {
    chain: Chain,
    maker: SecretKey,
    pharmacy: SecretKey,
    sensor: SecretKey,
}

impl Supply {
    fn new() -> Supply {
        let mut chain = Chain::new();
        chain.time_base_ms = JAN_2026_MS;
        let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
        let maker = SecretKey::from_seed(30);
        let pharmacy = SecretKey::from_seed(31);
        let sensor = SecretKey::from_seed(32);
        chain.enrol(&org_a, &maker, Role::Manufacturer);
        chain.enrol(&org_b, &pharmacy, Role::Pharmacy);
        chain.enrol(&org_a, &sensor, Role::Device);
        let mut supply = Supply {
            chain,
            maker,
            pharmacy,
            sensor,
        };
        let registered = supply.maker(vec![SupplyOp::RegisterProduct {
            product: ProductSpec {
                gtin: gtin(),
                name: "Insulin glargine 100 U/ml pen".into(),
                storage: Some(TempRange {
                    min_milli_c: 2_000,
                    max_milli_c: 8_000,
                }),
            },
        }]);
        assert_eq!(registered, Outcome::Committed);
        let commissioned = supply.maker(vec![commission(
            "L1",
            "271231",
            &["1", "2", "3", "4", "5", "6"],
        )]);
        assert_eq!(commissioned, Outcome::Committed);
        supply
    }

    fn ops(&mut self, key: &SecretKey, ops: Vec<SupplyOp>) -> Outcome {
        let tx = self.chain.tx(key, SupplyPayload::Supply { ops });
        self.chain.one(tx)
    }
    fn maker(&mut self, ops: Vec<SupplyOp>) -> Outcome {
        let key = self.maker.clone();
        self.ops(&key, ops)
    }
    fn pharmacy(&mut self, ops: Vec<SupplyOp>) -> Outcome {
        let key = self.pharmacy.clone();
        self.ops(&key, ops)
    }

    fn state(&self) -> Snapshot<'_, MemoryTree> {
        Snapshot {
            reader: &self.chain.tree,
            version: Some(self.chain.height),
        }
    }

    fn now_ms(&self) -> u64 {
        self.chain.time_base_ms + 1_000 + self.chain.height
    }

    fn verify(&self, org: Option<&str>, serial: &str, claim: Claim) -> supply::Verdict {
        supply::verify(&self.state(), self.now_ms(), org, &unit(serial), &claim).expect("verify")
    }

    fn reasons(&self, org: Option<&str>, serial: &str) -> Vec<&'static str> {
        self.verify(org, serial, Claim::default())
            .reasons
            .iter()
            .map(reason_name)
            .collect()
    }

    /// Ships `items` from the manufacturer to the pharmacy and returns the shipment id.
    fn ship_to_pharmacy(&mut self, items: Vec<Item>) -> Hash {
        let tx = self.chain.tx(
            &self.maker.clone(),
            SupplyPayload::Supply {
                ops: vec![SupplyOp::Ship {
                    to: "b".into(),
                    items,
                    location: None,
                }],
            },
        );
        let id = shipment_id(&tx.id(), 0);
        assert_eq!(self.chain.one(tx), Outcome::Committed);
        id
    }
}

fn commission(lot: &str, expiry: &str, serials: &[&str]) -> SupplyOp {
    SupplyOp::Commission {
        gtin: gtin(),
        lot: lot.into(),
        expiry: expiry.into(),
        serials: serials.iter().map(|s| s.to_string()).collect(),
        location: Some("0614141000005".into()),
    }
}

fn reason_name(reason: &Suspect) -> &'static str {
    match reason {
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

#[test]
fn commissioning_is_checked_and_all_or_nothing() {
    let mut s = Supply::new();
    let cases: Vec<(SupplyOp, &str)> = vec![
        (commission("L1", "271231", &["1"]), "unit_exists"),
        (commission("L2", "271231", &["7", "7"]), "duplicate_item"),
        (commission("L1", "280101", &["7"]), "lot_expiry_mismatch"),
        (commission("L3", "271301", &["7"]), "invalid_supply_op"),
        (
            commission("L3", "271231", &["bad serial"]),
            "invalid_supply_op",
        ),
        (commission("L3", "271231", &[]), "invalid_supply_op"),
        (commission("L 3", "271231", &["7"]), "invalid_supply_op"),
        (
            SupplyOp::Commission {
                gtin: other_gtin(),
                lot: "L1".into(),
                expiry: "271231".into(),
                serials: vec!["1".into()],
                location: None,
            },
            "unknown_product",
        ),
    ];
    for (op, code) in cases {
        let outcome = s.maker(vec![op.clone()]);
        assert_eq!(rejected(&outcome), code, "{op:?}");
    }
    // Only the product's manufacturer commissions it, and only goods handlers act at all.
    let outcome = s.pharmacy(vec![commission("L9", "271231", &["9"])]);
    assert_eq!(rejected(&outcome), "not_the_manufacturer");
    let outcome = s.ops(&s.sensor.clone(), vec![commission("L9", "271231", &["9"])]);
    assert_eq!(rejected(&outcome), "not_a_supply_actor");
    // A refused operation undoes the earlier ones of its transaction.
    let outcome = s.maker(vec![
        commission("L4", "271231", &["10", "11"]),
        commission("L4", "271231", &["1x", "10"]),
    ]);
    assert_eq!(rejected(&outcome), "unit_exists");
    assert_eq!(supply::unit(&s.state(), &unit("10")).expect("read"), None);
    assert_eq!(supply::lot(&s.state(), &gtin(), "L4").expect("read"), None);
    // Nobody registers a GTIN under another organisation's GS1 company prefix, and the holder
    // registers its own.
    let under = |gtin: &str| SupplyOp::RegisterProduct {
        product: ProductSpec {
            gtin: Gtin::parse(gtin).expect("valid GTIN"),
            name: "prefixed".into(),
            storage: None,
        },
    };
    assert_eq!(
        // The pharmacy's organisation root key may register products, but not under another's
        // prefix.
        rejected(&s.ops(&s.chain.org_b.clone(), vec![under("00614141123452")])),
        "prefix_of_another"
    );
    assert_eq!(s.maker(vec![under("00614141123452")]), Outcome::Committed);
    // A second registration of the same GTIN is refused.
    let outcome = s.maker(vec![SupplyOp::RegisterProduct {
        product: ProductSpec {
            gtin: gtin(),
            name: "again".into(),
            storage: None,
        },
    }]);
    assert_eq!(rejected(&outcome), "product_exists");
    // Day 00 is the month's last day; the lot keeps one expiry.
    assert_eq!(
        s.maker(vec![commission("L5", "280200", &["50"])]),
        Outcome::Committed
    );
    let found = supply::unit(&s.state(), &unit("50"))
        .expect("read")
        .expect("unit");
    assert_eq!(found.expiry, 20280229);
    let lot = supply::lot(&s.state(), &gtin(), "L1")
        .expect("read")
        .expect("lot");
    assert_eq!((lot.units, lot.batches, lot.expiry), (6, 1, 20271231));
}

#[test]
fn custody_passes_only_when_the_receiver_confirms() {
    let mut s = Supply::new();
    let outcome = s.maker(vec![SupplyOp::Pack {
        parent: sscc(1),
        children: vec![item("1"), item("2")],
        location: None,
    }]);
    assert_eq!(outcome, Outcome::Committed);
    // A packed unit cannot be shipped alone, and the case cannot be packed into itself.
    let outcome = s.maker(vec![SupplyOp::Ship {
        to: "b".into(),
        items: vec![item("1")],
        location: None,
    }]);
    assert_eq!(rejected(&outcome), "packed");
    let outcome = s.maker(vec![SupplyOp::Pack {
        parent: sscc(2),
        children: vec![Item::Container(sscc(2))],
        location: None,
    }]);
    assert_eq!(rejected(&outcome), "unknown_item");
    // Nest the case in a pallet and ship the pallet.
    assert_eq!(
        s.maker(vec![SupplyOp::Pack {
            parent: sscc(9),
            children: vec![Item::Container(sscc(1)), item("3")],
            location: None,
        }]),
        Outcome::Committed
    );
    let shipment = s.ship_to_pharmacy(vec![Item::Container(sscc(9))]);
    // In transit: still the manufacturer's; the pharmacy is entitled to verify it, a third party
    // is not; the manufacturer can no longer move it.
    assert_eq!(s.reasons(Some("b"), "1"), Vec::<&str>::new());
    assert_eq!(s.reasons(Some("c"), "1"), vec!["not_in_custody"]);
    let custody = s
        .verify(None, "1", Claim::default())
        .custody
        .expect("custody");
    assert_eq!(custody.custodian, "a");
    assert_eq!(custody.containers, vec![sscc(1), sscc(9)]);
    assert_eq!(custody.shipment, Some(shipment));
    let outcome = s.maker(vec![SupplyOp::Unpack {
        parent: sscc(9),
        children: vec![],
        location: None,
    }]);
    assert_eq!(rejected(&outcome), "in_transit");
    // Only the addressee receives, once.
    let receive = SupplyOp::Receive {
        shipment,
        location: Some("0614141000012".into()),
    };
    assert_eq!(
        rejected(&s.maker(vec![receive.clone()])),
        "not_the_receiver"
    );
    assert_eq!(s.pharmacy(vec![receive.clone()]), Outcome::Committed);
    assert_eq!(rejected(&s.pharmacy(vec![receive])), "already_received");
    let custody = s
        .verify(None, "1", Claim::default())
        .custody
        .expect("custody");
    assert_eq!(custody.custodian, "b");
    assert_eq!(custody.location.as_deref(), Some("0614141000012"));
    assert_eq!(s.reasons(Some("a"), "1"), vec!["not_in_custody"]);
    // The pharmacy unpacks down to the unit and dispenses it; it can return it to stock once.
    assert_eq!(
        s.pharmacy(vec![
            SupplyOp::Unpack {
                parent: sscc(9),
                children: vec![],
                location: None,
            },
            SupplyOp::Unpack {
                parent: sscc(1),
                children: vec![item("1")],
                location: None,
            },
        ]),
        Outcome::Committed
    );
    let dispense = |status| SupplyOp::SetStatus {
        units: vec![unit("1")],
        status,
    };
    assert_eq!(
        s.pharmacy(vec![dispense(UnitStatus::Dispensed)]),
        Outcome::Committed
    );
    assert_eq!(s.reasons(Some("b"), "1"), vec!["dispensed"]);
    assert_eq!(
        rejected(&s.pharmacy(vec![dispense(UnitStatus::Dispensed)])),
        "bad_status_change"
    );
    assert_eq!(
        s.pharmacy(vec![dispense(UnitStatus::Active)]),
        Outcome::Committed
    );
    assert_eq!(
        s.pharmacy(vec![dispense(UnitStatus::Destroyed)]),
        Outcome::Committed
    );
    assert_eq!(s.reasons(Some("b"), "1"), vec!["destroyed"]);
    assert_eq!(
        rejected(&s.pharmacy(vec![dispense(UnitStatus::Active)])),
        "bad_status_change"
    );
    // Unit 2 is still in its case, so it cannot be dispensed on its own.
    let outcome = s.pharmacy(vec![SupplyOp::SetStatus {
        units: vec![unit("2")],
        status: UnitStatus::Dispensed,
    }]);
    assert_eq!(rejected(&outcome), "packed");

    // The trace of unit 2 runs through its case and the pallet, each step with its block.
    let steps = supply::trace(&s.state(), &item("2")).expect("trace");
    let kinds: Vec<(String, &'static str)> = steps
        .iter()
        .map(|step| {
            let kind = match step.step.kind {
                StepKind::Commissioned => "commissioned",
                StepKind::Packed { .. } => "packed",
                StepKind::Unpacked { .. } => "unpacked",
                StepKind::Shipped { .. } => "shipped",
                StepKind::Received { .. } => "received",
                StepKind::Dispensed => "dispensed",
                StepKind::ReturnedToStock => "returned",
                StepKind::Destroyed => "destroyed",
            };
            (step.item.to_string(), kind)
        })
        .collect();
    let case = format!("(00){}", sscc(1));
    let pallet = format!("(00){}", sscc(9));
    let unit2 = item("2").to_string();
    assert_eq!(
        kinds,
        vec![
            (unit2.clone(), "commissioned"),
            (unit2.clone(), "packed"),
            (case.clone(), "packed"),
            (pallet.clone(), "shipped"),
            (pallet.clone(), "received"),
            (case.clone(), "unpacked"),
        ]
    );
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].step.order() < w[1].step.order())
    );
}

#[test]
fn verification_names_every_reason_that_applies() {
    let mut s = Supply::new();
    assert_eq!(
        s.verify(Some("a"), "1", Claim::default()).verdict,
        "genuine"
    );
    let claim = Claim {
        lot: Some("L2".into()),
        expiry: Some("271130".into()),
    };
    let names: Vec<_> = s
        .verify(Some("a"), "1", claim)
        .reasons
        .iter()
        .map(reason_name)
        .collect();
    assert_eq!(names, vec!["lot_mismatch", "expiry_mismatch"]);
    let claim = Claim {
        lot: Some("L1".into()),
        expiry: Some("271231".into()),
    };
    assert_eq!(s.verify(Some("a"), "1", claim).verdict, "genuine");
    assert_eq!(s.reasons(Some("a"), "999"), vec!["unknown_serial"]);
    let verdict = supply::verify(
        &s.state(),
        s.now_ms(),
        Some("a"),
        &UnitId {
            gtin: other_gtin(),
            serial: "1".into(),
        },
        &Claim::default(),
    )
    .expect("verify");
    assert_eq!(verdict.reasons, vec![Suspect::UnknownGtin]);
    // Expired: a lot that expired at the end of 2025 (day 00 of December 2025).
    assert_eq!(
        s.maker(vec![commission("OLD", "251200", &["old"])]),
        Outcome::Committed
    );
    assert_eq!(s.reasons(Some("a"), "old"), vec!["expired"]);

    // A recall answers from the next block; only the manufacturer recalls, once.
    let recall = SupplyOp::Recall {
        gtin: gtin(),
        lot: "L1".into(),
        reason: "sterility".into(),
    };
    assert_eq!(
        rejected(&s.pharmacy(vec![recall.clone()])),
        "not_the_manufacturer"
    );
    assert_eq!(s.maker(vec![recall.clone()]), Outcome::Committed);
    assert_eq!(rejected(&s.maker(vec![recall])), "already_recalled");
    let unknown_lot = SupplyOp::Recall {
        gtin: gtin(),
        lot: "NOPE".into(),
        reason: "x".into(),
    };
    assert_eq!(rejected(&s.maker(vec![unknown_lot])), "unknown_lot");
    assert_eq!(s.reasons(Some("a"), "1"), vec!["recalled"]);
    assert_eq!(s.reasons(Some("a"), "old"), vec!["expired"]);
    // An auditor (no organisation of custody) gets no custody reason.
    assert_eq!(s.reasons(None, "1"), vec!["recalled"]);
    assert_eq!(
        s.reasons(Some("b"), "1"),
        vec!["recalled", "not_in_custody"]
    );
}

#[test]
fn the_recall_report_finds_units_inside_cases_and_pallets() {
    let mut s = Supply::new();
    assert_eq!(
        s.maker(vec![
            SupplyOp::Pack {
                parent: sscc(1),
                children: vec![item("1"), item("2")],
                location: None,
            },
            SupplyOp::Pack {
                parent: sscc(9),
                children: vec![Item::Container(sscc(1)), item("3")],
                location: None,
            },
        ]),
        Outcome::Committed
    );
    let shipment = s.ship_to_pharmacy(vec![Item::Container(sscc(9)), item("4")]);
    assert_eq!(
        s.pharmacy(vec![SupplyOp::Receive {
            shipment,
            location: Some("0614141000012".into()),
        }]),
        Outcome::Committed
    );
    let report = supply::recall_report(&s.state(), &gtin(), "L1", 0)
        .expect("report")
        .expect("lot exists");
    assert_eq!(report.units_count, 6);
    let rows: Vec<(String, String, usize)> = report
        .units
        .iter()
        .map(|row| {
            (
                row.serial.clone(),
                row.custody.custodian.clone(),
                row.custody.containers.len(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("1".into(), "b".into(), 2),
            ("2".into(), "b".into(), 2),
            ("3".into(), "b".into(), 1),
            ("4".into(), "b".into(), 0),
            ("5".into(), "a".into(), 0),
            ("6".into(), "a".into(), 0),
        ]
    );
    assert_eq!(
        supply::recall_report(&s.state(), &gtin(), "L9", 0).expect("report"),
        None
    );
}

#[test]
fn cold_chain_readings_flag_what_was_exposed() {
    let mut s = Supply::new();
    let sensor = s.sensor.public_key();
    let shipment = s.ship_to_pharmacy(vec![item("1"), item("2")]);
    // The sensor must be a device of the acting organisation and be placed before it reports.
    let readings = |milli_c| SupplyOp::Readings {
        device: sensor,
        place: None,
        // Inside the trip: block times are JAN_2026_MS + 1,000 + height.
        readings: vec![Reading {
            time_ms: JAN_2026_MS + 1_000_000,
            milli_c,
        }],
    };
    let key = s.sensor.clone();
    assert_eq!(
        rejected(&s.ops(&key, vec![readings(9_000)])),
        "sensor_not_attached"
    );
    let attach = SupplyOp::AttachSensor {
        device: s.pharmacy.public_key(),
        place: Place::Shipment(shipment),
        band: None,
    };
    assert_eq!(rejected(&s.maker(vec![attach])), "not_a_device");
    let attach = SupplyOp::AttachSensor {
        device: sensor,
        place: Place::Shipment(shipment),
        band: None,
    };
    assert_eq!(s.maker(vec![attach]), Outcome::Committed);
    // A device cannot move goods.
    let ship = SupplyOp::Ship {
        to: "b".into(),
        items: vec![item("3")],
        location: None,
    };
    assert_eq!(rejected(&s.ops(&key, vec![ship])), "not_a_supply_actor");
    // Inside the range: nothing. Outside: both units in the shipment are flagged.
    assert_eq!(s.ops(&key, vec![readings(5_000)]), Outcome::Committed);
    assert_eq!(s.reasons(Some("b"), "1"), Vec::<&str>::new());
    assert_eq!(s.ops(&key, vec![readings(9_500)]), Outcome::Committed);
    assert_eq!(s.reasons(Some("b"), "1"), vec!["cold_chain_excursion"]);
    assert_eq!(s.reasons(Some("b"), "2"), vec!["cold_chain_excursion"]);
    assert_eq!(s.reasons(Some("a"), "3"), Vec::<&str>::new());
    // The flag stays after receipt.
    assert_eq!(
        s.pharmacy(vec![SupplyOp::Receive {
            shipment,
            location: Some("FRIDGE-1".into()),
        }]),
        Outcome::Committed
    );
    assert_eq!(s.reasons(Some("b"), "1"), vec!["cold_chain_excursion"]);
    // The logger still defaults to the shipment, but what it measures days after receipt is not
    // the trip's.
    let count = |s: &Supply| {
        supply::shipment(&s.state(), &shipment)
            .expect("read")
            .expect("shipment")
            .excursions_count
    };
    let before = count(&s);
    let late = SupplyOp::Readings {
        device: sensor,
        place: None,
        readings: vec![Reading {
            time_ms: s.now_ms() + 3 * 86_400_000,
            milli_c: 25_000,
        }],
    };
    assert_eq!(s.ops(&key, vec![late]), Outcome::Committed);
    assert_eq!(count(&s), before);

    // A location sensor with an alarm band: a reading at the manufacturer's store while units
    // 3 and 4 are there flags them, and not units that arrive later.
    let store = "0614141000005".to_string();
    let attach = SupplyOp::AttachSensor {
        device: sensor,
        place: Place::Location(store.clone()),
        band: None,
    };
    // Only at a location the organisation registered.
    assert_eq!(rejected(&s.maker(vec![attach])), "invalid_supply_op");
    let register = SupplyOp::RegisterLocation {
        gln: store.clone(),
        name: "Plant store".into(),
    };
    assert_eq!(s.maker(vec![register]), Outcome::Committed);
    let attach = SupplyOp::AttachSensor {
        device: sensor,
        place: Place::Location(store.clone()),
        band: Some(TempRange {
            min_milli_c: 2_000,
            max_milli_c: 8_000,
        }),
    };
    assert_eq!(s.maker(vec![attach]), Outcome::Committed);
    let at = s.now_ms() + 1;
    let outcome = s.ops(
        &key,
        vec![SupplyOp::Readings {
            device: sensor,
            place: None,
            readings: vec![Reading {
                time_ms: at,
                milli_c: 12_000,
            }],
        }],
    );
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(s.reasons(Some("a"), "3"), vec!["cold_chain_excursion"]);
    assert_eq!(
        s.maker(vec![commission("L7", "271231", &["late"])]),
        Outcome::Committed
    );
    assert_eq!(s.reasons(Some("a"), "late"), Vec::<&str>::new());
    // Readings named on items flag those items only.
    let outcome = s.maker(vec![SupplyOp::Readings {
        device: sensor,
        place: Some(Place::Items(vec![item("5")])),
        readings: vec![Reading {
            time_ms: at,
            milli_c: -1_000,
        }],
    }]);
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        s.reasons(Some("a"), "5").last(),
        Some(&"cold_chain_excursion")
    );
}

#[test]
fn capturing_an_event_twice_changes_nothing() {
    let mut s = Supply::new();
    let node = SecretKey::from_seed(1);
    let event = |hash: u8, serial: &str| CapturedEvent {
        hash: Hash([hash; 32]),
        body: "{\"type\":\"ObjectEvent\"}".into(),
        ops: vec![commission("L1", "271231", &[serial])],
    };
    let capture = |events| SupplyPayload::CaptureEpcis {
        capturer: s.maker.public_key(),
        events,
    };
    // Another organisation recording the same hash first (with no steps) pre-empts nothing:
    // events are on record per capturing organisation.
    let org_b = s.chain.org_b.clone();
    let squat = s.chain.tx(
        &org_b,
        SupplyPayload::CaptureEpcis {
            capturer: org_b.public_key(),
            events: vec![CapturedEvent {
                hash: Hash([1; 32]),
                body: "{}".into(),
                ops: vec![],
            }],
        },
    );
    assert_eq!(s.chain.one(squat), Outcome::Committed);
    let tx = s.chain.tx(&node, capture(vec![event(1, "100")]));
    assert_eq!(s.chain.one(tx), Outcome::Committed);
    // The same event again (even with other steps attached) is skipped; a new one applies.
    let tx = s
        .chain
        .tx(&node, capture(vec![event(1, "101"), event(2, "102")]));
    assert_eq!(s.chain.one(tx), Outcome::Committed);
    assert!(
        supply::unit(&s.state(), &unit("100"))
            .expect("read")
            .is_some()
    );
    assert!(
        supply::unit(&s.state(), &unit("101"))
            .expect("read")
            .is_none()
    );
    assert!(
        supply::unit(&s.state(), &unit("102"))
            .expect("read")
            .is_some()
    );
    assert!(
        supply::event(&s.state(), "a", &Hash([2; 32]))
            .expect("read")
            .is_some()
    );
    // A capturer from another organisation, or a member signing the capture itself, is refused.
    let tx = s.chain.tx(
        &node,
        SupplyPayload::CaptureEpcis {
            capturer: s.pharmacy.public_key(),
            events: vec![event(3, "103")],
        },
    );
    assert_eq!(rejected(&s.chain.one(tx)), "not_a_supply_actor");
    let maker = s.maker.clone();
    let tx = s.chain.tx(&maker, capture(vec![event(4, "104")]));
    assert_eq!(rejected(&s.chain.one(tx)), "not_a_custodian");
}

mod invariants {
    //! Random sequences of packing, unpacking, shipping, receiving and dispensing by both
    //! organisations, accepted or refused, never break the bookkeeping: parent and child links
    //! agree both ways, nothing nests in itself, everything in transit is in an open shipment
    //! addressed elsewhere, a refused transaction changes no unit or container, and the recall
    //! report agrees with custody resolved unit by unit.

    use proptest::prelude::*;

    use super::*;

    const SERIALS: [&str; 6] = ["1", "2", "3", "4", "5", "6"];

    #[derive(Clone, Debug)]
    enum Step {
        Pack {
            by_pharmacy: bool,
            parent: u8,
            children: Vec<u8>,
        },
        Unpack {
            by_pharmacy: bool,
            parent: u8,
            children: Vec<u8>,
        },
        Ship {
            by_pharmacy: bool,
            items: Vec<u8>,
        },
        Receive {
            by_pharmacy: bool,
            shipment: u8,
        },
        Dispense {
            by_pharmacy: bool,
            unit: u8,
        },
    }

    /// Items 0..6 are the units, 6 and 7 the two containers.
    fn item_of(n: u8) -> Item {
        match n % 8 {
            n @ 0..=5 => item(SERIALS[n as usize]),
            n => Item::Container(sscc(n)),
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        let items = proptest::collection::vec(0u8..8, 1..3);
        // Mostly the manufacturer, who holds the goods at first; the pharmacy now and then.
        let pharmacy = || proptest::bool::weighted(0.25);
        prop_oneof![
            (pharmacy(), 6u8..8, items.clone()).prop_map(|(by_pharmacy, parent, children)| {
                Step::Pack {
                    by_pharmacy,
                    parent,
                    children,
                }
            }),
            (
                any::<bool>(),
                6u8..8,
                proptest::collection::vec(0u8..8, 0..3)
            )
                .prop_map(|(by_pharmacy, parent, children)| Step::Unpack {
                    by_pharmacy,
                    parent,
                    children
                }),
            (any::<bool>(), items)
                .prop_map(|(by_pharmacy, items)| Step::Ship { by_pharmacy, items }),
            (any::<bool>(), any::<u8>()).prop_map(|(by_pharmacy, shipment)| Step::Receive {
                by_pharmacy,
                shipment
            }),
            (any::<bool>(), 0u8..6)
                .prop_map(|(by_pharmacy, unit)| Step::Dispense { by_pharmacy, unit }),
        ]
    }

    /// Every unit's and container's stored value.
    fn snapshot(s: &Supply) -> Vec<Option<Vec<u8>>> {
        (0..8u8)
            .map(|n| match item_of(n) {
                Item::Unit(id) => s.chain.get(&supply::key_unit(&id)),
                Item::Container(sscc) => s.chain.get(&supply::key_container(&sscc)),
            })
            .collect()
    }

    fn check_invariants(s: &Supply) {
        let state = s.state();
        for n in 6..8u8 {
            let Item::Container(parent) = item_of(n) else {
                unreachable!()
            };
            let Some(found) = supply::container(&state, &parent).expect("read") else {
                continue;
            };
            for child in &found.children {
                let child_parent = match child {
                    Item::Unit(id) => {
                        supply::unit(&state, id)
                            .expect("read")
                            .expect("unit")
                            .parent
                    }
                    Item::Container(sscc) => {
                        supply::container(&state, sscc)
                            .expect("read")
                            .expect("container")
                            .parent
                    }
                };
                assert_eq!(child_parent, Some(parent), "{child} is listed in {parent}");
                assert_ne!(*child, Item::Container(parent), "{parent} holds itself");
            }
        }
        for n in 0..8u8 {
            let (parent, shipment, owner) = match item_of(n) {
                Item::Unit(id) => {
                    let found = supply::unit(&state, &id).expect("read").expect("unit");
                    (found.parent, found.shipment, found.owner)
                }
                Item::Container(sscc) => match supply::container(&state, &sscc).expect("read") {
                    Some(found) => (found.parent, found.shipment, found.owner),
                    None => continue,
                },
            };
            if let Some(parent) = parent {
                let holder = supply::container(&state, &parent)
                    .expect("read")
                    .expect("parent");
                assert!(
                    holder.children.contains(&item_of(n)),
                    "{} lost by {parent}",
                    item_of(n)
                );
            }
            if let Some(id) = shipment
                && parent.is_none()
            {
                let open = supply::shipment(&state, &id)
                    .expect("read")
                    .expect("shipment");
                assert!(
                    open.received_at.is_none(),
                    "{} travels in a received shipment",
                    item_of(n)
                );
                assert!(open.items.contains(&item_of(n)));
                assert_eq!(open.from, owner);
                assert_ne!(open.to, owner);
            }
        }
        let report = supply::recall_report(&state, &gtin(), "L1", 0)
            .expect("report")
            .expect("lot");
        assert_eq!(report.units.len(), 6);
        for row in &report.units {
            let verdict = supply::verify(
                &state,
                s.now_ms(),
                None,
                &unit(&row.serial),
                &Claim::default(),
            )
            .expect("verify");
            assert_eq!(verdict.custody.as_ref(), Some(&row.custody));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_custody_steps_keep_the_books_straight(steps in proptest::collection::vec(step(), 1..24)) {
            let mut s = Supply::new();
            let mut shipments: Vec<(Hash, bool)> = Vec::new();
            for step in steps {
                let before = snapshot(&s);
                let (by_pharmacy, op) = match &step {
                    Step::Pack { by_pharmacy, parent, children } => (*by_pharmacy, SupplyOp::Pack {
                        parent: sscc(*parent),
                        children: children.iter().map(|n| item_of(*n)).collect(),
                        location: None,
                    }),
                    Step::Unpack { by_pharmacy, parent, children } => (*by_pharmacy, SupplyOp::Unpack {
                        parent: sscc(*parent),
                        children: children.iter().map(|n| item_of(*n)).collect(),
                        location: None,
                    }),
                    Step::Ship { by_pharmacy, items } => (*by_pharmacy, SupplyOp::Ship {
                        to: if *by_pharmacy { "a".into() } else { "b".into() },
                        items: items.iter().map(|n| item_of(*n)).collect(),
                        location: None,
                    }),
                    Step::Receive { by_pharmacy: wrong, shipment } => {
                        let Some((id, to_pharmacy)) = shipments.get(*shipment as usize % shipments.len().max(1)) else { continue };
                        (*to_pharmacy != *wrong, SupplyOp::Receive { shipment: *id, location: None })
                    }
                    Step::Dispense { by_pharmacy, unit: n } => (*by_pharmacy, SupplyOp::SetStatus {
                        units: vec![unit(SERIALS[*n as usize])],
                        status: UnitStatus::Dispensed,
                    }),
                };
                let key = if by_pharmacy { s.pharmacy.clone() } else { s.maker.clone() };
                let tx = s.chain.tx(&key, SupplyPayload::Supply { ops: vec![op.clone()] });
                if matches!(op, SupplyOp::Ship { .. }) {
                    shipments.push((shipment_id(&tx.id(), 0), !by_pharmacy));
                }
                let outcome = s.chain.one(tx);
                if outcome != Outcome::Committed {
                    prop_assert_eq!(snapshot(&s), before, "a refused {:?} changed goods", step);
                }
                check_invariants(&s);
            }
        }
    }
}

#[test]
fn sensors_speak_only_for_what_their_organisation_holds() {
    let mut s = Supply::new();
    let sensor = s.sensor.public_key();
    let shipment = s.ship_to_pharmacy(vec![item("1")]);
    let receive = SupplyOp::Receive {
        shipment,
        location: None,
    };
    assert_eq!(s.pharmacy(vec![receive]), Outcome::Committed);
    // The unit is the pharmacy's now, and the receipt named no place: it is nowhere named, not
    // still at the manufacturer's plant.
    let custody = s
        .verify(None, "1", Claim::default())
        .custody
        .expect("custody");
    assert_eq!((custody.custodian.as_str(), custody.location), ("b", None));
    // The manufacturer's logger can no longer mark it, nor report on the pharmacy's location.
    let on_items = SupplyOp::Readings {
        device: sensor,
        place: Some(Place::Items(vec![item("1")])),
        readings: vec![Reading {
            time_ms: s.now_ms(),
            milli_c: 30_000,
        }],
    };
    assert_eq!(rejected(&s.maker(vec![on_items])), "not_in_custody");
    // A GLN under the manufacturer's GS1 company prefix is not the pharmacy's to register.
    let squat = SupplyOp::RegisterLocation {
        gln: "0614141000012".into(),
        name: "Pharmacy".into(),
    };
    assert_eq!(rejected(&s.pharmacy(vec![squat])), "prefix_of_another");
    let gln = "9520011000017".to_string();
    let register = SupplyOp::RegisterLocation {
        gln: gln.clone(),
        name: "Pharmacy".into(),
    };
    assert_eq!(s.pharmacy(vec![register]), Outcome::Committed);
    let at_location = SupplyOp::Readings {
        device: sensor,
        place: Some(Place::Location(gln)),
        readings: vec![Reading {
            time_ms: s.now_ms(),
            milli_c: 30_000,
        }],
    };
    assert_eq!(rejected(&s.maker(vec![at_location])), "invalid_supply_op");
    assert_eq!(s.reasons(Some("b"), "1"), Vec::<&str>::new());
}

#[test]
fn a_full_history_never_traps_goods() {
    let mut s = Supply::new();
    let cycle = |parent| {
        vec![
            SupplyOp::Pack {
                parent: sscc(parent),
                children: vec![item("1")],
                location: None,
            },
            SupplyOp::Unpack {
                parent: sscc(parent),
                children: vec![item("1")],
                location: None,
            },
        ]
    };
    // Pack and unpack until packing is refused for lack of room in the unit's history.
    let mut cycles = 0;
    loop {
        let outcome = s.maker(cycle(1));
        if outcome != Outcome::Committed {
            assert_eq!(rejected(&outcome), "history_full");
            break;
        }
        cycles += 1;
        assert!(cycles < 200, "the history never filled");
    }
    // Moving it on is refused too, but the steps that end a journey still fit.
    let ship = SupplyOp::Ship {
        to: "b".into(),
        items: vec![item("1")],
        location: None,
    };
    assert_eq!(rejected(&s.maker(vec![ship])), "history_full");
    let dispense = SupplyOp::SetStatus {
        units: vec![unit("1")],
        status: UnitStatus::Dispensed,
    };
    assert_eq!(s.maker(vec![dispense]), Outcome::Committed);
}

#[test]
fn one_transaction_touches_a_bounded_number_of_items() {
    let mut s = Supply::new();
    let serials: Vec<String> = (0..2_500).map(|n| format!("bulk{n}")).collect();
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    assert_eq!(
        s.maker(vec![commission("BULK", "271231", &refs)]),
        Outcome::Committed
    );
    let all: Vec<Item> = refs.iter().map(|serial| item(serial)).collect();
    let pack = SupplyOp::Pack {
        parent: sscc(5),
        children: all.clone(),
        location: None,
    };
    assert_eq!(s.maker(vec![pack.clone()]), Outcome::Committed);
    // Unpacking everything names no item, yet counts every one: five of them are too many.
    let unpack_all = SupplyOp::Unpack {
        parent: sscc(5),
        children: vec![],
        location: None,
    };
    let churn = vec![
        unpack_all.clone(),
        pack.clone(),
        unpack_all.clone(),
        pack,
        unpack_all.clone(),
    ];
    assert_eq!(rejected(&s.maker(churn)), "invalid_supply_op");
    // A case is full at 2,500.
    let one_more = SupplyOp::Pack {
        parent: sscc(5),
        children: vec![item("1")],
        location: None,
    };
    assert_eq!(rejected(&s.maker(vec![one_more])), "container_full");
    assert_eq!(s.maker(vec![unpack_all]), Outcome::Committed);
}
