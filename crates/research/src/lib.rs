//! Research data sharing, as a ledger module.
//!
//! A patient grants research consent in GA4GH DUO terms ([`duo`]): what research their data may
//! serve, on what conditions, which record types, until when. A researcher (an enrolled member
//! with the researcher role) files a data request for a purpose (HL7 PurposeOfUse HRESCH) in the
//! same terms, with the record types it needs and the X25519 key releases are sealed to.
//!
//! Each custodian's node matches the request against the research consents of the patients it
//! holds, by the one rule [`duo::permits`], and records the patients that matched
//! (`RecordMatches`); the ledger checks each against the consent in force at that block, so no
//! custodian can add a patient who did not consent. Which of a custodian's patients did not match
//! is never written anywhere. A release (`RecordRelease`) names the matched patients whose
//! records the custodian sent, de-identified and sealed to the researcher, with a commitment to
//! what was sent; each is checked against the consent again, so a revocation stops every later
//! release, and each becomes an entry of the patient's research access log
//! (`research-access/<patient>/<seq>`). What was released before a revocation stays recorded.
//!
//! **Invariant:** no PHI on chain: patients are keys, requests opaque ids with public DUO terms,
//! releases counts and commitments.

pub mod duo;

use borsh::{BorshDeserialize, BorshSerialize};
use duo::{DataUse, DuoError, DuoTerms, Mismatch};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, Module, ModuleError, Standing, TxContext, View, custodian_of, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::{Height, Role};
use serde::{Deserialize, Serialize};

/// The most patients one match or release names.
pub const PATIENTS_PER_TX_MAX: usize = 1_000;
/// The most record types a consent or a request names.
pub const RESOURCE_TYPES_MAX: usize = 32;
/// The longest request title.
pub const TITLE_BYTES_MAX: usize = 256;

/// A patient's research consent.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ResearchConsent {
    pub terms: DuoTerms,
    pub data_use: DataUse,
    /// The FHIR resource types it covers; empty for all.
    pub resource_types: Vec<String>,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// How many times this patient has granted research consent (this grant's number).
    pub version: u32,
    pub granted_at: Height,
    pub revoked_at: Option<Height>,
    pub revoked_time_ms: Option<u64>,
}

impl ResearchConsent {
    /// Is it in force at `time_ms`?
    pub fn in_force(&self, time_ms: u64) -> bool {
        self.revoked_at.is_none()
            && self.start_ms <= time_ms
            && self.end_ms.is_none_or(|end| time_ms < end)
    }
}

/// A researcher's data request.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DataRequest {
    pub id: Hash,
    pub researcher: PublicKey,
    pub org: String,
    pub title: String,
    pub terms: DuoTerms,
    pub data_use: DataUse,
    pub resource_types: Vec<String>,
    /// The X25519 public key releases are sealed to (HPKE).
    #[serde(with = "hex::serde")]
    pub recipient: [u8; 32],
    pub filed_at: Height,
    pub filed_time_ms: u64,
    pub closed_at: Option<Height>,
    pub matched: u32,
    pub releases: u32,
}

/// A patient matched to a request by a custodian.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Match {
    pub custodian: String,
    pub height: Height,
    pub time_ms: u64,
}

/// One release by a custodian.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Release {
    pub request: Hash,
    pub custodian: String,
    pub patients: Vec<PublicKey>,
    /// How many resources the release holds.
    pub resources: u32,
    /// SHA-256 of the sealed release as sent.
    pub sealed: Hash,
    pub height: Height,
    pub time_ms: u64,
}

/// An entry of a patient's research access log: a release of their records.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ResearchAccess {
    pub request: Hash,
    pub researcher: PublicKey,
    pub researcher_org: String,
    pub custodian: String,
    /// The release's number among the request's releases.
    pub release: u32,
    pub height: Height,
    pub time_ms: u64,
}

/// The research module's operations. Their order is their payload tag (from the registry's
/// base): only ever append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResearchOp {
    /// The patient grants research consent, replacing any earlier one.
    GrantResearchConsent {
        terms: DuoTerms,
        #[serde(default)]
        resource_types: Vec<String>,
        #[serde(default)]
        end_ms: Option<u64>,
    },
    /// The patient revokes their research consent.
    RevokeResearchConsent,
    /// A researcher files a data request.
    FileRequest {
        title: String,
        terms: DuoTerms,
        resource_types: Vec<String>,
        #[serde(with = "hex::serde")]
        recipient: [u8; 32],
    },
    /// A custodian's node records the patients it holds whose consent matches.
    RecordMatches {
        request: Hash,
        patients: Vec<PublicKey>,
    },
    /// A custodian's node records a release of matched patients' records.
    RecordRelease {
        request: Hash,
        patients: Vec<PublicKey>,
        resources: u32,
        sealed: Hash,
    },
    /// The researcher closes the request: no more matches or releases.
    CloseRequest { request: Hash },
    /// A custodian organisation's root key names the contract that must permit each release of
    /// its patients' records (a data-use condition the members write), or `None` for none.
    SetReleaseCondition { contract: Option<Hash> },
}

/// The contract a custodian requires to permit its releases.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ReleaseCondition {
    pub contract: Hash,
    pub set_at: Height,
}

pub fn key_condition(org: &str) -> Vec<u8> {
    format!("research-condition/{org}").into_bytes()
}

pub fn release_condition(
    state: &dyn StateRead,
    org: &str,
) -> Result<Option<ReleaseCondition>, StateError> {
    read(state, &key_condition(org))
}

#[derive(Debug, thiserror::Error)]
pub enum ResearchError {
    #[error("invalid DUO terms: {0}")]
    Terms(#[from] DuoError),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("only a patient grants or revokes their research consent")]
    NotPatient,
    #[error("no research consent in force")]
    NoConsent,
    #[error("only an enrolled researcher files a data request")]
    NotResearcher,
    #[error("the request's researcher is no longer an enrolled researcher")]
    ResearcherNotEnrolled,
    #[error("no data request {0}")]
    UnknownRequest(String),
    #[error("the request is closed")]
    Closed,
    #[error("only the request's researcher closes it")]
    NotRequester,
    #[error("only an organisation's root key or node matches and releases its patients")]
    NotCustodian,
    #[error("patient {patient} does not match the request: {reason}")]
    NoMatch { patient: String, reason: String },
    #[error("patient {0} is already matched to this request")]
    AlreadyMatched(String),
    #[error("patient {0} was not matched to this request by this custodian")]
    NotMatched(String),
    #[error("no contract {0}")]
    UnknownContract(Hash),
    #[error("the custodian's release condition did not permit the release: {0}")]
    ConditionRefused(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Asks the custodian's release condition, if it names one, whether this release may go ahead
/// (`medledger_contracts::consult`). The contract sees the request's public facts, never a
/// patient: `{"release": {"request", "researcher", "researcher_org", "terms", "resource_types",
/// "custodian", "patients": <count>, "resources": <count>, "release": <its number>}}`, and answers
/// `{"permit": true}` or `{"permit": false, "reason": "..."}`. Anything else, or a contract that
/// fails, refuses the release: a condition fails closed.
fn check_condition(
    state: &dyn StateRead,
    tx: &TxContext<'_>,
    custodian: &str,
    found: &DataRequest,
    patients: usize,
    seq: u32,
    resources: u32,
) -> Result<(), ResearchError> {
    let Some(condition) = release_condition(state, custodian)? else {
        return Ok(());
    };
    let message = serde_json::json!({ "release": {
        "request": found.id.to_string(),
        "researcher": found.researcher.to_string(),
        "researcher_org": found.org,
        "terms": found.terms,
        "resource_types": found.resource_types,
        "custodian": custodian,
        "patients": patients,
        "resources": resources,
        "release": seq,
    }});
    let answer = medledger_contracts::consult(
        state,
        tx,
        "research",
        &condition.contract,
        &message.to_string(),
    )?;
    let result = match answer {
        medledger_contracts::Consulted::Answer { result, .. } => result,
        medledger_contracts::Consulted::Failed { reason, .. } => {
            return Err(ResearchError::ConditionRefused(reason));
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&result).unwrap_or_default();
    match answer.get("permit").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(ResearchError::ConditionRefused(
            answer
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given")
                .chars()
                .take(256)
                .collect(),
        )),
        None => Err(ResearchError::ConditionRefused(
            "the condition's answer is not {\"permit\": true|false}".into(),
        )),
    }
}

impl ModuleError for ResearchError {
    fn code(&self) -> &'static str {
        match self {
            ResearchError::Terms(DuoError::NoPermission) => "no_duo_terms",
            ResearchError::Terms(_) => "invalid_duo_terms",
            ResearchError::Invalid { .. } => "invalid_research_input",
            ResearchError::NotPatient => "not_patient",
            ResearchError::NoConsent => "no_research_consent",
            ResearchError::NotResearcher => "not_researcher",
            ResearchError::ResearcherNotEnrolled => "researcher_not_enrolled",
            ResearchError::UnknownRequest(_) => "unknown_request",
            ResearchError::Closed => "request_closed",
            ResearchError::NotRequester => "not_requester",
            ResearchError::NotCustodian => "not_custodian",
            ResearchError::NoMatch { .. } => "no_match",
            ResearchError::AlreadyMatched(_) => "already_matched",
            ResearchError::NotMatched(_) => "not_matched",
            ResearchError::UnknownContract(_) => "unknown_contract",
            ResearchError::ConditionRefused(_) => "release_condition_refused",
            ResearchError::State(_) => "state",
        }
    }
}

pub fn key_consent(patient: &PublicKey) -> Vec<u8> {
    format!("research-consent/{patient}").into_bytes()
}

pub fn key_request(request: &Hash) -> Vec<u8> {
    format!("research-request/{request}").into_bytes()
}

pub fn key_match(request: &Hash, patient: &PublicKey) -> Vec<u8> {
    format!("research-match/{request}/{patient}").into_bytes()
}

/// How many patients a custodian matched to a request.
pub fn key_cohort(request: &Hash, custodian: &str) -> Vec<u8> {
    format!("research-cohort/{request}/{custodian}").into_bytes()
}

pub fn key_release(request: &Hash, seq: u32) -> Vec<u8> {
    format!("research-release/{request}/{seq:010}").into_bytes()
}

pub fn key_access(patient: &PublicKey, seq: u64) -> Vec<u8> {
    format!("research-access/{patient}/{seq:020}").into_bytes()
}

pub fn key_access_count(patient: &PublicKey) -> Vec<u8> {
    format!("research-access-count/{patient}").into_bytes()
}

fn read<T: BorshDeserialize>(state: &dyn StateRead, key: &[u8]) -> Result<Option<T>, StateError> {
    medledger_module::read(state, key)
}

pub fn consent(
    state: &dyn StateRead,
    patient: &PublicKey,
) -> Result<Option<ResearchConsent>, StateError> {
    read(state, &key_consent(patient))
}

pub fn request(state: &dyn StateRead, request: &Hash) -> Result<Option<DataRequest>, StateError> {
    read(state, &key_request(request))
}

pub fn matched(
    state: &dyn StateRead,
    request: &Hash,
    patient: &PublicKey,
) -> Result<Option<Match>, StateError> {
    read(state, &key_match(request, patient))
}

pub fn cohort_size(
    state: &dyn StateRead,
    request: &Hash,
    custodian: &str,
) -> Result<u32, StateError> {
    Ok(read(state, &key_cohort(request, custodian))?.unwrap_or(0))
}

pub fn release(
    state: &dyn StateRead,
    request: &Hash,
    seq: u32,
) -> Result<Option<Release>, StateError> {
    read(state, &key_release(request, seq))
}

pub fn access_count(state: &dyn StateRead, patient: &PublicKey) -> Result<u64, StateError> {
    Ok(read(state, &key_access_count(patient))?.unwrap_or(0))
}

pub fn access(
    state: &dyn StateRead,
    patient: &PublicKey,
    seq: u64,
) -> Result<Option<ResearchAccess>, StateError> {
    read(state, &key_access(patient, seq))
}

/// A patient's research access log: how many releases named them, and the latest `limit`, oldest
/// first.
pub fn access_log(
    state: &dyn StateRead,
    patient: &PublicKey,
    limit: u64,
) -> Result<(u64, Vec<ResearchAccess>), StateError> {
    let total = access_count(state, patient)?;
    let mut entries = Vec::new();
    for seq in total.saturating_sub(limit)..total {
        if let Some(entry) = access(state, patient, seq)? {
            entries.push(entry);
        }
    }
    Ok((total, entries))
}

/// Does `consent`, at `time_ms`, permit `request`? The one rule matches and releases use: the
/// consent is in force, its terms permit the request's (`duo::permits`, with the requester's
/// organisation) and it covers at least one of the record types asked for.
pub fn consent_permits(
    consent: &ResearchConsent,
    request: &DataRequest,
    time_ms: u64,
) -> Result<(), String> {
    if !consent.in_force(time_ms) {
        return Err("no research consent in force".into());
    }
    duo::permits(&consent.data_use, &request.data_use, &request.org).map_err(|mismatch| {
        match mismatch {
            Mismatch::Purpose => "the consent does not permit this research purpose".to_string(),
            Mismatch::Modifier { modifier } => {
                format!("the request does not satisfy the consent's condition {modifier:?}")
            }
            Mismatch::Institution => "the consent is for other institutions".to_string(),
        }
    })?;
    if !consent.resource_types.is_empty()
        && !request
            .resource_types
            .iter()
            .any(|kind| consent.resource_types.contains(kind))
    {
        return Err("the consent covers none of the record types asked for".into());
    }
    Ok(())
}

/// The record types a release may hold for a patient: those asked for that the consent covers.
pub fn releasable_types(consent: &ResearchConsent, request: &DataRequest) -> Vec<String> {
    request
        .resource_types
        .iter()
        .filter(|kind| consent.resource_types.is_empty() || consent.resource_types.contains(kind))
        .cloned()
        .collect()
}

fn check_resource_types(types: &[String], required: bool) -> Result<Vec<String>, ResearchError> {
    if types.len() > RESOURCE_TYPES_MAX || (required && types.is_empty()) {
        return Err(ResearchError::Invalid {
            field: "resource_types",
            reason: format!(
                "name {} to {RESOURCE_TYPES_MAX} FHIR resource types",
                u8::from(required)
            ),
        });
    }
    let mut out = types.to_vec();
    for kind in &out {
        let ok = !kind.is_empty()
            && kind.len() <= 64
            && kind.bytes().all(|byte| byte.is_ascii_alphabetic())
            && kind.as_bytes()[0].is_ascii_uppercase();
        if !ok {
            return Err(ResearchError::Invalid {
                field: "resource_types",
                reason: format!(
                    "{:?} is not a FHIR resource type",
                    kind.chars().take(80).collect::<String>()
                ),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_patients(patients: &[PublicKey]) -> Result<(), ResearchError> {
    if patients.is_empty() || patients.len() > PATIENTS_PER_TX_MAX {
        return Err(ResearchError::Invalid {
            field: "patients",
            reason: format!("name 1 to {PATIENTS_PER_TX_MAX} patients"),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    if !patients.iter().all(|patient| seen.insert(patient)) {
        return Err(ResearchError::Invalid {
            field: "patients",
            reason: "a patient is named twice".into(),
        });
    }
    Ok(())
}

/// The request, open, with its researcher still an enrolled researcher.
fn open_request(state: &View<'_, '_>, id: &Hash) -> Result<DataRequest, ResearchError> {
    let found = request(state, id)?.ok_or_else(|| ResearchError::UnknownRequest(id.to_string()))?;
    if found.closed_at.is_some() {
        return Err(ResearchError::Closed);
    }
    match standing(state, &found.researcher)? {
        Standing::Acts(Authority::Member {
            role: Role::Researcher,
            ..
        }) => Ok(found),
        _ => Err(ResearchError::ResearcherNotEnrolled),
    }
}

fn no_match(patient: &PublicKey, reason: String) -> ResearchError {
    ResearchError::NoMatch {
        patient: patient.to_string(),
        reason,
    }
}

/// The research module.
#[derive(Clone, Copy, Debug)]
pub struct Research;

impl Module for Research {
    const NAME: &'static str = "research";
    const PREFIXES: &'static [&'static str] = &[
        "research-consent/",
        "research-request/",
        "research-match/",
        "research-cohort/",
        "research-release/",
        "research-access/",
        "research-access-count/",
        "research-condition/",
    ];
    // A custodian's release condition is a contract the module consults: what a contract reads.
    const READS: &'static [&'static str] = medledger_contracts::CONSULT_READS;
    const KINDS: &'static [&'static str] = &[
        "grant_research_consent",
        "revoke_research_consent",
        "file_request",
        "record_matches",
        "record_release",
        "close_request",
        "set_release_condition",
    ];
    type Op = ResearchOp;
    type Error = ResearchError;

    fn kind(op: &ResearchOp) -> &'static str {
        match op {
            ResearchOp::GrantResearchConsent { .. } => "grant_research_consent",
            ResearchOp::RevokeResearchConsent => "revoke_research_consent",
            ResearchOp::FileRequest { .. } => "file_request",
            ResearchOp::RecordMatches { .. } => "record_matches",
            ResearchOp::RecordRelease { .. } => "record_release",
            ResearchOp::CloseRequest { .. } => "close_request",
            ResearchOp::SetReleaseCondition { .. } => "set_release_condition",
        }
    }

    fn apply(
        op: &ResearchOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), ResearchError> {
        let now = tx.block.time_ms;
        match op {
            ResearchOp::GrantResearchConsent {
                terms,
                resource_types,
                end_ms,
            } => {
                if !matches!(
                    tx.authority,
                    Authority::Member {
                        role: Role::Patient,
                        ..
                    }
                ) {
                    return Err(ResearchError::NotPatient);
                }
                let data_use = terms.parse()?;
                let resource_types = check_resource_types(resource_types, false)?;
                if end_ms.is_some_and(|end| end <= now) {
                    return Err(ResearchError::Invalid {
                        field: "end_ms",
                        reason: "the consent would end before it starts".into(),
                    });
                }
                let version = consent(state, &tx.sender)?.map_or(1, |before| before.version + 1);
                state.put(
                    key_consent(&tx.sender),
                    encode_value(&ResearchConsent {
                        terms: terms.clone(),
                        data_use,
                        resource_types,
                        start_ms: now,
                        end_ms: *end_ms,
                        version,
                        granted_at: tx.block.height,
                        revoked_at: None,
                        revoked_time_ms: None,
                    }),
                );
                Ok(())
            }
            ResearchOp::RevokeResearchConsent => {
                let mut found = consent(state, &tx.sender)?
                    .filter(|found| found.revoked_at.is_none())
                    .ok_or(ResearchError::NoConsent)?;
                found.revoked_at = Some(tx.block.height);
                found.revoked_time_ms = Some(now);
                state.put(key_consent(&tx.sender), encode_value(&found));
                Ok(())
            }
            ResearchOp::FileRequest {
                title,
                terms,
                resource_types,
                recipient,
            } => {
                let Authority::Member {
                    org,
                    role: Role::Researcher,
                } = tx.authority
                else {
                    return Err(ResearchError::NotResearcher);
                };
                if title.trim().is_empty()
                    || title.len() > TITLE_BYTES_MAX
                    || title.chars().any(char::is_control)
                {
                    return Err(ResearchError::Invalid {
                        field: "title",
                        reason: format!("1 to {TITLE_BYTES_MAX} bytes, no control characters"),
                    });
                }
                let data_use = terms.parse()?;
                let resource_types = check_resource_types(resource_types, true)?;
                state.put(
                    key_request(&tx.id),
                    encode_value(&DataRequest {
                        id: tx.id,
                        researcher: tx.sender,
                        org: org.clone(),
                        title: title.clone(),
                        terms: terms.clone(),
                        data_use,
                        resource_types,
                        recipient: *recipient,
                        filed_at: tx.block.height,
                        filed_time_ms: now,
                        closed_at: None,
                        matched: 0,
                        releases: 0,
                    }),
                );
                Ok(())
            }
            ResearchOp::RecordMatches {
                request: id,
                patients,
            } => {
                let custodian = custodian_of(tx.authority)
                    .ok_or(ResearchError::NotCustodian)?
                    .to_string();
                check_patients(patients)?;
                let mut found = open_request(state, id)?;
                for patient in patients {
                    if matched(state, id, patient)?.is_some() {
                        return Err(ResearchError::AlreadyMatched(patient.to_string()));
                    }
                    let granted = consent(state, patient)?
                        .ok_or_else(|| no_match(patient, "no research consent".into()))?;
                    consent_permits(&granted, &found, now)
                        .map_err(|reason| no_match(patient, reason))?;
                    state.put(
                        key_match(id, patient),
                        encode_value(&Match {
                            custodian: custodian.clone(),
                            height: tx.block.height,
                            time_ms: now,
                        }),
                    );
                }
                let count = patients.len() as u32;
                let cohort = cohort_size(state, id, &custodian)?;
                state.put(key_cohort(id, &custodian), encode_value(&(cohort + count)));
                found.matched += count;
                state.put(key_request(id), encode_value(&found));
                Ok(())
            }
            ResearchOp::RecordRelease {
                request: id,
                patients,
                resources,
                sealed,
            } => {
                let custodian = custodian_of(tx.authority)
                    .ok_or(ResearchError::NotCustodian)?
                    .to_string();
                check_patients(patients)?;
                let mut found = open_request(state, id)?;
                let seq = found.releases;
                check_condition(
                    state,
                    tx,
                    &custodian,
                    &found,
                    patients.len(),
                    seq,
                    *resources,
                )?;
                for patient in patients {
                    if matched(state, id, patient)?.is_none_or(|by| by.custodian != custodian) {
                        return Err(ResearchError::NotMatched(patient.to_string()));
                    }
                    let granted = consent(state, patient)?
                        .ok_or_else(|| no_match(patient, "no research consent".into()))?;
                    consent_permits(&granted, &found, now)
                        .map_err(|reason| no_match(patient, reason))?;
                    let next = access_count(state, patient)?;
                    state.put(
                        key_access(patient, next),
                        encode_value(&ResearchAccess {
                            request: *id,
                            researcher: found.researcher,
                            researcher_org: found.org.clone(),
                            custodian: custodian.clone(),
                            release: seq,
                            height: tx.block.height,
                            time_ms: now,
                        }),
                    );
                    state.put(key_access_count(patient), encode_value(&(next + 1)));
                }
                state.put(
                    key_release(id, seq),
                    encode_value(&Release {
                        request: *id,
                        custodian,
                        patients: patients.clone(),
                        resources: *resources,
                        sealed: *sealed,
                        height: tx.block.height,
                        time_ms: now,
                    }),
                );
                found.releases += 1;
                state.put(key_request(id), encode_value(&found));
                // Reward programs that pay for research sharing pay each released patient.
                state.request(medledger_tokens::TokenEffect::ResearchShared {
                    request: *id,
                    patients: patients.clone(),
                });
                Ok(())
            }
            ResearchOp::SetReleaseCondition { contract } => {
                let Authority::Organisation { org } = tx.authority else {
                    return Err(ResearchError::NotCustodian);
                };
                match contract {
                    None => state.delete(key_condition(org)),
                    Some(contract) => {
                        if medledger_contracts::contract(&*state, contract)?.is_none() {
                            return Err(ResearchError::UnknownContract(*contract));
                        }
                        state.put(
                            key_condition(org),
                            encode_value(&ReleaseCondition {
                                contract: *contract,
                                set_at: tx.block.height,
                            }),
                        );
                    }
                }
                Ok(())
            }
            ResearchOp::CloseRequest { request: id } => {
                let mut found = request(state, id)?
                    .ok_or_else(|| ResearchError::UnknownRequest(id.to_string()))?;
                if found.researcher != tx.sender {
                    return Err(ResearchError::NotRequester);
                }
                if found.closed_at.is_some() {
                    return Err(ResearchError::Closed);
                }
                found.closed_at = Some(tx.block.height);
                state.put(key_request(id), encode_value(&found));
                Ok(())
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: BorshDeserialize + Serialize>(value: &[u8]) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        if key.starts_with("research-consent/") {
            json::<ResearchConsent>(value)
        } else if key.starts_with("research-request/") {
            json::<DataRequest>(value)
        } else if key.starts_with("research-match/") {
            json::<Match>(value)
        } else if key.starts_with("research-release/") {
            json::<Release>(value)
        } else if key.starts_with("research-access/") {
            json::<ResearchAccess>(value)
        } else if key.starts_with("research-cohort/") {
            json::<u32>(value)
        } else if key.starts_with("research-condition/") {
            json::<ReleaseCondition>(value)
        } else if key.starts_with("research-access-count/") {
            json::<u64>(value)
        } else {
            None
        }
    }
}
