//! End-to-end test of research data sharing through the real binary on a four-validator devnet:
//! three copies of a Synthea patient at one hospital, two with research consent of different
//! DUO terms and one without; a researcher's request matches only the consent that permits it;
//! the export (FHIR Bulk Data) opens with the researcher's key into NDJSON holding that patient's
//! records de-identified, with none of the Safe Harbor identifiers; the release is in the
//! patient's log; a revocation stops the next release; and no PHI reaches any node's chain.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    PATIENT_ID, TestNode, devnet, failed as refused, ok, one_devnet, public_key_of, run_as as run,
    stdout, synthea,
};
use serde_json::Value;

/// Waits until every node has the block `value` names.
fn synced(nodes: &[TestNode], value: &Value) {
    let Some(height) = value["height"].as_u64() else {
        return;
    };
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.get("/v1/status").1["height"].as_u64().unwrap_or(0) < height {
            assert!(
                Instant::now() < deadline,
                "{} never reached {height}",
                node.url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The Synthea bundle with every UUID changed for copy `n`, so copies are distinct patients.
fn copy_of_synthea(dir: &Path, n: u8) -> (PathBuf, String) {
    let text = std::fs::read_to_string(synthea()).expect("synthea");
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut at = 0;
    let is_uuid = |at: usize| {
        at + 36 <= bytes.len()
            && bytes[at..at + 36].iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    while at < bytes.len() {
        if is_uuid(at) && (at == 0 || !bytes[at - 1].is_ascii_hexdigit()) {
            out.push_str(&format!("{:02x}", n));
            out.push_str(&text[at + 2..at + 36]);
            at += 36;
        } else {
            out.push(bytes[at] as char);
            at += 1;
        }
    }
    let file = dir.join(format!("synthea-{n}.json"));
    std::fs::write(&file, out).expect("write");
    (file, format!("{:02x}{}", n, &PATIENT_ID[2..]))
}

/// A VCF of one sample named by the patient's name, as a lab's pipeline might write it, with a
/// file date and a reference path that must not leave either.
fn vcf() -> String {
    let mut text = String::from(
        "##fileformat=VCFv4.2\n##fileDate=20240105\n##source=LabPipelineV2 run for Gerlach374\n\
         ##reference=file:///labs/Randolph/GRCh38.fasta\n##contig=<ID=20,length=64444167>\n\
         ##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Total Depth\">\n\
         ##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n\
         #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tGerlach374_Lindsay928\n",
    );
    for line in 0..5_000 {
        text.push_str(&format!(
            "20\t{}\trs{line}\tG\tA\t29\tPASS\tDP={}\tGT\t0|1\n",
            14_370 + line * 7,
            line % 60
        ));
    }
    text
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, bytes).expect("compress");
    encoder.finish().expect("compress")
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(bytes), &mut text)
        .expect("gzip");
    text
}

/// The Synthea patient's identifying values, none of which may leave in a release.
const IDENTIFIERS: &[&str] = &[
    "Gerlach374",
    "Lindsay928",
    "1950-10-24",
    "690 Raynor Overpass",
    "Randolph",
    "999-34-2070",
    "S99966502",
    "X89909962X",
    "555-450-5873",
];

#[test]
fn a_cohort_is_matched_by_consent_released_de_identified_and_logged() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut nodes = devnet(dir, 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    let hospital = dir.join("keys/org0.key");
    let university = dir.join("keys/org1.key");
    let doctor = nodes[0].new_key(dir, "doctor", Some((&hospital, "practitioner")));
    let researcher = nodes[1].new_key(dir, "researcher", Some((&university, "researcher")));
    let patients: Vec<PathBuf> = (1..=3)
        .map(|n| nodes[0].new_key(dir, &format!("patient{n}"), Some((&hospital, "patient"))))
        .collect();
    // Three copies of the Synthea patient at the hospital, each bound to its patient's key.
    for (n, patient) in patients.iter().enumerate() {
        let (bundle, patient_id) = copy_of_synthea(dir, n as u8 + 1);
        ok(run(
            &nodes[0],
            "fhir",
            &doctor,
            &["import", bundle.to_str().expect("utf-8")],
        ));
        let bound = ok(run(
            &nodes[0],
            "fhir",
            &hospital,
            &[
                "bind",
                "--patient",
                &patient_id,
                "--patient-key",
                &public_key_of(patient),
            ],
        ));
        synced(&nodes, &bound);
    }
    // Genomic files: a bgzipped VCF for patient 1 and a plain one for patient 3, streamed in.
    let variants = vcf();
    let vcf_gz = dir.join("patient1.vcf.gz");
    std::fs::write(&vcf_gz, gzip(variants.as_bytes())).expect("write");
    let vcf_plain = dir.join("patient3.vcf");
    std::fs::write(&vcf_plain, &variants).expect("write");
    let patient_ids: Vec<String> = (1..=3u8)
        .map(|n| format!("{n:02x}{}", &PATIENT_ID[2..]))
        .collect();
    let upload = |file: &Path, patient: &str, extra: &[&str]| {
        let mut args = vec![
            "upload",
            file.to_str().expect("utf-8"),
            "--patient",
            patient,
        ];
        args.extend_from_slice(extra);
        run(&nodes[0], "fhir", &doctor, &args)
    };
    let sequence1 = ok(upload(&vcf_gz, &patient_ids[0], &[]));
    assert_eq!(
        sequence1["resourceType"], "MolecularSequence",
        "{sequence1}"
    );
    assert_eq!(
        sequence1["repository"][0]["url"],
        format!("Binary/{}", sequence1["id"].as_str().expect("id"))
    );
    let sequence3 = ok(upload(&vcf_plain, &patient_ids[2], &[]));
    // Refused, and nothing kept: not a genomic media type, not a VCF, an unknown patient, and an
    // author who does not write for the hospital.
    refused(
        upload(
            &vcf_plain,
            &patient_ids[2],
            &["--content-type", "application/pdf"],
        ),
        "415",
    );
    let not_vcf = dir.join("note.vcf");
    std::fs::write(&not_vcf, "Gerlach374 is allergic to penicillin\n").expect("write");
    refused(
        upload(&not_vcf, &patient_ids[2], &[]),
        "a VCF starts with ##fileformat=VCFv4",
    );
    refused(
        upload(&vcf_plain, "nobody", &[]),
        "no patient Patient/nobody",
    );
    refused(
        run(
            &nodes[0],
            "fhir",
            &researcher,
            &[
                "upload",
                vcf_plain.to_str().expect("utf-8"),
                "--patient",
                &patient_ids[2],
            ],
        ),
        "403",
    );
    let files_dir = nodes[0].home.join("data/vault/files");
    let kept: Vec<_> = std::fs::read_dir(&files_dir)
        .expect("files")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(kept.len(), 2, "only the two stored files: {kept:?}");
    // Patient 3 lets the doctor read their genomic data for treatment; the doctor reads the
    // file back byte for byte, and the read is in the patient's access log.
    let granted = ok(run(
        &nodes[0],
        "consent",
        &patients[2],
        &[
            "grant",
            "--to",
            &format!("key:{}", public_key_of(&doctor)),
            "--purpose",
            "TREAT",
            "--type",
            "MolecularSequence",
        ],
    ));
    synced(&nodes, &granted);
    let downloaded = dir.join("downloaded.vcf");
    let read = ok(run(
        &nodes[0],
        "fhir",
        &doctor,
        &[
            "download",
            sequence3["id"].as_str().expect("id"),
            "--purpose",
            "TREAT",
            "--output",
            downloaded.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(read["content_type"], "text/vcf", "{read}");
    assert_eq!(
        std::fs::read_to_string(&downloaded).expect("read"),
        variants
    );
    let view = ok(run(&nodes[0], "fhir", &patients[2], &["me"]));
    assert!(
        view.to_string()
            .contains(read["access_event"].as_str().expect("event")),
        "the read is in patient 3's view: {view}"
    );
    // The researcher has no consent to read it: denied, recorded, and no file written.
    let denied = dir.join("denied.vcf");
    refused(
        run(
            &nodes[0],
            "fhir",
            &researcher,
            &[
                "download",
                sequence3["id"].as_str().expect("id"),
                "--purpose",
                "TREAT",
                "--output",
                denied.to_str().expect("utf-8"),
            ],
        ),
        "403",
    );
    assert!(!denied.exists());

    // Patient 1 consents to health/medical research with an ethics approval, for Observations,
    // Conditions and genomic data; patient 2 to asthma research only; patient 3 never consents.
    let consent1 = ok(run(
        &nodes[2],
        "research",
        &patients[0],
        &[
            "consent",
            "--duo",
            "DUO:0000006",
            "--duo",
            "DUO:0000021",
            "--type",
            "Observation",
            "--type",
            "Condition",
            "--type",
            "MolecularSequence",
        ],
    ));
    let consent2 = ok(run(
        &nodes[3],
        "research",
        &patients[1],
        &[
            "consent",
            "--duo",
            "DUO:0000007",
            "--disease",
            "MONDO:0004979",
        ],
    ));
    refused(
        run(
            &nodes[3],
            "research",
            &patients[2],
            &["consent", "--type", "Observation"],
        ),
        "no_duo_terms",
    );
    synced(&nodes, &consent1);
    synced(&nodes, &consent2);

    // The researcher's request: terms are required; then health/medical research with approval.
    refused(
        run(
            &nodes[1],
            "research",
            &researcher,
            &["request", "--title", "HbA1c", "--type", "Observation"],
        ),
        "no_duo_terms",
    );
    refused(
        run(
            &nodes[1],
            "research",
            &doctor,
            &[
                "request",
                "--title",
                "HbA1c",
                "--duo",
                "DUO:0000006",
                "--type",
                "Observation",
            ],
        ),
        "not_researcher",
    );
    let filed = ok(run(
        &nodes[1],
        "research",
        &researcher,
        &[
            "request",
            "--title",
            "HbA1c trajectories",
            "--duo",
            "DUO:0000006",
            "--duo",
            "DUO:0000021",
            "--type",
            "Observation",
            "--type",
            "Condition",
            "--type",
            "MolecularSequence",
        ],
    ));
    let request = filed["id"].as_str().expect("request id").to_string();
    synced(&nodes, &filed);

    // Matching at the hospital, by its root key only: one of its three patients matches.
    refused(
        run(
            &nodes[0],
            "research",
            &doctor,
            &["match", "--request", &request],
        ),
        "403",
    );
    let report = ok(run(
        &nodes[0],
        "research",
        &hospital,
        &["match", "--request", &request],
    ));
    assert_eq!(report["checked"], 3, "{report}");
    assert_eq!(report["matched"], 1, "{report}");
    synced(&nodes, &report);
    let shown = ok(run(
        &nodes[2],
        "research",
        &researcher,
        &["show", "--request", &request],
    ));
    assert_eq!(shown["cohorts"]["org0"], 1, "{shown}");

    // The hospital's data access committee writes its own condition on releases: a contract
    // (contracts/examples/release_condition.c) deployed by three of the four organisations and
    // named by the hospital's root key. Until the committee approves the university, and for
    // genomic data, the export is refused and nothing is released.
    let condition = common::build_contract(dir, "release_condition", &[]);
    let deployed = ok(run(
        &nodes[0],
        "contract",
        &hospital,
        &[
            "propose-deploy",
            condition.to_str().expect("utf-8"),
            "--label",
            "data-access-committee",
            "--msg",
            r#"{"owner": "org0", "patients_max": 100}"#,
        ],
    ));
    let proposal = deployed["proposal"].as_str().expect("proposal").to_string();
    let committee = deployed["contract"].as_str().expect("address").to_string();
    ok(run(
        &nodes[1],
        "governance",
        &university,
        &["approve", "--proposal", &proposal],
    ));
    let approved = ok(run(
        &nodes[2],
        "governance",
        &dir.join("keys/org2.key"),
        &["approve", "--proposal", &proposal],
    ));
    synced(&nodes, &approved);
    refused(
        run(
            &nodes[0],
            "research",
            &doctor,
            &["set-condition", "--contract", &committee],
        ),
        "not_custodian",
    );
    let named = ok(run(
        &nodes[0],
        "research",
        &hospital,
        &["set-condition", "--contract", &committee],
    ));
    synced(&nodes, &named);
    let export_to = |name: &str| {
        run(
            &nodes[0],
            "research",
            &researcher,
            &[
                "export",
                "--request",
                &request,
                "--out",
                dir.join(name).to_str().expect("utf-8"),
            ],
        )
    };
    refused(export_to("refused-1"), "not approved by the committee");
    let decide = |msg: &str| {
        ok(run(
            &nodes[0],
            "contract",
            &hospital,
            &["call", "--contract", &committee, "--msg", msg],
        ))
    };
    decide(r#"{"approve": {"org": "org1", "genomics": false}}"#);
    refused(export_to("refused-2"), "genomic data only");
    assert!(!dir.join("refused-2").join("Observation.ndjson").exists());
    let decided = decide(r#"{"approve": {"org": "org1", "genomics": true}}"#);
    synced(&nodes, &decided);

    // Only the researcher exports; the export opens with their key.
    refused(
        run(
            &nodes[0],
            "research",
            &patients[0],
            &["export", "--request", &request, "--out", "/nonexistent"],
        ),
        "researcher",
    );
    let out = dir.join("release");
    let exported = ok(run(
        &nodes[0],
        "research",
        &researcher,
        &[
            "export",
            "--request",
            &request,
            "--out",
            out.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(
        exported["manifest"]["extension"]["https://medledger.dev/research/patients"], 1,
        "{exported}"
    );
    let observations =
        std::fs::read_to_string(out.join("Observation.ndjson")).expect("Observations released");
    let conditions =
        std::fs::read_to_string(out.join("Condition.ndjson")).expect("Conditions released");
    assert_eq!(
        observations.lines().count(),
        58,
        "one patient's Observations"
    );
    assert_eq!(conditions.lines().count(), 21, "one patient's Conditions");
    assert!(
        !out.join("Claim.ndjson").exists(),
        "only the types asked for and consented"
    );
    for line in observations.lines().chain(conditions.lines()) {
        let resource: Value = serde_json::from_str(line).expect("NDJSON");
        assert!(resource["resourceType"].is_string());
    }
    // Patient 1's genomic file is released de-identified: its sample renamed to the patient's
    // pseudonym (the Observations' subject), its file date to the year, its source and
    // reference path gone, every variant kept; its record points at the released file.
    let sequences = std::fs::read_to_string(out.join("MolecularSequence.ndjson"))
        .expect("MolecularSequences released");
    assert_eq!(sequences.lines().count(), 1, "only patient 1's sequence");
    let sequence: Value = serde_json::from_str(sequences.trim()).expect("NDJSON");
    let released_file = out.join("Binary.0.0.vcf.gz");
    let released_bytes = std::fs::read(&released_file).expect("the genomic file");
    let released_vcf = gunzip(&released_bytes);
    let repository = sequence["repository"][0]["url"].as_str().expect("url");
    assert!(repository.ends_with("/Binary.0.0"), "{sequence}");
    let extension = &sequence["extension"][0]["extension"];
    assert_eq!(
        extension[1]["valueDecimal"],
        released_bytes.len(),
        "{sequence}"
    );
    assert_eq!(
        extension[2]["valueString"],
        medledger_crypto::sha256(&released_bytes).to_hex(),
        "{sequence}"
    );
    let subject = sequence["patient"]["reference"].as_str().expect("patient");
    let pseudonym = subject.strip_prefix("Patient/").expect("a Patient");
    let header = released_vcf
        .lines()
        .find(|line| line.starts_with("#CHROM"))
        .expect("header");
    assert!(
        header.ends_with(&format!("\tFORMAT\t{pseudonym}")),
        "{header}"
    );
    assert!(
        released_vcf.contains("##fileDate=2024\n"),
        "{released_vcf:.400}"
    );
    assert_eq!(
        released_vcf
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>(),
        variants
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>(),
        "every variant kept"
    );
    assert!(!released_vcf.contains("LabPipeline") && !released_vcf.contains("/labs/"));
    let released = format!("{observations}{conditions}{sequences}{released_vcf}");
    // What is released stays valid FHIR after de-identification, by an independent model
    // (fhir.resources), as does the MolecularSequence stored for a file.
    let resources: Vec<Value> = observations
        .lines()
        .chain(conditions.lines())
        .chain(sequences.lines())
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .chain([sequence1.clone()])
        .collect();
    let checked = common::validate_with_fhir_resources(dir, &resources);
    assert_eq!(checked["Observation"], 58, "{checked}");
    assert_eq!(checked["MolecularSequence"], 2, "{checked}");
    for identifier in IDENTIFIERS {
        assert!(
            !released.contains(identifier),
            "{identifier} left in a release"
        );
    }
    assert!(
        !released.contains(&PATIENT_ID[2..]),
        "an original id left in a release"
    );
    // The subject of every Observation is one pseudonymous patient.
    let subjects: std::collections::BTreeSet<String> = observations
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|resource| {
            resource["subject"]["reference"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects.contains(subject),
        "the VCF's sample is the Observations' subject"
    );

    // The release is in patient 1's log, seen through another validator; not in the others'.
    let release_height =
        exported["manifest"]["extension"]["https://medledger.dev/research/release-height"].clone();
    synced(&nodes, &serde_json::json!({ "height": release_height }));
    let log = ok(run(&nodes[3], "research", &patients[0], &["log"]));
    assert_eq!(log["releases"].as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log["releases"][0]["request"], request.as_str());
    assert_eq!(log["releases"][0]["custodian"], "org0");
    // The same release is in the patient's own access view, beside the reads of their records.
    let me = ok(run(&nodes[0], "fhir", &patients[0], &["me"]));
    assert_eq!(me["research"]["releases_total"], 1, "{me}");
    assert_eq!(me["research"]["releases"][0]["request"], request.as_str());
    // And in the patient's FHIR access log, as an AuditEvent of an export for research.
    let audit = ok(run(
        &nodes[0],
        "fhir",
        &patients[0],
        &["log", "--patient", &patient_ids[0]],
    ));
    let exports: Vec<&Value> = audit["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["type"]["code"] == "110106")
        .collect();
    assert_eq!(exports.len(), 1, "{audit}");
    assert_eq!(
        exports[0]["purposeOfEvent"][0]["coding"][0]["code"],
        "HRESCH"
    );
    assert_eq!(
        exports[0]["entity"][1]["what"]["identifier"]["value"],
        request.as_str()
    );
    assert_eq!(audit["total"], 1, "{audit}");
    assert!(
        medledger_fhir::validate(exports[0]).is_empty(),
        "{:?}",
        medledger_fhir::validate(exports[0])
    );
    let checked = common::validate_with_fhir_resources(dir, &[exports[0].clone()]);
    assert_eq!(checked["AuditEvent"], 1, "{checked}");
    let log2 = ok(run(&nodes[3], "research", &patients[1], &["log"]));
    assert_eq!(log2["releases"], serde_json::json!([]));

    // Patient 1 revokes: the next export releases nothing, and the earlier release stays logged.
    let revoked = ok(run(&nodes[2], "research", &patients[0], &["revoke"]));
    synced(&nodes, &revoked);
    let again = ok(run(
        &nodes[0],
        "research",
        &researcher,
        &[
            "export",
            "--request",
            &request,
            "--out",
            dir.join("again").to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(
        again["manifest"]["extension"]["https://medledger.dev/research/patients"], 0,
        "{again}"
    );
    assert_eq!(again["files"], serde_json::json!([]));
    let log = ok(run(&nodes[0], "research", &patients[0], &["log"]));
    assert_eq!(log["releases"].as_array().map(Vec::len), Some(1));
    assert!(log["consent"]["revoked_at"].is_u64());

    // An unenrolled researcher gets nothing.
    let revoke = nodes[1].cli(&[
        "tx",
        "--key",
        university.to_str().expect("utf-8"),
        "revoke",
        "--member",
        &public_key_of(&researcher),
    ]);
    assert!(revoke.status.success(), "{}", stdout(&revoke));
    std::thread::sleep(Duration::from_millis(500));
    refused(
        run(
            &nodes[0],
            "research",
            &researcher,
            &[
                "export",
                "--request",
                &request,
                "--out",
                dir.join("x").to_str().expect("utf-8"),
            ],
        ),
        "not",
    );

    // No PHI in any node's chain store or log.
    for node in nodes.iter_mut() {
        node.stop();
    }
    for node in &nodes {
        for file in [
            node.home.join("data/ledger.redb"),
            node.home.join("node.log"),
        ] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for identifier in IDENTIFIERS {
                assert!(
                    !bytes
                        .windows(identifier.len())
                        .any(|window| window == identifier.as_bytes()),
                    "{identifier} found in {}",
                    file.display()
                );
            }
        }
    }
}
