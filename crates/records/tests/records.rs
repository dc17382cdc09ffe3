//! Tests of the records module through the whole ledger: consent decided by actor, scope and
//! purpose with deny winning, revocation and expiry, refusals by cause, and erasure.

use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_records::{
    self as module, AccessRequest, AccessRule, ConsentGrant, Grantee, Provision, ProvisionKind,
    Purpose, RecordWrite, RecordsOp, Scope,
};
use medledger_state::Snapshot;
use medledger_types::{Outcome, Role};

struct Clinic {
    chain: Chain,
    node: SecretKey,
    patient: SecretKey,
    doctor: SecretKey,
    other_doctor: SecretKey,
    auditor: SecretKey,
    patient_id: Hash,
    lab: Hash,
    condition: Hash,
    requests: u8,
}

fn write(
    record: Hash,
    patient: Hash,
    kind: &str,
    category: Option<&str>,
    version: u32,
) -> RecordWrite {
    RecordWrite {
        record,
        patient,
        resource_type: kind.into(),
        category: category.map(str::to_string),
        version,
        commitment: Hash([version as u8; 32]),
        author: SecretKey::from_seed(1).public_key(),
    }
}

impl Clinic {
    fn new() -> Clinic {
        let mut chain = Chain::new();
        let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
        let patient = SecretKey::from_seed(10);
        let doctor = SecretKey::from_seed(11);
        let other_doctor = SecretKey::from_seed(12);
        let auditor = SecretKey::from_seed(13);
        chain.enrol(&org_a, &patient, Role::Patient);
        chain.enrol(&org_a, &doctor, Role::Practitioner);
        chain.enrol(&org_b, &other_doctor, Role::Practitioner);
        chain.enrol(&org_a, &auditor, Role::Auditor);
        let node = SecretKey::from_seed(1);
        let (patient_id, lab, condition) = (Hash([50; 32]), Hash([51; 32]), Hash([52; 32]));
        let tx = chain.tx(
            &node,
            RecordsOp::PutRecords {
                records: vec![
                    write(lab, patient_id, "Observation", Some("laboratory"), 1),
                    write(condition, patient_id, "Condition", None, 1),
                ],
            },
        );
        assert_eq!(chain.one(tx), Outcome::Committed);
        let tx = chain.tx(
            &node,
            RecordsOp::BindPatient {
                patient: patient_id,
                key: patient.public_key(),
            },
        );
        assert_eq!(chain.one(tx), Outcome::Committed);
        Clinic {
            chain,
            node,
            patient,
            doctor,
            other_doctor,
            auditor,
            patient_id,
            lab,
            condition,
            requests: 0,
        }
    }

    fn grant(
        &mut self,
        signer: &SecretKey,
        provisions: Vec<Provision>,
        end_ms: Option<u64>,
    ) -> (Outcome, Hash) {
        let tx = self.chain.tx(
            signer,
            RecordsOp::GrantConsent {
                grant: ConsentGrant {
                    patient: self.patient.public_key(),
                    provisions,
                    start_ms: 0,
                    end_ms,
                },
            },
        );
        let id = tx.id();
        (self.chain.one(tx), id)
    }

    /// Records an access and returns its decisions (or the refusal code).
    fn access(
        &mut self,
        reader: &SecretKey,
        records: &[Hash],
        purpose: Purpose,
        break_glass: bool,
    ) -> Result<Vec<AccessRule>, String> {
        self.requests += 1;
        let tx = self.chain.tx(
            &self.node.clone(),
            RecordsOp::RecordAccess {
                access: AccessRequest {
                    request: Hash([self.requests; 32]),
                    reader: reader.public_key(),
                    patient: self.patient_id,
                    records: records.to_vec(),
                    purpose,
                    break_glass,
                },
            },
        );
        match self.chain.one(tx) {
            Outcome::Committed => {}
            Outcome::Rejected { code, .. } => return Err(code),
        }
        let state = Snapshot {
            reader: &self.chain.tree,
            version: Some(self.chain.height),
        };
        let (patient, seq) = module::access_by_request(&state, &Hash([self.requests; 32]))
            .expect("read")
            .expect("recorded");
        let event = module::access_event(&state, &patient, seq)
            .expect("read")
            .expect("event");
        Ok(event.decisions.into_iter().map(|(_, rule)| rule).collect())
    }
}

fn permit(actors: Vec<Grantee>, scope: Vec<Scope>, purposes: Vec<Purpose>) -> Provision {
    Provision {
        kind: ProvisionKind::Permit,
        actors,
        scope,
        purposes,
    }
}

/// Consent decides each record by actor, scope and purpose: permits apply only where they
/// match, deny provisions win over permits, break-glass is for practitioners reading for
/// ETREAT, and with no grant nothing is allowed.
#[test]
fn consent_decides_by_actor_scope_and_purpose_and_deny_wins() {
    let mut clinic = Clinic::new();
    let (doctor, other, auditor, patient) = (
        clinic.doctor.clone(),
        clinic.other_doctor.clone(),
        clinic.auditor.clone(),
        clinic.patient.clone(),
    );
    let (lab, condition) = (clinic.lab, clinic.condition);
    let both = if lab < condition {
        vec![lab, condition]
    } else {
        vec![condition, lab]
    };
    let lab_first = both[0] == lab;
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::NoConsent])
    );
    let (outcome, observations) = clinic.grant(
        &patient,
        vec![permit(
            vec![Grantee::Key(doctor.public_key())],
            vec![Scope::ResourceType("Observation".into())],
            vec![Purpose::Treat],
        )],
        None,
    );
    assert_eq!(outcome, Outcome::Committed);
    let (outcome, org_b) = clinic.grant(
        &patient,
        vec![permit(
            vec![Grantee::Organisation("b".into())],
            vec![Scope::Category("laboratory".into())],
            vec![Purpose::Treat, Purpose::Research],
        )],
        None,
    );
    assert_eq!(outcome, Outcome::Committed);
    let decisions = clinic
        .access(&doctor, &both, Purpose::Treat, false)
        .expect("recorded");
    let (lab_rule, condition_rule) = if lab_first {
        (&decisions[0], &decisions[1])
    } else {
        (&decisions[1], &decisions[0])
    };
    assert_eq!(*lab_rule, AccessRule::Permit(observations));
    assert_eq!(*condition_rule, AccessRule::NoConsent);
    // The wrong purpose.
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Research, false),
        Ok(vec![AccessRule::NoConsent])
    );
    // An organisation grant by category.
    assert_eq!(
        clinic.access(&other, &[lab], Purpose::Research, false),
        Ok(vec![AccessRule::Permit(org_b)])
    );
    assert_eq!(
        clinic.access(&other, &[condition], Purpose::Treat, false),
        Ok(vec![AccessRule::NoConsent])
    );
    // A deny provision wins over both permits.
    let (outcome, deny) = clinic.grant(
        &patient,
        vec![Provision {
            kind: ProvisionKind::Deny,
            actors: vec![],
            scope: vec![Scope::Record(lab)],
            purposes: vec![Purpose::Research],
        }],
        None,
    );
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        clinic.access(&other, &[lab], Purpose::Research, false),
        Ok(vec![AccessRule::Deny(deny)])
    );
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::Permit(observations)])
    );
    // Break-glass: a practitioner for ETREAT, not an auditor, and not for another purpose.
    assert_eq!(
        clinic.access(&other, &[condition], Purpose::EmergencyTreat, true),
        Ok(vec![AccessRule::BreakGlass])
    );
    assert_eq!(
        clinic.access(&auditor, &[condition], Purpose::EmergencyTreat, true),
        Ok(vec![AccessRule::NoConsent])
    );
    assert_eq!(
        clinic.access(&other, &[condition], Purpose::Treat, true),
        Ok(vec![AccessRule::NoConsent])
    );
}

/// A revoked grant and an expired one (judged by block time) no longer permit anything, and
/// a grant cannot be given already expired, revoked twice, or by anyone but the patient or
/// a delegate they named.
#[test]
fn revoked_and_expired_grants_stop_permitting() {
    let mut clinic = Clinic::new();
    let (doctor, patient, other) = (
        clinic.doctor.clone(),
        clinic.patient.clone(),
        clinic.other_doctor.clone(),
    );
    let lab = clinic.lab;
    let everything = || {
        vec![permit(
            vec![Grantee::Role(Role::Practitioner)],
            vec![],
            vec![Purpose::Treat],
        )]
    };
    let (_, grant) = clinic.grant(&patient, everything(), None);
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::Permit(grant)])
    );
    let tx = clinic
        .chain
        .tx(&patient, RecordsOp::RevokeConsent { grant });
    assert_eq!(clinic.chain.one(tx), Outcome::Committed);
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::NoConsent])
    );
    let tx = clinic
        .chain
        .tx(&patient, RecordsOp::RevokeConsent { grant });
    assert_eq!(rejected(&clinic.chain.one(tx)), "grant_revoked");

    // Block times are 1000 + height: this grant ends two blocks from now.
    let end = 1_000 + clinic.chain.height + 3;
    let (outcome, short) = clinic.grant(&patient, everything(), Some(end));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::Permit(short)])
    );
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Ok(vec![AccessRule::NoConsent])
    );
    let past = 1_000 + clinic.chain.height;
    let (outcome, _) = clinic.grant(&patient, everything(), Some(past));
    assert_eq!(rejected(&outcome), "grant_expired");

    let (outcome, _) = clinic.grant(&doctor, everything(), None);
    assert_eq!(rejected(&outcome), "not_the_patient");
    let tx = clinic.chain.tx(
        &patient,
        RecordsOp::SetDelegate {
            delegate: other.public_key(),
            active: true,
        },
    );
    assert_eq!(clinic.chain.one(tx), Outcome::Committed);
    let (outcome, _) = clinic.grant(&other, everything(), None);
    assert_eq!(outcome, Outcome::Committed);
    let (outcome, _) = clinic.grant(&patient, vec![], None);
    assert_eq!(rejected(&outcome), "invalid_grant");
    let (outcome, _) = clinic.grant(
        &patient,
        vec![permit(vec![], vec![], vec![Purpose::Treat])],
        None,
    );
    assert_eq!(rejected(&outcome), "invalid_grant");
}

/// Bad access events and record writes are refused with their own codes and change nothing:
/// a replayed request, an unenrolled reader, a stranger custodian, a version that skips, and
/// anything after erasure except the audit of it.
#[test]
fn bad_writes_and_accesses_are_refused_and_erasure_denies_everything() {
    let mut clinic = Clinic::new();
    let doctor = clinic.doctor.clone();
    let (lab, patient_id) = (clinic.lab, clinic.patient_id);
    let stranger = SecretKey::from_seed(99);
    assert_eq!(
        clinic.access(&stranger, &[lab], Purpose::Treat, false),
        Err("reader_not_enrolled".into())
    );
    clinic
        .access(&doctor, &[lab], Purpose::Treat, false)
        .expect("recorded");
    clinic.requests -= 1;
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::Treat, false),
        Err("request_replayed".into())
    );
    assert_eq!(
        clinic.access(&doctor, &[Hash([77; 32])], Purpose::Treat, false),
        Err("unknown_record".into())
    );
    let org_b = clinic.chain.org_b.clone();
    let tx = clinic.chain.tx(
        &org_b,
        RecordsOp::PutRecords {
            records: vec![write(lab, patient_id, "Observation", None, 2)],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "not_custodian");
    let node = clinic.node.clone();
    let tx = clinic.chain.tx(
        &node,
        RecordsOp::PutRecords {
            records: vec![write(lab, patient_id, "Observation", None, 3)],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "version_conflict");
    let tx = clinic.chain.tx(
        &node,
        RecordsOp::PutRecords {
            records: vec![write(
                Hash([60; 32]),
                patient_id,
                "Observation",
                Some("secret-diagnosis"),
                1,
            )],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "invalid_record");
    // A practitioner acts only through the node: it may not sign record versions or access
    // events itself, and a version must name an author who writes for the custodian.
    let tx = clinic.chain.tx(
        &doctor,
        RecordsOp::PutRecords {
            records: vec![write(lab, patient_id, "Observation", None, 2)],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "not_a_custodian");
    let tx = clinic.chain.tx(
        &doctor,
        RecordsOp::RecordAccess {
            access: AccessRequest {
                request: Hash([200; 32]),
                reader: clinic.other_doctor.public_key(),
                patient: patient_id,
                records: vec![lab],
                purpose: Purpose::EmergencyTreat,
                break_glass: true,
            },
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "not_a_custodian");
    let mut forged = write(lab, patient_id, "Observation", None, 2);
    forged.author = clinic.other_doctor.public_key();
    let tx = clinic.chain.tx(
        &node,
        RecordsOp::PutRecords {
            records: vec![forged],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "not_an_author");
    let tx = clinic.chain.tx(
        &doctor,
        RecordsOp::ErasePatient {
            patient: patient_id,
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "not_allowed_to_erase");
    let patient = clinic.patient.clone();
    let tx = clinic.chain.tx(
        &patient,
        RecordsOp::ErasePatient {
            patient: patient_id,
        },
    );
    assert_eq!(clinic.chain.one(tx), Outcome::Committed);
    assert_eq!(
        clinic.access(&doctor, &[lab], Purpose::EmergencyTreat, true),
        Ok(vec![AccessRule::Erased])
    );
    let tx = clinic.chain.tx(
        &node,
        RecordsOp::PutRecords {
            records: vec![write(lab, patient_id, "Observation", None, 2)],
        },
    );
    assert_eq!(rejected(&clinic.chain.one(tx)), "patient_erased");
    // The history survives erasure: version 1 and every access event are still on chain.
    let state = Snapshot {
        reader: &clinic.chain.tree,
        version: Some(clinic.chain.height),
    };
    assert!(
        module::record_version(&state, &lab, 1)
            .expect("read")
            .is_some()
    );
    assert_eq!(module::access_count(&state, &patient_id).expect("read"), 2);
}
