//! How the trials module applies its operations, and its end-of-block check of regulatory
//! clocks.

use std::collections::{BTreeMap, BTreeSet};

use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, BlockContext, Module, Standing, TxContext, View, custodian_of, org_exists, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::Role;

use crate::keys::*;
use crate::types::*;
use crate::*;

/// The trials module.
#[derive(Clone, Copy, Debug)]
pub struct Trials;

impl Module for Trials {
    const NAME: &'static str = "trials";
    const PREFIXES: &'static [&'static str] = &[
        "trial/",
        "trial-alert/",
        "trial-clocks/",
        "trial-event/",
        "trial-monitored/",
    ];
    const KINDS: &'static [&'static str] = &[
        "register_study",
        "amend_protocol",
        "enrol_subject",
        "consent",
        "withdraw",
        "capture",
        "report_adverse_event",
        "acknowledge_adverse_event",
        "report_to_regulator",
        "sign",
        "set_monitored_thresholds",
    ];
    type Op = TrialsOp;
    type Error = TrialsError;

    fn kind(op: &TrialsOp) -> &'static str {
        match op {
            TrialsOp::RegisterStudy { .. } => "register_study",
            TrialsOp::AmendProtocol { .. } => "amend_protocol",
            TrialsOp::EnrolSubject { .. } => "enrol_subject",
            TrialsOp::Consent { .. } => "consent",
            TrialsOp::Withdraw { .. } => "withdraw",
            TrialsOp::Capture { .. } => "capture",
            TrialsOp::ReportAdverseEvent { .. } => "report_adverse_event",
            TrialsOp::AcknowledgeAdverseEvent { .. } => "acknowledge_adverse_event",
            TrialsOp::ReportToRegulator { .. } => "report_to_regulator",
            TrialsOp::Sign { .. } => "sign",
            TrialsOp::SetMonitoredThresholds { .. } => "set_monitored_thresholds",
        }
    }

    fn apply(
        op: &TrialsOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), TrialsError> {
        match op {
            TrialsOp::RegisterStudy {
                study,
                title,
                registry_id,
                protocol_hash,
                sap_hash,
                outcomes,
                sites,
            } => register_study(
                tx,
                state,
                Registration {
                    study,
                    title,
                    registry_id: registry_id.as_deref(),
                    protocol_hash,
                    sap_hash,
                    outcomes,
                    sites,
                },
            ),
            TrialsOp::AmendProtocol {
                study,
                protocol_hash,
                sap_hash,
                outcomes,
                reason,
                reconsent,
            } => {
                let mut record = sponsored(tx, state, study)?;
                check_text("reason", reason)?;
                check_outcomes(outcomes)?;
                if record.version >= VERSIONS_MAX {
                    return Err(TrialsError::Limit(format!(
                        "a study has at most {VERSIONS_MAX} protocol versions"
                    )));
                }
                let before = protocol_version(state, study, record.version)?
                    .ok_or_else(|| StateError::Store(format!("study {study} lacks its version")))?;
                record.version += 1;
                if *reconsent {
                    record.consent_required = record.version;
                }
                let version = record.version;
                put_version(
                    tx,
                    state,
                    &mut record,
                    ProtocolVersion {
                        version,
                        protocol_hash: *protocol_hash,
                        sap_hash: *sap_hash,
                        outcomes: outcomes.clone(),
                        reason: Some(reason.clone()),
                        reconsent: *reconsent,
                        outcome_changes: outcome_changes(&before.outcomes, outcomes),
                        height: tx.block.height,
                        time_ms: tx.block.time_ms,
                        signer: tx.sender,
                    },
                )?;
                let kind = AlertKind::Amendment {
                    version: record.version,
                    reconsent: *reconsent,
                };
                push_alert(tx.block, state, &record, kind)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::EnrolSubject {
                study,
                subject: subject_id,
                patient,
            } => {
                let mut record = existing(state, study)?;
                let site = site_acting(tx, &record)?.to_string();
                check_subject_id(subject_id)?;
                match standing(state, patient)? {
                    Standing::Acts(Authority::Member {
                        role: Role::Patient,
                        ..
                    }) => {}
                    _ => return Err(TrialsError::NotPatient),
                }
                if subject(state, study, subject_id)?.is_some() {
                    return Err(TrialsError::SubjectExists(subject_id.clone()));
                }
                if participant(state, study, patient)?.is_some() {
                    return Err(TrialsError::PatientEnrolled);
                }
                record.subjects = record.subjects.checked_add(1).ok_or_else(|| {
                    TrialsError::Limit("a study has at most 2^32 - 1 subjects".into())
                })?;
                state.put(
                    key_subject(study, subject_id),
                    encode_value(&Subject {
                        id: subject_id.clone(),
                        patient: *patient,
                        site,
                        status: SubjectStatus::Candidate,
                        consented_version: None,
                        enrolled_at: tx.block.height,
                        enrolled_time_ms: tx.block.time_ms,
                        withdrawn_at: None,
                        withdrawn_time_ms: None,
                    }),
                );
                state.put(key_participant(study, patient), encode_value(subject_id));
                let on = Signed::Subject {
                    subject: subject_id.clone(),
                };
                sign(tx, state, &mut record, on, Meaning::Authorship)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::Consent { study, version } => {
                let mut record = existing(state, study)?;
                let subject_id =
                    participant(state, study, &tx.sender)?.ok_or(TrialsError::NotParticipant)?;
                let mut entry = subject(state, study, &subject_id)?
                    .ok_or_else(|| TrialsError::UnknownSubject(subject_id.clone()))?;
                if entry.status == SubjectStatus::Withdrawn {
                    return Err(TrialsError::Withdrawn);
                }
                if *version != record.version {
                    return Err(TrialsError::NotCurrentVersion {
                        given: *version,
                        current: record.version,
                    });
                }
                entry.status = SubjectStatus::OnStudy;
                entry.consented_version = Some(*version);
                state.put(key_subject(study, &subject_id), encode_value(&entry));
                let on = Signed::ProtocolVersion { version: *version };
                sign(tx, state, &mut record, on, Meaning::Consent)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::Withdraw {
                study,
                subject: subject_id,
            } => {
                let mut record = existing(state, study)?;
                check_subject_id(subject_id)?;
                let mut entry = subject(state, study, subject_id)?
                    .ok_or_else(|| TrialsError::UnknownSubject(subject_id.clone()))?;
                let by_participant = entry.patient == tx.sender;
                if !by_participant && site_acting(tx, &record)? != entry.site {
                    return Err(TrialsError::NotSite);
                }
                if entry.status == SubjectStatus::Withdrawn {
                    return Err(TrialsError::Withdrawn);
                }
                entry.status = SubjectStatus::Withdrawn;
                entry.withdrawn_at = Some(tx.block.height);
                entry.withdrawn_time_ms = Some(tx.block.time_ms);
                state.put(key_subject(study, subject_id), encode_value(&entry));
                let on = Signed::Subject {
                    subject: subject_id.clone(),
                };
                sign(tx, state, &mut record, on, Meaning::Withdrawal)?;
                let kind = AlertKind::Withdrawal {
                    subject: subject_id.clone(),
                };
                push_alert(tx.block, state, &record, kind)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::Capture { study, captures } => capture_forms(tx, state, study, captures),
            TrialsOp::ReportAdverseEvent {
                study,
                event,
                reporter,
                subject: subject_id,
                seriousness,
                expected,
                related,
                commitment,
            } => {
                let mut record = existing(state, study)?;
                let site = site_acting(tx, &record)?.to_string();
                check_subject_id(subject_id)?;
                let entry = subject(state, study, subject_id)?
                    .ok_or_else(|| TrialsError::UnknownSubject(subject_id.clone()))?;
                if entry.site != site {
                    return Err(TrialsError::NotSite);
                }
                if *reporter != tx.sender && custodian_of(tx.authority).is_none() {
                    // Only the site's node reports for another.
                    return Err(TrialsError::NotSiteAuthor);
                }
                check_site_author(state, reporter, &site)?;
                if event_study(state, event)?.is_some() {
                    return Err(TrialsError::EventExists(event.to_string()));
                }
                let deadline_ms = AdverseEvent::clock_days(*seriousness, *expected, *related)
                    .map(|days| AdverseEvent::deadline_from(tx.block.time_ms, days));
                if let Some(deadline) = deadline_ms {
                    add_clock(state, study, event, deadline)?;
                }
                state.put(
                    key_adverse_event(study, event),
                    encode_value(&AdverseEvent {
                        id: *event,
                        reporter: *reporter,
                        subject: subject_id.clone(),
                        site,
                        seriousness: *seriousness,
                        expected: *expected,
                        related: *related,
                        commitment: *commitment,
                        reported_at: tx.block.height,
                        reported_time_ms: tx.block.time_ms,
                        deadline_ms,
                        acknowledged_time_ms: None,
                        regulator_report_time_ms: None,
                        regulator_reference: None,
                        overdue_time_ms: None,
                    }),
                );
                state.put(key_event_study(event), encode_value(study));
                state.put(
                    key_adverse_event_log(study, record.adverse_events),
                    encode_value(event),
                );
                record.adverse_events = record
                    .adverse_events
                    .checked_add(1)
                    .ok_or_else(|| TrialsError::Limit("too many adverse events".into()))?;
                let on = Signed::AdverseEvent { event: *event };
                sign_for(tx, *reporter, state, &mut record, on, Meaning::Authorship)?;
                let kind = AlertKind::AdverseEvent {
                    event: *event,
                    subject: subject_id.clone(),
                    seriousness: *seriousness,
                    expected: *expected,
                    related: *related,
                    deadline_ms,
                };
                push_alert(tx.block, state, &record, kind)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::AcknowledgeAdverseEvent { study, event } => {
                let mut record = sponsored(tx, state, study)?;
                let mut entry = adverse_event(state, study, event)?
                    .ok_or_else(|| TrialsError::UnknownEvent(event.to_string()))?;
                if entry.acknowledged_time_ms.is_some() {
                    return Err(TrialsError::AlreadyDone("acknowledged"));
                }
                entry.acknowledged_time_ms = Some(tx.block.time_ms);
                state.put(key_adverse_event(study, event), encode_value(&entry));
                let on = Signed::AdverseEvent { event: *event };
                sign(tx, state, &mut record, on, Meaning::Review)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::ReportToRegulator {
                study,
                event,
                reference,
            } => {
                let mut record = sponsored(tx, state, study)?;
                if let Some(reference) = reference {
                    check_text("reference", reference)?;
                }
                let mut entry = adverse_event(state, study, event)?
                    .ok_or_else(|| TrialsError::UnknownEvent(event.to_string()))?;
                if entry.regulator_report_time_ms.is_some() {
                    return Err(TrialsError::AlreadyDone("reported to the regulator"));
                }
                entry.regulator_report_time_ms = Some(tx.block.time_ms);
                entry.regulator_reference = reference.clone();
                // Reporting implies the sponsor has seen it.
                entry.acknowledged_time_ms.get_or_insert(tx.block.time_ms);
                state.put(key_adverse_event(study, event), encode_value(&entry));
                let on = Signed::AdverseEvent { event: *event };
                sign(tx, state, &mut record, on, Meaning::Responsibility)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::Sign { study, on, meaning } => {
                let mut record = existing(state, study)?;
                if matches!(meaning, Meaning::Consent | Meaning::Withdrawal) {
                    return Err(TrialsError::Invalid {
                        field: "meaning",
                        reason: "consent and withdrawal are signed with their own operations"
                            .into(),
                    });
                }
                let involved = match tx.authority {
                    Authority::Organisation { org } => {
                        *org == record.sponsor || record.sites.contains(org)
                    }
                    Authority::Member { org, role } => {
                        *role == Role::Auditor
                            || (*role != Role::Patient
                                && (*org == record.sponsor || record.sites.contains(org)))
                    }
                };
                if !involved {
                    return Err(TrialsError::NotSite);
                }
                check_signed(state, &record, on)?;
                sign(tx, state, &mut record, on.clone(), *meaning)?;
                put_study(state, &record);
                Ok(())
            }
            TrialsOp::SetMonitoredThresholds { study, thresholds } => {
                let record = sponsored(tx, state, study)?;
                check_thresholds(thresholds)?;
                let mut studies = monitored_studies(&*state)?;
                match (studies.binary_search(study), thresholds.is_empty()) {
                    (Ok(at), true) => {
                        studies.remove(at);
                    }
                    (Err(at), false) => {
                        if studies.len() >= MONITORED_STUDIES_MAX {
                            return Err(TrialsError::Limit(format!(
                                "at most {MONITORED_STUDIES_MAX} studies monitor device readings"
                            )));
                        }
                        studies.insert(at, study.clone());
                    }
                    _ => {}
                }
                state.put(KEY_MONITORED_STUDIES.to_vec(), encode_value(&studies));
                if thresholds.is_empty() {
                    state.delete(key_monitored(study));
                } else {
                    state.put(
                        key_monitored(study),
                        encode_value(&Monitored {
                            version: record.version,
                            thresholds: thresholds.clone(),
                            height: tx.block.height,
                            time_ms: tx.block.time_ms,
                        }),
                    );
                }
                Ok(())
            }
        }
    }

    fn end_block(block: &BlockContext, state: &mut View<'_, '_>) -> Result<(), StateError> {
        expire_clocks(block, state)
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: borsh::BorshDeserialize + serde::Serialize>(
            value: &[u8],
        ) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        let rest = key.strip_prefix("trial/");
        if key.as_bytes() == KEY_ALERTS || key.as_bytes() == KEY_CLOCK_CURSOR {
            return json::<u64>(value);
        }
        if key.starts_with("trial-alert/") {
            return json::<Alert>(value);
        }
        if key.starts_with("trial-event/") {
            return json::<String>(value);
        }
        if key.as_bytes() == KEY_MONITORED_STUDIES {
            return json::<Vec<String>>(value);
        }
        if key.starts_with("trial-monitored/of/") {
            return json::<Monitored>(value);
        }
        if key.starts_with("trial-clocks/") {
            let clocks: Vec<Clock> = borsh::from_slice(value).ok()?;
            return Some(serde_json::json!(
                clocks
                    .iter()
                    .map(|clock| serde_json::json!({
                        "deadline_ms": clock.deadline_ms,
                        "study": clock.study,
                        "event": clock.event,
                    }))
                    .collect::<Vec<_>>()
            ));
        }
        let rest = rest?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [_] => json::<Study>(value),
            [_, "version", _] => json::<ProtocolVersion>(value),
            [_, "document", _] => json::<Vec<DocumentVersion>>(value),
            [_, "subject", _] => json::<Subject>(value),
            [_, "participant", _] => json::<String>(value),
            [_, "signature", _] => json::<ESignature>(value),
            [_, "capture", _] => json::<CaptureHead>(value),
            [_, "capture", _, _] => json::<CaptureVersion>(value),
            [_, "capture-log", _] => json::<CaptureLogEntry>(value),
            [_, "adverse-event", _] => json::<AdverseEvent>(value),
            [_, "adverse-event-log", _] => json::<Hash>(value),
            _ => None,
        }
    }
}

struct Registration<'a> {
    study: &'a str,
    title: &'a str,
    registry_id: Option<&'a str>,
    protocol_hash: &'a Hash,
    sap_hash: &'a Hash,
    outcomes: &'a [OutcomeMeasure],
    sites: &'a [String],
}

fn register_study(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    registration: Registration<'_>,
) -> Result<(), TrialsError> {
    let sponsor = match tx.authority {
        Authority::Organisation { org }
        | Authority::Member {
            org,
            role: Role::Sponsor | Role::Validator,
        } => org.clone(),
        Authority::Member { .. } => return Err(TrialsError::NotSponsor),
    };
    let id = registration.study;
    check_study_id(id)?;
    check_text("title", registration.title)?;
    if let Some(registry_id) = registration.registry_id {
        check_registry_id(registry_id)?;
    }
    check_outcomes(registration.outcomes)?;
    if registration.sites.is_empty() || registration.sites.len() > SITES_MAX {
        return Err(TrialsError::Invalid {
            field: "sites",
            reason: format!("a study has 1 to {SITES_MAX} sites"),
        });
    }
    let mut sites = registration.sites.to_vec();
    sites.sort();
    sites.dedup();
    for site in &sites {
        if !org_exists(state, site)? {
            return Err(TrialsError::UnknownOrganisation(site.clone()));
        }
    }
    if study(state, id)?.is_some() {
        return Err(TrialsError::StudyExists(id.into()));
    }
    let mut record = Study {
        id: id.into(),
        title: registration.title.into(),
        sponsor,
        registry_id: registration.registry_id.map(str::to_string),
        sites,
        version: 1,
        consent_required: 1,
        registered_at: tx.block.height,
        registered_time_ms: tx.block.time_ms,
        subjects: 0,
        signatures: 0,
        captures_logged: 0,
        adverse_events: 0,
    };
    put_version(
        tx,
        state,
        &mut record,
        ProtocolVersion {
            version: 1,
            protocol_hash: *registration.protocol_hash,
            sap_hash: *registration.sap_hash,
            outcomes: registration.outcomes.to_vec(),
            reason: None,
            reconsent: true,
            outcome_changes: Vec::new(),
            height: tx.block.height,
            time_ms: tx.block.time_ms,
            signer: tx.sender,
        },
    )?;
    put_study(state, &record);
    Ok(())
}

/// A registry id: an NCT number (`NCT` and 8 digits) or another registry's id (EudraCT, ISRCTN,
/// a national one), as an id.
fn check_registry_id(registry_id: &str) -> Result<(), TrialsError> {
    check_id("registry_id", registry_id)?;
    if let Some(digits) = registry_id.strip_prefix("NCT")
        && (digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()))
    {
        return Err(TrialsError::Invalid {
            field: "registry_id",
            reason: "an NCT number is NCT followed by 8 digits".into(),
        });
    }
    Ok(())
}

fn check_outcomes(outcomes: &[OutcomeMeasure]) -> Result<(), TrialsError> {
    if outcomes.is_empty() || outcomes.len() > OUTCOMES_MAX {
        return Err(TrialsError::Invalid {
            field: "outcomes",
            reason: format!("a protocol pre-specifies 1 to {OUTCOMES_MAX} outcomes"),
        });
    }
    if !outcomes
        .iter()
        .any(|outcome| outcome.kind == OutcomeKind::Primary)
    {
        return Err(TrialsError::Invalid {
            field: "outcomes",
            reason: "a protocol pre-specifies at least one primary outcome".into(),
        });
    }
    let mut seen = BTreeSet::new();
    for outcome in outcomes {
        check_text("outcome measure", &outcome.measure)?;
        check_text("outcome time frame", &outcome.time_frame)?;
        if !seen.insert(outcome.measure.as_str()) {
            return Err(TrialsError::Invalid {
                field: "outcomes",
                reason: format!("measure {:?} is listed twice", outcome.measure),
            });
        }
    }
    Ok(())
}

/// How `after`'s outcomes differ from `before`'s, matched by measure, in a stable order:
/// removals and modifications in `before`'s order, then additions in `after`'s.
pub fn outcome_changes(before: &[OutcomeMeasure], after: &[OutcomeMeasure]) -> Vec<OutcomeChange> {
    let by_measure: BTreeMap<&str, &OutcomeMeasure> = after
        .iter()
        .map(|outcome| (outcome.measure.as_str(), outcome))
        .collect();
    let old: BTreeSet<&str> = before
        .iter()
        .map(|outcome| outcome.measure.as_str())
        .collect();
    let mut changes = Vec::new();
    for outcome in before {
        match by_measure.get(outcome.measure.as_str()) {
            None => changes.push(OutcomeChange::Removed {
                outcome: outcome.clone(),
            }),
            Some(now) if *now != outcome => changes.push(OutcomeChange::Modified {
                before: outcome.clone(),
                after: (*now).clone(),
            }),
            Some(_) => {}
        }
    }
    for outcome in after {
        if !old.contains(outcome.measure.as_str()) {
            changes.push(OutcomeChange::Added {
                outcome: outcome.clone(),
            });
        }
    }
    changes
}

fn existing(state: &View<'_, '_>, id: &str) -> Result<Study, TrialsError> {
    check_study_id(id)?;
    study(state, id)?.ok_or_else(|| TrialsError::UnknownStudy(id.into()))
}

/// The study, if the sender acts for its sponsor: the organisation's root key or node, or a
/// member with the sponsor role.
/// Refuses thresholds that are not a LOINC code with exactly one limit, held at most a day.
fn check_thresholds(thresholds: &[MonitoredThreshold]) -> Result<(), TrialsError> {
    let invalid = |reason: String| TrialsError::Invalid {
        field: "thresholds",
        reason,
    };
    if thresholds.len() > THRESHOLDS_MAX {
        return Err(invalid(format!("at most {THRESHOLDS_MAX}")));
    }
    for threshold in thresholds {
        let code = &threshold.loinc;
        let loinc = !code.is_empty()
            && code.len() <= 10
            && code
                .bytes()
                .all(|byte| byte.is_ascii_digit() || byte == b'-');
        if !loinc {
            return Err(invalid(format!("{code:?} is not a LOINC code")));
        }
        if threshold.below.is_some() == threshold.above.is_some() {
            return Err(invalid(format!("{code}: give one limit, below or above")));
        }
        if threshold.for_ms > DAY_MS {
            return Err(invalid(format!("{code}: held at most a day")));
        }
    }
    Ok(())
}

fn sponsored(tx: &TxContext<'_>, state: &View<'_, '_>, id: &str) -> Result<Study, TrialsError> {
    let record = existing(state, id)?;
    let acts = match tx.authority {
        Authority::Organisation { org } => *org == record.sponsor,
        Authority::Member { org, role } => {
            *org == record.sponsor && matches!(role, Role::Sponsor | Role::Validator)
        }
    };
    if acts {
        Ok(record)
    } else {
        Err(TrialsError::NotSponsor)
    }
}

/// The site the sender acts for: one of the study's sites, through its root key, its node or a
/// practitioner.
fn site_acting<'s>(tx: &TxContext<'_>, record: &'s Study) -> Result<&'s str, TrialsError> {
    let org = match tx.authority {
        Authority::Organisation { org }
        | Authority::Member {
            org,
            role: Role::Practitioner | Role::Validator,
        } => org,
        Authority::Member { .. } => return Err(TrialsError::NotSite),
    };
    record
        .sites
        .iter()
        .find(|site| *site == org)
        .map(String::as_str)
        .ok_or(TrialsError::NotSite)
}

fn put_study(state: &mut View<'_, '_>, record: &Study) {
    state.put(key_study(&record.id), encode_value(record));
}

fn put_version(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    record: &mut Study,
    version: ProtocolVersion,
) -> Result<(), TrialsError> {
    for (hash, kind) in [
        (version.protocol_hash, DocumentKind::Protocol),
        (version.sap_hash, DocumentKind::StatisticalAnalysisPlan),
    ] {
        let mut versions = document_versions(state, &record.id, &hash)?;
        versions.push(DocumentVersion {
            version: version.version,
            kind,
        });
        state.put(key_document(&record.id, &hash), encode_value(&versions));
    }
    state.put(
        key_version(&record.id, version.version),
        encode_value(&version),
    );
    let on = Signed::ProtocolVersion {
        version: version.version,
    };
    sign(tx, state, record, on, Meaning::Authorship)
}

/// Appends the sender's signature to the study's log.
fn sign(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    record: &mut Study,
    on: Signed,
    meaning: Meaning,
) -> Result<(), TrialsError> {
    sign_for(tx, tx.sender, state, record, on, meaning)
}

/// Appends `signer`'s signature to the study's log: the sender's own, or that of a practitioner
/// the sender (their organisation's node) acts for, already checked by the caller.
fn sign_for(
    tx: &TxContext<'_>,
    signer: PublicKey,
    state: &mut View<'_, '_>,
    record: &mut Study,
    on: Signed,
    meaning: Meaning,
) -> Result<(), TrialsError> {
    let authority = if signer == tx.sender {
        tx.authority.clone()
    } else {
        match standing(state, &signer)? {
            Standing::Acts(authority) => authority,
            _ => return Err(TrialsError::NotSiteAuthor),
        }
    };
    let (signer_org, signer_role) = match authority {
        Authority::Organisation { org } => (org, "organisation".to_string()),
        Authority::Member { org, role } => (org, role.as_str().to_string()),
    };
    state.put(
        key_signature(&record.id, record.signatures),
        encode_value(&ESignature {
            signer,
            sent_by: tx.sender,
            signer_org,
            signer_role,
            meaning,
            on,
            height: tx.block.height,
            time_ms: tx.block.time_ms,
            tx: tx.id,
        }),
    );
    record.signatures += 1;
    Ok(())
}

/// Checks that what a signature is on exists.
fn check_signed(state: &View<'_, '_>, record: &Study, on: &Signed) -> Result<(), TrialsError> {
    let exists = match on {
        Signed::ProtocolVersion { version } => (1..=record.version).contains(version),
        Signed::Subject { subject: id } => {
            check_subject_id(id)?;
            subject(state, &record.id, id)?.is_some()
        }
        Signed::Capture {
            capture: id,
            version,
        } => capture(state, &record.id, id)?
            .is_some_and(|head| (1..=head.versions).contains(version)),
        Signed::AdverseEvent { event } => adverse_event(state, &record.id, event)?.is_some(),
    };
    if exists {
        Ok(())
    } else {
        Err(TrialsError::Invalid {
            field: "on",
            reason: "the study has no such version, subject, capture or adverse event".into(),
        })
    }
}

/// May data be captured for this subject now?
pub fn capture_allowed(record: &Study, entry: &Subject) -> Result<(), TrialsError> {
    match (entry.status, entry.consented_version) {
        (SubjectStatus::Withdrawn, _) => Err(TrialsError::Withdrawn),
        (_, None) => Err(TrialsError::NoConsent),
        (_, Some(consented)) if consented < record.consent_required => {
            Err(TrialsError::ReconsentRequired {
                consented,
                required: record.consent_required,
            })
        }
        _ => Ok(()),
    }
}

fn capture_forms(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    study_id: &str,
    captures: &[CaptureEntry],
) -> Result<(), TrialsError> {
    let mut record = existing(state, study_id)?;
    let site = custodian_of(tx.authority)
        .filter(|org| record.sites.iter().any(|site| site == org))
        .ok_or(TrialsError::NotSite)?
        .to_string();
    if captures.is_empty() || captures.len() > CAPTURES_PER_TX_MAX {
        return Err(TrialsError::Invalid {
            field: "captures",
            reason: format!("one transaction records 1 to {CAPTURES_PER_TX_MAX} captures"),
        });
    }
    // Subjects and authors are checked once per transaction, however many forms name them.
    let mut subjects: BTreeSet<&str> = BTreeSet::new();
    let mut authors: BTreeSet<PublicKey> = BTreeSet::new();
    for entry in captures {
        check_subject_id(&entry.subject)?;
        check_id("form", &entry.form)?;
        check_id("visit", &entry.visit)?;
        if !subjects.contains(entry.subject.as_str()) {
            let found = subject(state, study_id, &entry.subject)?
                .ok_or_else(|| TrialsError::UnknownSubject(entry.subject.clone()))?;
            if found.site != site {
                return Err(TrialsError::NotSite);
            }
            capture_allowed(&record, &found)?;
            subjects.insert(&entry.subject);
        }
        if authors.insert(entry.author) {
            check_site_author(state, &entry.author, &site)?;
        }
        let current = capture(state, study_id, &entry.capture)?;
        let versions = current.as_ref().map_or(0, |head| head.versions);
        if entry.version != versions + 1 {
            return Err(TrialsError::CaptureVersion {
                capture: entry.capture.to_string(),
                current: versions,
                expected: versions + 1,
                given: entry.version,
            });
        }
        if entry.version > CAPTURE_VERSIONS_MAX {
            return Err(TrialsError::Limit(format!(
                "a capture has at most {CAPTURE_VERSIONS_MAX} versions"
            )));
        }
        if let Some(head) = &current
            && (head.subject != entry.subject
                || head.form != entry.form
                || head.visit != entry.visit
                || head.site != site)
        {
            return Err(TrialsError::CaptureMismatch);
        }
        match &entry.reason {
            Some(reason) => check_text("reason", reason)?,
            None if entry.version > 1 => return Err(TrialsError::ReasonRequired),
            None => {}
        }
        state.put(
            key_capture(study_id, &entry.capture),
            encode_value(&CaptureHead {
                subject: entry.subject.clone(),
                form: entry.form.clone(),
                visit: entry.visit.clone(),
                site: site.clone(),
                versions: entry.version,
            }),
        );
        state.put(
            key_capture_version(study_id, &entry.capture, entry.version),
            encode_value(&CaptureVersion {
                version: entry.version,
                commitment: entry.commitment,
                protocol_version: record.version,
                author: entry.author,
                reason: entry.reason.clone(),
                height: tx.block.height,
                time_ms: tx.block.time_ms,
                tx: tx.id,
            }),
        );
        state.put(
            key_capture_log(study_id, record.captures_logged),
            encode_value(&CaptureLogEntry {
                capture: entry.capture,
                version: entry.version,
            }),
        );
        record.captures_logged += 1;
    }
    put_study(state, &record);
    Ok(())
}

/// Checks that `author` writes for `site`: its root key, its node or an enrolled practitioner of
/// it. The ledger's rule for capture authors and adverse-event reporters, which a site's node
/// also applies before it keeps anything.
pub fn check_site_author(
    state: &dyn StateRead,
    author: &PublicKey,
    site: &str,
) -> Result<(), TrialsError> {
    match standing(state, author)? {
        Standing::Acts(Authority::Organisation { org })
        | Standing::Acts(Authority::Member {
            org,
            role: Role::Practitioner | Role::Validator,
        }) if org == site => Ok(()),
        _ => Err(TrialsError::NotSiteAuthor),
    }
}

fn push_alert(
    block: &BlockContext,
    state: &mut View<'_, '_>,
    record: &Study,
    kind: AlertKind,
) -> Result<(), StateError> {
    let seq = alerts_count(state)?;
    state.put(
        key_alert(seq),
        encode_value(&Alert {
            seq,
            study: record.id.clone(),
            sponsor: record.sponsor.clone(),
            height: block.height,
            time_ms: block.time_ms,
            kind,
        }),
    );
    state.put(KEY_ALERTS.to_vec(), encode_value(&(seq + 1)));
    Ok(())
}

fn add_clock(
    state: &mut View<'_, '_>,
    study_id: &str,
    event: &Hash,
    deadline_ms: u64,
) -> Result<(), TrialsError> {
    let day = deadline_ms / DAY_MS;
    let mut due = clocks(state, day)?;
    if due.len() >= CLOCKS_PER_DAY_MAX {
        return Err(TrialsError::Limit(format!(
            "at most {CLOCKS_PER_DAY_MAX} expedited reports may fall due on one day"
        )));
    }
    due.push(Clock {
        deadline_ms,
        study: study_id.into(),
        event: *event,
    });
    state.put(key_clocks(day), encode_value(&due));
    let cursor: Option<u64> = medledger_module::read(state, KEY_CLOCK_CURSOR)?;
    if cursor.is_none_or(|cursor| day < cursor) {
        state.put(KEY_CLOCK_CURSOR.to_vec(), encode_value(&day));
    }
    Ok(())
}

/// Flags every clock that ran out before this block unreported, and raises its alert. Days are
/// checked from the cursor up to the block's day, at most `CLOCK_DAYS_PER_BLOCK_MAX` of them.
fn expire_clocks(block: &BlockContext, state: &mut View<'_, '_>) -> Result<(), StateError> {
    let Some(cursor) = medledger_module::read::<u64>(state, KEY_CLOCK_CURSOR)? else {
        return Ok(());
    };
    let today = block.time_ms / DAY_MS;
    let last = today.min(cursor.saturating_add(CLOCK_DAYS_PER_BLOCK_MAX - 1));
    let mut next_cursor = cursor;
    for day in cursor..=last {
        let due = clocks(state, day)?;
        let (expired, pending): (Vec<Clock>, Vec<Clock>) = due
            .into_iter()
            .partition(|clock| clock.deadline_ms < block.time_ms);
        for clock in &expired {
            flag_overdue(block, state, clock)?;
        }
        if !expired.is_empty() {
            if pending.is_empty() {
                state.delete(key_clocks(day));
            } else {
                state.put(key_clocks(day), encode_value(&pending));
            }
        }
        // Every clock of a past day has run out; today's later ones wait for a later block.
        if day < today {
            next_cursor = day + 1;
        } else {
            break;
        }
    }
    if next_cursor != cursor {
        state.put(KEY_CLOCK_CURSOR.to_vec(), encode_value(&next_cursor));
    }
    Ok(())
}

fn flag_overdue(
    block: &BlockContext,
    state: &mut View<'_, '_>,
    clock: &Clock,
) -> Result<(), StateError> {
    let key = key_adverse_event(&clock.study, &clock.event);
    let Some(mut event) = medledger_module::read::<AdverseEvent>(state, &key)? else {
        return Ok(());
    };
    if event.regulator_report_time_ms.is_some() || event.overdue_time_ms.is_some() {
        return Ok(());
    }
    event.overdue_time_ms = Some(block.time_ms);
    state.put(key, encode_value(&event));
    if let Some(record) = study(state, &clock.study)? {
        let kind = AlertKind::Overdue {
            event: clock.event,
            deadline_ms: clock.deadline_ms,
        };
        push_alert(block, state, &record, kind)?;
    }
    Ok(())
}
