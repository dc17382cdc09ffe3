//! End-to-end remote monitoring through the real binary: an unpaired device is refused; the
//! care team pairs it; a simulated device streams signed batches (binary and JSON); a replay is
//! refused; the node anchors them; a clinician without consent is denied and the denial is on
//! the patient's access log; with consent the readings are served, one is proven offline against
//! genesis, and an altered proof fails; a reading changed in the node's store is detected; a rule
//! fires on low SpO2 and the alert reaches the care team's stream and webhook, the patient sees
//! it, the doctor acknowledges it; another rule's alert, left alone, escalates after its timeout
//! and the webhook hears of it; an unpaired device is refused again.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Subscriber, TestNode, WebhookReceiver, failed, ok, public_key_of, stdout};
use serde_json::{Value, json};

fn monitor(node: &TestNode, key: &Path, args: &[&str]) -> Output {
    common::run_as(node, "monitor", key, args)
}

/// A hospital's node with a practitioner, a patient bound to their record (with a heart rate
/// taken at the clinic), an enrolled device not yet paired, another organisation's practitioner
/// and a trial sponsor.
struct Ward {
    node: TestNode,
    hospital: PathBuf,
    doctor: PathBuf,
    patient: PathBuf,
    device: PathBuf,
    outsider: PathBuf,
    sponsor: PathBuf,
    device_key: String,
}

impl Ward {
    fn open(dir: &Path) -> Ward {
        let mut node = TestNode::init_orgs(
            dir,
            &["hospital=Hospital", "clinic=Clinic", "pharma=Pharma"],
            &[],
        );
        node.start();
        let hospital: PathBuf = node.home.join("keys/hospital.key");
        let clinic: PathBuf = node.home.join("keys/clinic.key");
        let pharma: PathBuf = node.home.join("keys/pharma.key");
        let doctor = node.new_key(dir, "doctor", Some((&hospital, "practitioner")));
        let patient = node.new_key(dir, "patient", Some((&hospital, "patient")));
        let device = node.new_key(dir, "device", Some((&hospital, "device")));
        let outsider = node.new_key(dir, "outsider", Some((&clinic, "practitioner")));
        let sponsor = node.new_key(dir, "sponsor", Some((&pharma, "sponsor")));
        let device_key = public_key_of(&device);
        // The hospital's patient, bound to the patient's key, with a heart rate taken at the clinic.
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                { "resource": { "resourceType": "Patient", "id": "watched", "gender": "female" },
                  "request": { "method": "PUT", "url": "Patient/watched" } },
                { "resource": {
                    "resourceType": "Observation", "id": "clinic-hr", "status": "final",
                    "category": [{ "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs" }] }],
                    "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
                    "subject": { "reference": "Patient/watched" },
                    "effectiveDateTime": "2026-01-05T09:30:00Z",
                    "valueQuantity": { "value": 72, "unit": "/min",
                        "system": "http://unitsofmeasure.org", "code": "/min" } },
                  "request": { "method": "PUT", "url": "Observation/clinic-hr" } },
            ],
        });
        let bundle_file = dir.join("patient.json");
        std::fs::write(&bundle_file, bundle.to_string()).expect("write");
        let fhir = |key: &Path, args: &[&str]| {
            let mut all = vec!["fhir", "--key", key.to_str().expect("utf-8")];
            all.extend_from_slice(args);
            ok(node.cli(&all))
        };
        fhir(&doctor, &["import", bundle_file.to_str().expect("utf-8")]);
        fhir(
            &hospital,
            &[
                "bind",
                "--patient",
                "watched",
                "--patient-key",
                &public_key_of(&patient),
            ],
        );
        Ward {
            node,
            hospital,
            doctor,
            patient,
            device,
            outsider,
            sponsor,
            device_key,
        }
    }
}

#[test]
fn a_device_streams_is_anchored_and_its_reading_proven_under_consent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    use redb::ReadableTable;
    let Ward {
        mut node,
        hospital,
        doctor,
        patient,
        device,
        outsider,
        device_key,
        ..
    } = Ward::open(dir);
    let fhir = |key: &Path, args: &[&str]| {
        let mut all = vec!["fhir", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        ok(node.cli(&all))
    };

    // Not paired yet: the node refuses its readings.
    failed(
        monitor(&node, &device, &["simulate", "--batches", "1"]),
        "not paired",
    );
    // Another organisation's practitioner may not pair it; the hospital's doctor does.
    failed(
        monitor(
            &node,
            &outsider,
            &[
                "pair",
                "--device",
                &device_key,
                "--patient",
                "Patient/watched",
            ],
        ),
        "403",
    );
    ok(monitor(
        &node,
        &doctor,
        &[
            "pair",
            "--device",
            &device_key,
            "--patient",
            "Patient/watched",
        ],
    ));
    let paired = ok(monitor(&node, &device, &["device"]));
    assert_eq!(paired["entry"]["org"], "hospital", "{paired}");

    // Five binary batches of 30 readings, then one in JSON.
    let sent = ok(monitor(
        &node,
        &device,
        &[
            "simulate",
            "--batches",
            "5",
            "--readings",
            "30",
            "--seed",
            "7",
        ],
    ));
    assert_eq!(sent["batches"].as_array().expect("batches").len(), 5);
    assert_eq!(sent["batches"][4]["seq"], 4);
    let sent = ok(monitor(
        &node,
        &device,
        &["simulate", "--batches", "1", "--readings", "9", "--json"],
    ));
    assert_eq!(sent["batches"][0]["seq"], 5);
    // A batch number already received is refused.
    failed(
        monitor(
            &node,
            &device,
            &["simulate", "--batches", "1", "--start-seq", "2"],
        ),
        "409",
    );

    // Through the HTTP API as a device would send them: a reading ten minutes ahead of the node's
    // clock is refused with a clear error, and so is a batch signed by another key; nothing is
    // kept, so the next batch number is still 6.
    let genesis: Value = serde_json::from_str(
        &std::fs::read_to_string(node.home.join("genesis.json")).expect("genesis"),
    )
    .expect("json");
    let chain_id = genesis["chain_id"].as_str().expect("chain id");
    let batch = |time_ms: u64| medledger_monitor::readings::Batch {
        device: medledger_crypto::PublicKey::from_hex(&device_key).expect("key"),
        seq: 6,
        readings: vec![medledger_monitor::Reading {
            code: medledger_monitor::Code::from_loinc("8867-4").expect("heart rate"),
            time_ms,
            value: 70,
        }],
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let device_secret = common::hospital::key_of(&device);
    let ahead = medledger_monitor::readings::SignedBatch::sign(
        chain_id,
        batch(now_ms + 600_000),
        &device_secret,
    );
    let (status, body) = node.post(
        "/v1/monitor/batches",
        &serde_json::to_string(&ahead).expect("json"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].to_string().contains("ahead"),
        "{body}"
    );
    let forged = medledger_monitor::readings::SignedBatch::sign(
        chain_id,
        batch(now_ms),
        &common::hospital::key_of(&doctor),
    );
    let (status, body) = node.post(
        "/v1/monitor/batches",
        &serde_json::to_string(&forged).expect("json"),
    );
    assert_eq!(status, 400, "{body}");
    let paired = ok(monitor(&node, &device, &["device"]));
    assert_eq!(paired["received"]["next_seq"], 6, "{paired}");

    // The hospital anchors now (rather than at the window's end): one device, 159 readings.
    failed(monitor(&node, &doctor, &["anchor"]), "403");
    let anchored = ok(monitor(&node, &hospital, &["anchor"]));
    assert_eq!(anchored["anchored"]["devices"], 1, "{anchored}");
    assert_eq!(anchored["anchored"]["readings"], 159, "{anchored}");
    let paired = ok(monitor(&node, &device, &["device"]));
    assert_eq!(paired["entry"]["next_seq"], 6, "{paired}");
    assert_eq!(paired["entry"]["readings"], 159, "{paired}");

    // Without consent: denied, and the denial is on the patient's access log.
    failed(
        monitor(&node, &outsider, &["readings", "--patient", "watched"]),
        "consent does not allow",
    );
    failed(
        monitor(&node, &doctor, &["readings", "--patient", "watched"]),
        "consent does not allow",
    );
    let me = fhir(&patient, &["me"]);
    let accesses = me["patients"][0]["accesses"].as_array().expect("accesses");
    assert!(
        accesses
            .iter()
            .any(|event| event["reader"] == public_key_of(&outsider).as_str()),
        "{me}"
    );
    // The patient lets the doctor see vital signs for treatment.
    let out = node.cli(&[
        "consent",
        "--key",
        patient.to_str().expect("utf-8"),
        "grant",
        "--to",
        &format!("key:{}", public_key_of(&doctor)),
        "--purpose",
        "TREAT",
        "--category",
        "vital-signs",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let read = ok(monitor(
        &node,
        &doctor,
        &["readings", "--patient", "watched", "--code", "59408-5"],
    ));
    let spo2 = read["readings"].as_array().expect("readings");
    assert_eq!(spo2.len(), 53, "{read}");
    assert!(spo2.iter().all(|reading| reading["unit"] == "%"));
    assert!(spo2.iter().all(|reading| reading["anchor"] == 0));
    failed(
        monitor(
            &node,
            &doctor,
            &["readings", "--patient", "watched", "--purpose", "HRESCH"],
        ),
        "consent does not allow",
    );

    // The same readings on the FHIR face, as PHD Observations, for a standard client; paged.
    let doctor_key = common::hospital::key_of(&doctor);
    let access = medledger_api::auth::AccessHeaders {
        purpose: Some("TREAT".into()),
        ..Default::default()
    };
    let path = format!(
        "/fhir/Observation?patient=watched&device=Device/{device_key}&code=http://loinc.org|59408-5&_count=20"
    );
    let (status, body) = node.signed(&doctor_key, "GET", &path, b"", &access);
    let page: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 53, "{page}");
    let entries = page["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 20);
    let first = &entries[0]["resource"];
    assert_eq!(first["code"]["coding"][0]["code"], "59408-5");
    assert_eq!(first["valueQuantity"]["code"], "%");
    assert_eq!(first["device"]["reference"], format!("Device/{device_key}"));
    let next = page["link"]
        .as_array()
        .expect("links")
        .iter()
        .find(|link| link["relation"] == "next")
        .expect("a next page");
    assert!(
        next["url"].as_str().expect("url").contains("_offset=20"),
        "{next}"
    );
    let mut resources: Vec<Value> = entries
        .iter()
        .map(|entry| entry["resource"].clone())
        .collect();
    // One of them read by its id, as the searchset's fullUrl names it.
    let id = first["id"].as_str().expect("id");
    let one_path = format!("/fhir/Observation/{id}");
    let (status, body) = node.signed(&doctor_key, "GET", &one_path, b"", &access);
    let one: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, first);
    resources.push(one);
    let missing = "/fhir/Observation/rpm-0000000000000000-0-0";
    let (status, _) = node.signed(&doctor_key, "GET", missing, b"", &access);
    assert_eq!(status, 404);
    // A search that names no device: the clinic's record first, then the device's readings, all
    // matched by the same filters and paged together.
    let search = |path: &str, access: &medledger_api::auth::AccessHeaders| {
        let (status, body) = node.signed(&doctor_key, "GET", path, b"", access);
        let page: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(status, 200, "{path}: {page}");
        page
    };
    let ids = |page: &Value| -> Vec<String> {
        page["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| entry["resource"]["id"].as_str().expect("id").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = search("/fhir/Observation?patient=watched&_count=5", &access);
    assert_eq!(all["total"], 1 + 159, "{all}");
    let first_ids = ids(&all);
    assert_eq!(first_ids[0], "clinic-hr");
    assert!(
        first_ids[1..].iter().all(|id| id.starts_with("rpm-")),
        "{first_ids:?}"
    );
    let heart = search(
        "/fhir/Observation?patient=watched&code=http://loinc.org|8867-4&category=vital-signs&_count=2&_offset=52",
        &access,
    );
    assert_eq!(heart["total"], 1 + 53, "{heart}");
    let heart_ids = ids(&heart);
    assert_eq!(heart_ids.len(), 2, "{heart}");
    for entry in heart["entry"].as_array().expect("entries") {
        assert_eq!(entry["resource"]["code"]["coding"][0]["code"], "8867-4");
    }
    resources.extend(
        heart["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["resource"].clone()),
    );
    // The clinic's record has no device; a date range the readings are not in finds the record.
    let by_device = search(
        &format!("/fhir/Observation?patient=watched&device=Device/{device_key}&_count=1"),
        &access,
    );
    assert_eq!(by_device["total"], 159, "{by_device}");
    let january = search(
        "/fhir/Observation?patient=watched&date=ge2026-01-01&date=lt2026-02-01",
        &access,
    );
    assert_eq!(ids(&january), ["clinic-hr"], "{january}");
    // Sorted newest first: the records, then the readings, each part in that order.
    let newest = search(
        "/fhir/Observation?patient=watched&_sort=-date&_count=20",
        &access,
    );
    let times: Vec<&str> = newest["entry"].as_array().expect("entries")[1..]
        .iter()
        .map(|entry| {
            entry["resource"]["effectiveDateTime"]
                .as_str()
                .expect("time")
        })
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    assert!(times[0] > times[times.len() - 1], "{times:?}");
    // Codes the devices do not report, and unknown devices, match nothing.
    for none in [
        "/fhir/Observation?patient=watched&code=1234-5".to_string(),
        "/fhir/Observation?patient=watched&device=nonsense".to_string(),
        "/fhir/Observation?patient=watched&date=sa2100".to_string(),
    ] {
        assert_eq!(search(&none, &access)["total"], 0, "{none}");
    }
    // The device itself, as a FHIR Device: read by its key and found by the patient.
    let device_path = format!("/fhir/Device/{device_key}");
    let (status, body) = node.signed(&doctor_key, "GET", &device_path, b"", &access);
    let described: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["resourceType"], "Device");
    assert_eq!(described["status"], "active");
    assert_eq!(described["patient"]["reference"], "Patient/watched");
    assert_eq!(described["owner"]["display"], "hospital");
    let devices = search("/fhir/Device?patient=watched", &access);
    assert_eq!(devices["total"], 1, "{devices}");
    assert_eq!(devices["entry"][0]["resource"], described);
    resources.push(described);
    common::validate_with_fhir_resources(dir, &resources);
    // A malformed parameter is an OperationOutcome.
    let (status, body) = node.signed(
        &doctor_key,
        "GET",
        "/fhir/Observation?patient=watched&date=2026-02-30",
        b"",
        &access,
    );
    let outcome: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // For another purpose consent withholds the record and the device's readings alike.
    let research = medledger_api::auth::AccessHeaders {
        purpose: Some("HRESCH".into()),
        ..Default::default()
    };
    let (status, body) = node.signed(&doctor_key, "GET", &path, b"", &research);
    let withheld: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{withheld}");
    assert_eq!(withheld["total"], 0, "{withheld}");
    let (status, _) = node.signed(&doctor_key, "GET", &one_path, b"", &research);
    assert_eq!(status, 403);
    let (status, _) = node.signed(&doctor_key, "GET", &device_path, b"", &research);
    assert_eq!(status, 403);
    let (status, body) = node.signed(
        &doctor_key,
        "GET",
        "/fhir/Device?patient=watched",
        b"",
        &research,
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["total"],
        0
    );

    // One reading proven offline against genesis; an altered value fails.
    let proof = dir.join("reading-proof.json");
    let fetched = ok(monitor(
        &node,
        &doctor,
        &[
            "proof",
            "--patient",
            "watched",
            "--device",
            &device_key,
            "--seq",
            "2",
            "--index",
            "4",
            "--out",
            proof.to_str().expect("utf-8"),
        ],
    ));
    let genesis = node.home.join("genesis.json");
    let out = node.cli(&[
        "monitor",
        "--key",
        doctor.to_str().expect("utf-8"),
        "verify",
        "--proof",
        proof.to_str().expect("utf-8"),
        "--genesis",
        genesis.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("valid:"), "{}", stdout(&out));
    let mut altered: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).expect("proof")).expect("json");
    let value = altered["reading"]["reading"]["value"]
        .as_i64()
        .expect("value");
    altered["reading"]["reading"]["value"] = json!(value + 1);
    let altered_file = dir.join("altered-proof.json");
    std::fs::write(&altered_file, altered.to_string()).expect("write");
    let out = node.cli(&[
        "monitor",
        "--key",
        doctor.to_str().expect("utf-8"),
        "verify",
        "--proof",
        altered_file.to_str().expect("utf-8"),
        "--genesis",
        genesis.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("INVALID"), "{}", stdout(&out));
    assert!(fetched["reading"]["value"].is_i64(), "{fetched}");

    // Someone with access to the node's files changes a kept batch: it is detected, not served.
    node.stop();
    {
        let readings: redb::TableDefinition<(&[u8; 32], u64), &[u8]> =
            redb::TableDefinition::new("readings");
        let db = redb::Database::open(node.home.join("data/monitor/readings.redb")).expect("open");
        let device_bytes: [u8; 32] = hex::decode(&device_key)
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let write = db.begin_write().expect("write");
        {
            let mut table = write.open_table(readings).expect("table");
            let mut sealed = table
                .get((&device_bytes, 3))
                .expect("read")
                .expect("batch 3")
                .value()
                .to_vec();
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            table
                .insert((&device_bytes, 3), sealed.as_slice())
                .expect("insert");
        }
        write.commit().expect("commit");
    }
    node.start();
    failed(
        monitor(
            &node,
            &doctor,
            &[
                "proof",
                "--patient",
                "watched",
                "--device",
                &device_key,
                "--seq",
                "3",
                "--index",
                "0",
                "--out",
                dir.join("tampered.json").to_str().expect("utf-8"),
            ],
        ),
        "no longer matches what was anchored",
    );

    // An alert: the care team sets a rule; the doctor's stream is open before the readings come;
    // SpO2 below 90 for 2 s of the device's readings raises it, without a value.
    failed(
        monitor(
            &node,
            &outsider,
            &[
                "rule",
                "--patient",
                "Patient/watched",
                "--id",
                "low-spo2",
                "--code",
                "59408-5",
                "--below",
                "90",
            ],
        ),
        "403",
    );
    ok(monitor(
        &node,
        &doctor,
        &[
            "rule",
            "--patient",
            "Patient/watched",
            "--id",
            "low-spo2",
            "--code",
            "59408-5",
            "--below",
            "90",
            "--for-ms",
            "2000",
        ],
    ));
    // A second rule that escalates when nobody acknowledges it within a minute.
    ok(monitor(
        &node,
        &doctor,
        &[
            "rule",
            "--patient",
            "Patient/watched",
            "--id",
            "spo2-watch",
            "--code",
            "59408-5",
            "--below",
            "95",
            "--escalate-after-ms",
            "60000",
        ],
    ));
    let stream = Subscriber::start("monitor", &node, &doctor, &["--count", "2"]);
    failed(monitor(&node, &outsider, &["alerts"]), "403");
    // The ward's paging system takes the same feed by webhook (registered by the hospital's
    // people only, to http(s) URLs only); its first answer fails and is retried.
    let receiver = WebhookReceiver::start(1);
    failed(
        monitor(&node, &outsider, &["webhook", "--url", &receiver.url]),
        "only members of hospital",
    );
    failed(
        monitor(&node, &doctor, &["webhook", "--url", "ftp://pager"]),
        "400",
    );
    let hook = ok(monitor(
        &node,
        &doctor,
        &["webhook", "--url", &receiver.url],
    ));
    // A member keeps at most four webhooks per feed.
    let spare: Vec<String> = (0..3)
        .map(|_| {
            ok(monitor(
                &node,
                &doctor,
                &["webhook", "--url", "http://127.0.0.1:9/"],
            ))["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    failed(
        monitor(&node, &doctor, &["webhook", "--url", "http://127.0.0.1:9/"]),
        "at most 4",
    );
    for id in &spare {
        ok(monitor(&node, &doctor, &["unhook", "--id", id]));
    }
    ok(monitor(
        &node,
        &device,
        &[
            "simulate",
            "--batches",
            "2",
            "--readings",
            "30",
            "--desaturate-from",
            "0",
            "--seed",
            "3",
        ],
    ));
    let notices = [
        stream.next(std::time::Duration::from_secs(30)),
        stream.next(std::time::Duration::from_secs(30)),
    ];
    let mut rules: Vec<&str> = notices
        .iter()
        .map(|notice| notice["alert"]["rule"].as_str().expect("rule"))
        .collect();
    rules.sort();
    assert_eq!(rules, ["low-spo2", "spo2-watch"], "{notices:?}");
    for (n, notice) in notices.iter().enumerate() {
        assert_eq!(notice["seq"], n as u64, "{notice}");
        assert_eq!(notice["change"], "raised", "{notice}");
        assert_eq!(notice["alert"]["device"], device_key.as_str(), "{notice}");
        assert_eq!(notice["alert"]["state"]["state"], "open", "{notice}");
        assert!(!notice.to_string().contains("value"), "{notice}");
    }
    let alert_of = |rule: &str| {
        notices
            .iter()
            .find(|notice| notice["alert"]["rule"] == rule)
            .map(|notice| notice["alert"]["seq"].as_u64().expect("seq").to_string())
            .expect("alert")
    };
    // The patient sees their own alerts; the doctor acknowledges one, once.
    let own = ok(monitor(&node, &patient, &["alerts"]));
    assert_eq!(own["alerts"].as_array().expect("alerts").len(), 2, "{own}");
    let low = alert_of("low-spo2");
    ok(monitor(
        &node,
        &doctor,
        &["ack", "--org", "hospital", "--seq", &low],
    ));
    failed(
        monitor(&node, &doctor, &["ack", "--org", "hospital", "--seq", &low]),
        "acknowledged",
    );

    // The other alert escalates a minute after it was raised, in block time; the webhook got
    // every change in order, each signed by the node, the refused first attempt retried.
    let deliveries = receiver.until(std::time::Duration::from_secs(120), |body| {
        body["change"] == "escalated"
    });
    let node_key = node.get("/v1/status").1["validator"]
        .as_str()
        .expect("node key")
        .to_string();
    common::check_signed(
        &deliveries,
        &node_key,
        b"medledger/monitor-alert-webhook/v1",
    );
    assert_eq!(deliveries[0].0, 503);
    assert_eq!(deliveries[1].2, deliveries[0].2, "the same change again");
    let accepted: Vec<(u64, String, String)> = deliveries
        .iter()
        .filter(|(status, ..)| *status == 200)
        .map(|(_, _, body)| {
            let notice: Value = serde_json::from_slice(body).expect("json");
            (
                notice["seq"].as_u64().expect("seq"),
                notice["change"].as_str().expect("change").to_string(),
                notice["alert"]["rule"].as_str().expect("rule").to_string(),
            )
        })
        .collect();
    let changes: Vec<(u64, &str, &str)> = accepted
        .iter()
        .map(|(seq, change, rule)| (*seq, change.as_str(), rule.as_str()))
        .collect();
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(
        changes
            .iter()
            .enumerate()
            .all(|(n, (seq, ..))| *seq == n as u64),
        "{changes:?}"
    );
    assert_eq!(changes[2], (2, "acknowledged", "low-spo2"));
    assert_eq!(changes[3], (3, "escalated", "spo2-watch"));
    let listed = ok(monitor(&node, &doctor, &["webhooks"]));
    assert_eq!(listed["webhooks"][0]["delivered"], 4, "{listed}");
    let hook_id = hook["id"].as_str().expect("webhook id");
    failed(
        monitor(&node, &patient, &["unhook", "--id", hook_id]),
        "404",
    );
    ok(monitor(&node, &doctor, &["unhook", "--id", hook_id]));
    assert_eq!(
        ok(monitor(&node, &doctor, &["webhooks"]))["webhooks"],
        json!([])
    );

    // Unpaired by the patient: its next batch is refused.
    ok(monitor(
        &node,
        &patient,
        &["unpair", "--device", &device_key],
    ));
    failed(
        monitor(&node, &device, &["simulate", "--batches", "1"]),
        "not paired",
    );
    // Its FHIR Device says so: inactive, with no patient.
    let (status, body) = node.signed(&doctor_key, "GET", &device_path, b"", &access);
    let described: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["status"], "inactive", "{described}");
    assert!(described.get("patient").is_none(), "{described}");
    node.stop();
}

#[test]
fn a_trial_threshold_crossed_at_the_site_opens_an_adverse_event_draft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let Ward {
        node,
        doctor,
        patient,
        device,
        outsider,
        sponsor,
        device_key,
        ..
    } = Ward::open(dir);
    let trial = |key: &Path, args: &[&str]| common::run_as(&node, "trial", key, args);

    // The sponsor registers a study with the hospital as its site; the hospital's doctor enrols
    // the patient, who consents.
    let protocol = dir.join("protocol.pdf");
    std::fs::write(&protocol, "protocol version 1").expect("write");
    ok(trial(
        &sponsor,
        &[
            "register",
            "--study",
            "rpm-1",
            "--title",
            "Home oximetry in heart failure",
            "--protocol",
            protocol.to_str().expect("utf-8"),
            "--sap",
            protocol.to_str().expect("utf-8"),
            "--primary",
            "Hospitalisations@12 months",
            "--site",
            "hospital",
        ],
    ));
    let patient_key = public_key_of(&patient);
    ok(trial(
        &doctor,
        &[
            "enrol",
            "--study",
            "rpm-1",
            "--subject",
            "S-001",
            "--patient",
            &patient_key,
        ],
    ));
    ok(trial(
        &patient,
        &["consent", "--study", "rpm-1", "--version", "1"],
    ));

    // The protocol monitors SpO2 below 90 %: the sponsor sets it, nobody else; malformed
    // thresholds are refused.
    let set = [
        "thresholds",
        "--study",
        "rpm-1",
        "--threshold",
        "59408-5:below:90",
    ];
    failed(trial(&doctor, &set), "not_sponsor");
    failed(
        trial(
            &sponsor,
            &[
                "thresholds",
                "--study",
                "rpm-1",
                "--threshold",
                "59408-5:sideways:90",
            ],
        ),
        "neither below nor above",
    );
    failed(
        trial(
            &sponsor,
            &[
                "thresholds",
                "--study",
                "rpm-1",
                "--threshold",
                "not-loinc!:below:90",
            ],
        ),
        "invalid",
    );
    ok(trial(&sponsor, &set));
    let study = node.get("/v1/trials/rpm-1");
    assert_eq!(
        study.1["monitored"]["thresholds"][0]["loinc"], "59408-5",
        "{study:?}"
    );

    // The device desaturates: the site's node raises the trial's alert and a draft opens.
    ok(monitor(
        &node,
        &doctor,
        &[
            "pair",
            "--device",
            &device_key,
            "--patient",
            "Patient/watched",
        ],
    ));
    ok(monitor(
        &node,
        &device,
        &[
            "simulate",
            "--batches",
            "1",
            "--readings",
            "30",
            "--desaturate-from",
            "0",
        ],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let drafts = loop {
        let drafts = ok(monitor(&node, &doctor, &["drafts"]));
        if drafts["drafts"]
            .as_array()
            .is_some_and(|all| !all.is_empty())
        {
            break drafts;
        }
        assert!(std::time::Instant::now() < deadline, "no draft: {drafts}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let open = &drafts["drafts"][0];
    assert_eq!(open["study"], "rpm-1", "{drafts}");
    assert_eq!(open["subject"], "S-001", "{drafts}");
    assert_eq!(open["alert"]["rule"], "trial:rpm-1:0", "{drafts}");
    assert_eq!(open["threshold"]["below"], 90, "{drafts}");
    assert!(!drafts.to_string().contains("\"value\""), "{drafts}");
    let draft = open["draft"].as_str().expect("draft id").to_string();
    // The alert is in the care team's feed like any other.
    let feed = ok(monitor(&node, &doctor, &["alerts"]));
    assert!(
        feed["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|notice| notice["alert"]["rule"] == "trial:rpm-1:0"),
        "{feed}"
    );
    // Drafts are the site's: another organisation's practitioner and the patient may not list them.
    failed(monitor(&node, &outsider, &["drafts"]), "403");
    failed(monitor(&node, &patient, &["drafts"]), "403");

    // The doctor confirms it as a serious adverse event: the event takes the draft's id, the
    // draft closes, and it cannot be reported twice.
    let report = [
        "report-ae",
        "--draft",
        &draft,
        "--seriousness",
        "serious",
        "--related",
        "--description",
        "desaturation at home",
    ];
    failed(trial(&outsider, &report), "403");
    ok(trial(&doctor, &report));
    let reported = ok(trial(&doctor, &["adverse-event", "--event", &draft]));
    assert_eq!(reported["event"]["subject"], "S-001", "{reported}");
    assert_eq!(reported["event"]["id"], draft.as_str(), "{reported}");
    let after = ok(monitor(&node, &doctor, &["drafts"]));
    assert_eq!(after["drafts"], json!([]), "{after}");
    failed(trial(&doctor, &report), "no open adverse-event draft");
    // Reporting closed the alert (the site's node acknowledged it), so the next crossing (after
    // a normal batch ends this one) raises a new alert and opens a new draft.
    let feed = ok(monitor(&node, &doctor, &["alerts"]));
    assert!(
        feed["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|notice| notice["change"] == "acknowledged"
                && notice["alert"]["rule"] == "trial:rpm-1:0"),
        "{feed}"
    );
    ok(monitor(
        &node,
        &device,
        &[
            "simulate",
            "--batches",
            "2",
            "--readings",
            "30",
            "--desaturate-from",
            "1",
            "--seed",
            "9",
        ],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let drafts = ok(monitor(&node, &doctor, &["drafts"]));
        if let Some(next) = drafts["drafts"].as_array().and_then(|all| all.first()) {
            assert_ne!(next["draft"], draft.as_str(), "{drafts}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new draft: {drafts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
