//! Health records under patient consent: record versions, patient ids, consent grants, access
//! events and erasure. Content never reaches this module: a record is an opaque id, a FHIR type,
//! an optional coarse category and a keyed commitment.
//!
//! **Invariant:** consent is evaluated only here, from the state and the block time, so every node
//! reaches the same decision for the same access event. Deny provisions win over permits; a
//! practitioner's break-glass read for ETREAT is allowed without a grant and flagged; nothing is
//! allowed for an erased patient.
//! **Invariant:** history is append-only. A record gains versions and never loses one; a grant is
//! revoked, never deleted; an access event is written once under the next sequence number of its
//! patient and never changes.

use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, BlockContext, Standing, TxContext, View, key_org, member, read, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::Role;

use crate::RecordsError;
use crate::types::{
    ACCESS_RECORDS_MAX, AccessEvent, AccessRequest, AccessRule, ConsentBook, ConsentEntry,
    ConsentGrant, DELEGATES_MAX, GRANTS_PER_PATIENT_MAX, Grantee, PROVISION_ITEMS_MAX,
    PROVISIONS_MAX, PatientEntry, ProvisionKind, Purpose, RECORD_CATEGORIES, RECORDS_PER_TX_MAX,
    RESOURCE_TYPE_BYTES_MAX, RecordHead, RecordVersion, RecordWrite, Scope,
};

/// The most patient ids one key may be bound to (one per custodian that holds their records).
pub const PATIENT_IDS_PER_KEY_MAX: usize = 64;

pub fn key_patient(id: &Hash) -> Vec<u8> {
    format!("patient/{id}").into_bytes()
}
pub fn key_patient_ids(key: &PublicKey) -> Vec<u8> {
    format!("patient-ids/{key}").into_bytes()
}
pub fn key_record(id: &Hash) -> Vec<u8> {
    format!("record/{id}").into_bytes()
}
/// Zero-padded, so a record's versions sort in order.
pub fn key_record_version(id: &Hash, version: u32) -> Vec<u8> {
    format!("record-version/{id}/{version:010}").into_bytes()
}
pub fn key_consent_book(patient: &PublicKey) -> Vec<u8> {
    format!("consent/{patient}").into_bytes()
}
pub fn key_grant(id: &Hash) -> Vec<u8> {
    format!("grant/{id}").into_bytes()
}
pub fn key_access_count(patient: &Hash) -> Vec<u8> {
    format!("access-count/{patient}").into_bytes()
}
/// Zero-padded, so a patient's events sort in order.
pub fn key_access(patient: &Hash, seq: u64) -> Vec<u8> {
    format!("access/{patient}/{seq:020}").into_bytes()
}
pub fn key_access_request(request: &Hash) -> Vec<u8> {
    format!("access-request/{request}").into_bytes()
}

pub fn patient(state: &dyn StateRead, id: &Hash) -> Result<Option<PatientEntry>, StateError> {
    read(state, &key_patient(id))
}
pub fn patient_ids(state: &dyn StateRead, key: &PublicKey) -> Result<Vec<Hash>, StateError> {
    Ok(read(state, &key_patient_ids(key))?.unwrap_or_default())
}
pub fn record(state: &dyn StateRead, id: &Hash) -> Result<Option<RecordHead>, StateError> {
    read(state, &key_record(id))
}
pub fn record_version(
    state: &dyn StateRead,
    id: &Hash,
    version: u32,
) -> Result<Option<RecordVersion>, StateError> {
    read(state, &key_record_version(id, version))
}
pub fn consent_book(state: &dyn StateRead, patient: &PublicKey) -> Result<ConsentBook, StateError> {
    Ok(read(state, &key_consent_book(patient))?.unwrap_or_default())
}
pub fn grant(state: &dyn StateRead, id: &Hash) -> Result<Option<ConsentEntry>, StateError> {
    read(state, &key_grant(id))
}
pub fn access_count(state: &dyn StateRead, patient: &Hash) -> Result<u64, StateError> {
    Ok(read(state, &key_access_count(patient))?.unwrap_or(0))
}
pub fn access_event(
    state: &dyn StateRead,
    patient: &Hash,
    seq: u64,
) -> Result<Option<AccessEvent>, StateError> {
    read(state, &key_access(patient, seq))
}
/// Where the event recorded for a signed request is: `(patient, sequence number)`.
pub fn access_by_request(
    state: &dyn StateRead,
    request: &Hash,
) -> Result<Option<(Hash, u64)>, StateError> {
    read(state, &key_access_request(request))
}

/// The organisation a key holds records for: the organisation's root key or its node (a
/// validator). Only these sign record versions, bindings and access events; a practitioner acts
/// through the node, which checks the practitioner's signed request and names them as author or
/// reader.
pub fn custodian_of(authority: &Authority, what: &'static str) -> Result<String, RecordsError> {
    medledger_module::custodian_of(authority)
        .map(str::to_string)
        .ok_or(RecordsError::NotACustodian(what))
}

/// The organisation a key may author records for: its root key, its node, or one of its
/// practitioners.
pub fn author_org(authority: &Authority) -> Option<&str> {
    match authority {
        Authority::Organisation { org }
        | Authority::Member {
            org,
            role: Role::Validator | Role::Practitioner,
        } => Some(org),
        Authority::Member { .. } => None,
    }
}

/// Checks a FHIR resource type name: an ASCII letter-initial identifier, as every R4 type is.
pub fn check_resource_type(name: &str) -> Result<(), RecordsError> {
    let valid = !name.is_empty()
        && name.len() <= RESOURCE_TYPE_BYTES_MAX
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(RecordsError::InvalidRecord(format!(
            "{name:?} is not a FHIR resource type name"
        )))
    }
}

fn check_category(category: &Option<String>) -> Result<(), RecordsError> {
    match category {
        Some(code) if !RECORD_CATEGORIES.contains(&code.as_str()) => {
            Err(RecordsError::InvalidRecord(format!(
                "category {code:?} is not one of the coarse classes the chain may hold"
            )))
        }
        _ => Ok(()),
    }
}

pub fn put_records(
    state: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    records: &[RecordWrite],
) -> Result<(), RecordsError> {
    let ctx = tx.block;
    let custodian = custodian_of(tx.authority, "write records")?;
    if records.is_empty() || records.len() > RECORDS_PER_TX_MAX {
        return Err(RecordsError::InvalidRecord(format!(
            "a transaction carries 1 to {RECORDS_PER_TX_MAX} record versions, not {}",
            records.len()
        )));
    }
    let tx_id = tx.id;
    for write in records {
        check_resource_type(&write.resource_type)?;
        check_category(&write.category)?;
        match patient(state, &write.patient)? {
            Some(entry) if entry.custodian != custodian => {
                return Err(RecordsError::NotCustodian {
                    id: write.patient,
                    custodian: entry.custodian,
                });
            }
            Some(PatientEntry {
                erased_at: Some(_), ..
            }) => return Err(RecordsError::PatientErased(write.patient)),
            Some(_) => {}
            None => state.put(
                key_patient(&write.patient),
                encode_value(&PatientEntry {
                    custodian: custodian.clone(),
                    key: None,
                    created_at: ctx.height,
                    erased_at: None,
                }),
            ),
        }
        // The named author must be able to write for this custodian, so provenance holds.
        match standing(state, &write.author)? {
            Standing::Acts(authority) if author_org(&authority) == Some(custodian.as_str()) => {}
            _ => return Err(RecordsError::NotAnAuthor(write.author)),
        }
        let expected = match record(state, &write.record)? {
            None => 1,
            Some(head) => {
                if head.custodian != custodian {
                    return Err(RecordsError::NotCustodian {
                        id: write.record,
                        custodian: head.custodian,
                    });
                }
                if head.patient != write.patient || head.resource_type != write.resource_type {
                    return Err(RecordsError::InvalidRecord(format!(
                        "record {} cannot change its patient or resource type",
                        write.record
                    )));
                }
                head.version + 1
            }
        };
        if write.version != expected {
            return Err(RecordsError::VersionConflict {
                record: write.record,
                expected,
                got: write.version,
            });
        }
        state.put(
            key_record(&write.record),
            encode_value(&RecordHead {
                patient: write.patient,
                custodian: custodian.clone(),
                resource_type: write.resource_type.clone(),
                category: write.category.clone(),
                version: write.version,
            }),
        );
        state.put(
            key_record_version(&write.record, write.version),
            encode_value(&RecordVersion {
                version: write.version,
                commitment: write.commitment,
                author: write.author,
                recorded_by: tx.sender,
                height: ctx.height,
                time_ms: ctx.time_ms,
                tx: tx_id,
            }),
        );
    }
    Ok(())
}

/// Fails unless `key` is an enrolled, unrevoked patient.
fn check_patient_key(state: &dyn StateRead, key: &PublicKey) -> Result<(), RecordsError> {
    match member(state, key)? {
        Some(record) if record.role == Role::Patient && record.revoked_at.is_none() => Ok(()),
        _ => Err(RecordsError::NotAPatient(*key)),
    }
}

pub fn bind_patient(
    state: &mut View<'_, '_>,
    authority: &Authority,
    id: &Hash,
    key: &PublicKey,
) -> Result<(), RecordsError> {
    let custodian = custodian_of(authority, "bind patients")?;
    let mut entry = patient(state, id)?.ok_or(RecordsError::UnknownPatient(*id))?;
    if entry.custodian != custodian {
        return Err(RecordsError::NotCustodian {
            id: *id,
            custodian: entry.custodian,
        });
    }
    if entry.erased_at.is_some() {
        return Err(RecordsError::PatientErased(*id));
    }
    if entry.key.is_some() {
        return Err(RecordsError::PatientBound(*id));
    }
    check_patient_key(state, key)?;
    let mut ids = patient_ids(state, key)?;
    if ids.len() >= PATIENT_IDS_PER_KEY_MAX {
        return Err(RecordsError::InvalidRecord(format!(
            "key {key} is already bound to {PATIENT_IDS_PER_KEY_MAX} patient ids"
        )));
    }
    ids.push(*id);
    entry.key = Some(*key);
    state.put(key_patient(id), encode_value(&entry));
    state.put(key_patient_ids(key), encode_value(&ids));
    Ok(())
}

pub fn set_delegate(
    state: &mut View<'_, '_>,
    sender: &PublicKey,
    delegate: &PublicKey,
    active: bool,
) -> Result<(), RecordsError> {
    check_patient_key(state, sender)?;
    if delegate == sender || delegate.check().is_err() {
        return Err(RecordsError::InvalidKey(*delegate));
    }
    let mut book = consent_book(state, sender)?;
    let present = book.delegates.contains(delegate);
    match (active, present) {
        (true, false) if book.delegates.len() >= DELEGATES_MAX => {
            return Err(RecordsError::InvalidGrant(format!(
                "a patient may name at most {DELEGATES_MAX} delegates"
            )));
        }
        (true, false) => {
            // A delegate must be someone the consortium knows.
            if member(state, delegate)?.is_none_or(|record| record.revoked_at.is_some()) {
                return Err(RecordsError::NotAMember(*delegate));
            }
            book.delegates.push(*delegate);
            book.delegates.sort();
        }
        (false, true) => book.delegates.retain(|key| key != delegate),
        (true, true) | (false, false) => return Ok(()),
    }
    state.put(key_consent_book(sender), encode_value(&book));
    Ok(())
}

/// Fails unless `sender` may sign consent for `patient`: the patient, or a delegate they named.
fn check_signs_for(
    state: &dyn StateRead,
    sender: &PublicKey,
    patient: &PublicKey,
) -> Result<ConsentBook, RecordsError> {
    check_patient_key(state, patient)?;
    let book = consent_book(state, patient)?;
    if sender != patient && !book.delegates.contains(sender) {
        return Err(RecordsError::NotThePatient {
            sender: *sender,
            patient: *patient,
        });
    }
    Ok(book)
}

fn check_grant(
    state: &dyn StateRead,
    ctx: &BlockContext,
    grant: &ConsentGrant,
) -> Result<(), RecordsError> {
    let invalid = |reason: String| Err(RecordsError::InvalidGrant(reason));
    if grant.provisions.is_empty() || grant.provisions.len() > PROVISIONS_MAX {
        return invalid(format!("a grant holds 1 to {PROVISIONS_MAX} provisions"));
    }
    if let Some(end) = grant.end_ms {
        if end <= grant.start_ms {
            return invalid("its period ends before it starts".into());
        }
        if end <= ctx.time_ms {
            return Err(RecordsError::GrantExpired { end_ms: end });
        }
    }
    for provision in &grant.provisions {
        let lengths = [
            provision.actors.len(),
            provision.scope.len(),
            provision.purposes.len(),
        ];
        if lengths.iter().any(|len| *len > PROVISION_ITEMS_MAX) {
            return invalid(format!(
                "a provision lists at most {PROVISION_ITEMS_MAX} actors, scopes and purposes"
            ));
        }
        if provision.kind == ProvisionKind::Permit
            && (provision.actors.is_empty() || provision.purposes.is_empty())
        {
            return invalid("a permit must name at least one actor and one purpose".into());
        }
        for actor in &provision.actors {
            match actor {
                Grantee::Key(key) if key.check().is_err() => {
                    return Err(RecordsError::InvalidKey(*key));
                }
                Grantee::Organisation(org) if state.get(&key_org(org))?.is_none() => {
                    return Err(RecordsError::UnknownOrganisation(org.clone()));
                }
                _ => {}
            }
        }
        for scope in &provision.scope {
            match scope {
                Scope::ResourceType(name) => check_resource_type(name)?,
                Scope::Category(code) => check_category(&Some(code.clone()))?,
                Scope::Record(_) => {}
            }
        }
    }
    Ok(())
}

pub fn grant_consent(
    state: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    grant: &ConsentGrant,
) -> Result<(), RecordsError> {
    let ctx = tx.block;
    let mut book = check_signs_for(state, &tx.sender, &grant.patient)?;
    check_grant(state, ctx, grant)?;
    // The book lists revoked and expired grants too, so the patient sees their history; only
    // when it is full do grants that can never apply again leave it (they stay on record under
    // their id).
    let mut kept = book.grants.clone();
    if kept.len() >= GRANTS_PER_PATIENT_MAX {
        kept.clear();
        for id in &book.grants {
            if let Some(entry) = self::grant(state, id)?
                && entry.revoked_at.is_none()
                && entry.grant.end_ms.is_none_or(|end| ctx.time_ms < end)
            {
                kept.push(*id);
            }
        }
    }
    if kept.len() >= GRANTS_PER_PATIENT_MAX {
        return Err(RecordsError::InvalidGrant(format!(
            "a patient may have at most {GRANTS_PER_PATIENT_MAX} grants in force"
        )));
    }
    let id = tx.id;
    kept.push(id);
    book.grants = kept;
    state.put(key_consent_book(&grant.patient), encode_value(&book));
    state.put(
        key_grant(&id),
        encode_value(&ConsentEntry {
            id,
            grant: grant.clone(),
            signed_by: tx.sender,
            granted_at: ctx.height,
            granted_time_ms: ctx.time_ms,
            revoked_at: None,
            revoked_time_ms: None,
        }),
    );
    Ok(())
}

pub fn revoke_consent(
    state: &mut View<'_, '_>,
    ctx: &BlockContext,
    sender: &PublicKey,
    id: &Hash,
) -> Result<(), RecordsError> {
    let mut entry = grant(state, id)?.ok_or(RecordsError::UnknownGrant(*id))?;
    check_signs_for(state, sender, &entry.grant.patient)?;
    if entry.revoked_at.is_some() {
        return Err(RecordsError::GrantRevoked(*id));
    }
    entry.revoked_at = Some(ctx.height);
    entry.revoked_time_ms = Some(ctx.time_ms);
    state.put(key_grant(id), encode_value(&entry));
    Ok(())
}

/// Who is asking, as consent sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    pub key: PublicKey,
    pub org: String,
    /// `None` for an organisation's root key.
    pub role: Option<Role>,
}

impl Reader {
    fn is(&self, grantee: &Grantee) -> bool {
        match grantee {
            Grantee::Key(key) => *key == self.key,
            Grantee::Organisation(org) => *org == self.org,
            Grantee::Role(role) => Some(*role) == self.role,
        }
    }
}

/// One record a reader asks for, and how.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    pub reader: &'a Reader,
    pub record_id: &'a Hash,
    pub record: &'a RecordHead,
    pub purpose: Purpose,
    pub break_glass: bool,
    pub erased: bool,
}

/// Decides access to one record: the consent rule every node applies.
///
/// Order: erased patients are never served; a practitioner's break-glass read for ETREAT is
/// allowed (and flagged in the event); then the first deny provision of a grant in force that
/// matches wins; then the first matching permit; otherwise there is no consent.
pub fn evaluate(grants: &[ConsentEntry], time_ms: u64, question: &Question<'_>) -> AccessRule {
    let Question {
        reader,
        record_id,
        record,
        purpose,
        break_glass,
        erased,
    } = *question;
    if erased {
        return AccessRule::Erased;
    }
    if break_glass && purpose == Purpose::EmergencyTreat && reader.role == Some(Role::Practitioner)
    {
        return AccessRule::BreakGlass;
    }
    let active: Vec<&ConsentEntry> = grants.iter().filter(|g| g.active_at(time_ms)).collect();
    let matches = |kind: ProvisionKind| {
        active.iter().find_map(|entry| {
            entry
                .grant
                .provisions
                .iter()
                .any(|provision| {
                    provision.kind == kind
                        && (provision.actors.is_empty()
                            || provision.actors.iter().any(|actor| reader.is(actor)))
                        && (provision.purposes.is_empty() || provision.purposes.contains(&purpose))
                        && (provision.scope.is_empty()
                            || provision.scope.iter().any(|scope| match scope {
                                Scope::ResourceType(name) => *name == record.resource_type,
                                Scope::Category(code) => record.category.as_ref() == Some(code),
                                Scope::Record(id) => id == record_id,
                            }))
                })
                .then_some(entry.id)
        })
    };
    if let Some(id) = matches(ProvisionKind::Deny) {
        return AccessRule::Deny(id);
    }
    if let Some(id) = matches(ProvisionKind::Permit) {
        return AccessRule::Permit(id);
    }
    AccessRule::NoConsent
}

/// The grants on record for a patient key, in the order they were given.
pub fn grants_of(
    state: &dyn StateRead,
    patient: &PublicKey,
) -> Result<Vec<ConsentEntry>, StateError> {
    let book = consent_book(state, patient)?;
    let mut grants = Vec::with_capacity(book.grants.len());
    for id in &book.grants {
        if let Some(entry) = grant(state, id)? {
            grants.push(entry);
        }
    }
    Ok(grants)
}

/// The consent decision for each record of `access`, as custodian `custodian` records it at
/// block time `time_ms`: the one rule [`record_access`] commits, and what a custodian's node
/// previews (at its head) to page a search by what the reader may see.
pub fn decide(
    state: &dyn StateRead,
    custodian: &str,
    access: &AccessRequest,
    time_ms: u64,
) -> Result<(Reader, Vec<(Hash, AccessRule)>), RecordsError> {
    let entry =
        patient(state, &access.patient)?.ok_or(RecordsError::UnknownPatient(access.patient))?;
    if entry.custodian != custodian {
        return Err(RecordsError::NotCustodian {
            id: access.patient,
            custodian: entry.custodian,
        });
    }
    let reader = match standing(state, &access.reader)? {
        Standing::Acts(Authority::Organisation { org }) => Reader {
            key: access.reader,
            org,
            role: None,
        },
        Standing::Acts(Authority::Member { org, role }) => Reader {
            key: access.reader,
            org,
            role: Some(role),
        },
        Standing::Revoked { .. } | Standing::Unknown => {
            return Err(RecordsError::ReaderNotEnrolled(access.reader));
        }
    };
    // The grants in force at this block, read and filtered once for all the records.
    let grants: Vec<ConsentEntry> = match entry.key {
        Some(key) => grants_of(state, &key)?
            .into_iter()
            .filter(|grant| grant.active_at(time_ms))
            .collect(),
        None => Vec::new(),
    };
    let mut decisions = Vec::with_capacity(access.records.len());
    for id in &access.records {
        let head = record(state, id)?.ok_or(RecordsError::UnknownRecord(*id))?;
        if head.patient != access.patient {
            return Err(RecordsError::InvalidRecord(format!(
                "record {id} does not belong to patient {}",
                access.patient
            )));
        }
        let rule = evaluate(
            &grants,
            time_ms,
            &Question {
                reader: &reader,
                record_id: id,
                record: &head,
                purpose: access.purpose,
                break_glass: access.break_glass,
                erased: entry.erased_at.is_some(),
            },
        );
        decisions.push((*id, rule));
    }
    Ok((reader, decisions))
}

pub fn record_access(
    state: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    access: &AccessRequest,
) -> Result<(), RecordsError> {
    let ctx = tx.block;
    let custodian = custodian_of(tx.authority, "record access events")?;
    if access.records.len() > ACCESS_RECORDS_MAX {
        return Err(RecordsError::InvalidRecord(format!(
            "an access event names at most {ACCESS_RECORDS_MAX} records"
        )));
    }
    if access.records.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(RecordsError::InvalidRecord(
            "an access event's records must be sorted and distinct".into(),
        ));
    }
    if access_by_request(state, &access.request)?.is_some() {
        return Err(RecordsError::RequestReplayed(access.request));
    }
    let (reader, decisions) = decide(state, &custodian, access, ctx.time_ms)?;
    let seq = access_count(state, &access.patient)? + 1;
    let event = AccessEvent {
        request: access.request,
        reader: access.reader,
        reader_org: reader.org,
        reader_role: reader.role,
        custodian,
        patient: access.patient,
        purpose: access.purpose,
        break_glass: access.break_glass,
        decisions,
        height: ctx.height,
        time_ms: ctx.time_ms,
        tx: tx.id,
    };
    state.put(key_access(&access.patient, seq), encode_value(&event));
    state.put(key_access_count(&access.patient), encode_value(&seq));
    state.put(
        key_access_request(&access.request),
        encode_value(&(access.patient, seq)),
    );
    Ok(())
}

pub fn erase_patient(
    state: &mut View<'_, '_>,
    ctx: &BlockContext,
    sender: &PublicKey,
    authority: &Authority,
    id: &Hash,
) -> Result<(), RecordsError> {
    let mut entry = patient(state, id)?.ok_or(RecordsError::UnknownPatient(*id))?;
    // The custodian organisation erases through its root key or its node, on the patient's
    // request; a single practitioner may not.
    let by_custodian = match authority {
        Authority::Organisation { org }
        | Authority::Member {
            org,
            role: Role::Validator,
        } => *org == entry.custodian,
        Authority::Member { .. } => false,
    };
    let by_patient = match entry.key {
        Some(key) => key == *sender || consent_book(state, &key)?.delegates.contains(sender),
        None => false,
    };
    if !by_custodian && !by_patient {
        return Err(RecordsError::NotAllowedToErase(*id));
    }
    if entry.erased_at.is_some() {
        return Err(RecordsError::PatientErased(*id));
    }
    entry.erased_at = Some(ctx.height);
    state.put(key_patient(id), encode_value(&entry));
    Ok(())
}
