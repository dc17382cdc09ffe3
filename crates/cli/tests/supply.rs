//! End-to-end tests of the drug supply chain through the real binary: a manufacturer registers a
//! 2–8 °C product, commissions a lot, packs and ships a pallet; a pharmacy verifies, receives,
//! unpacks and dispenses; a sensor reports an excursion; the lot is recalled; every verdict,
//! trace, recall report and label is read back; EPCIS documents are captured and queried; and bad
//! input is refused whole.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};

use common::{TestNode, public_key_of, secret_of, stdout};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use serde_json::{Value, json};

const GTIN: &str = "09506000134352";
/// The manufacturer's and the pharmacy's GLNs.
const PLANT: &str = "0614141000005";
const PHARMACY_GLN: &str = "9520011000017";

fn sscc(n: u32) -> String {
    let body = format!("10614141{n:09}");
    let check = medledger_supply::gs1_check_digit(body.as_bytes()) as char;
    format!("{body}{check}")
}

fn code(serial: &str) -> String {
    format!("(01){GTIN}(17)271231(10)L1(21){serial}")
}

struct Chain {
    node: TestNode,
    dir: PathBuf,
    maker_root: PathBuf,
    pharmacy_root: PathBuf,
}

impl Chain {
    fn start(dir: &Path) -> Chain {
        let mut node = TestNode::init_orgs(
            dir,
            &["maker=Maker Pharma", "pharmacy=Corner Pharmacy"],
            &["maker=0614141", "pharmacy=9520011"],
        );
        node.start();
        Chain {
            maker_root: node.home.join("keys/maker.key"),
            pharmacy_root: node.home.join("keys/pharmacy.key"),
            node,
            dir: dir.to_path_buf(),
        }
    }

    /// A new key, enrolled by `root` with `role`.
    fn member(&self, root: &Path, name: &str, role: &str) -> PathBuf {
        self.node.new_key(&self.dir, name, Some((root, role)))
    }

    fn supply(&self, key: &Path, args: &[&str]) -> std::process::Output {
        let mut all = vec!["supply", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.node.cli(&all)
    }

    fn ok(&self, key: &Path, args: &[&str]) -> String {
        let out = self.supply(key, args);
        assert!(
            out.status.success(),
            "supply {args:?} failed: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    /// Runs a step that the ledger must refuse with `code`.
    fn refused(&self, key: &Path, args: &[&str], code: &str) {
        let out = self.supply(key, args);
        assert!(!out.status.success(), "supply {args:?} should fail");
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(
            text.contains(code),
            "supply {args:?}: expected {code}, got {text}"
        );
    }

    fn verify(&self, key: &Path, code: &str) -> Value {
        let out = self.supply(key, &["verify", code]);
        let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "verify printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let genuine = verdict["verdict"] == "genuine";
        assert_eq!(
            out.status.code(),
            Some(if genuine { 0 } else { 3 }),
            "{verdict}"
        );
        verdict
    }

    fn height(&self) -> u64 {
        self.node.get("/v1/status").1["height"]
            .as_u64()
            .expect("height")
    }
}

fn reasons(verdict: &Value) -> Vec<String> {
    verdict["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|reason| reason["code"].as_str().expect("code").to_string())
        .collect()
}

fn epcis_example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../epcis/tests/data")
        .join(path)
}

#[test]
fn a_pack_travels_from_plant_to_pharmacy_and_every_verdict_is_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = Chain::start(dir.path());
    let maker = chain.member(&chain.maker_root, "maker", "manufacturer");
    let pharmacist = chain.member(&chain.pharmacy_root, "pharmacist", "pharmacy");
    let sensor = chain.member(&chain.maker_root, "sensor", "device");
    let auditor = chain.member(&chain.maker_root, "auditor", "auditor");

    chain.ok(
        &maker,
        &[
            "register",
            "--gtin",
            GTIN,
            "--name",
            "Insulin pen 100 U/ml",
            "--storage",
            "2..8",
        ],
    );
    chain.ok(&maker, &["location", "--gln", PLANT, "--name", "Plant 1"]);
    // The pharmacy cannot register a location under the maker's GS1 company prefix.
    chain.refused(
        &pharmacist,
        &["location", "--gln", "0614141000012", "--name", "Not ours"],
        "prefix_of_another",
    );
    chain.ok(
        &pharmacist,
        &[
            "location",
            "--gln",
            PHARMACY_GLN,
            "--name",
            "Corner Pharmacy",
        ],
    );
    // 5,000 units in two transactions.
    let out = chain.ok(
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--expiry",
            "271231",
            "--range",
            "0001..5000",
            "--location",
            PLANT,
        ],
    );
    let summary: Value = serde_json::from_str(&out).expect("summary");
    assert_eq!(
        (summary["units"].as_u64(), summary["transactions"].as_u64()),
        (Some(5000), Some(2))
    );
    // The pharmacy cannot commission the maker's product; nobody can commission a serial twice.
    chain.refused(
        &pharmacist,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "X",
            "--expiry",
            "271231",
            "--serial",
            "9999",
        ],
        "not_the_manufacturer",
    );
    chain.refused(
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--expiry",
            "271231",
            "--serial",
            "0001",
        ],
        "unit_exists",
    );

    // Serials holding a comma, dots or a leading '-' are legal GS1 serials (CSET 82): each given
    // whole is one unit, and ranges are read only from --range.
    let serial_code = |serial: &str| format!("(01){GTIN}(17)271231(10)S1(21){serial}");
    let serials_file = chain.dir.join("serials.txt");
    std::fs::write(&serials_file, "F,1\r\nF..2\n").expect("serials file");
    let out = chain.ok(
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "S1",
            "--expiry",
            "271231",
            "--serial",
            "AB,CD",
            "--serial",
            "-7",
            "--serials-from",
            serials_file.to_str().expect("utf-8"),
        ],
    );
    let summary: Value = serde_json::from_str(&out).expect("summary");
    assert_eq!(summary["units"].as_u64(), Some(4), "{summary}");
    for serial in ["AB,CD", "-7", "F,1", "F..2"] {
        let verdict = chain.verify(&maker, &serial_code(serial));
        assert_eq!(verdict["verdict"], "genuine", "{serial}: {verdict}");
    }
    assert_eq!(
        reasons(&chain.verify(&maker, &serial_code("AB"))),
        vec!["unknown_serial"]
    );
    chain.refused(
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--expiry",
            "271231",
            "--range",
            "A..B",
        ],
        "is not FIRST..LAST of decimal numbers",
    );

    // Every form of the same code verifies: bracketed, scanned with GS separators, Digital Link.
    for form in [
        code("0001"),
        format!("]d201{GTIN}17271231") + "10L1\u{1d}210001",
        format!("https://id.gs1.org/01/{GTIN}/10/L1/21/0001?17=271231"),
    ] {
        let verdict = chain.verify(&maker, &form);
        assert_eq!(verdict["verdict"], "genuine", "{form}: {verdict}");
        assert_eq!(verdict["custody"]["custodian"], "maker");
        assert_eq!(verdict["expiry"], "2027-12-31");
        assert_eq!(verdict["lot"], "L1");
    }
    let verdict = chain.verify(&maker, &format!("(01){GTIN}(17)271130(10)L2(21)0001"));
    assert_eq!(reasons(&verdict), vec!["lot_mismatch", "expiry_mismatch"]);
    let verdict = chain.verify(&maker, &format!("(01){GTIN}(21)77777"));
    assert_eq!(reasons(&verdict), vec!["unknown_serial"]);
    let verdict = chain.verify(&maker, "(01)09506000134369(21)1");
    assert_eq!(reasons(&verdict), vec!["unknown_gtin"]);
    // Not the pharmacy's yet.
    assert_eq!(
        reasons(&chain.verify(&pharmacist, &code("0001"))),
        vec!["not_in_custody"]
    );

    // Pack a case and a pallet, ship the pallet; a packed unit cannot leave alone.
    let (case, pallet) = (sscc(1), sscc(2));
    chain.ok(
        &maker,
        &[
            "pack",
            "--sscc",
            &case,
            "--unit",
            &code("0001"),
            "--unit",
            &code("0002"),
            "--unit",
            &code("0003"),
        ],
    );
    chain.ok(
        &maker,
        &[
            "pack",
            "--sscc",
            &pallet,
            "--sscc-child",
            &case,
            "--unit",
            &code("0004"),
        ],
    );
    chain.refused(
        &maker,
        &["ship", "--to", "pharmacy", "--unit", &code("0001")],
        "packed",
    );
    let out = chain.ok(&maker, &["ship", "--to", "pharmacy", "--sscc", &pallet]);
    let shipment = out
        .lines()
        .find_map(|line| line.strip_prefix("shipment "))
        .expect("shipment id")
        .to_string();
    // In transit the maker still holds it and the pharmacy may verify what is addressed to it.
    let verdict = chain.verify(&pharmacist, &code("0001"));
    assert_eq!(verdict["verdict"], "genuine", "{verdict}");
    assert_eq!(verdict["custody"]["custodian"], "maker");
    assert_eq!(verdict["custody"]["containers"], json!([case, pallet]));

    // A logger rides with the shipment and reports 9.5 °C: everything inside is flagged.
    let sensor_key = public_key_of(&sensor);
    chain.ok(
        &maker,
        &[
            "attach-sensor",
            "--device",
            &sensor_key,
            "--shipment",
            &shipment,
        ],
    );
    chain.ok(
        &sensor,
        &["reading", "--celsius", "5.0", "--celsius", "9.5"],
    );
    let verdict = chain.verify(&pharmacist, &code("0002"));
    assert_eq!(reasons(&verdict), vec!["cold_chain_excursion"]);
    assert_eq!(verdict["reasons"][0]["excursions"][0]["milli_c"], 9500);
    assert_eq!(
        reasons(&chain.verify(&maker, &code("0005"))),
        Vec::<String>::new()
    );

    // Only the addressee receives; then custody is the pharmacy's.
    chain.refused(
        &maker,
        &["receive", "--shipment", &shipment],
        "not_the_receiver",
    );
    chain.ok(
        &pharmacist,
        &[
            "receive",
            "--shipment",
            &shipment,
            "--location",
            PHARMACY_GLN,
        ],
    );
    let verdict = chain.verify(&pharmacist, &code("0004"));
    assert_eq!(verdict["custody"]["custodian"], "pharmacy");
    assert_eq!(reasons(&verdict), vec!["cold_chain_excursion"]);

    // The pharmacy unpacks and dispenses one unit.
    chain.ok(&pharmacist, &["unpack", "--sscc", &pallet]);
    chain.ok(
        &pharmacist,
        &["unpack", "--sscc", &case, "--unit", &code("0001")],
    );
    chain.ok(&pharmacist, &["dispense", "--unit", &code("0001")]);
    assert!(reasons(&chain.verify(&pharmacist, &code("0001"))).contains(&"dispensed".to_string()));
    chain.refused(
        &pharmacist,
        &["dispense", "--unit", &code("0001")],
        "bad_status_change",
    );

    // The trace of unit 0002 runs through its case and the pallet, each step with its block.
    let out = chain.ok(&auditor, &["trace", &code("0002")]);
    let trace: Value = serde_json::from_str(&out).expect("trace");
    let steps: Vec<(String, String)> = trace["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            assert!(step["height"].as_u64().is_some() && step["tx"].as_str().is_some());
            (
                step["kind"].as_str().expect("kind").to_string(),
                step["org"].as_str().expect("org").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("commissioned", "maker"),
        ("packed", "maker"),
        ("packed", "maker"),
        ("shipped", "maker"),
        ("received", "pharmacy"),
        ("unpacked", "pharmacy"),
    ]
    .iter()
    .map(|(kind, org)| (kind.to_string(), org.to_string()))
    .collect();
    assert_eq!(steps, expected);
    // The state key it names proves against a header.
    let key = trace["state_key"].as_str().expect("state key");
    let (status, proof) = chain.node.get(&format!("/v1/state/{key}"));
    assert_eq!(status, 200, "{proof}");
    assert!(proof["value"].is_string());

    // Recall: only the maker, then every unit answers "recalled", and the report finds them all.
    chain.refused(
        &pharmacist,
        &["recall", "--gtin", GTIN, "--lot", "L1", "--reason", "x"],
        "not_the_manufacturer",
    );
    chain.ok(
        &maker,
        &[
            "recall",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--reason",
            "particulates",
        ],
    );
    assert_eq!(
        reasons(&chain.verify(&maker, &code("0005"))),
        vec!["recalled"]
    );
    // An auditor verifies without custody.
    assert_eq!(
        reasons(&chain.verify(&auditor, &code("0005"))),
        vec!["recalled"]
    );
    let out = chain.ok(&auditor, &["recall-report", "--gtin", GTIN, "--lot", "L1"]);
    let report: Value = serde_json::from_str(&out).expect("report");
    let units = report["report"]["units"].as_array().expect("units");
    assert_eq!(units.len(), 5000);
    let row = |serial: &str| {
        units
            .iter()
            .find(|row| row["serial"] == serial)
            .expect("row")
            .clone()
    };
    assert_eq!(row("0002")["custodian"], "pharmacy");
    assert_eq!(row("0002")["containers"], json!([case]));
    assert_eq!(row("0001")["status"], "dispensed");
    assert_eq!(row("0005")["custodian"], "maker");
    assert_eq!(report["report"]["recall"]["reason"], "particulates");

    // Labels: a PNG DataMatrix and an SVG QR code of the Digital Link.
    let png = dir.path().join("label.png");
    chain.ok(
        &maker,
        &[
            "label",
            &code("0005"),
            "--out",
            png.to_str().expect("utf-8"),
        ],
    );
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let svg = dir.path().join("label.svg");
    chain.ok(
        &maker,
        &[
            "label",
            &code("0005"),
            "--symbol",
            "qr",
            "--format",
            "svg",
            "--out",
            svg.to_str().expect("utf-8"),
        ],
    );
    assert!(
        std::fs::read_to_string(&svg)
            .expect("svg")
            .starts_with("<svg")
    );
    chain.refused(
        &maker,
        &[
            "label",
            &format!("(01){GTIN}(21)77777"),
            "--out",
            png.to_str().expect("utf-8"),
        ],
        "404",
    );

    // Patients may verify a pack but not read custody, locations or recalls.
    let patient = chain.member(&chain.pharmacy_root, "patient", "patient");
    let seen = chain.verify(&patient, &code("0005"));
    assert_eq!(seen["verdict"], "suspect", "{seen}");
    // The verdict and its reasons' codes, as the manufacturer's full answer gives them; nothing
    // of custody, status, recall reasons or the cold chain.
    let full = chain.verify(&maker, &code("0005"));
    let codes: Vec<&Value> = full["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|reason| &reason["code"])
        .collect();
    assert!(!codes.is_empty(), "{full}");
    assert_eq!(
        seen["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .collect::<Vec<_>>(),
        codes,
        "{seen}"
    );
    for hidden in ["custody", "status"] {
        assert!(seen.get(hidden).is_none(), "{hidden}: {seen}");
    }
    chain.refused(
        &patient,
        &["recall-report", "--gtin", GTIN, "--lot", "L1"],
        "403",
    );

    // Bad input: not a GS1 code, a code without a serial, an unsigned request.
    chain.refused(&maker, &["verify", "not a code"], "400");
    chain.refused(
        &maker,
        &["verify", &format!("(01){GTIN}(10)L1")],
        "needs AI (01) GTIN and AI (21) serial",
    );
    let (status, body) = chain.node.post(
        "/v1/supply/verify",
        &json!({"code": code("0001")}).to_string(),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].is_string());
    let (status, _) = chain.node.signed(
        &secret_of(&maker),
        "POST",
        "/v1/supply/verify",
        b"{\"code\": 5}",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 400);
}

#[test]
fn epcis_documents_are_captured_idempotently_mapped_and_queried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::start(dir.path());
    let maker = chain.member(&chain.maker_root, "maker", "manufacturer");
    let pharmacist = chain.member(&chain.pharmacy_root, "pharmacist", "pharmacy");
    let maker_key = secret_of(&maker);

    // Every GS1 example is accepted; none names goods this chain tracks, so none maps to steps.
    let mut examples = Vec::new();
    collect(&epcis_example("JSON"), &mut examples);
    assert_eq!(examples.len(), 47);
    for file in &examples {
        let body = std::fs::read(file).expect("example");
        let (status, answer) = capture(&chain.node, &maker_key, &body);
        assert_eq!(status, 201, "{}: {answer}", file.display());
        for event in answer["events"].as_array().expect("events") {
            assert!(
                event["eventID"]
                    .as_str()
                    .expect("id")
                    .starts_with("ni:///sha-256;")
            );
            assert_eq!(event["steps"], json!([]));
        }
    }
    // Capturing one again changes nothing: every event is a duplicate and the height stays.
    let body =
        std::fs::read(epcis_example("JSON/Example_9.6.1-ObjectEvent.jsonld")).expect("example");
    let before = chain.height();
    let (status, answer) = capture(&chain.node, &maker_key, &body);
    assert_eq!(status, 201);
    assert_eq!(answer["captured"], 0);
    assert!(answer["duplicates"].as_u64().expect("count") > 0);
    assert_eq!(chain.height(), before);

    // A document failing the schema is refused with its reasons, and nothing is stored.
    for (path, bad) in [
        ("schemaVersion missing", std::fs::read(epcis_example("JSON-simple-context/WithSensorData/SensorDataExample12.jsonld")).expect("file")),
        ("not JSON", b"{not json".to_vec()),
        ("eventTime missing", json!({"@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-01-01T00:00:00Z", "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTimeZoneOffset": "+00:00", "action": "OBSERVE", "epcList": []}]}}).to_string().into_bytes()),
    ] {
        let before = chain.height();
        let (status, answer) = capture(&chain.node, &maker_key, &bad);
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{path}: {answer}");
        if path == "schemaVersion missing" {
            // A schema failure lists its reasons.
            let reasons = answer["error"]["reasons"].as_array().expect("reasons");
            assert!(!reasons.is_empty(), "{answer}");
        }
        assert_eq!(chain.height(), before, "{path}");
    }

    // Goods this chain tracks: a registered product's commissioning, packing and shipping, in
    // EPCIS, become ledger steps; the pharmacy's receiving event passes custody.
    chain.ok(
        &maker,
        &[
            "register",
            "--gtin",
            GTIN,
            "--name",
            "Insulin pen",
            "--storage",
            "2..8",
        ],
    );
    chain.ok(
        &pharmacist,
        &[
            "location",
            "--gln",
            PHARMACY_GLN,
            "--name",
            "Corner Pharmacy",
        ],
    );
    let epc = |serial: &str| format!("https://id.gs1.org/01/{GTIN}/21/{serial}");
    let sscc_epc = format!("https://id.gs1.org/00/{}", sscc(7));
    let document = |events: Value| {
        json!({
            "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld", {"example": "https://example.com/ns/"}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-11-01T10:00:00Z",
            "epcisBody": {"eventList": events}
        })
        .to_string()
        .into_bytes()
    };
    let commissioning = document(json!([
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-01T09:00:00Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": [epc("A1"), epc("A2"), epc("A3")],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "bizLocation": {"id": "urn:epc:id:sgln:0614141.00000.0"},
            "ilmd": {"cbvmda:lotNumber": "EP1", "cbvmda:itemExpirationDate": "2028-06-30"},
            "example:batchNote": "kept as given"
        },
        {
            "type": "AggregationEvent",
            "eventTime": "2026-11-01T09:05:00Z",
            "eventTimeZoneOffset": "+00:00",
            "parentID": sscc_epc,
            "childEPCs": [epc("A1"), epc("A2")],
            "action": "ADD",
            "bizStep": "packing",
            "disposition": "in_progress"
        },
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-01T09:10:00Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": [sscc_epc],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "destinationList": [{"type": "owning_party", "destination": format!("urn:epc:id:pgln:9520011.00001")}]
        }
    ]));
    let (status, answer) = capture(&chain.node, &maker_key, &commissioning);
    assert_eq!(status, 201, "{answer}");
    let steps: Vec<Value> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["steps"].clone())
        .collect();
    assert_eq!(
        steps,
        vec![json!(["commission"]), json!(["pack"]), json!(["ship"])]
    );
    let verdict = chain.verify(&pharmacist, &format!("(01){GTIN}(17)280630(10)EP1(21)A1"));
    assert_eq!(verdict["verdict"], "genuine", "{verdict}");
    assert_eq!(verdict["custody"]["custodian"], "maker");

    // A logger of the maker's, enrolled as a device, captures a sensor report on the pallet:
    // 12.5 °C leaves the product's 2–8 °C range, so the units inside are flagged.
    let logger = chain.member(&chain.maker_root, "logger", "device");
    let report = document(json!([{
        "type": "ObjectEvent",
        "eventTime": "2026-11-01T11:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [sscc_epc],
        "action": "OBSERVE",
        "sensorElementList": [{
            "sensorMetadata": {"time": "2026-11-01T11:00:00Z"},
            "sensorReport": [{"type": "gs1:Temperature", "value": 12.5, "uom": "CEL"}]
        }]
    }]));
    let (status, answer) = capture(&chain.node, &secret_of(&logger), &report);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["events"][0]["steps"], json!(["readings"]));
    let verdict = chain.verify(&pharmacist, &format!("(01){GTIN}(21)A1"));
    assert_eq!(reasons(&verdict), vec!["cold_chain_excursion"], "{verdict}");
    assert_eq!(verdict["reasons"][0]["excursions"][0]["milli_c"], 12500);
    // Unit A3 was never packed or shipped: untouched.
    assert_eq!(
        reasons(&chain.verify(&maker, &format!("(01){GTIN}(21)A3"))),
        Vec::<String>::new()
    );

    // Unpacking that names only goods this chain does not track unpacks nothing here.
    let unpack_untracked = document(json!([{
        "type": "AggregationEvent",
        "eventTime": "2026-11-01T12:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "parentID": sscc_epc,
        "childEPCs": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "DELETE",
        "bizStep": "unpacking"
    }]));
    let (status, answer) = capture(&chain.node, &maker_key, &unpack_untracked);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["events"][0]["steps"], json!([]));

    // Only members of the node's organisation capture through it.
    let receiving = document(json!([{
        "type": "ObjectEvent",
        "eventTime": "2026-11-02T09:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [sscc_epc],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "bizLocation": {"id": format!("urn:epc:id:sgln:0614141.00001.0")}
    }]));
    let (status, _) = capture(&chain.node, &secret_of(&pharmacist), &receiving);
    assert_eq!(status, 403);
    // A step the ledger refuses refuses the capture whole: the maker cannot receive its own
    // shipment.
    let (status, answer) = capture(&chain.node, &maker_key, &receiving);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "not_the_receiver");
    // The refused event is neither indexed nor on record: the same capture by the receiver's own
    // node would still be new.
    let path = format!("/epcis/events?MATCH_epc={sscc_epc}&EQ_bizStep=receiving");
    let (_, query) = chain
        .node
        .signed(&maker_key, "GET", &path, b"", &AccessHeaders::default());
    let query: Value = serde_json::from_slice(&query).expect("json");
    assert_eq!(
        query["epcisBody"]["queryResults"]["resultsBody"]["eventList"],
        json!([])
    );
    let custody = chain.verify(&maker, &format!("(01){GTIN}(21)A1"));
    assert_eq!(custody["custody"]["custodian"], "maker");

    // Queries: by EPC (URN or Digital Link of the same unit), by business step, by time; the
    // events come back as captured, extension fields included.
    let events = |path: &str| query_events(&chain.node, &maker_key, path);
    let by_epc = events(&format!("/epcis/events?MATCH_epc={}", epc("A1")));
    assert_eq!(by_epc.len(), 2, "{by_epc:?}");
    assert_eq!(by_epc[0]["example:batchNote"], "kept as given");
    let urn = "urn:epc:id:sgtin:9506000.013435.A1";
    assert_eq!(events(&format!("/epcis/events?MATCH_epc={urn}")).len(), 2);
    assert_eq!(
        events("/epcis/events?EQ_bizStep=shipping&GE_eventTime=2026-11-01T00:00:00Z").len(),
        1
    );
    assert_eq!(
        events("/epcis/events?EQ_bizStep=https://ref.gs1.org/cbv/BizStep-packing&GE_eventTime=2026-11-01T00:00:00Z").len(),
        1
    );
    assert_eq!(
        events("/epcis/events?EQ_bizStep=shipping&GE_eventTime=2026-10-01T00:00:00Z&LT_eventTime=2026-11-01T00:00:00Z").len(),
        0
    );
    // Pages: one event at a time, the next page named by the Link header.
    let first = format!("/epcis/events?MATCH_epc={}&perPage=1", epc("A1"));
    let (status, headers, body) =
        chain
            .node
            .signed_response(&maker_key, "GET", &first, b"", &AccessHeaders::default());
    assert_eq!(status, 200);
    let page: Value = serde_json::from_slice(&body).expect("json");
    let list = &page["epcisBody"]["queryResults"]["resultsBody"]["eventList"];
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["bizStep"], "commissioning");
    let link = headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .expect("a Link to the next page");
    let next = link
        .strip_prefix('<')
        .and_then(|rest| rest.split('>').next())
        .expect("a link");
    assert!(
        next.contains("MATCH_epc="),
        "the next page keeps the filters: {next}"
    );
    let second = events(next);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["type"], "AggregationEvent");
    let (status, _) = chain.node.signed(
        &maker_key,
        "GET",
        "/epcis/events?GE_eventTime=yesterday",
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 400);
    let (status, _) = chain.node.get("/epcis/events");
    assert_eq!(status, 401);

    // The index is derived from the chain: after kill -9 and a restart it answers the same.
    chain.node.kill();
    chain.node.start();
    let after = |path: &str| query_events(&chain.node, &maker_key, path).len();
    assert_eq!(after(&format!("/epcis/events?MATCH_epc={}", epc("A1"))), 2);
    // Packing, shipping, the sensor report and the unpacking of an untracked unit; the refused
    // receiving is not there.
    assert_eq!(after(&format!("/epcis/events?MATCH_epc={sscc_epc}")), 4);
}

/// The events of an EPCIS query, checking that the answer is an EPCISQueryDocument.
fn query_events(node: &TestNode, key: &SecretKey, path: &str) -> Vec<Value> {
    let (status, body) = node.signed(key, "GET", path, b"", &AccessHeaders::default());
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(body["type"], "EPCISQueryDocument");
    body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        .as_array()
        .expect("list")
        .clone()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "jsonld") {
            out.push(path);
        }
    }
}

/// Captures an EPCIS document through `node` as `key`; returns the status and the JSON answer.
fn capture(node: &TestNode, key: &SecretKey, body: &[u8]) -> (u16, Value) {
    let (status, answer) = node.signed(
        key,
        "POST",
        "/epcis/capture",
        body,
        &AccessHeaders::default(),
    );
    (status, serde_json::from_slice(&answer).expect("json"))
}
