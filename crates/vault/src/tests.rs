//! Tests of staging, settling, recovery and crypto-shredding, on real files.

use medledger_crypto::envelope::PatientSecret;
use rand_core::OsRng;

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
        },
        Incoming {
            resource_type: "Observation",
            fhir_id: Some("o1"),
            patient: PatientRef::Fhir("p1"),
            content: OBSERVATION,
        },
    ]
}

fn files(dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join("vault.redb")).expect("db");
    bytes.extend(std::fs::read(dir.join("vault.slots")).expect("slots"));
    bytes
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
