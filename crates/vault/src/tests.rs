//! Tests of staging, settling, recovery and crypto-shredding, on real files.

use std::path::PathBuf;

use medledger_crypto::envelope::PatientSecret;
use rand_core::OsRng;
use redb::TableHandle;

use super::*;

const PATIENT: &[u8] = br#"{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]}"#;
const OBSERVATION: &[u8] = br#"{"resourceType":"Observation","id":"o1","status":"final"}"#;

fn batch<'a>() -> Vec<Incoming<'a>> {
    vec![
        Incoming {
            resource_type: "Patient",
            fhir_id: Some("p1"),
            patient: PatientRef::Own,
            content: PATIENT,
            file: None,
            expected_version: None,
        },
        Incoming {
            resource_type: "Observation",
            fhir_id: Some("o1"),
            patient: PatientRef::Fhir("p1"),
            content: OBSERVATION,
            file: None,
            expected_version: None,
        },
    ]
}

/// Every file under `dir`, recursively, with its bytes.
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(every_file(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            found.push((path, bytes));
        }
    }
    found
}

/// The bytes of every file under `dir`, one after another.
fn files(dir: &Path) -> Vec<u8> {
    every_file(dir)
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect()
}

/// The ids among `ids` that some file under `dir` holds in UTF-8, with the file. Each file is
/// searched as lossy UTF-8 text: an ASCII id survives that conversion wherever it occurs, and
/// the standard library's substring search keeps a scan of every file for every id fast.
fn ids_on_disk(dir: &Path, ids: &[String]) -> Vec<(String, PathBuf)> {
    assert!(ids.iter().all(|id| id.is_ascii() && !id.is_empty()));
    let mut found = Vec::new();
    for (path, bytes) in every_file(dir) {
        let text = String::from_utf8_lossy(&bytes);
        for id in ids {
            if text.contains(id.as_str()) {
                found.push((id.clone(), path.clone()));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A settled batch reads back byte for byte, is found by patient and type, and its content is
/// nowhere in the vault's files in plain text.
#[test]
fn staged_then_kept_records_read_back_exactly_and_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let staged = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    assert_eq!(staged.versions.len(), 2);
    assert_eq!(staged.versions[0].patient, staged.versions[1].patient);
    vault.settle(&staged.id, true).expect("settle");
    let (record, meta) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("indexed");
    assert_eq!(meta.version, 1);
    assert_eq!(
        vault.decrypt(&record, 1).expect("opens").content,
        OBSERVATION
    );
    let patient = staged.versions[0].patient;
    let (all, total) = vault.search(&patient, None, 0, 10).expect("search");
    assert_eq!(total, 2);
    assert_eq!(all.len(), 2);
    let (observations, _) = vault
        .search(&patient, Some("Observation"), 0, 10)
        .expect("search");
    assert_eq!(
        observations,
        vec![Hit {
            record,
            resource_type: "Observation".into(),
            fhir_id: "o1".into()
        }]
    );
    drop(vault);
    let bytes = files(dir.path());
    assert!(!contains(&bytes, b"Doe"));
    assert!(!contains(&bytes, b"final"));
}

/// A refused batch leaves no trace: no record, no index entry, no patient and no secret.
#[test]
fn a_refused_batch_is_rolled_back_entirely() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let staged = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    let patient = staged.versions[0].patient;
    vault.settle(&staged.id, false).expect("settle");
    assert!(
        vault
            .record_by_fhir("Observation", "o1")
            .expect("read")
            .is_none()
    );
    assert!(vault.patient_by_fhir("p1").expect("read").is_none());
    assert_eq!(vault.search(&patient, None, 0, 10).expect("search").1, 0);
    let slots = std::fs::read(dir.path().join("vault.slots")).expect("slots");
    assert!(slots.iter().all(|byte| *byte == 0));
    // The ids are free again.
    let again = vault
        .stage(&batch(), OsRng, &|_| Ok(0))
        .expect("stage again");
    assert_eq!(again.versions[1].version, 1);
}

/// A second write of a logical id is the next version; while a batch is in flight nobody else
/// may write its records; a refused new version restores the old one.
#[test]
fn versions_follow_each_other_and_in_flight_records_are_locked() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    let busy = vault
        .stage(&batch()[1..], OsRng, &|_| Ok(0))
        .expect_err("in flight");
    assert!(matches!(busy, VaultError::Busy(_)), "{busy:?}");
    vault.settle(&first.id, true).expect("settle");
    let update = br#"{"resourceType":"Observation","id":"o1","status":"amended"}"#;
    let second = vault
        .stage(
            &[Incoming {
                content: update,
                file: None,
                expected_version: None,
                ..batch()[1].clone()
            }],
            OsRng,
            &|_| Ok(0),
        )
        .expect("second version");
    assert_eq!(second.versions[0].version, 2);
    assert_eq!(second.versions[0].record, first.versions[1].record);
    vault.settle(&second.id, false).expect("refused");
    let (record, meta) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("still there");
    assert_eq!(meta.version, 1);
    assert_eq!(vault.decrypt(&record, 1).expect("v1").content, OBSERVATION);
    assert!(matches!(
        vault.decrypt(&record, 2),
        Err(VaultError::NotFound)
    ));
}

/// A writer's expected version (`If-Match`) is checked where versions are handed out: the wrong
/// one stages nothing, and of two writers expecting the same version only the first succeeds.
#[test]
fn expected_versions_are_checked_when_staging() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&first.id, true).expect("settle");
    let update = |expected| Incoming {
        content: br#"{"resourceType":"Observation","id":"o1","status":"amended"}"#,
        file: None,
        expected_version: Some(expected),
        ..batch()[1].clone()
    };
    for wrong in [0, 2] {
        let refused = vault
            .stage(&[update(wrong)], OsRng, &|_| Ok(0))
            .expect_err("a wrong expected version");
        assert!(
            matches!(refused, VaultError::VersionMismatch { expected, current: 1, .. } if expected == wrong),
            "{refused:?}"
        );
    }
    let second = vault.stage(&[update(1)], OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&second.id, true).expect("settle");
    let late = vault
        .stage(&[update(1)], OsRng, &|_| Ok(0))
        .expect_err("the second writer expecting version 1");
    assert!(
        matches!(late, VaultError::VersionMismatch { current: 2, .. }),
        "{late:?}"
    );
    // The chain's version counts too: a version on chain but not here is the current one.
    let third = vault.stage(&[update(4)], OsRng, &|_| Ok(4)).expect("stage");
    assert_eq!(third.versions[0].version, 5);
    vault.settle(&third.id, false).expect("refused");
    let (record, _) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("there");
    assert!(matches!(
        vault.decrypt(&record, 5),
        Err(VaultError::NotFound)
    ));
}

/// Bad batches are refused whole: an unknown patient, a duplicate, a Patient without an id.
#[test]
fn bad_batches_store_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let orphan = Incoming {
        resource_type: "Observation",
        fhir_id: Some("o2"),
        patient: PatientRef::Fhir("nobody"),
        content: OBSERVATION,
        file: None,
        expected_version: None,
    };
    let mut duplicate = batch();
    duplicate.push(batch()[1].clone());
    let anonymous = Incoming {
        fhir_id: None,
        ..batch()[0].clone()
    };
    for items in [vec![orphan], duplicate, vec![anonymous]] {
        let error = vault.stage(&items, OsRng, &|_| Ok(0)).expect_err("refused");
        assert!(matches!(error, VaultError::Invalid(_)), "{error:?}");
    }
    assert!(vault.patient_by_fhir("p1").expect("read").is_none());
    let slots = std::fs::read(dir.path().join("vault.slots")).expect("slots");
    assert!(slots.iter().all(|byte| *byte == 0));
}

/// After a crash between staging and settling, recovery keeps what the chain holds and removes
/// the rest.
#[test]
fn recovery_settles_from_the_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let (kept, dropped) = {
        let vault = Vault::open(dir.path()).expect("open");
        let kept = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
        let other = Incoming {
            resource_type: "Patient",
            fhir_id: Some("p2"),
            patient: PatientRef::Own,
            content: PATIENT,
            file: None,
            expected_version: None,
        };
        let dropped = vault.stage(&[other], OsRng, &|_| Ok(0)).expect("stage");
        (kept, dropped)
    };
    let vault = Vault::open(dir.path()).expect("reopen");
    let on_chain: Vec<(Hash, u32, Hash)> = kept
        .versions
        .iter()
        .map(|v| (v.record, v.version, v.commitment))
        .collect();
    let waiting = vault
        .recover(|versions, _| {
            Ok(if versions.iter().all(|v| on_chain.contains(v)) {
                Recovery::Keep
            } else {
                Recovery::RollBack
            })
        })
        .expect("recover");
    assert!(waiting.is_empty());
    assert!(vault.patient_by_fhir("p1").expect("read").is_some());
    assert!(vault.patient_by_fhir("p2").expect("read").is_none());
    assert!(
        vault
            .record(&dropped.versions[0].record)
            .expect("read")
            .is_none()
    );
    assert!(
        vault
            .recover(|_, _| panic!("nothing is left to decide"))
            .expect("nothing left")
            .is_empty()
    );
}

/// Shredding a patient makes every record unreadable, makes the commitment impossible to
/// recompute, and leaves the secret's bytes nowhere in the vault's files; other patients are
/// untouched.
#[test]
fn shredding_destroys_the_secret_and_the_data() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let staged = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&staged.id, true).expect("settle");
    let other = vault
        .stage(
            &[Incoming {
                resource_type: "Patient",
                fhir_id: Some("p2"),
                patient: PatientRef::Own,
                content: PATIENT,
                file: None,
                expected_version: None,
            }],
            OsRng,
            &|_| Ok(0),
        )
        .expect("stage");
    vault.settle(&other.id, true).expect("settle");
    let observation = &staged.versions[1];
    let patient = observation.patient;
    let secret = vault.secret(&patient).expect("secret");
    assert_eq!(
        vault
            .commitment(&patient, &observation.record, 1, OBSERVATION)
            .expect("computable"),
        observation.commitment
    );
    assert!(contains(&files(dir.path()), &secret.0));

    assert_eq!(vault.shred(&patient).expect("shred"), 2);
    assert!(matches!(
        vault.decrypt(&observation.record, 1),
        Err(VaultError::NotFound)
    ));
    assert!(matches!(
        vault.commitment(&patient, &observation.record, 1, OBSERVATION),
        Err(VaultError::Erased(_))
    ));
    assert!(
        vault
            .record_by_fhir("Observation", "o1")
            .expect("read")
            .is_none()
    );
    assert_eq!(vault.shred(&patient).expect("idempotent"), 0);
    let reopened = other.versions[0].record;
    assert_eq!(
        vault.decrypt(&reopened, 1).expect("other patient").content,
        PATIENT
    );
    drop(vault);
    assert!(!contains(&files(dir.path()), &secret.0));
    // The freed slot is reused by the next patient, and the file did not grow.
    let vault = Vault::open(dir.path()).expect("reopen");
    let len = std::fs::metadata(dir.path().join("vault.slots"))
        .expect("len")
        .len();
    let again = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&again.id, true).expect("settle");
    assert_eq!(
        std::fs::metadata(dir.path().join("vault.slots"))
            .expect("len")
            .len(),
        len
    );
}

/// A batch that names a patient another, unsettled batch is creating must wait: if that batch
/// were refused, the patient's secret would go with it.
#[test]
fn a_patient_being_created_is_in_flight_too() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault
        .stage(&batch()[..1], OsRng, &|_| Ok(0))
        .expect("stage");
    let error = vault
        .stage(&batch()[1..], OsRng, &|_| Ok(0))
        .expect_err("the patient is in flight");
    assert!(matches!(error, VaultError::Busy(_)), "{error:?}");
    vault.settle(&first.id, true).expect("settle");
    vault
        .stage(&batch()[1..], OsRng, &|_| Ok(0))
        .expect("settled, the patient may be used");
}

/// A new version follows the chain's version when the chain is ahead of the vault, so a version
/// number the chain holds is never handed out again.
#[test]
fn versions_follow_the_chain_when_it_is_ahead() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&first.id, true).expect("settle");
    let again = vault
        .stage(&batch()[1..], OsRng, &|_| Ok(4))
        .expect("stage");
    assert_eq!(again.versions[0].version, 5);
}

/// A secret no patient refers to (a crash between writing it and committing its patient) is
/// destroyed when the vault opens; a slot reused by another patient is never wiped by a stale
/// destroy.
#[test]
fn orphaned_secrets_are_destroyed_and_reused_slots_are_safe() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = PatientSecret([7; 32]);
    {
        let mut slots = KeySlots::open(&dir.path().join("vault.slots")).expect("slots");
        slots.allocate(&Hash([1; 32]), &secret).expect("allocate");
    }
    let vault = Vault::open(dir.path()).expect("open");
    let slots = std::fs::read(dir.path().join("vault.slots")).expect("slots");
    assert!(slots.iter().all(|byte| *byte == 0), "the orphan is gone");
    let staged = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&staged.id, true).expect("settle");
    // Slot 0 is now the new patient's; destroying it for the old owner changes nothing.
    lock(&vault.slots)
        .destroy(0, &Hash([1; 32]))
        .expect("no-op");
    let (record, _) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("indexed");
    assert_eq!(
        vault.decrypt(&record, 1).expect("still readable").content,
        OBSERVATION
    );
}

/// A batch whose transaction was bound before a crash is handed back with that transaction; if
/// it must wait for the chain, its records stay locked until it is settled.
#[test]
fn a_waiting_batch_keeps_its_transaction_and_its_lock() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let vault = Vault::open(dir.path()).expect("open");
        let staged = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
        vault.bind_tx(&staged.id, b"signed tx bytes").expect("bind");
    }
    let vault = Vault::open(dir.path()).expect("reopen");
    let waiting = vault
        .recover(|_, tx| {
            assert_eq!(tx, Some(&b"signed tx bytes"[..]));
            Ok(Recovery::Wait)
        })
        .expect("recover");
    assert_eq!(waiting.len(), 1);
    let busy = vault
        .stage(&batch()[1..], OsRng, &|_| Ok(0))
        .expect_err("still in flight");
    assert!(matches!(busy, VaultError::Busy(_)), "{busy:?}");
    vault.settle(&waiting[0], true).expect("settle");
    let (record, _) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("kept");
    assert_eq!(
        vault.decrypt(&record, 1).expect("readable").content,
        OBSERVATION
    );
}

/// One resource of a patient's chart.
struct Resource {
    resource_type: &'static str,
    fhir_id: String,
    content: Vec<u8>,
}

fn resource(resource_type: &'static str, fhir_id: String, note: &str) -> Resource {
    let content = format!(
        r#"{{"resourceType":"{resource_type}","id":"{fhir_id}","note":"{note}","text":"{}"}}"#,
        "x".repeat(600)
    );
    Resource {
        resource_type,
        fhir_id,
        content: content.into_bytes(),
    }
}

/// A patient's `Patient` resource, then `count` resources of each of three types, with ids built
/// on `stem`.
fn chart(stem: &str, count: usize) -> Vec<Resource> {
    let mut chart = vec![resource("Patient", format!("patient-{stem}"), "v1")];
    for index in 0..count {
        for resource_type in ["Observation", "Condition", "Encounter"] {
            let fhir_id = format!("{}-{stem}-{index:02}", resource_type.to_lowercase());
            chart.push(resource(resource_type, fhir_id, "v1"));
        }
    }
    chart
}

fn incoming<'a>(patient: &'a str, resources: &'a [Resource]) -> Vec<Incoming<'a>> {
    resources
        .iter()
        .map(|resource| Incoming {
            resource_type: resource.resource_type,
            fhir_id: Some(&resource.fhir_id),
            patient: if resource.resource_type == "Patient" {
                PatientRef::Own
            } else {
                PatientRef::Fhir(patient)
            },
            content: &resource.content,
            file: None,
            expected_version: None,
        })
        .collect()
}

fn kept(vault: &Vault, items: &[Incoming<'_>]) -> Staged {
    let staged = vault.stage(items, OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&staged.id, true).expect("settle");
    staged
}

/// What a patient's history wrote, as the tests check it.
struct History {
    patient: Hash,
    fhir_id: String,
    /// Every `(type, id)` held, with its latest version and content.
    held: Vec<(&'static str, String, u32, Vec<u8>)>,
    /// Ids written and rolled back.
    refused: Vec<String>,
    /// A batch staged and bound to a transaction but not settled: a second version of a
    /// `Condition`, with its id and content.
    unsettled: (Hash, String, Vec<u8>),
}

impl History {
    /// Every FHIR id the history wrote, held or not.
    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.held.iter().map(|(_, id, ..)| id.clone()).collect();
        ids.extend(self.refused.iter().cloned());
        ids
    }
}

/// Writes a patient's history as an import would: a first batch, a batch of second versions
/// bound to its transaction, a refused batch, a resource without an id, and a batch left pending.
fn write_history(vault: &Vault, stem: &str) -> History {
    let first = chart(stem, 12);
    let patient_fhir = first[0].fhir_id.clone();
    let staged = kept(vault, &incoming(&patient_fhir, &first));
    let patient = staged.versions[0].patient;
    let mut held: Vec<(&'static str, String, u32, Vec<u8>)> = first
        .into_iter()
        .map(|r| (r.resource_type, r.fhir_id, 1, r.content))
        .collect();

    let second: Vec<Resource> = held
        .iter()
        .filter(|(resource_type, ..)| *resource_type == "Observation")
        .map(|(resource_type, id, ..)| resource(resource_type, id.clone(), "v2"))
        .collect();
    let staged = vault
        .stage(&incoming(&patient_fhir, &second), OsRng, &|_| Ok(0))
        .expect("stage");
    vault.bind_tx(&staged.id, b"signed tx").expect("bind");
    vault.settle(&staged.id, true).expect("settle");
    for update in second {
        let entry = held
            .iter_mut()
            .find(|(_, id, ..)| *id == update.fhir_id)
            .expect("held");
        entry.2 = 2;
        entry.3 = update.content;
    }

    let refused = vec![resource(
        "Observation",
        format!("observation-refused-{stem}"),
        "v1",
    )];
    let staged = vault
        .stage(&incoming(&patient_fhir, &refused), OsRng, &|_| Ok(0))
        .expect("stage");
    vault.settle(&staged.id, false).expect("roll back");

    let anonymous = resource("Observation", String::new(), "no id");
    let staged = kept(
        vault,
        &[Incoming {
            fhir_id: None,
            ..incoming(&patient_fhir, std::slice::from_ref(&anonymous))[0].clone()
        }],
    );
    held.push((
        "Observation",
        staged.versions[0].fhir_id.clone(),
        1,
        anonymous.content,
    ));

    let pending = resource("Condition", format!("condition-{stem}-00"), "v2");
    let unsettled = vault
        .stage(
            &incoming(&patient_fhir, std::slice::from_ref(&pending)),
            OsRng,
            &|_| Ok(0),
        )
        .expect("stage");
    vault.bind_tx(&unsettled.id, b"signed tx").expect("bind");
    History {
        patient,
        fhir_id: patient_fhir,
        held,
        refused: refused.into_iter().map(|r| r.fhir_id).collect(),
        unsettled: (unsettled.id, pending.fhir_id, pending.content),
    }
}

/// Every entry a table holds.
fn table_len<K: redb::Key + 'static, V: redb::Value + 'static>(
    vault: &Vault,
    definition: redb::TableDefinition<K, V>,
) -> u64 {
    let txn = vault.db.begin_read().expect("read");
    let table = txn.open_table(definition).expect("table");
    redb::ReadableTableMetadata::len(&table).expect("len")
}

/// Erasing one of two patients leaves none of its FHIR ids (its `Patient` id, every record's id,
/// generated, refused and pending ones too) in any byte of any file under the vault directory,
/// freed pages included, and the other patient answers every lookup as before.
#[test]
fn erasure_leaves_no_fhir_id_of_the_patient_in_any_file() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let erased = write_history(&vault, "erase-me-7f3a9c");
    let mut other = write_history(&vault, "keep-me-2b8d41");
    let (staged, id, content) = other.unsettled.clone();
    vault.settle(&staged, true).expect("settle");
    let entry = other
        .held
        .iter_mut()
        .find(|(_, held, ..)| *held == id)
        .expect("held");
    (entry.2, entry.3) = (2, content);
    // The scan finds what is in clear (a type name is), and no FHIR id ever is.
    assert!(!ids_on_disk(dir.path(), &["Observation".into()]).is_empty());
    let mut every_id = erased.ids();
    every_id.extend(other.ids());
    assert_eq!(ids_on_disk(dir.path(), &every_id), vec![]);

    let versions = erased
        .held
        .iter()
        .map(|(_, _, v, _)| *v as usize)
        .sum::<usize>()
        + 1;
    assert_eq!(vault.shred(&erased.patient).expect("shred"), versions);
    vault
        .settle(&erased.unsettled.0, false)
        .expect("a batch of an erased patient settles");
    drop(vault);
    assert_eq!(ids_on_disk(dir.path(), &every_id), vec![]);

    let vault = Vault::open(dir.path()).expect("reopen");
    assert_eq!(vault.patient_by_fhir(&erased.fhir_id).expect("read"), None);
    assert_eq!(vault.patient(&erased.patient).expect("read"), None);
    assert_eq!(
        vault.search(&erased.patient, None, 0, 100).expect("search"),
        (vec![], 0)
    );
    for (resource_type, id, ..) in &erased.held {
        assert_eq!(vault.record_by_fhir(resource_type, id).expect("read"), None);
    }
    // Only the other patient is left in the index, and one tombstone per erased id.
    let held = other.held.len() as u64;
    assert_eq!(table_len(&vault, layout::PATIENTS), 1);
    assert_eq!(table_len(&vault, layout::PATIENT_INDEX), 1);
    assert_eq!(table_len(&vault, layout::RECORDS), held);
    assert_eq!(table_len(&vault, layout::RECORD_INDEX), held);
    assert_eq!(table_len(&vault, layout::SEARCH), held);
    assert_eq!(
        table_len(&vault, layout::TOMBSTONES),
        1 + erased.held.len() as u64
    );

    assert_eq!(
        vault.patient_by_fhir(&other.fhir_id).expect("read"),
        Some(other.patient)
    );
    assert_eq!(
        vault
            .patient(&other.patient)
            .expect("read")
            .map(|p| p.fhir_id),
        Some(other.fhir_id.clone())
    );
    for (resource_type, id, version, content) in &other.held {
        let (record, meta) = vault
            .record_by_fhir(resource_type, id)
            .expect("read")
            .expect("held");
        let expected = RecordMeta {
            patient: other.patient,
            resource_type: resource_type.to_string(),
            fhir_id: id.clone(),
            version: *version,
        };
        assert_eq!(meta, expected);
        assert_eq!(vault.record(&record).expect("read"), Some(expected));
        assert_eq!(
            &vault.decrypt(&record, *version).expect("opens").content,
            content
        );
    }
    let (hits, total) = vault.search(&other.patient, None, 0, 1000).expect("search");
    assert_eq!(total, other.held.len());
    let mut found: Vec<String> = hits.into_iter().map(|hit| hit.fhir_id).collect();
    let mut expected: Vec<String> = other.held.iter().map(|(_, id, ..)| id.clone()).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
}

/// Which tombstone to ask for.
#[derive(Debug)]
enum Ask<'a> {
    Patient(&'a str),
    Record(&'a str, &'a str),
}

/// Tombstones answer, with the erased patient's id, for that patient's `Patient` id and each of
/// its records' `(type, id)`, and for nothing else: not the other patient's ids, unknown ids, or
/// an id asked as another kind or type. An id imported again after the erasure is live again, and
/// its tombstone still names the erased patient.
#[test]
fn tombstones_answer_for_erased_ids_only() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let (a_chart, b_chart) = (chart("tomb-a-5e1d", 1), chart("tomb-b-9c2f", 1));
    let a = kept(&vault, &incoming(&a_chart[0].fhir_id, &a_chart)).versions[0].patient;
    kept(&vault, &incoming(&b_chart[0].fhir_id, &b_chart));
    vault.shred(&a).expect("shred");

    let check = |ask: Ask<'_>, expected: Option<Hash>| {
        let got = match ask {
            Ask::Patient(id) => vault.erased_patient_by_fhir(id),
            Ask::Record(resource_type, id) => vault.erased_record_by_fhir(resource_type, id),
        }
        .expect("read");
        assert_eq!(got, expected, "{ask:?}");
    };
    check(Ask::Patient("patient-tomb-a-5e1d"), Some(a));
    check(Ask::Record("Patient", "patient-tomb-a-5e1d"), Some(a));
    check(
        Ask::Record("Observation", "observation-tomb-a-5e1d-00"),
        Some(a),
    );
    check(
        Ask::Record("Condition", "condition-tomb-a-5e1d-00"),
        Some(a),
    );
    check(
        Ask::Record("Encounter", "encounter-tomb-a-5e1d-00"),
        Some(a),
    );
    check(Ask::Record("Condition", "observation-tomb-a-5e1d-00"), None);
    check(Ask::Record("Observation", "patient-tomb-a-5e1d"), None);
    check(Ask::Patient("observation-tomb-a-5e1d-00"), None);
    check(Ask::Patient("patient-tomb-b-9c2f"), None);
    check(Ask::Record("Patient", "patient-tomb-b-9c2f"), None);
    check(
        Ask::Record("Observation", "observation-tomb-b-9c2f-00"),
        None,
    );
    check(Ask::Patient("nobody"), None);
    check(Ask::Patient(""), None);
    check(Ask::Record("Observation", "nobody"), None);

    let again = kept(&vault, &incoming(&a_chart[0].fhir_id, &a_chart[..1]));
    let reimported = again.versions[0].patient;
    assert_ne!(reimported, a);
    assert_eq!(
        vault.patient_by_fhir("patient-tomb-a-5e1d").expect("read"),
        Some(reimported)
    );
    check(Ask::Patient("patient-tomb-a-5e1d"), Some(a));
}

/// Tombstones are durable: a vault reopened after an erasure answers them, and its blind key, the
/// one they are found by, is kept in a file readable by its owner only.
#[test]
fn tombstones_survive_reopening() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let patient = {
        let vault = Vault::open(dir.path()).expect("open");
        let patient = kept(&vault, &batch()).versions[0].patient;
        vault.shred(&patient).expect("shred");
        patient
    };
    let vault = Vault::open(dir.path()).expect("reopen");
    assert_eq!(
        vault.erased_patient_by_fhir("p1").expect("read"),
        Some(patient)
    );
    assert_eq!(
        vault
            .erased_record_by_fhir("Observation", "o1")
            .expect("read"),
        Some(patient)
    );
    assert_eq!(
        vault.erased_record_by_fhir("Patient", "p1").expect("read"),
        Some(patient)
    );
    let mode = std::fs::metadata(dir.path().join(blind::BLIND_KEY_FILE))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Lookups of ids the vault never held, or never erased, answer `None` (or an empty search),
/// not an error; shredding a patient held elsewhere deletes nothing and keeps no tombstone.
#[test]
fn unknown_ids_answer_none() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    kept(&vault, &batch());
    let unknown = Hash([9; 32]);
    assert_eq!(vault.patient_by_fhir("unknown").expect("read"), None);
    assert_eq!(vault.patient_by_fhir("o1").expect("read"), None);
    assert_eq!(vault.patient(&unknown).expect("read"), None);
    assert_eq!(vault.record(&unknown).expect("read"), None);
    assert_eq!(
        vault
            .record_by_fhir("Observation", "unknown")
            .expect("read"),
        None
    );
    assert_eq!(vault.record_by_fhir("Condition", "o1").expect("read"), None);
    assert_eq!(
        vault.search(&unknown, None, 0, 10).expect("search"),
        (vec![], 0)
    );
    assert!(matches!(
        vault.decrypt(&unknown, 1),
        Err(VaultError::NotFound)
    ));
    assert_eq!(vault.erased_patient_by_fhir("p1").expect("read"), None);
    assert_eq!(
        vault
            .erased_record_by_fhir("Observation", "o1")
            .expect("read"),
        None
    );
    assert_eq!(vault.shred(&unknown).expect("shred"), 0);
    assert_eq!(table_len(&vault, layout::TOMBSTONES), 0);
}

/// A shred that destroyed the secret and then failed is completed by the next one: the indexes
/// are searched by the patient id, every entry of the patient goes and each becomes a tombstone.
/// Meanwhile the patient reads as erased.
#[test]
fn a_shred_after_the_secret_is_gone_still_clears_the_index() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let (a_chart, b_chart) = (chart("lost-a-31f0", 2), chart("lost-b-c84a", 2));
    let a = kept(&vault, &incoming(&a_chart[0].fhir_id, &a_chart));
    let b = kept(&vault, &incoming(&b_chart[0].fhir_id, &b_chart));
    let patient = a.versions[0].patient;
    let slot = vault
        .stored_patient(&patient)
        .expect("read")
        .expect("held")
        .slot;
    lock(&vault.slots).destroy(slot, &patient).expect("destroy");

    assert_eq!(vault.patient(&patient).expect("read"), None);
    assert_eq!(
        vault.search(&patient, None, 0, 10).expect("search"),
        (vec![], 0)
    );
    assert_eq!(
        vault
            .record_by_fhir("Observation", "observation-lost-a-31f0-00")
            .expect("read"),
        None
    );
    assert!(matches!(
        vault.decrypt(&a.versions[1].record, 1),
        Err(VaultError::Erased(_))
    ));

    assert_eq!(vault.shred(&patient).expect("shred"), a_chart.len());
    assert_eq!(
        vault
            .erased_patient_by_fhir(&a_chart[0].fhir_id)
            .expect("read"),
        Some(patient)
    );
    for resource in &a_chart {
        assert_eq!(
            vault
                .erased_record_by_fhir(resource.resource_type, &resource.fhir_id)
                .expect("read"),
            Some(patient)
        );
    }
    assert_eq!(table_len(&vault, layout::PATIENT_INDEX), 1);
    assert_eq!(
        table_len(&vault, layout::RECORD_INDEX),
        b_chart.len() as u64
    );
    assert_eq!(table_len(&vault, layout::SEARCH), b_chart.len() as u64);
    assert_eq!(table_len(&vault, layout::RECORDS), b_chart.len() as u64);
    for (version, resource) in b.versions.iter().zip(&b_chart) {
        assert_eq!(
            vault.decrypt(&version.record, 1).expect("opens").content,
            resource.content
        );
    }
}

/// A vault refuses a blind key it was not written with (every lookup by FHIR id would silently
/// miss) and a key file of the wrong length; with its own key back, it reads again.
#[test]
fn a_foreign_or_damaged_blind_key_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(blind::BLIND_KEY_FILE);
    kept(&Vault::open(dir.path()).expect("open"), &batch());
    let original = std::fs::read(&path).expect("key");
    for bytes in [vec![7u8; 32], vec![7u8; 31], vec![]] {
        std::fs::write(&path, &bytes).expect("write");
        let error = Vault::open(dir.path()).expect_err("refused");
        assert!(matches!(error, VaultError::Corrupt(_)), "{error:?}");
    }
    std::fs::write(&path, &original).expect("restore");
    let vault = Vault::open(dir.path()).expect("open");
    assert!(vault.patient_by_fhir("p1").expect("read").is_some());
}

mod legacy {
    //! Layout 1, as the vault wrote it before FHIR ids were blinded and sealed. It is copied here
    //! so that the conversion is tested against the old format itself, not its own reading of it.

    use borsh::BorshSerialize;
    use medledger_crypto::Hash;
    use medledger_crypto::envelope::NONCE_BYTES;
    use redb::TableDefinition;

    pub const PATIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("patients");
    pub const PATIENT_BY_FHIR: TableDefinition<&str, &[u8]> =
        TableDefinition::new("patient_by_fhir");
    pub const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
    pub const RECORD_BY_FHIR: TableDefinition<&str, &[u8]> = TableDefinition::new("record_by_fhir");
    pub const BY_PATIENT: TableDefinition<&[u8], &str> = TableDefinition::new("by_patient");
    pub const BLOBS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("blobs");
    pub const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

    #[derive(BorshSerialize)]
    pub struct PatientMeta {
        pub slot: u64,
        pub fhir_id: String,
    }

    #[derive(BorshSerialize)]
    pub struct RecordMeta {
        pub patient: Hash,
        pub resource_type: String,
        pub fhir_id: String,
        pub version: u32,
    }

    #[derive(BorshSerialize)]
    pub struct Blob {
        pub nonce: [u8; NONCE_BYTES],
        pub key_nonce: [u8; NONCE_BYTES],
        pub wrapped_key: Vec<u8>,
        pub ciphertext: Vec<u8>,
    }

    #[derive(BorshSerialize)]
    pub struct Pending {
        pub versions: Vec<(Hash, u32, Hash)>,
        pub new_patients: Vec<Hash>,
        pub tx: Option<Vec<u8>>,
    }

    pub fn search_key(patient: &Hash, resource_type: &str, record: &Hash) -> Vec<u8> {
        let mut key = patient.0.to_vec();
        key.extend_from_slice(resource_type.as_bytes());
        key.push(0);
        key.extend_from_slice(&record.0);
        key
    }
}

/// A patient as layout 1 held it.
struct LegacyPatient {
    patient: Hash,
    secret: PatientSecret,
    /// `(type, id, record id, content of each version)`; the first is the `Patient` resource.
    records: Vec<(&'static str, String, Hash, Vec<Vec<u8>>)>,
    /// False for a patient whose erasure was interrupted after its secret was destroyed.
    secret_kept: bool,
}

impl LegacyPatient {
    fn fhir_id(&self) -> &str {
        &self.records[0].1
    }

    fn ids(&self) -> Vec<String> {
        self.records.iter().map(|(_, id, ..)| id.clone()).collect()
    }
}

fn random_hash() -> Hash {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Hash(bytes)
}

fn legacy_patient(stem: &str, secret_kept: bool) -> LegacyPatient {
    let content = |id: &str, note: &str| format!(r#"{{"id":"{id}","note":"{note}"}}"#).into_bytes();
    let record = |resource_type, id: String, notes: &[&str]| {
        let versions = notes.iter().map(|note| content(&id, note)).collect();
        (resource_type, id, random_hash(), versions)
    };
    LegacyPatient {
        patient: random_hash(),
        secret: PatientSecret::generate(OsRng),
        records: vec![
            record("Patient", format!("patient-{stem}"), &["v1"]),
            record(
                "Observation",
                format!("observation-{stem}-00"),
                &["v1", "v2"],
            ),
            record("Condition", format!("condition-{stem}-00"), &["v1"]),
            record("Observation", format!("observation-{stem}-01"), &["v1"]),
        ],
        secret_kept,
    }
}

/// Writes a vault of layout 1 holding `patients`, one batch left pending (bound to `tx`), and
/// erasures applied through height 7.
fn write_legacy(dir: &Path, patients: &[LegacyPatient], tx: &[u8]) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut slots = KeySlots::open(&dir.join("vault.slots")).expect("slots");
    let db = redb::Database::create(dir.join("vault.redb")).expect("db");
    let txn = db.begin_write().expect("write");
    {
        let mut patients_table = txn.open_table(legacy::PATIENTS).expect("table");
        let mut patient_by_fhir = txn.open_table(legacy::PATIENT_BY_FHIR).expect("table");
        let mut records = txn.open_table(legacy::RECORDS).expect("table");
        let mut record_by_fhir = txn.open_table(legacy::RECORD_BY_FHIR).expect("table");
        let mut by_patient = txn.open_table(legacy::BY_PATIENT).expect("table");
        let mut blobs = txn.open_table(legacy::BLOBS).expect("table");
        for patient in patients {
            let slot = slots
                .allocate(&patient.patient, &patient.secret)
                .expect("allocate");
            if !patient.secret_kept {
                slots.destroy(slot, &patient.patient).expect("destroy");
            }
            let meta = legacy::PatientMeta {
                slot,
                fhir_id: patient.fhir_id().into(),
            };
            patients_table
                .insert(patient.patient.0.as_slice(), encode(&meta).as_slice())
                .expect("insert");
            patient_by_fhir
                .insert(patient.fhir_id(), patient.patient.0.as_slice())
                .expect("insert");
            for (resource_type, id, record, versions) in &patient.records {
                let meta = legacy::RecordMeta {
                    patient: patient.patient,
                    resource_type: resource_type.to_string(),
                    fhir_id: id.clone(),
                    version: versions.len() as u32,
                };
                records
                    .insert(record.0.as_slice(), encode(&meta).as_slice())
                    .expect("insert");
                record_by_fhir
                    .insert(
                        format!("{resource_type}/{id}").as_str(),
                        record.0.as_slice(),
                    )
                    .expect("insert");
                by_patient
                    .insert(
                        legacy::search_key(&patient.patient, resource_type, record).as_slice(),
                        id.as_str(),
                    )
                    .expect("insert");
                for (index, content) in versions.iter().enumerate() {
                    let version = index as u32 + 1;
                    let aad = record_aad(record, version);
                    let data_key = DataKey::generate(OsRng);
                    let (mut nonce, mut key_nonce) = ([0u8; NONCE_BYTES], [0u8; NONCE_BYTES]);
                    OsRng.fill_bytes(&mut nonce);
                    OsRng.fill_bytes(&mut key_nonce);
                    let blob = legacy::Blob {
                        nonce,
                        key_nonce,
                        wrapped_key: patient.secret.wrap(&data_key, key_nonce, &aad),
                        ciphertext: data_key.seal(nonce, &aad, content),
                    };
                    blobs
                        .insert((record.0.as_slice(), version), encode(&blob).as_slice())
                        .expect("insert");
                }
            }
        }
        let pending = legacy::Pending {
            versions: vec![(patients[0].records[1].2, 2, Hash([6; 32]))],
            new_patients: vec![],
            tx: Some(tx.to_vec()),
        };
        txn.open_table(legacy::PENDING)
            .expect("table")
            .insert([5u8; 32].as_slice(), encode(&pending).as_slice())
            .expect("insert");
        txn.open_table(legacy::META)
            .expect("table")
            .insert("erased_through", 7)
            .expect("insert");
    }
    txn.commit().expect("commit");
}

/// Checks that every lookup, search and decryption answers for `patients` as layout 1 did.
fn check_legacy_reads(vault: &Vault, patients: &[LegacyPatient]) {
    for patient in patients {
        assert_eq!(
            vault.patient_by_fhir(patient.fhir_id()).expect("read"),
            Some(patient.patient)
        );
        assert_eq!(
            vault
                .patient(&patient.patient)
                .expect("read")
                .map(|p| p.fhir_id),
            Some(patient.fhir_id().to_string())
        );
        let mut hits = Vec::new();
        for (resource_type, id, record, versions) in &patient.records {
            let meta = RecordMeta {
                patient: patient.patient,
                resource_type: resource_type.to_string(),
                fhir_id: id.clone(),
                version: versions.len() as u32,
            };
            assert_eq!(
                vault.record_by_fhir(resource_type, id).expect("read"),
                Some((*record, meta.clone()))
            );
            assert_eq!(vault.record(record).expect("read"), Some(meta));
            for (index, content) in versions.iter().enumerate() {
                let opened = vault.decrypt(record, index as u32 + 1).expect("opens");
                assert_eq!(&opened.content, content);
            }
            hits.push(Hit {
                record: *record,
                resource_type: resource_type.to_string(),
                fhir_id: id.clone(),
            });
        }
        // Index order: by type, then record id.
        hits.sort_by(|a, b| (&a.resource_type, a.record).cmp(&(&b.resource_type, b.record)));
        assert_eq!(
            vault
                .search(&patient.patient, None, 0, 100)
                .expect("search"),
            (hits.clone(), hits.len())
        );
        let observations: Vec<Hit> = hits
            .into_iter()
            .filter(|hit| hit.resource_type == "Observation")
            .collect();
        assert_eq!(
            vault
                .search(&patient.patient, Some("Observation"), 1, 1)
                .expect("search"),
            (observations[1..2].to_vec(), observations.len())
        );
    }
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn vault_files() -> BTreeSet<String> {
    ["vault.redb", "vault.slots", "vault.blind-key", "files"]
        .map(String::from)
        .into()
}

/// A vault of layout 1 (FHIR ids in clear) is converted once, at open: every lookup, search and
/// decryption answers as before, pending batches and counters carry over, a patient whose erasure
/// was interrupted is finished as erased, the old tables are gone, and no FHIR id is left in any
/// file.
#[test]
fn a_legacy_vault_is_converted_once_and_reads_back() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("vault");
    let held = [
        legacy_patient("legacy-alpha-41c7", true),
        legacy_patient("legacy-beta-93e2", true),
    ];
    let interrupted = legacy_patient("legacy-gamma-0d5b", false);
    let mut all = Vec::from(held);
    all.push(interrupted);
    write_legacy(&path, &all, b"legacy signed tx");
    let interrupted = all.pop().expect("pushed");
    let held = all;
    let mut every_id: Vec<String> = held.iter().flat_map(LegacyPatient::ids).collect();
    every_id.extend(interrupted.ids());
    assert_eq!(
        ids_on_disk(&path, &every_id).len(),
        every_id.len(),
        "layout 1 holds every id in clear"
    );

    let vault = Vault::open(&path).expect("converts");
    check_legacy_reads(&vault, &held);
    assert_eq!(
        vault.patient_by_fhir(interrupted.fhir_id()).expect("read"),
        None
    );
    assert_eq!(
        vault
            .erased_patient_by_fhir(interrupted.fhir_id())
            .expect("read"),
        Some(interrupted.patient)
    );
    for (resource_type, id, record, _) in &interrupted.records {
        assert_eq!(vault.record_by_fhir(resource_type, id).expect("read"), None);
        assert_eq!(
            vault
                .erased_record_by_fhir(resource_type, id)
                .expect("read"),
            Some(interrupted.patient)
        );
        assert!(matches!(
            vault.decrypt(record, 1),
            Err(VaultError::NotFound)
        ));
    }
    assert_eq!(vault.erased_through().expect("read"), 7);
    let waiting = vault
        .recover(|versions, tx| {
            assert_eq!(versions, [(held[0].records[1].2, 2, Hash([6; 32]))]);
            assert_eq!(tx, Some(&b"legacy signed tx"[..]));
            Ok(Recovery::Keep)
        })
        .expect("recover");
    assert!(waiting.is_empty());
    drop(vault);

    assert_eq!(ids_on_disk(&path, &every_id), vec![]);
    assert_eq!(file_names(&path), vault_files());
    let tables: BTreeSet<String> = {
        let db = redb::Database::open(path.join("vault.redb")).expect("db");
        let txn = db.begin_read().expect("read");
        txn.list_tables()
            .expect("tables")
            .map(|table| table.name().to_string())
            .collect()
    };
    let expected: BTreeSet<String> = [
        "patients/v2",
        "patient_index",
        "records/v2",
        "record_index",
        "by_patient/v2",
        "blobs",
        "pending",
        "meta",
        "tombstones",
    ]
    .map(String::from)
    .into();
    assert_eq!(tables, expected);

    // Converted once: the next open reads the same file as it is.
    let inode = std::fs::metadata(path.join("vault.redb"))
        .expect("meta")
        .ino();
    let vault = Vault::open(&path).expect("reopen");
    check_legacy_reads(&vault, &held);
    drop(vault);
    assert_eq!(
        std::fs::metadata(path.join("vault.redb"))
            .expect("meta")
            .ino(),
        inode
    );
}

/// Where a crash interrupted a conversion.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// While writing the converted file.
    Converting,
    /// Between setting the old file aside and putting the converted one in place.
    BetweenRenames,
    /// While destroying the old file.
    Scrubbing,
    /// Files no step of the conversion leaves.
    Unaccountable,
}

/// A conversion a crash interrupted is finished, or redone, at the next open, whatever step it
/// reached, and leaves no FHIR id behind; files no step leaves are refused rather than guessed at.
#[test]
fn an_interrupted_conversion_is_finished_or_redone() {
    for crash in [
        Crash::Converting,
        Crash::BetweenRenames,
        Crash::Scrubbing,
        Crash::Unaccountable,
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("vault");
        let patient = legacy_patient("legacy-delta-6a2e", true);
        write_legacy(&path, std::slice::from_ref(&patient), b"tx");
        let legacy_file = std::fs::read(path.join("vault.redb")).expect("read");
        let (current, next, old) = (
            path.join("vault.redb"),
            path.join("vault.redb.next"),
            path.join("vault.redb.old"),
        );
        match crash {
            Crash::Converting => std::fs::write(&next, b"half a file").expect("write"),
            Crash::BetweenRenames => {
                drop(Vault::open(&path).expect("convert"));
                std::fs::rename(&current, &next).expect("rename");
                std::fs::write(&old, &legacy_file).expect("write");
            }
            Crash::Scrubbing => {
                drop(Vault::open(&path).expect("convert"));
                std::fs::write(&old, &legacy_file).expect("write");
            }
            Crash::Unaccountable => std::fs::rename(&current, &old).expect("rename"),
        }
        let opened = Vault::open(&path);
        if let Crash::Unaccountable = crash {
            assert!(matches!(opened, Err(VaultError::Corrupt(_))), "{opened:?}");
            continue;
        }
        let vault = opened.unwrap_or_else(|error| panic!("{crash:?}: {error}"));
        check_legacy_reads(&vault, std::slice::from_ref(&patient));
        drop(vault);
        assert_eq!(ids_on_disk(&path, &patient.ids()), vec![], "{crash:?}");
        assert_eq!(file_names(&path), vault_files(), "{crash:?}");
    }
}

// Files: genomic files kept beside record versions.

/// A VCF-like payload of `lines` lines, large enough to span many chunks.
fn genome(lines: usize) -> Vec<u8> {
    let mut text =
        b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001\n"
            .to_vec();
    for line in 0..lines {
        text.extend_from_slice(
            format!(
                "20\t{}\trs{line}\tG\tA\t29\tPASS\tNS=3\tGT\t0|1\n",
                14_370 + line
            )
            .as_bytes(),
        );
    }
    text
}

/// Stages `content` as a MolecularSequence of p1 with `draft` as its file.
fn stage_file(vault: &Vault, draft: &FileDraft, fhir_id: &str) -> Result<Staged, VaultError> {
    let content = format!(
        r#"{{"resourceType":"MolecularSequence","id":"{fhir_id}","sha256":"{}"}}"#,
        draft.sha256.to_hex()
    );
    vault.stage(
        &[Incoming {
            resource_type: "MolecularSequence",
            fhir_id: Some(fhir_id),
            patient: PatientRef::Fhir("p1"),
            content: content.as_bytes(),
            file: Some(draft),
            expected_version: None,
        }],
        OsRng,
        &|_| Ok(0),
    )
}

fn read_file(
    vault: &Vault,
    record: &Hash,
    version: u32,
    expected: Option<Hash>,
) -> std::io::Result<Vec<u8>> {
    let mut file = vault
        .open_file(record, version, expected)
        .expect("opens")
        .expect("has a file");
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut content)?;
    assert_eq!(file.bytes, content.len() as u64);
    Ok(content)
}

/// A streamed file is kept beside its record version, reads back exactly with its digest
/// checked, and is encrypted at rest.
#[test]
fn a_file_is_kept_with_its_version_and_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&first.id, true).expect("settle");
    let content = genome(20_000);
    let draft = vault
        .write_file("p1", content.as_slice(), 1 << 30, OsRng)
        .expect("streams in");
    assert_eq!(draft.bytes, content.len() as u64);
    assert_eq!(draft.sha256, medledger_crypto::sha256(&content));
    let staged = stage_file(&vault, &draft, "seq1").expect("stage");
    drop(draft);
    vault.settle(&staged.id, true).expect("settle");
    let record = staged.versions[0].record;
    let digest = medledger_crypto::sha256(&content);
    assert_eq!(
        read_file(&vault, &record, 1, Some(digest)).expect("reads"),
        content
    );
    assert!(
        !contains(&files(dir.path()), b"rs19999\tG\tA"),
        "plaintext on disk"
    );
    // Another digest than the content's fails at the end of the read.
    let error = read_file(&vault, &record, 1, Some(Hash([1; 32]))).expect_err("wrong digest");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    // A version without a file answers None; an unknown record NotFound.
    let (observation, _) = vault
        .record_by_fhir("Observation", "o1")
        .expect("read")
        .expect("o1");
    assert!(
        vault
            .open_file(&observation, 1, None)
            .expect("opens")
            .is_none()
    );
    assert!(matches!(
        vault.open_file(&Hash([9; 32]), 1, None),
        Err(VaultError::NotFound)
    ));
}

/// A file that is never staged, staged in a refused batch, too large or for an unknown patient
/// leaves nothing behind.
#[test]
fn files_of_refused_batches_and_bad_uploads_leave_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = Vault::open(dir.path()).expect("open");
    let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
    vault.settle(&first.id, true).expect("settle");
    let stored = |dir: &Path| every_file(&dir.join("files")).len();
    let content = genome(1_000);
    let draft = vault
        .write_file("p1", content.as_slice(), 1 << 30, OsRng)
        .expect("draft");
    assert_eq!(stored(dir.path()), 1);
    drop(draft);
    assert_eq!(stored(dir.path()), 0, "a dropped draft is deleted");
    let draft = vault
        .write_file("p1", content.as_slice(), 1 << 30, OsRng)
        .expect("draft");
    let staged = stage_file(&vault, &draft, "seq1").expect("stage");
    drop(draft);
    assert_eq!(stored(dir.path()), 1);
    vault.settle(&staged.id, false).expect("refused");
    assert_eq!(stored(dir.path()), 0, "a refused batch's file is deleted");
    let error = vault
        .write_file("p1", content.as_slice(), 100, OsRng)
        .expect_err("too large");
    assert!(matches!(error, VaultError::TooLarge(_)), "{error:?}");
    let error = vault
        .write_file("nobody", content.as_slice(), 1 << 30, OsRng)
        .expect_err("unknown patient");
    assert!(matches!(error, VaultError::Invalid(_)), "{error:?}");
    assert_eq!(stored(dir.path()), 0);
}

/// Shredding the patient deletes their files, and reopening the vault sweeps what a crash left:
/// drafts, and files whose version is not held.
#[test]
fn shredding_and_reopening_delete_stray_files() {
    let dir = tempfile::tempdir().expect("dir");
    let content = genome(500);
    let (patient, record) = {
        let vault = Vault::open(dir.path()).expect("open");
        let first = vault.stage(&batch(), OsRng, &|_| Ok(0)).expect("stage");
        vault.settle(&first.id, true).expect("settle");
        let draft = vault
            .write_file("p1", content.as_slice(), 1 << 30, OsRng)
            .expect("draft");
        let staged = stage_file(&vault, &draft, "seq1").expect("stage");
        vault.settle(&staged.id, true).expect("settle");
        (staged.versions[0].patient, staged.versions[0].record)
    };
    let files_dir = dir.path().join("files");
    std::fs::write(
        files_dir.join(format!("{}.part", "ab".repeat(32))),
        b"crash",
    )
    .expect("draft");
    std::fs::write(
        files_dir.join(format!("{}-1.bin", "cd".repeat(32))),
        b"orphan",
    )
    .expect("orphan");
    let vault = Vault::open(dir.path()).expect("reopen");
    let names: Vec<PathBuf> = every_file(&files_dir)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        names,
        vec![files_dir.join(format!("{}-1.bin", record.to_hex()))]
    );
    assert_eq!(read_file(&vault, &record, 1, None).expect("kept"), content);
    vault.shred(&patient).expect("shred");
    assert!(
        every_file(&files_dir).is_empty(),
        "shredding deletes the file"
    );
}
