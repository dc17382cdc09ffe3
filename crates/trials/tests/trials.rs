//! Tests of clinical trials through the whole ledger: registration before enrolment, amendments
//! and their visible outcome changes, versioned consent and re-consent, capture as commitments
//! with corrections, adverse events and their regulatory clocks, alerts and the signature log;
//! every refusal leaves the state as it was.

use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_state::{MemoryTree, Snapshot};
use medledger_trials::*;
use medledger_types::Role;

struct Trial {
    chain: Chain,
    sponsor: SecretKey,
    investigator: SecretKey,
    patient: SecretKey,
    other_patient: SecretKey,
    auditor: SecretKey,
}

fn outcome(kind: OutcomeKind, measure: &str) -> OutcomeMeasure {
    OutcomeMeasure {
        kind,
        measure: measure.into(),
        time_frame: "12 weeks".into(),
    }
}

fn outcomes() -> Vec<OutcomeMeasure> {
    vec![
        outcome(OutcomeKind::Primary, "Change in HbA1c"),
        outcome(OutcomeKind::Secondary, "Body weight"),
    ]
}

fn register(study: &str, sites: &[&str]) -> TrialsOp {
    TrialsOp::RegisterStudy {
        study: study.into(),
        title: "Once-weekly insulin in type 2 diabetes".into(),
        registry_id: Some("NCT01234567".into()),
        protocol_hash: sha256(b"protocol v1"),
        sap_hash: sha256(b"sap v1"),
        outcomes: outcomes(),
        sites: sites.iter().map(|site| site.to_string()).collect(),
    }
}

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

fn run(chain: &mut Chain, key: &SecretKey, op: TrialsOp) -> String {
    let tx = chain.tx(key, op);
    rejected(&chain.one(tx)).to_string()
}

/// A chain with a sponsor (organisation b), a site (organisation a) with an investigator and two
/// patients, an auditor, and the study `s1` registered with site a.
fn trial() -> Trial {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let sponsor = SecretKey::from_seed(300);
    let investigator = SecretKey::from_seed(301);
    let patient = SecretKey::from_seed(302);
    let other_patient = SecretKey::from_seed(303);
    let auditor = SecretKey::from_seed(304);
    for (org, key, role) in [
        (&org_b, &sponsor, Role::Sponsor),
        (&org_a, &investigator, Role::Practitioner),
        (&org_a, &patient, Role::Patient),
        (&org_a, &other_patient, Role::Patient),
        (&org_b, &auditor, Role::Auditor),
    ] {
        assert_eq!(rejected(&chain.enrol(org, key, role)), "committed");
    }
    assert_eq!(
        run(&mut chain, &sponsor, register("s1", &["a"])),
        "committed"
    );
    Trial {
        chain,
        sponsor,
        investigator,
        patient,
        other_patient,
        auditor,
    }
}

fn enrol(trial: &mut Trial, subject: &str, patient: &SecretKey) -> String {
    let op = TrialsOp::EnrolSubject {
        study: "s1".into(),
        subject: subject.into(),
        patient: patient.public_key(),
    };
    let investigator = trial.investigator.clone();
    run(&mut trial.chain, &investigator, op)
}

fn consent(trial: &mut Trial, patient: &SecretKey, version: u32) -> String {
    let op = TrialsOp::Consent {
        study: "s1".into(),
        version,
    };
    run(&mut trial.chain, patient, op)
}

fn form(n: u8, version: u32, subject: &str, reason: Option<&str>) -> CaptureEntry {
    CaptureEntry {
        capture: Hash([n; 32]),
        version,
        subject: subject.into(),
        form: "vitals".into(),
        visit: "week-4".into(),
        commitment: Hash([n.wrapping_add(version as u8); 32]),
        // The investigator of `trial()`.
        author: SecretKey::from_seed(301).public_key(),
        reason: reason.map(str::to_string),
    }
}

/// The site's node (its organisation's root key here) records captures.
fn capture(trial: &mut Trial, captures: Vec<CaptureEntry>) -> String {
    let site = trial.chain.org_a.clone();
    let op = TrialsOp::Capture {
        study: "s1".into(),
        captures,
    };
    run(&mut trial.chain, &site, op)
}

#[test]
fn registration_comes_before_enrolment_and_records_the_protocol() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let sponsor = SecretKey::from_seed(300);
    let investigator = SecretKey::from_seed(301);
    let patient = SecretKey::from_seed(302);
    assert_eq!(
        rejected(&chain.enrol(&org_b, &sponsor, Role::Sponsor)),
        "committed"
    );
    assert_eq!(
        rejected(&chain.enrol(&org_a, &investigator, Role::Practitioner)),
        "committed"
    );
    assert_eq!(
        rejected(&chain.enrol(&org_a, &patient, Role::Patient)),
        "committed"
    );
    let enrol = TrialsOp::EnrolSubject {
        study: "s1".into(),
        subject: "S-001".into(),
        patient: patient.public_key(),
    };
    assert_eq!(
        run(&mut chain, &investigator, enrol.clone()),
        "unknown_study"
    );

    // Refused registrations, each leaving no study behind.
    let mut bad = register("s1", &["a"]);
    if let TrialsOp::RegisterStudy { registry_id, .. } = &mut bad {
        *registry_id = Some("NCT123".into());
    }
    assert_eq!(run(&mut chain, &sponsor, bad), "invalid_trial_input");
    let mut bad = register("s1", &["a"]);
    if let TrialsOp::RegisterStudy { outcomes, .. } = &mut bad {
        *outcomes = vec![outcome(OutcomeKind::Secondary, "Body weight")];
    }
    assert_eq!(run(&mut chain, &sponsor, bad), "invalid_trial_input");
    assert_eq!(
        run(&mut chain, &sponsor, register("s1", &["nowhere"])),
        "unknown_organisation"
    );
    assert_eq!(
        run(&mut chain, &sponsor, register("s/1", &["a"])),
        "invalid_trial_input"
    );
    assert_eq!(
        run(&mut chain, &patient, register("s1", &["a"])),
        "not_sponsor"
    );
    assert!(chain.get(&key_study("s1")).is_none());

    assert_eq!(
        run(&mut chain, &sponsor, register("s1", &["a"])),
        "committed"
    );
    assert_eq!(
        run(&mut chain, &sponsor, register("s1", &["a"])),
        "study_exists"
    );
    let state = snapshot(&chain);
    let record = study(&state, "s1").expect("read").expect("registered");
    assert_eq!(record.sponsor, "b");
    assert_eq!(record.version, 1);
    assert_eq!(record.sites, vec!["a".to_string()]);
    assert_eq!(
        document_versions(&state, "s1", &sha256(b"protocol v1")).expect("read"),
        vec![DocumentVersion {
            version: 1,
            kind: DocumentKind::Protocol
        }]
    );
    assert!(
        document_versions(&state, "s1", &sha256(b"protocol v2"))
            .expect("read")
            .is_empty()
    );
    let first = signature(&state, "s1", 0).expect("read").expect("signed");
    assert_eq!(first.meaning, Meaning::Authorship);
    assert_eq!(first.signer, sponsor.public_key());
    assert_eq!(first.signer_role, "sponsor");
    assert_eq!(run(&mut chain, &investigator, enrol), "committed");
}

#[test]
fn an_amendment_is_a_new_version_whose_outcome_changes_are_visible() {
    let mut trial = trial();
    let sponsor = trial.sponsor.clone();
    let amend = |outcomes: Vec<OutcomeMeasure>, reason: &str| TrialsOp::AmendProtocol {
        study: "s1".into(),
        protocol_hash: sha256(b"protocol v2"),
        sap_hash: sha256(b"sap v1"),
        outcomes,
        reason: reason.into(),
        reconsent: false,
    };
    // Only the sponsor amends, and only with a reason.
    let investigator = trial.investigator.clone();
    assert_eq!(
        run(&mut trial.chain, &investigator, amend(outcomes(), "dose")),
        "not_sponsor"
    );
    assert_eq!(
        run(&mut trial.chain, &sponsor, amend(outcomes(), " ")),
        "invalid_trial_input"
    );
    // The primary outcome is switched: body weight becomes primary, HbA1c is dropped, and a new
    // secondary outcome appears.
    let switched = vec![
        outcome(OutcomeKind::Primary, "Body weight"),
        outcome(OutcomeKind::Secondary, "Hypoglycaemia events"),
    ];
    assert_eq!(
        run(
            &mut trial.chain,
            &sponsor,
            amend(switched.clone(), "recruitment")
        ),
        "committed"
    );
    let state = snapshot(&trial.chain);
    let version = protocol_version(&state, "s1", 2)
        .expect("read")
        .expect("v2");
    assert_eq!(version.reason.as_deref(), Some("recruitment"));
    assert_eq!(
        version.outcome_changes,
        vec![
            OutcomeChange::Removed {
                outcome: outcome(OutcomeKind::Primary, "Change in HbA1c")
            },
            OutcomeChange::Modified {
                before: outcome(OutcomeKind::Secondary, "Body weight"),
                after: outcome(OutcomeKind::Primary, "Body weight"),
            },
            OutcomeChange::Added {
                outcome: outcome(OutcomeKind::Secondary, "Hypoglycaemia events")
            },
        ]
    );
    // Version 1 keeps its outcomes; the SAP, unchanged, is registered in both versions.
    let first = protocol_version(&state, "s1", 1)
        .expect("read")
        .expect("v1");
    assert_eq!(first.outcomes, outcomes());
    assert!(first.outcome_changes.is_empty());
    assert_eq!(
        document_versions(&state, "s1", &sha256(b"sap v1"))
            .expect("read")
            .iter()
            .map(|found| found.version)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    let record = study(&state, "s1").expect("read").expect("study");
    assert_eq!((record.version, record.consent_required), (2, 1));
    // The amendment raised an alert for the sponsor and the regulator.
    let alert = medledger_trials::alert(&state, 0)
        .expect("read")
        .expect("alert");
    assert_eq!(
        alert.kind,
        AlertKind::Amendment {
            version: 2,
            reconsent: false
        }
    );
}

#[test]
fn capture_needs_current_consent_and_stops_at_withdrawal() {
    let mut trial = trial();
    let patient = trial.patient.clone();
    assert_eq!(enrol(&mut trial, "S-001", &patient), "committed");
    // The same subject id or the same patient twice: refused.
    let other = trial.other_patient.clone();
    assert_eq!(enrol(&mut trial, "S-001", &other), "subject_exists");
    assert_eq!(enrol(&mut trial, "S-002", &patient), "patient_enrolled");
    // A non-patient key cannot be a participant; a sponsor is not a site.
    let investigator = trial.investigator.clone();
    assert_eq!(enrol(&mut trial, "S-009", &investigator), "not_patient");
    // Subject ids are FHIR ids.
    assert_eq!(enrol(&mut trial, "S_001", &other), "invalid_trial_input");
    let long = "S".repeat(SUBJECT_ID_BYTES_MAX + 1);
    assert_eq!(enrol(&mut trial, &long, &other), "invalid_trial_input");
    let sponsor = trial.sponsor.clone();
    let op = TrialsOp::EnrolSubject {
        study: "s1".into(),
        subject: "S-003".into(),
        patient: other.public_key(),
    };
    assert_eq!(run(&mut trial.chain, &sponsor, op), "not_site");

    // Capture before consent is refused, and nothing is stored.
    let first = form(1, 1, "S-001", None);
    assert_eq!(capture(&mut trial, vec![first.clone()]), "no_trial_consent");
    assert!(
        trial
            .chain
            .get(&key_capture("s1", &first.capture))
            .is_none()
    );

    // Only the participant signs their consent, and only to the current version.
    let op = TrialsOp::Consent {
        study: "s1".into(),
        version: 1,
    };
    assert_eq!(run(&mut trial.chain, &investigator, op), "not_participant");
    assert_eq!(consent(&mut trial, &patient, 2), "not_current_version");
    assert_eq!(consent(&mut trial, &patient, 1), "committed");
    assert_eq!(capture(&mut trial, vec![first.clone()]), "committed");

    // A correction is the next version, with its reason, of the same subject, form and visit.
    assert_eq!(
        capture(&mut trial, vec![form(1, 3, "S-001", Some("typo"))]),
        "capture_version"
    );
    assert_eq!(
        capture(&mut trial, vec![form(1, 2, "S-001", None)]),
        "reason_required"
    );
    let mut moved = form(1, 2, "S-001", Some("typo"));
    moved.visit = "week-8".into();
    assert_eq!(capture(&mut trial, vec![moved]), "capture_mismatch");
    // All or nothing: a good form beside a bad one is not stored either.
    let good = form(2, 1, "S-001", None);
    let bad = form(3, 1, "S-404", None);
    assert_eq!(
        capture(&mut trial, vec![good.clone(), bad]),
        "unknown_subject"
    );
    assert!(trial.chain.get(&key_capture("s1", &good.capture)).is_none());
    // The author must be a practitioner of the site; the sender its custodian.
    let mut stranger = form(4, 1, "S-001", None);
    stranger.author = trial.sponsor.public_key();
    assert_eq!(capture(&mut trial, vec![stranger]), "not_site_author");
    let op = TrialsOp::Capture {
        study: "s1".into(),
        captures: vec![form(5, 1, "S-001", None)],
    };
    assert_eq!(run(&mut trial.chain, &investigator, op), "not_site");
    assert_eq!(
        capture(&mut trial, vec![form(1, 2, "S-001", Some("typo"))]),
        "committed"
    );
    let state = snapshot(&trial.chain);
    let head = medledger_trials::capture(&state, "s1", &first.capture)
        .expect("read")
        .expect("head");
    assert_eq!(head.versions, 2);
    let second = capture_version(&state, "s1", &first.capture, 2)
        .expect("read")
        .expect("v2");
    assert_eq!(second.reason.as_deref(), Some("typo"));
    assert_eq!(second.protocol_version, 1);
    assert_ne!(
        second.commitment,
        capture_version(&state, "s1", &first.capture, 1)
            .expect("read")
            .expect("v1")
            .commitment
    );
    assert_eq!(
        capture_log(&state, "s1", 1).expect("read"),
        Some(CaptureLogEntry {
            capture: first.capture,
            version: 2
        })
    );

    // An amendment requiring re-consent stops capture until the participant consents again.
    let amend = TrialsOp::AmendProtocol {
        study: "s1".into(),
        protocol_hash: sha256(b"protocol v2"),
        sap_hash: sha256(b"sap v2"),
        outcomes: outcomes(),
        reason: "new safety information".into(),
        reconsent: true,
    };
    assert_eq!(run(&mut trial.chain, &sponsor, amend), "committed");
    assert_eq!(
        capture(&mut trial, vec![form(6, 1, "S-001", None)]),
        "reconsent_required"
    );
    assert_eq!(consent(&mut trial, &patient, 1), "not_current_version");
    assert_eq!(consent(&mut trial, &patient, 2), "committed");
    assert_eq!(
        capture(&mut trial, vec![form(6, 1, "S-001", None)]),
        "committed"
    );
    let state = snapshot(&trial.chain);
    let captured = capture_version(&state, "s1", &Hash([6; 32]), 1)
        .expect("read")
        .expect("captured");
    assert_eq!(captured.protocol_version, 2);

    // Withdrawal: by the participant, once; then no capture and no consent.
    let withdraw = TrialsOp::Withdraw {
        study: "s1".into(),
        subject: "S-001".into(),
    };
    assert_eq!(run(&mut trial.chain, &other, withdraw.clone()), "not_site");
    assert_eq!(
        run(&mut trial.chain, &patient, withdraw.clone()),
        "committed"
    );
    assert_eq!(run(&mut trial.chain, &patient, withdraw), "withdrawn");
    assert_eq!(
        capture(&mut trial, vec![form(7, 1, "S-001", None)]),
        "withdrawn"
    );
    assert_eq!(consent(&mut trial, &patient, 2), "withdrawn");
    let state = snapshot(&trial.chain);
    let subject = subject(&state, "s1", "S-001")
        .expect("read")
        .expect("subject");
    assert_eq!(subject.status, SubjectStatus::Withdrawn);
    assert!(subject.withdrawn_time_ms.is_some());
    // The withdrawal is an alert and a signature with its meaning.
    let count = alerts_count(&state).expect("read");
    let last = medledger_trials::alert(&state, count - 1)
        .expect("read")
        .expect("alert");
    assert_eq!(
        last.kind,
        AlertKind::Withdrawal {
            subject: "S-001".into()
        }
    );
    let record = study(&state, "s1").expect("read").expect("study");
    let meanings: Vec<Meaning> = (0..record.signatures)
        .map(|seq| {
            signature(&state, "s1", seq)
                .expect("read")
                .expect("sig")
                .meaning
        })
        .collect();
    assert_eq!(
        meanings,
        vec![
            Meaning::Authorship, // registration
            Meaning::Authorship, // enrolment
            Meaning::Consent,
            Meaning::Authorship, // amendment
            Meaning::Consent,
            Meaning::Withdrawal,
        ]
    );
}

fn report(trial: &mut Trial, event: u8, seriousness: Seriousness, expected: bool) -> String {
    let op = TrialsOp::ReportAdverseEvent {
        study: "s1".into(),
        event: Hash([event; 32]),
        reporter: trial.investigator.public_key(),
        subject: "S-001".into(),
        seriousness,
        expected,
        related: true,
        commitment: Hash([0xae; 32]),
    };
    let investigator = trial.investigator.clone();
    run(&mut trial.chain, &investigator, op)
}

fn event(trial: &Trial, n: u8) -> AdverseEvent {
    adverse_event(&snapshot(&trial.chain), "s1", &Hash([n; 32]))
        .expect("read")
        .expect("event")
}

#[test]
fn adverse_events_run_their_regulatory_clocks() {
    let mut trial = trial();
    let patient = trial.patient.clone();
    assert_eq!(enrol(&mut trial, "S-001", &patient), "committed");
    // A report by a non-site is refused.
    let op = TrialsOp::ReportAdverseEvent {
        study: "s1".into(),
        event: Hash([1; 32]),
        reporter: trial.sponsor.public_key(),
        subject: "S-001".into(),
        seriousness: Seriousness::Fatal,
        expected: false,
        related: true,
        commitment: Hash([0; 32]),
    };
    let sponsor = trial.sponsor.clone();
    assert_eq!(run(&mut trial.chain, &sponsor, op.clone()), "not_site");
    assert!(
        trial
            .chain
            .get(&key_adverse_event("s1", &Hash([1; 32])))
            .is_none()
    );

    // Fatal, unexpected, related: 7 days. Serious: 15. Expected or non-serious: no clock.
    assert_eq!(
        report(&mut trial, 1, Seriousness::Fatal, false),
        "committed"
    );
    assert_eq!(
        report(&mut trial, 1, Seriousness::Fatal, false),
        "event_exists"
    );
    // The site's node reports for its practitioner, whose signature it is; a practitioner cannot
    // report in another's name.
    let on_behalf = |reporter: &SecretKey, event: u8| TrialsOp::ReportAdverseEvent {
        study: "s1".into(),
        event: Hash([event; 32]),
        reporter: reporter.public_key(),
        subject: "S-001".into(),
        seriousness: Seriousness::NonSerious,
        expected: true,
        related: false,
        commitment: Hash([0; 32]),
    };
    let (site, investigator) = (trial.chain.org_a.clone(), trial.investigator.clone());
    assert_eq!(
        run(&mut trial.chain, &investigator, on_behalf(&sponsor, 5)),
        "not_site_author"
    );
    assert_eq!(
        run(&mut trial.chain, &site, on_behalf(&sponsor, 5)),
        "not_site_author"
    );
    assert_eq!(
        run(&mut trial.chain, &site, on_behalf(&investigator, 5)),
        "committed"
    );
    let state = snapshot(&trial.chain);
    let record = study(&state, "s1").expect("read").expect("study");
    let last = signature(&state, "s1", record.signatures - 1)
        .expect("read")
        .expect("signature");
    assert_eq!(last.signer, investigator.public_key());
    assert_eq!(last.sent_by, site.public_key());
    assert_eq!(last.signer_role, "practitioner");
    assert_eq!(
        report(&mut trial, 2, Seriousness::Serious, false),
        "committed"
    );
    assert_eq!(
        report(&mut trial, 3, Seriousness::Serious, true),
        "committed"
    );
    assert_eq!(
        report(&mut trial, 4, Seriousness::NonSerious, false),
        "committed"
    );
    let fatal = event(&trial, 1);
    let day = 86_400_000;
    assert_eq!(fatal.deadline_ms, Some(fatal.reported_time_ms + 7 * day));
    let serious = event(&trial, 2);
    assert_eq!(
        serious.deadline_ms,
        Some(serious.reported_time_ms + 15 * day)
    );
    assert_eq!(event(&trial, 3).deadline_ms, None);
    assert_eq!(event(&trial, 4).deadline_ms, None);
    assert_eq!(fatal.clock(fatal.reported_time_ms), ClockStatus::Running);
    assert_eq!(event(&trial, 3).clock(u64::MAX), ClockStatus::NotExpedited);

    // Only the sponsor acknowledges and reports.
    let investigator = trial.investigator.clone();
    let ack = |n: u8| TrialsOp::AcknowledgeAdverseEvent {
        study: "s1".into(),
        event: Hash([n; 32]),
    };
    assert_eq!(run(&mut trial.chain, &investigator, ack(1)), "not_sponsor");
    assert_eq!(run(&mut trial.chain, &sponsor, ack(1)), "committed");
    assert_eq!(run(&mut trial.chain, &sponsor, ack(1)), "already_done");
    assert_eq!(run(&mut trial.chain, &sponsor, ack(9)), "unknown_event");
    let to_regulator = |n: u8| TrialsOp::ReportToRegulator {
        study: "s1".into(),
        event: Hash([n; 32]),
        reference: Some("IND-123456-SR-0001".into()),
    };
    assert_eq!(
        run(&mut trial.chain, &sponsor, to_regulator(2)),
        "committed"
    );

    // Eight days on, the fatal event's clock has run out unreported: the next block flags it
    // and raises an overdue alert; the reported one is not flagged.
    trial.chain.time_base_ms += 8 * day;
    let alerts_before = alerts_count(&snapshot(&trial.chain)).expect("read");
    trial.chain.block(&[]).expect("empty block");
    let fatal = event(&trial, 1);
    assert!(fatal.overdue_time_ms.is_some());
    assert_eq!(
        fatal.clock(fatal.overdue_time_ms.unwrap_or(0)),
        ClockStatus::Overdue
    );
    let state = snapshot(&trial.chain);
    assert_eq!(alerts_count(&state).expect("read"), alerts_before + 1);
    let overdue = medledger_trials::alert(&state, alerts_before)
        .expect("read")
        .expect("alert");
    assert_eq!(
        overdue.kind,
        AlertKind::Overdue {
            event: Hash([1; 32]),
            deadline_ms: fatal.deadline_ms.unwrap_or(0)
        }
    );
    assert_eq!(overdue.sponsor, "b");
    let serious = event(&trial, 2);
    assert_eq!(serious.overdue_time_ms, None);
    assert_eq!(serious.clock(u64::MAX), ClockStatus::ReportedOnTime);
    // Another block flags nothing more.
    trial.chain.block(&[]).expect("empty block");
    assert_eq!(
        alerts_count(&snapshot(&trial.chain)).expect("read"),
        alerts_before + 1
    );
    // Reported late, the fatal event reads as such.
    assert_eq!(
        run(&mut trial.chain, &sponsor, to_regulator(1)),
        "committed"
    );
    assert_eq!(event(&trial, 1).clock(u64::MAX), ClockStatus::ReportedLate);
    assert_eq!(
        run(&mut trial.chain, &sponsor, to_regulator(1)),
        "already_done"
    );
}

#[test]
fn signatures_carry_their_meaning_and_need_a_party_to_the_study() {
    let mut trial = trial();
    let auditor = trial.auditor.clone();
    let sign = |on: Signed, meaning: Meaning| TrialsOp::Sign {
        study: "s1".into(),
        on,
        meaning,
    };
    let version = |version| Signed::ProtocolVersion { version };
    assert_eq!(
        run(
            &mut trial.chain,
            &auditor,
            sign(version(1), Meaning::Review)
        ),
        "committed"
    );
    assert_eq!(
        run(
            &mut trial.chain,
            &auditor,
            sign(version(2), Meaning::Review)
        ),
        "invalid_trial_input"
    );
    assert_eq!(
        run(
            &mut trial.chain,
            &auditor,
            sign(version(1), Meaning::Consent)
        ),
        "invalid_trial_input"
    );
    let patient = trial.patient.clone();
    assert_eq!(
        run(
            &mut trial.chain,
            &patient,
            sign(version(1), Meaning::Approval)
        ),
        "not_site"
    );
    let state = snapshot(&trial.chain);
    let signed = signature(&state, "s1", 1)
        .expect("read")
        .expect("signature");
    assert_eq!(signed.signer, auditor.public_key());
    assert_eq!(signed.signer_role, "auditor");
    assert_eq!(signed.meaning, Meaning::Review);
    assert_eq!(signed.on, version(1));
    assert_eq!(
        study(&state, "s1")
            .expect("read")
            .expect("study")
            .signatures,
        2
    );
}

#[test]
fn the_sponsor_sets_the_thresholds_a_protocol_monitors() {
    let mut trial = trial();
    let threshold = |loinc: &str, below: Option<i64>, above: Option<i64>| MonitoredThreshold {
        loinc: loinc.into(),
        below,
        above,
        for_ms: 60_000,
    };
    let set = |thresholds: Vec<MonitoredThreshold>| TrialsOp::SetMonitoredThresholds {
        study: "s1".into(),
        thresholds,
    };
    let spo2 = threshold("59408-5", Some(90), None);
    let investigator = trial.investigator.clone();
    let sponsor = trial.sponsor.clone();
    let state = |trial: &Trial| {
        let state = snapshot(&trial.chain);
        (
            monitored(&state, "s1").expect("read"),
            monitored_studies(&state).expect("read"),
        )
    };
    let before = state(&trial);
    assert_eq!(before, (None, Vec::<String>::new()));
    // Only the sponsor; each threshold one LOINC code with exactly one limit, held at most a day.
    for (key, op, code) in [
        (&investigator, set(vec![spo2.clone()]), "not_sponsor"),
        (
            &sponsor,
            set(vec![threshold("59408-5", None, None)]),
            "invalid_trial_input",
        ),
        (
            &sponsor,
            set(vec![threshold("59408-5", Some(1), Some(2))]),
            "invalid_trial_input",
        ),
        (
            &sponsor,
            set(vec![threshold("SpO2", Some(90), None)]),
            "invalid_trial_input",
        ),
        (&sponsor, set(vec![spo2.clone(); 17]), "invalid_trial_input"),
        (
            &sponsor,
            TrialsOp::SetMonitoredThresholds {
                study: "s9".into(),
                thresholds: vec![spo2.clone()],
            },
            "unknown_study",
        ),
    ] {
        assert_eq!(run(&mut trial.chain, key, op), code);
        assert_eq!(state(&trial), before, "a refused {code} changed state");
    }
    assert_eq!(
        run(&mut trial.chain, &sponsor, set(vec![spo2.clone()])),
        "committed"
    );
    let (found, studies) = state(&trial);
    let found = found.expect("monitored");
    assert_eq!((found.version, found.thresholds), (1, vec![spo2]));
    assert_eq!(studies, ["s1"]);
    // None clears them, and the study leaves the list.
    assert_eq!(
        run(&mut trial.chain, &sponsor, set(Vec::new())),
        "committed"
    );
    assert_eq!(state(&trial), (None, Vec::<String>::new()));
}
