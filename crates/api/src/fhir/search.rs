//! FHIR search (R4 §3.1.1): records by patient, and the ledger's own AuditEvent, Consent and
//! Provenance, each a `searchset` with `self`, `next` and `previous` links.
//!
//! A record search applies the patient's consent first (a preview at the head), then the search
//! parameters (on content decrypted inside the node), then the sort, then the page. So `total`
//! counts every match the caller may see, and following `next` returns each exactly once. Only
//! the page's records are named in the access event committed on chain before anything is
//! released; a record whose consent changed in between is withheld and counted in
//! `X-Withheld-Records`.
//!
//! Unknown parameters are ignored and left out of the `self` link, unless the request says
//! `Prefer: handling=strict`, which answers 400.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use medledger_crypto::Hash;
use medledger_fhir::search::{
    DateRange, SearchQuery, SortField, compare_dates, date_of, matches, parse_search,
};
use medledger_fhir::{IssueType, SearchEntry};
use medledger_ledger::Authority;
use medledger_node::records::{ReadRequest, Records, Selection};
use medledger_types::Role;
use serde_json::Value;

use super::{
    Caller, FhirFailure, FhirResult, add_event_header, blocking, caller, check_kind, fhir_bytes,
    fhir_json, records,
};
use crate::AppState;
use crate::smart::{Action, base_url};

#[utoipa::path(get, path = "/fhir", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("patient" = String, Query, description = "The Patient's logical id"), ("_count" = Option<usize>, Query), ("_offset" = Option<usize>, Query), ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code, e.g. TREAT, ETREAT, HPAYMT, HOPERAT, HRESCH; else the token's")),
    responses((status = 200, description = "A searchset Bundle of what consent allows, paged; X-Withheld-Records counts what consent withheld")))]
pub(super) async fn search_all(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> FhirResult<Response> {
    search(state, method, uri, headers, query, None).await
}

#[utoipa::path(get, path = "/fhir/{type}", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("type" = String, Path, description = "A resource type, or Consent, AuditEvent or Provenance"), ("patient" = Option<String>, Query), ("target" = Option<String>, Query, description = "Provenance only: Type/id"), ("_count" = Option<usize>, Query), ("_offset" = Option<usize>, Query), ("_sort" = Option<String>, Query, description = "date, _lastUpdated or _id; - for descending"), ("_include" = Option<String>, Query, description = "[type]:patient or [type]:subject"), ("_revinclude" = Option<String>, Query, description = "Provenance:target")),
    responses((status = 200, description = "A searchset Bundle"), (status = 400, description = "A malformed value, or an unknown parameter under Prefer: handling=strict"), (status = 403, description = "Not the patient, a delegate, the custodian or an auditor (AuditEvent, Provenance, Consent), or a token's scopes do not cover it")))]
pub(super) async fn search_kind(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path(kind): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> FhirResult<Response> {
    check_kind(&kind)?;
    if let Some(view) = crate::fhir_view(&kind) {
        let caller = super::caller(&state, &method, &uri, &headers, b"").await?;
        return (view.search)(state, caller, kind, query).await;
    }
    search(state, method, uri, headers, query, Some(kind)).await
}

fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .any(|part| part.trim() == "handling=strict")
}

/// The `self`, `next` and `previous` links of a page: the understood parameters, with the page's
/// `_count` and `_offset`.
fn links(
    headers: &HeaderMap,
    uri: &Uri,
    query: &SearchQuery,
    total: usize,
) -> Vec<(&'static str, String)> {
    paging_links(
        headers,
        uri,
        &query.understood,
        query.count,
        query.offset,
        total,
    )
}

/// A searchset's `self`, `next` and `previous` links: the kept parameters (any `_count` and
/// `_offset` among them are replaced) with the page's count and offset.
pub(crate) fn paging_links(
    headers: &HeaderMap,
    uri: &Uri,
    params: &[(String, String)],
    count: usize,
    offset: usize,
    total: usize,
) -> Vec<(&'static str, String)> {
    let base = base_url(headers);
    let path = uri.path().trim_end_matches('/');
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "_count" && name != "_offset")
        .cloned()
        .collect();
    let link = |offset: usize| {
        let mut params = kept.clone();
        params.push(("_count".into(), count.to_string()));
        params.push(("_offset".into(), offset.to_string()));
        let encoded = serde_urlencoded::to_string(&params).unwrap_or_default();
        format!("{base}{path}?{encoded}")
    };
    let mut links = vec![("self", link(offset))];
    if count > 0 {
        let next = offset.saturating_add(count);
        if next < total {
            links.push(("next", link(next)));
        }
        if offset > 0 {
            links.push(("previous", link(offset.saturating_sub(count))));
        }
    }
    links
}

/// One position of a sort key: present values first, in the asked direction, then missing ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortPart {
    Ascending(i64, String),
    Descending(Reverse<(i64, String)>),
    Missing,
}

async fn search(
    state: AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    params: Vec<(String, String)>,
    kind: Option<String>,
) -> FhirResult<Response> {
    let mut query = parse_search(kind.as_deref(), &params).map_err(|error| {
        FhirFailure::new(StatusCode::BAD_REQUEST, IssueType::Value, error.to_string())
    })?;
    // One access event names a page and the included Patient: a page is at most what fits.
    query.count = query
        .count
        .min(medledger_records::ACCESS_RECORDS_MAX - usize::from(query.include_patient));
    if strict(&headers) && !query.ignored.is_empty() {
        let named: Vec<String> = query
            .ignored
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        return Err(FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            format!(
                "unsupported search parameters under Prefer: handling=strict: {}",
                named.join(", ")
            ),
        ));
    }
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    match kind.as_deref() {
        Some("Consent") => return consent_search(&state, &caller, &headers, &uri, &query).await,
        Some("AuditEvent") => return audit_search(&state, &caller, &headers, &uri, &query).await,
        Some("Provenance") => {
            return provenance_search(&state, &caller, &headers, &uri, &query).await;
        }
        _ => {}
    }
    let launch_patient = caller
        .grant
        .as_ref()
        .and_then(|grant| grant.patient.clone());
    let fhir_patient = query.patient.clone().or(launch_patient).ok_or_else(|| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "searches are by patient: give patient=<id> (optionally with a resource type)",
        )
    })?;
    caller.may(
        kind.as_deref().unwrap_or("*"),
        Action::Search,
        Some(&fhir_patient),
    )?;
    let purpose = caller.purpose()?;
    let records = records(&state)?;
    let finder = records.clone();
    let patient_id = fhir_patient.clone();
    let patient = blocking(move || Ok(finder.patient_by_fhir(&patient_id)?)).await?;
    let Some(patient) = patient else {
        return Ok(fhir_bytes(
            StatusCode::OK,
            medledger_fhir::searchset(&[], 0, &links(&headers, &uri, &query, 0)),
        ));
    };
    let selection = Selection {
        reader: caller.key,
        patient,
        resource_type: kind.clone(),
        purpose,
        break_glass: caller.access.break_glass,
    };
    let selector = records.clone();
    let judged = query.clone();
    let selected = blocking(move || {
        Ok(
            selector.select(&selection, judged.reads_content(), |candidate, content| {
                let hit = &candidate.hit;
                if !judged.ids.is_empty() && !judged.ids.contains(&hit.fhir_id) {
                    return None;
                }
                let updated = DateRange {
                    start_ms: i64::try_from(candidate.last_updated_ms).unwrap_or(i64::MAX),
                    end_ms: i64::try_from(candidate.last_updated_ms)
                        .unwrap_or(i64::MAX)
                        .saturating_add(1),
                };
                if !judged
                    .last_updated
                    .iter()
                    .all(|(prefix, range)| compare_dates(*prefix, *range, updated))
                {
                    return None;
                }
                let resource: Option<Value> =
                    content.and_then(|bytes| serde_json::from_slice(bytes).ok());
                if !judged.filters.is_empty() {
                    let resource = resource.as_ref()?;
                    if !matches(&hit.resource_type, resource, &judged.filters) {
                        return None;
                    }
                }
                let key: Vec<SortPart> = judged
                    .sort
                    .iter()
                    .map(|sort| {
                        let value = match sort.field {
                            SortField::Date => resource
                                .as_ref()
                                .and_then(|resource| date_of(&hit.resource_type, resource))
                                .map(|start| (start, String::new())),
                            SortField::LastUpdated => Some((updated.start_ms, String::new())),
                            SortField::Id => Some((0, hit.fhir_id.clone())),
                        };
                        match (value, sort.descending) {
                            (None, _) => SortPart::Missing,
                            (Some((number, text)), false) => SortPart::Ascending(number, text),
                            (Some(value), true) => SortPart::Descending(Reverse(value)),
                        }
                    })
                    .collect();
                Some(key)
            })?,
        )
    })
    .await?;
    let page: Vec<_> = selected
        .candidates
        .iter()
        .skip(query.offset)
        .take(query.count)
        .cloned()
        .collect();
    // What modules add to this type (a patient's device readings) follows the records, each
    // source paged within its own matches.
    let mut total = selected.candidates.len();
    let mut withheld = selected.withheld;
    let mut added = Vec::new();
    let mut source_event = None;
    if let Some(kind) = &kind {
        let mut offset = query.offset.saturating_sub(total);
        let mut room = query.count - page.len();
        for source in crate::fhir_sources(kind) {
            let part = (source.search)(
                state.clone(),
                caller.clone(),
                crate::SourceSearch {
                    kind: kind.clone(),
                    patient,
                    patient_fhir_id: fhir_patient.clone(),
                    query: query.clone(),
                    offset,
                    count: room,
                    base: base_url(&headers),
                },
            )
            .await?;
            offset = offset.saturating_sub(part.total);
            room = room.saturating_sub(part.entries.len());
            total += part.total;
            withheld += part.withheld;
            source_event = source_event.or(part.event);
            added.extend(part.entries);
        }
    }
    let links = links(&headers, &uri, &query, total);
    if page.is_empty() && added.is_empty() {
        let mut response = fhir_bytes(
            StatusCode::OK,
            medledger_fhir::searchset(&[], total, &links),
        );
        add_withheld(&mut response, withheld);
        return Ok(response);
    }
    // The Patient itself, when included, is a record under consent like any other.
    let included_patient = if query.include_patient {
        let finder = records.clone();
        let id = fhir_patient.clone();
        blocking(move || {
            Ok(finder
                .record_by_fhir("Patient", &id)?
                .map(|(record, _)| record))
        })
        .await?
    } else {
        None
    };
    let mut wanted: Vec<Hash> = page.iter().map(|candidate| candidate.hit.record).collect();
    if let Some(record) = included_patient
        && !wanted.contains(&record)
    {
        wanted.push(record);
    }
    // A page of readings alone reads no record.
    let access = if wanted.is_empty() {
        None
    } else {
        Some(
            records
                .read(ReadRequest {
                    request: caller.request,
                    reader: caller.key,
                    patient,
                    records: wanted,
                    purpose,
                    break_glass: caller.access.break_glass,
                    wrap_to: None,
                })
                .await?,
        )
    };
    let base = base_url(&headers);
    let event = access
        .as_ref()
        .map(|access| access.event.tx)
        .or(source_event);
    let mut released: BTreeMap<Hash, medledger_node::records::Released> = access
        .into_iter()
        .flat_map(|access| access.released)
        .map(|released| (released.record, released))
        .collect();
    let mut entries = Vec::with_capacity(page.len() + added.len() + 1);
    let mut provenance_of = Vec::new();
    for candidate in &page {
        let Some(found) = released.remove(&candidate.hit.record) else {
            withheld += 1;
            continue;
        };
        provenance_of.push((
            found.record,
            format!("{}/{}", found.resource_type, found.fhir_id),
        ));
        entries.push(served_entry(&base, &found, false)?);
    }
    entries.extend(
        added
            .iter()
            .map(|(full_url, resource)| medledger_fhir::SearchEntry {
                full_url: full_url.clone(),
                resource: resource.as_slice().into(),
                include: false,
            }),
    );
    if let Some(record) = included_patient
        && let Some(found) = released.remove(&record)
    {
        entries.push(served_entry(&base, &found, true)?);
    }
    if query.revinclude_provenance {
        let finder = records.clone();
        let rendered = blocking(move || {
            let mut rendered = Vec::new();
            for (record, reference) in provenance_of {
                let (head, versions) = finder.provenance(&record)?;
                rendered.extend(medledger_fhir::provenance(
                    &reference,
                    &record,
                    &versions,
                    &head.custodian,
                ));
            }
            Ok(rendered)
        })
        .await?;
        for resource in rendered {
            entries.push(rendered_entry(&base, &resource, true));
        }
    }
    let mut response = fhir_bytes(
        StatusCode::OK,
        medledger_fhir::searchset(&entries, total, &links),
    );
    add_withheld(&mut response, withheld);
    if let Some(event) = event {
        add_event_header(&mut response, &event);
    }
    Ok(response)
}

fn add_withheld(response: &mut Response, withheld: usize) {
    if let Ok(value) = HeaderValue::from_str(&withheld.to_string()) {
        response.headers_mut().insert("x-withheld-records", value);
    }
}

fn served_entry(
    base: &str,
    released: &medledger_node::records::Released,
    include: bool,
) -> FhirResult<SearchEntry<'static>> {
    Ok(SearchEntry {
        full_url: format!(
            "{base}/fhir/{}/{}",
            released.resource_type, released.fhir_id
        ),
        resource: medledger_fhir::served(
            &released.content,
            &released.fhir_id,
            released.version,
            released.last_updated_ms,
        )?
        .into(),
        include,
    })
}

fn rendered_entry(base: &str, resource: &Value, include: bool) -> SearchEntry<'static> {
    let kind = resource["resourceType"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    SearchEntry {
        full_url: format!("{base}/fhir/{kind}/{id}"),
        resource: serde_json::to_vec(resource).unwrap_or_default().into(),
        include,
    }
}

/// A searchset page of rendered resources, `total` of them in all.
fn rendered_page(
    headers: &HeaderMap,
    uri: &Uri,
    query: &SearchQuery,
    resources: &[Value],
    total: usize,
) -> Response {
    let base = base_url(headers);
    let entries: Vec<SearchEntry> = resources
        .iter()
        .map(|resource| rendered_entry(&base, resource, false))
        .collect();
    fhir_bytes(
        StatusCode::OK,
        medledger_fhir::searchset(&entries, total, &links(headers, uri, query, total)),
    )
}

/// A patient by logical id: held here, or erased here (its tombstone keeps the audit trail
/// reachable). The reference names the patient as the caller did.
fn find_patient(records: &Records, fhir_id: &str) -> FhirResult<Hash> {
    if let Some(patient) = records.patient_by_fhir(fhir_id)? {
        return Ok(patient);
    }
    records.erased_patient_by_fhir(fhir_id)?.ok_or_else(|| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("Patient/{fhir_id} is not held by this node"),
        )
    })
}

/// May the caller see the audit trail, grants and provenance of `patient`? By HIPAA's
/// minimum-necessary rule: the patient (the bound key) and their delegates; the custodian
/// organisation itself (its root key or node), which answers for the records; and auditors
/// (members with the auditor role: an organisation's privacy and compliance officers, and
/// regulators). A practitioner sees records under consent, not the trail of who else did.
pub(super) fn may_audit(records: &Records, caller: &Caller, patient: &Hash) -> FhirResult<()> {
    let entry = records.patient(patient)?.ok_or_else(|| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no such patient",
        )
    })?;
    let is_patient = entry.key == Some(caller.key);
    let is_delegate = match entry.key {
        Some(key) if !is_patient => records.delegates(&key)?.contains(&caller.key),
        _ => false,
    };
    let allowed = is_patient
        || is_delegate
        || match &caller.authority {
            Authority::Organisation { org } => *org == entry.custodian,
            Authority::Member {
                org,
                role: Role::Validator,
            } => *org == entry.custodian,
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Member { .. } => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(FhirFailure::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "only the patient, their delegates, the custodian organisation and auditors may see this audit trail",
        ))
    }
}

fn required_patient(query: &SearchQuery, what: &str) -> FhirResult<String> {
    query.patient.clone().ok_or_else(|| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            format!("{what} searches are by patient=<id>"),
        )
    })
}

async fn consent_search(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    uri: &Uri,
    query: &SearchQuery,
) -> FhirResult<Response> {
    let fhir_patient = required_patient(query, "Consent")?;
    caller.may("Consent", Action::Search, Some(&fhir_patient))?;
    let records = records(state)?;
    let (caller, paging) = (caller.clone(), (query.offset, query.count));
    let reference = format!("Patient/{fhir_patient}");
    let (resources, total) = blocking(move || {
        let patient = find_patient(&records, &fhir_patient)?;
        may_audit(&records, &caller, &patient)?;
        let Some(key) = records.patient(&patient)?.and_then(|entry| entry.key) else {
            return Ok((Vec::new(), 0));
        };
        let (_, grants, time_ms) = records.patient_view(&key)?;
        let total = grants.len();
        Ok((
            grants
                .iter()
                .skip(paging.0)
                .take(paging.1)
                .map(|grant| medledger_fhir::consent(grant, &reference, time_ms))
                .collect::<Vec<Value>>(),
            total,
        ))
    })
    .await?;
    Ok(rendered_page(headers, uri, query, &resources, total))
}

async fn audit_search(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    uri: &Uri,
    query: &SearchQuery,
) -> FhirResult<Response> {
    let fhir_patient = required_patient(query, "AuditEvent")?;
    caller.may("AuditEvent", Action::Search, Some(&fhir_patient))?;
    let records = records(state)?;
    let caller = caller.clone();
    let (offset, count) = (query.offset as u64, query.count as u64);
    let reference = format!("Patient/{fhir_patient}");
    let node = state.node.clone();
    let (resources, total) = blocking(move || {
        let patient = find_patient(&records, &fhir_patient)?;
        may_audit(&records, &caller, &patient)?;
        let (events, total) = records.access_log(&patient, offset, count)?;
        let mut page: Vec<Value> = events
            .iter()
            .map(|event| medledger_fhir::audit_event(event, &reference))
            .collect();
        // Other modules' events for the patient (research releases) follow the access events,
        // so the log pages as one list.
        let mut more = Vec::new();
        if let Some(entry) = records.patient(&patient)?
            && let Some(key) = entry.key
        {
            for view in crate::audit_views() {
                more.extend((view.events)(&node, &key, &entry.custodian, &reference)?);
            }
        }
        let skip = offset.saturating_sub(total);
        let room = count.saturating_sub(page.len() as u64);
        page.extend(
            more.iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(usize::try_from(room).unwrap_or(usize::MAX))
                .cloned(),
        );
        Ok((page, total + more.len() as u64))
    })
    .await?;
    Ok(rendered_page(
        headers,
        uri,
        query,
        &resources,
        usize::try_from(total).unwrap_or(usize::MAX),
    ))
}

async fn provenance_search(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    uri: &Uri,
    query: &SearchQuery,
) -> FhirResult<Response> {
    let target = query.target.clone().ok_or_else(|| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "Provenance searches are by target=<Type>/<id>",
        )
    })?;
    caller.may("Provenance", Action::Search, None)?;
    let records = records(state)?;
    let caller = caller.clone();
    let paging = (query.offset, query.count);
    let (resources, total) = blocking(move || {
        let (kind, id) = target.split_once('/').ok_or_else(|| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                "target must be <Type>/<id>",
            )
        })?;
        let Some((record, patient)) = records.record_by_fhir(kind, id)? else {
            let erased = records.erased_record_by_fhir(kind, id)?.is_some();
            return Err(FhirFailure::new(
                if erased {
                    StatusCode::GONE
                } else {
                    StatusCode::NOT_FOUND
                },
                if erased {
                    IssueType::Deleted
                } else {
                    IssueType::NotFound
                },
                format!("{target} is not held by this node"),
            ));
        };
        may_audit(&records, &caller, &patient)?;
        let (head, versions) = records.provenance(&record)?;
        let rendered = medledger_fhir::provenance(
            &format!("{kind}/{id}"),
            &record,
            &versions,
            &head.custodian,
        );
        let total = rendered.len();
        Ok((
            rendered
                .into_iter()
                .skip(paging.0)
                .take(paging.1)
                .collect::<Vec<Value>>(),
            total,
        ))
    })
    .await?;
    Ok(rendered_page(headers, uri, query, &resources, total))
}

/// `GET /fhir/Provenance/{id}`: one version's Provenance; its id names the record and version.
pub(super) async fn provenance_one(
    state: &AppState,
    caller: &Caller,
    _headers: &HeaderMap,
    id: &str,
) -> FhirResult<Response> {
    let not_found = || {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("Provenance/{id} is not held by this node"),
        )
    };
    let (record, version) = medledger_fhir::parse_provenance_id(id).ok_or_else(not_found)?;
    let records = records(state)?;
    let caller = caller.clone();
    let id = id.to_string();
    let resource = blocking(move || {
        let not_found = || {
            FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("Provenance/{id} is not held by this node"),
            )
        };
        let reference = records.fhir_reference(&record)?.ok_or_else(not_found)?;
        let (head, versions) = records.provenance(&record)?;
        may_audit(&records, &caller, &head.patient)?;
        let written = versions
            .iter()
            .find(|written| written.version == version)
            .ok_or_else(not_found)?;
        Ok(medledger_fhir::provenance_version(
            &reference,
            &record,
            written,
            &head.custodian,
        ))
    })
    .await?;
    Ok(fhir_json(StatusCode::OK, &resource))
}

/// `GET /fhir/Consent/{id}`: a grant, to those who see the patient's audit trail: the patient,
/// their delegates, the custodian organisation of one of their ids, and auditors.
pub(super) async fn consent_one(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> FhirResult<Response> {
    let grant = Hash::from_hex(id).map_err(|_| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "a Consent id is the 64-hex-digit id of a grant",
        )
    })?;
    let node = state.node.clone();
    let caller = caller.clone();
    let records = records(state).ok();
    blocking(move || {
        let (_, found) = node
            .read_head(|state| {
                let entry = medledger_records::grant(state, &grant)?;
                let time = medledger_ledger::chain_head(state)?.time_ms;
                Ok((entry, time))
            })
            .map_err(|error| {
                FhirFailure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueType::Transient,
                    error.to_string(),
                )
            })?;
        let Ok((Some(entry), time)) = found else {
            return Err(FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("no consent grant {grant}"),
            ));
        };
        let key = entry.grant.patient;
        let is_patient = key == caller.key;
        let is_delegate = records
            .as_ref()
            .and_then(|records| records.delegates(&key).ok())
            .is_some_and(|delegates| delegates.contains(&caller.key));
        let is_auditor = matches!(
            caller.authority,
            Authority::Member {
                role: Role::Auditor,
                ..
            }
        );
        // The custodian of one of the patient's ids, through its root key or node.
        let acting_org = match &caller.authority {
            Authority::Organisation { org }
            | Authority::Member {
                org,
                role: Role::Validator,
            } => Some(org.clone()),
            Authority::Member { .. } => None,
        };
        let is_custodian_org = match (&acting_org, &records) {
            (Some(org), Some(records)) => records
                .patient_view(&key)
                .map(|(ids, _, _)| ids)
                .unwrap_or_default()
                .iter()
                .any(|id| {
                    records
                        .patient(id)
                        .ok()
                        .flatten()
                        .is_some_and(|entry| entry.custodian == *org)
                }),
            _ => false,
        };
        if !(is_patient || is_delegate || is_auditor || is_custodian_org) {
            return Err(FhirFailure::new(
                StatusCode::FORBIDDEN,
                IssueType::Forbidden,
                "only the patient, their delegates, their custodian organisation and auditors may read a grant",
            ));
        }
        let reference = format!("urn:medledger:key:{key}");
        Ok(fhir_json(
            StatusCode::OK,
            &medledger_fhir::consent(&entry, &reference, time),
        ))
    })
    .await
}
