//! Deciding, for each entry of a parsed Bundle, its logical id and its patient, and checking that
//! every reference inside the Bundle points at something that exists.

use std::collections::BTreeMap;

use crate::FhirError;
use crate::bundle::{Bundle, Entry};
use crate::reference::{ReferenceKind, classify_reference, has_scheme};
use crate::resource::Resource;

/// The patient a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PatientLink {
    /// The resource is itself a Patient.
    Own,
    /// The Patient resource of this entry of the Bundle.
    Entry(usize),
    /// A Patient already stored, by its logical id.
    Stored(String),
}

/// One entry of a Bundle, with what `resolve_bundle` decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// The entry's 0-based index in the Bundle.
    pub index: usize,
    pub entry: &'a Entry<'a>,
    /// The entry's resource (`&entry.resource`).
    pub resource: &'a Resource<'a>,
    /// The logical id: the resource's `id`, else the PUT url's id, else the UUID of a
    /// `urn:uuid:` fullUrl; `None` when the node must assign one.
    pub id: Option<String>,
    pub patient: PatientLink,
}

/// Resolves every entry of `bundle`: its id, its patient, and the integrity of its references.
///
/// `stored(type, id)` says whether a resource is already stored; it is asked about relative
/// references (`Type/id`, `Type/id/_history/n`, whose version is not checked) that no entry of
/// the Bundle satisfies. References that are contained (`#...`), conditional (`Type?...`),
/// absolute URLs or other URIs are left alone.
///
/// A resource's patient is itself (`PatientLink::Own`) if it is a Patient; else the Patient its
/// `subject`, `patient` or `beneficiary` reference names (an entry of this Bundle, or a stored
/// Patient); else, if it names none and the Bundle holds exactly one Patient entry, that one.
pub fn resolve_bundle<'a>(
    bundle: &'a Bundle<'a>,
    stored: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<Item<'a>>, FhirError> {
    let index = Index::build(bundle)?;
    let patients: Vec<usize> = bundle
        .entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.resource.resource_type == "Patient")
        .map(|(position, _)| position)
        .collect();
    let mut items = Vec::with_capacity(bundle.entries.len());
    for (position, entry) in bundle.entries.iter().enumerate() {
        for reference in &entry.resource.references {
            check_reference(&index, stored, position, reference)?;
        }
        let patient = patient(&index, &patients, stored, position, entry)?;
        items.push(Item {
            index: position,
            entry,
            resource: &entry.resource,
            id: logical_id(entry),
            patient,
        });
    }
    Ok(items)
}

/// The logical id an entry's resource will be stored under, when the Bundle decides it.
pub fn logical_id(entry: &Entry<'_>) -> Option<String> {
    entry
        .resource
        .id
        .clone()
        .or_else(|| {
            entry
                .request
                .as_ref()
                .and_then(|request| request.id())
                .map(str::to_owned)
        })
        .or_else(|| {
            entry
                .full_url
                .as_deref()
                .and_then(|full_url| full_url.strip_prefix("urn:uuid:"))
                .map(str::to_owned)
        })
}

/// Where each fullUrl and each `Type/id` of a Bundle is.
struct Index<'a> {
    full_urls: BTreeMap<&'a str, usize>,
    /// By the resource's own type and logical id.
    resources: BTreeMap<(&'a str, String), usize>,
    /// By the `Type/id` an absolute fullUrl ends in.
    url_tails: BTreeMap<(&'a str, &'a str), usize>,
}

impl<'a> Index<'a> {
    /// Indexes a Bundle, refusing a repeated fullUrl or a repeated `Type/id`.
    fn build(bundle: &'a Bundle<'a>) -> Result<Index<'a>, FhirError> {
        let mut index = Index {
            full_urls: BTreeMap::new(),
            resources: BTreeMap::new(),
            url_tails: BTreeMap::new(),
        };
        for (position, entry) in bundle.entries.iter().enumerate() {
            let resource_type = entry.resource.resource_type.as_str();
            if let Some(full_url) = entry.full_url.as_deref() {
                if let Some(&first) = index.full_urls.get(full_url) {
                    return Err(FhirError::DuplicateFullUrl {
                        entry: position,
                        first,
                        full_url: full_url.to_owned(),
                    });
                }
                index.full_urls.insert(full_url, position);
                if has_scheme(full_url) && !full_url.starts_with("urn:") {
                    let mut segments = full_url.rsplit('/');
                    if let (Some(id), Some(url_type)) = (segments.next(), segments.next())
                        && url_type == resource_type
                    {
                        index
                            .url_tails
                            .entry((resource_type, id))
                            .or_insert(position);
                    }
                }
            }
            if let Some(id) = logical_id(entry) {
                if let Some(&first) = index.resources.get(&(resource_type, id.clone())) {
                    return Err(FhirError::DuplicateResource {
                        entry: position,
                        first,
                        resource_type: resource_type.to_owned(),
                        id,
                    });
                }
                index.resources.insert((resource_type, id), position);
            }
        }
        Ok(index)
    }

    /// The entry a relative reference `Type/id` names, if any.
    fn relative(&self, resource_type: &str, id: &str) -> Option<usize> {
        self.resources
            .get(&(resource_type, id.to_owned()))
            .or_else(|| self.url_tails.get(&(resource_type, id)))
            .copied()
    }
}

/// Checks that one reference of entry `position` resolves, if it is of a kind that must.
fn check_reference(
    index: &Index<'_>,
    stored: &dyn Fn(&str, &str) -> bool,
    position: usize,
    reference: &str,
) -> Result<(), FhirError> {
    let found = match classify_reference(reference) {
        ReferenceKind::Contained | ReferenceKind::Conditional | ReferenceKind::Absolute => true,
        ReferenceKind::Uuid => index.full_urls.contains_key(reference),
        ReferenceKind::Relative {
            resource_type, id, ..
        } => index.relative(resource_type, id).is_some() || stored(resource_type, id),
        ReferenceKind::Malformed => {
            return Err(FhirError::MalformedReference {
                entry: position,
                reference: reference.to_owned(),
            });
        }
    };
    if found {
        Ok(())
    } else {
        Err(FhirError::MissingReference {
            entry: position,
            reference: reference.to_owned(),
        })
    }
}

/// Decides the patient of entry `position`.
fn patient(
    index: &Index<'_>,
    patients: &[usize],
    stored: &dyn Fn(&str, &str) -> bool,
    position: usize,
    entry: &Entry<'_>,
) -> Result<PatientLink, FhirError> {
    let resource_type = entry.resource.resource_type.as_str();
    if resource_type == "Patient" {
        return Ok(PatientLink::Own);
    }
    let refuse = |reason: String| {
        Err(FhirError::Unattributed {
            entry: position,
            resource_type: resource_type.to_owned(),
            reason,
        })
    };
    let missing = |reference: &str| {
        Err(FhirError::MissingReference {
            entry: position,
            reference: reference.to_owned(),
        })
    };
    let Some(reference) = entry.resource.patient.as_deref() else {
        return match patients {
            [only] => Ok(PatientLink::Entry(*only)),
            _ => refuse(format!(
                "it names no patient and the bundle holds {} Patient entries",
                patients.len()
            )),
        };
    };
    match classify_reference(reference) {
        ReferenceKind::Uuid => match index.full_urls.get(reference) {
            Some(&target) if patients.contains(&target) => Ok(PatientLink::Entry(target)),
            Some(&target) => refuse(format!(
                "its patient reference {reference:?} names entry {target}, which is not a Patient"
            )),
            None => missing(reference),
        },
        ReferenceKind::Relative {
            resource_type: "Patient",
            id,
            ..
        } => match index.relative("Patient", id) {
            Some(target) => Ok(PatientLink::Entry(target)),
            None if stored("Patient", id) => Ok(PatientLink::Stored(id.to_owned())),
            None => missing(reference),
        },
        ReferenceKind::Relative { resource_type, .. } => refuse(format!(
            "its patient reference {reference:?} names a {resource_type}, not a Patient"
        )),
        ReferenceKind::Contained => refuse(format!(
            "its patient reference {reference:?} names a contained resource, not a stored Patient"
        )),
        ReferenceKind::Conditional => refuse(format!(
            "its patient reference {reference:?} is conditional; name the Patient directly"
        )),
        ReferenceKind::Absolute => refuse(format!(
            "its patient reference {reference:?} is an absolute URL, which is not followed"
        )),
        ReferenceKind::Malformed => Err(FhirError::MalformedReference {
            entry: position,
            reference: reference.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::parse_bundle;

    const UUID_P: &str = "urn:uuid:00000000-0000-4000-8000-000000000001";
    const UUID_Q: &str = "urn:uuid:00000000-0000-4000-8000-000000000002";
    const UUID_O: &str = "urn:uuid:00000000-0000-4000-8000-000000000003";

    /// A transaction entry POSTing `resource`, with an optional fullUrl.
    fn post(full_url: Option<&str>, resource: Value) -> Value {
        let mut entry = json!({
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        });
        if let Some(full_url) = full_url {
            entry["fullUrl"] = json!(full_url);
        }
        entry
    }

    fn transaction(entries: Vec<Value>) -> String {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
    }

    /// Stored resources for these tests: Patient/old and Practitioner/doc.
    fn stored(resource_type: &str, id: &str) -> bool {
        matches!(
            (resource_type, id),
            ("Patient", "old") | ("Practitioner", "doc")
        )
    }

    /// Resolves a Bundle and summarises each item as `index:id->patient`, or the error.
    fn check(entries: Vec<Value>, expected: &str) {
        let text = transaction(entries);
        let got = match parse_bundle(text.as_bytes()) {
            Err(error) => format!("parse: {error}"),
            Ok(bundle) => match resolve_bundle(&bundle, &stored) {
                Ok(items) => items
                    .iter()
                    .map(|item| {
                        let patient = match &item.patient {
                            PatientLink::Own => "own".to_owned(),
                            PatientLink::Entry(target) => format!("entry {target}"),
                            PatientLink::Stored(id) => format!("stored {id}"),
                        };
                        format!(
                            "{}:{}->{}",
                            item.index,
                            item.id.as_deref().unwrap_or("-"),
                            patient
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(error) => format!("{}: {error}", error.issue_code()),
            },
        };
        assert_eq!(got, expected, "bundle: {text}");
    }

    fn patient() -> Value {
        json!({"resourceType": "Patient"})
    }

    fn observation(subject: &str) -> Value {
        json!({"resourceType": "Observation", "subject": {"reference": subject}})
    }

    /// Ids and patients are decided by the documented precedence.
    #[test]
    fn resolves() {
        // Patients by urn:uuid, by relative reference to an entry, and by a stored patient; ids
        // from resource.id, the PUT url and the urn:uuid fullUrl.
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(Some(UUID_O), observation(UUID_P)),
                json!({"resource": {"resourceType": "Patient", "id": "p2"},
                       "request": {"method": "PUT", "url": "Patient/p2"}}),
                post(None, observation("Patient/p2")),
                post(None, observation("Patient/old/_history/2")),
                json!({"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/old"}},
                       "request": {"method": "PUT", "url": "Observation/o9"}}),
            ],
            "0:00000000-0000-4000-8000-000000000001->own \
             1:00000000-0000-4000-8000-000000000003->entry 0 \
             2:p2->own 3:-->entry 2 4:-->stored old 5:o9->stored old",
        );
        // Without a patient reference, the Bundle's only Patient is the patient; other
        // references of every left-alone kind are not followed.
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(
                    None,
                    json!({"resourceType": "Medication", "id": "m1",
                           "contained": [{"resourceType": "Substance", "id": "s"}],
                           "ingredient": [{"itemReference": {"reference": "#s"}}],
                           "manufacturer": {"reference": "Organization?identifier=http://x|1"}}),
                ),
                post(
                    None,
                    json!({"resourceType": "Provenance",
                           "target": [{"reference": UUID_P}, {"reference": "http://elsewhere/fhir/Observation/1"}],
                           "agent": [{"who": {"reference": "Practitioner/doc"}}]}),
                ),
            ],
            "0:00000000-0000-4000-8000-000000000001->own 1:m1->entry 0 2:-->entry 0",
        );
        // A relative reference may match an absolute fullUrl's tail.
        check(
            vec![
                post(Some("http://example.org/fhir/Patient/abc"), patient()),
                post(None, observation("Patient/abc")),
            ],
            "0:-->own 1:-->entry 0",
        );
    }

    /// Each way a Bundle can fail to resolve has its own error.
    #[test]
    fn refuses() {
        check(
            vec![post(Some(UUID_P), patient()), post(Some(UUID_P), patient())],
            "invariant: entry 1 repeats the fullUrl \"urn:uuid:00000000-0000-4000-8000-000000000001\" of entry 0",
        );
        check(
            vec![
                post(None, json!({"resourceType": "Patient", "id": "a"})),
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/a"}}),
            ],
            "invariant: entry 1 repeats Patient/a, already given by entry 0",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(None, observation(UUID_Q)),
            ],
            "not-found: entry 1: reference \"urn:uuid:00000000-0000-4000-8000-000000000002\" matches no entry of the bundle and no stored resource",
        );
        check(
            vec![post(None, observation("Patient/nobody"))],
            "not-found: entry 0: reference \"Patient/nobody\" matches no entry of the bundle and no stored resource",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(
                    None,
                    json!({"resourceType": "Observation", "subject": {"reference": UUID_P},
                           "performer": [{"reference": "Practitioner/ghost"}]}),
                ),
            ],
            "not-found: entry 1: reference \"Practitioner/ghost\" matches no entry of the bundle and no stored resource",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(
                    None,
                    json!({"resourceType": "Observation", "subject": {"reference": UUID_P},
                           "focus": [{"reference": "Thing/1"}]}),
                ),
            ],
            "value: entry 1: reference \"Thing/1\" is not a valid literal reference",
        );
        check(
            vec![post(None, json!({"resourceType": "Medication"}))],
            "business-rule: cannot attribute Medication entry 0 to a patient: it names no patient and the bundle holds 0 Patient entries",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(Some(UUID_Q), patient()),
                post(None, json!({"resourceType": "Medication"})),
            ],
            "business-rule: cannot attribute Medication entry 2 to a patient: it names no patient and the bundle holds 2 Patient entries",
        );
        check(
            vec![
                post(
                    Some(UUID_P),
                    json!({"resourceType": "Group", "type": "person", "actual": true}),
                ),
                post(None, observation(UUID_P)),
            ],
            "business-rule: cannot attribute Group entry 0 to a patient: it names no patient and the bundle holds 0 Patient entries",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(Some(UUID_O), observation(UUID_P)),
                post(None, observation(UUID_O)),
            ],
            "business-rule: cannot attribute Observation entry 2 to a patient: its patient reference \"urn:uuid:00000000-0000-4000-8000-000000000003\" names entry 1, which is not a Patient",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(None, observation("Practitioner/doc")),
            ],
            "business-rule: cannot attribute Observation entry 1 to a patient: its patient reference \"Practitioner/doc\" names a Practitioner, not a Patient",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(None, observation("Patient?identifier=1")),
            ],
            "business-rule: cannot attribute Observation entry 1 to a patient: its patient reference \"Patient?identifier=1\" is conditional; name the Patient directly",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(None, observation("http://x.org/Patient/1")),
            ],
            "business-rule: cannot attribute Observation entry 1 to a patient: its patient reference \"http://x.org/Patient/1\" is an absolute URL, which is not followed",
        );
        check(
            vec![
                post(Some(UUID_P), patient()),
                post(
                    None,
                    json!({"resourceType": "Observation", "contained": [{"resourceType": "Patient", "id": "c"}],
                           "subject": {"reference": "#c"}}),
                ),
            ],
            "business-rule: cannot attribute Observation entry 1 to a patient: its patient reference \"#c\" names a contained resource, not a stored Patient",
        );
    }

    /// A resource submitted alone resolves like a one-entry Bundle: it must name its patient,
    /// which must be stored, and its other references must resolve too.
    #[test]
    fn resolves_single_resources() {
        fn check_single(input: &str, expected: &str) {
            let got = match crate::parse_resource(input.as_bytes()) {
                Err(error) => format!("parse: {error}"),
                Ok(resource) => {
                    let bundle = Bundle::single(resource);
                    match resolve_bundle(&bundle, &stored) {
                        Ok(items) => format!("{:?} {:?}", items[0].id, items[0].patient),
                        Err(error) => error.to_string(),
                    }
                }
            };
            assert_eq!(got, expected, "input: {input}");
        }
        check_single(
            r#"{"resourceType": "Patient", "id": "new"}"#,
            r#"Some("new") Own"#,
        );
        check_single(
            r#"{"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/old"}}"#,
            r#"Some("o") Stored("old")"#,
        );
        check_single(
            r#"{"resourceType": "Observation", "subject": {"reference": "Patient/new"}}"#,
            r#"entry 0: reference "Patient/new" matches no entry of the bundle and no stored resource"#,
        );
        check_single(
            r#"{"resourceType": "Medication"}"#,
            "cannot attribute Medication entry 0 to a patient: it names no patient and the bundle holds 0 Patient entries",
        );
    }

    /// Unresolved-reference errors carry the entry and the reference, and point at the entry.
    #[test]
    fn error_context() {
        let text = transaction(vec![post(None, observation("Patient/nobody"))]);
        let bundle = parse_bundle(text.as_bytes());
        let error = bundle
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|bundle| resolve_bundle(bundle, &|_, _| false).map(|_| ()))
            .err();
        assert_eq!(
            error,
            Some(FhirError::MissingReference {
                entry: 0,
                reference: "Patient/nobody".to_owned()
            })
        );
        assert_eq!(
            error.and_then(|error| error.expression()),
            Some("Bundle.entry[0].resource".to_owned())
        );
    }
}
