//! Validity: everything the renderers produce passes the official FHIR R4 JSON Schema (vendored in
//! `schema/fhir.schema.json.gz`) and the R4 invariants the schema cannot express, checked by
//! hand below. HL7's own examples pass too, and known-bad resources fail, which shows that the
//! validator is really validating.

mod common;

use std::collections::BTreeSet;
use std::sync::LazyLock;

use medledger_fhir::{
    CapabilityConfig, EntryResponse, Issue, IssueType, OutputBundleType, RESOURCE_TYPES,
    ResponseKind, SUBJECT_LIST_TYPES, SearchEntry, Severity, audit_event, bundle,
    capability_statement, consent, operation_outcome, parse_bundle, parse_resource, provenance,
    response_bundle, searchset,
};
use medledger_records::{
    AccessEvent, AccessRule, ConsentEntry, ConsentGrant, Grantee, Provision, ProvisionKind,
    Purpose, RECORD_CATEGORIES, RecordVersion, Scope,
};
use medledger_types::{Hash, PublicKey, Role};
use serde_json::{Value, json};

static SCHEMA: LazyLock<Value> = LazyLock::new(|| medledger_fhir::r4_schema().clone());

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::draft6::options()
        .build(&SCHEMA)
        .expect("the FHIR schema compiles")
});

/// Checks `resource` against the whole schema (its root `oneOf` over every resource type). On
/// failure, explains with the resource type's own definition, whose errors have readable paths.
fn schema_errors(resource: &Value) -> Vec<String> {
    if VALIDATOR.is_valid(resource) {
        return Vec::new();
    }
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return vec!["no resourceType".to_owned()];
    };
    let mut schema = SCHEMA.clone();
    if let Some(root) = schema.as_object_mut() {
        root.remove("oneOf");
        root.remove("discriminator");
        root.insert(
            "$ref".to_owned(),
            json!(format!("#/definitions/{resource_type}")),
        );
    }
    let validator = jsonschema::draft6::options()
        .build(&schema)
        .expect("definition compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(resource)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    if errors.is_empty() {
        errors.push("invalid under the root schema only".to_owned());
    }
    errors
}

/// Asserts that `resource` is valid R4: the JSON Schema and the hand-checked invariants.
fn assert_valid(what: &str, resource: &Value) {
    let mut errors = schema_errors(resource);
    errors.extend(invariant_errors(resource));
    assert!(
        errors.is_empty(),
        "{what} is not valid FHIR R4:\n  {}\n{}",
        errors.join("\n  "),
        serde_json::to_string_pretty(resource).unwrap_or_default()
    );
}

/// R4 rules the JSON Schema cannot express, for the resources medledger renders: required
/// primitives (the schema cannot require them, since `_status` may stand in for `status`), the
/// invariants of Consent, CapabilityStatement, AuditEvent and Bundle, the definition of
/// `Consent.provision.type` ("not permitted in root rule, required in all nested rules"), and
/// ele-1 (no empty values, no nulls) everywhere. A Bundle's entries are not descended into: the
/// renderers' resources are checked on their own, and HL7's examples do not all follow the
/// `Consent.provision.type` definition.
fn invariant_errors(resource: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    no_empty_values("", resource, &mut errors);
    let mut require = |path: &str, present: bool| {
        if !present {
            errors.push(format!("{path} is required"));
        }
    };
    let has = |value: &Value, field: &str| value.get(field).is_some();
    match resource["resourceType"].as_str().unwrap_or_default() {
        "Consent" => {
            require("Consent.status", has(resource, "status"));
            require(
                "ppc-1/ppc-2: Consent.policy or Consent.policyRule",
                has(resource, "policy") || has(resource, "policyRule"),
            );
            if let Some(root) = resource.get("provision") {
                require(
                    "Consent.provision.type absent in the root rule",
                    !has(root, "type"),
                );
                check_period(root.get("period"), &mut errors);
                for nested in root["provision"].as_array().into_iter().flatten() {
                    check_provision(nested, &mut errors);
                }
            }
        }
        "AuditEvent" => {
            require("AuditEvent.recorded", has(resource, "recorded"));
            for agent in resource["agent"].as_array().into_iter().flatten() {
                if !has(agent, "requestor") {
                    errors.push("AuditEvent.agent.requestor is required".to_owned());
                }
            }
            for entity in resource["entity"].as_array().into_iter().flatten() {
                if has(entity, "name") && has(entity, "query") {
                    errors.push("sev-1: entity name and query are exclusive".to_owned());
                }
                for detail in entity["detail"].as_array().into_iter().flatten() {
                    if !has(detail, "type") {
                        errors.push("AuditEvent.entity.detail.type is required".to_owned());
                    }
                }
            }
        }
        "Provenance" => {
            require("Provenance.recorded", has(resource, "recorded"));
            for agent in resource["agent"].as_array().into_iter().flatten() {
                if !has(agent, "who") {
                    errors.push("Provenance.agent.who is required".to_owned());
                }
            }
        }
        "CapabilityStatement" => {
            for field in ["status", "date", "kind", "fhirVersion", "format"] {
                require(
                    &format!("CapabilityStatement.{field}"),
                    has(resource, field),
                );
            }
            require(
                "cpb-1: rest, messaging or document",
                ["rest", "messaging", "document"]
                    .iter()
                    .any(|field| has(resource, field)),
            );
            require(
                "cpb-2: description, software or implementation",
                ["description", "software", "implementation"]
                    .iter()
                    .any(|field| has(resource, field)),
            );
            if resource["kind"] == "instance" {
                require(
                    "cpb-14: implementation for an instance",
                    has(resource, "implementation"),
                );
            }
            for rest in resource["rest"].as_array().into_iter().flatten() {
                let mut types = BTreeSet::new();
                for described in rest["resource"].as_array().into_iter().flatten() {
                    let resource_type = described["type"].as_str().unwrap_or_default();
                    if !types.insert(resource_type) {
                        errors.push(format!("cpb-9: {resource_type} is described twice"));
                    }
                    let mut names = BTreeSet::new();
                    for parameter in described["searchParam"].as_array().into_iter().flatten() {
                        if !names.insert(parameter["name"].as_str().unwrap_or_default()) {
                            errors.push(format!("cpb-12: {resource_type} repeats a parameter"));
                        }
                        if !has(parameter, "type") {
                            errors.push("searchParam.type is required".to_owned());
                        }
                    }
                }
            }
        }
        "OperationOutcome" => {
            for issue in resource["issue"].as_array().into_iter().flatten() {
                if !has(issue, "severity") || !has(issue, "code") {
                    errors.push("issue.severity and issue.code are required".to_owned());
                }
            }
        }
        "Bundle" => check_bundle(resource, &mut errors),
        _ => {}
    }
    errors
}

fn check_provision(provision: &Value, errors: &mut Vec<String>) {
    if provision.get("type").is_none() {
        errors.push("Consent.provision.type is required in nested rules".to_owned());
    }
    for actor in provision["actor"].as_array().into_iter().flatten() {
        if actor.get("role").is_none() || actor.get("reference").is_none() {
            errors.push("Consent.provision.actor needs role and reference".to_owned());
        }
    }
    for data in provision["data"].as_array().into_iter().flatten() {
        if data.get("meaning").is_none() || data.get("reference").is_none() {
            errors.push("Consent.provision.data needs meaning and reference".to_owned());
        }
    }
    check_period(provision.get("period"), errors);
}

/// per-1: a period's start is not after its end (the renderers write one fixed format, so the
/// strings order like the times).
fn check_period(period: Option<&Value>, errors: &mut Vec<String>) {
    if let Some((Some(start), Some(end))) =
        period.map(|period| (period["start"].as_str(), period["end"].as_str()))
        && start > end
    {
        errors.push(format!(
            "per-1: period starts at {start} after its end {end}"
        ));
    }
}

fn check_bundle(bundle: &Value, errors: &mut Vec<String>) {
    let bundle_type = bundle["type"].as_str().unwrap_or_default();
    if bundle_type.is_empty() {
        errors.push("Bundle.type is required".to_owned());
    }
    if bundle.get("total").is_some() && !matches!(bundle_type, "searchset" | "history") {
        errors.push("bdl-1: total only in a searchset or history".to_owned());
    }
    let mut full_urls = BTreeSet::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let has = |field: &str| entry.get(field).is_some();
        if has("search") && bundle_type != "searchset" {
            errors.push("bdl-2: entry.search only in a searchset".to_owned());
        }
        let request_needed = matches!(bundle_type, "batch" | "transaction" | "history");
        if has("request") != request_needed {
            errors.push("bdl-3: entry.request exactly in batch, transaction, history".to_owned());
        }
        let response_needed = matches!(
            bundle_type,
            "batch-response" | "transaction-response" | "history"
        );
        if has("response") != response_needed {
            errors.push("bdl-4: entry.response exactly in responses and history".to_owned());
        }
        if !has("resource") && !has("request") && !has("response") {
            errors.push("bdl-5: an entry needs a resource, a request or a response".to_owned());
        }
        if let Some(full_url) = entry["fullUrl"].as_str()
            && !full_urls.insert(full_url.to_owned())
        {
            errors.push(format!("bdl-7: fullUrl {full_url} repeated"));
        }
    }
}

/// ele-1 and FHIR JSON: no nulls, empty strings, empty arrays or empty objects anywhere.
fn no_empty_values(path: &str, value: &Value, errors: &mut Vec<String>) {
    match value {
        Value::Null => errors.push(format!("{path} is null")),
        Value::String(text) if text.trim().is_empty() => errors.push(format!("{path} is empty")),
        Value::Array(items) if items.is_empty() => errors.push(format!("{path} is []")),
        Value::Object(object) if object.is_empty() => errors.push(format!("{path} is {{}}")),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                no_empty_values(&format!("{path}[{index}]"), item, errors);
            }
        }
        Value::Object(object) => {
            for (key, item) in object {
                no_empty_values(&format!("{path}.{key}"), item, errors);
            }
        }
        _ => {}
    }
}

fn key(seed: u8) -> PublicKey {
    PublicKey([seed; 32])
}

fn hash(seed: u8) -> Hash {
    Hash([seed; 32])
}

/// The crate's tables agree with the schema they stand for.
#[test]
fn vocabulary_matches_schema() {
    let mapping: Vec<&str> = SCHEMA["discriminator"]["mapping"]
        .as_object()
        .expect("mapping")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(RESOURCE_TYPES, mapping.as_slice());
    let definitions = &SCHEMA["definitions"];
    let subject_lists: Vec<&str> = RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|name| definitions[*name]["properties"]["subject"]["type"] == "array")
        .collect();
    assert_eq!(SUBJECT_LIST_TYPES, subject_lists.as_slice());
    let issue_codes: Vec<&str> = IssueType::ALL.iter().map(|code| code.code()).collect();
    assert_eq!(
        json!(issue_codes),
        definitions["OperationOutcome_Issue"]["properties"]["code"]["enum"]
    );
    let severities: Vec<&str> = [
        Severity::Fatal,
        Severity::Error,
        Severity::Warning,
        Severity::Information,
    ]
    .iter()
    .map(|severity| severity.code())
    .collect();
    assert_eq!(
        json!(severities),
        definitions["OperationOutcome_Issue"]["properties"]["severity"]["enum"]
    );
}

/// HL7's own examples pass, so a failure below means a bad rendering, not a bad validator.
#[test]
fn hl7_examples_are_valid() {
    for (name, bytes) in common::hl7_examples() {
        let value: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(schema_errors(&value), Vec::<String>::new(), "{name}");
    }
}

/// Known-bad resources fail: the schema catches what it can, and the hand checks catch a Consent
/// without `status` (which the schema allows, since `_status` could stand in for it).
#[test]
fn invalid_resources_fail() {
    let consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
    });
    assert_valid("the base Consent", &consent);
    let mutate = |change: &dyn Fn(&mut Value)| {
        let mut resource = consent.clone();
        change(&mut resource);
        resource
    };
    let schema_refuses = [
        (
            "no scope",
            mutate(&|consent| drop(consent.as_object_mut().map(|o| o.remove("scope")))),
        ),
        (
            "a bad status",
            mutate(&|consent| consent["status"] = json!("bogus")),
        ),
        (
            "an unknown element",
            mutate(&|consent| consent["colour"] = json!("blue")),
        ),
        (
            "a bad dateTime",
            mutate(&|consent| consent["dateTime"] = json!("2020-13-01")),
        ),
        (
            "category not a list",
            mutate(&|consent| consent["category"] = json!({"text": "x"})),
        ),
        (
            "an actor without a role",
            mutate(&|consent| {
                consent["provision"] = json!({"actor": [{"reference": {"reference": "Patient/1"}}]})
            }),
        ),
    ];
    for (what, resource) in &schema_refuses {
        assert!(
            !VALIDATOR.is_valid(resource),
            "the schema accepted a Consent with {what}"
        );
    }
    let no_status = mutate(&|consent| drop(consent.as_object_mut().map(|o| o.remove("status"))));
    assert!(VALIDATOR.is_valid(&no_status));
    assert_eq!(invariant_errors(&no_status), ["Consent.status is required"]);
    let no_policy =
        mutate(&|consent| drop(consent.as_object_mut().map(|o| o.remove("policyRule"))));
    assert_eq!(
        invariant_errors(&no_policy),
        ["ppc-1/ppc-2: Consent.policy or Consent.policyRule is required"]
    );
    let audit = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2020-01-01T00:00:00Z",
                       "outcome": "1", "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    assert!(!VALIDATOR.is_valid(&audit), "outcome 1 is not an R4 code");
    let provenance = json!({"resourceType": "Provenance", "recorded": "2020-01-01T00:00:00Z",
                            "agent": [{"who": {"display": "x"}}]});
    assert!(!VALIDATOR.is_valid(&provenance), "target is required");
}

/// OperationOutcomes, including every IssueType and each FhirError, are valid.
#[test]
fn operation_outcomes_are_valid() {
    assert_valid("an empty outcome", &operation_outcome(&[]));
    let issues: Vec<Issue> = IssueType::ALL
        .iter()
        .map(|&code| Issue {
            severity: Severity::Warning,
            code,
            diagnostics: format!("about {}", code.code()),
            expression: Some("Patient.name[0]".to_owned()),
        })
        .collect();
    assert_valid("every issue type", &operation_outcome(&issues));
    let blank = Issue {
        severity: Severity::Fatal,
        code: IssueType::Exception,
        diagnostics: String::new(),
        expression: Some(" ".to_owned()),
    };
    assert_valid("an issue with blank texts", &operation_outcome(&[blank]));
    let bad_inputs: [&[u8]; 4] = [
        b"{",
        br#"{"resourceType": "Bundle", "type": "searchset"}"#,
        br#"{"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Patient", "id": "a b"}, "request": {"method": "POST", "url": "Patient"}}]}"#,
        br#"{"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/1"}}]}"#,
    ];
    for input in bad_inputs {
        let error = parse_bundle(input).expect_err("refused");
        let outcome = operation_outcome(&[error.issue()]);
        assert_valid(&format!("the outcome of {error}"), &outcome);
    }
    assert_eq!(
        parse_resource(b"[]").err().map(|error| error.issue().code),
        Some(IssueType::Structure)
    );
}

/// The CapabilityStatement is valid with and without vread, whatever list of types it is given,
/// and always describes the ledger's own types (access, provenance and the financial resources).
#[test]
fn capability_statement_is_valid() {
    for vread in [false, true] {
        let config = CapabilityConfig {
            software_version: "0.1.0",
            date_ms: 1_795_290_205_123,
            implementation_description: "medledger node of org-a",
            base_url: Some("https://org-a.example/fhir"),
            resource_types: &[
                "Observation",
                "Patient",
                "Consent",
                "Bundle",
                "Observation",
                "NotAType",
                "Provenance",
            ],
            vread,
            oauth: vread.then_some((
                "https://org-a.example/oauth/token",
                "https://org-a.example/oauth/authorize",
            )),
        };
        let statement = capability_statement(&config);
        let security = &statement["rest"][0]["security"];
        assert_eq!(
            security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR",
            vread,
            "{security}"
        );
        assert_valid("the CapabilityStatement", &statement);
        let types: Vec<&str> = statement["rest"][0]["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|resource| resource["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "Observation",
                "Patient",
                "Consent",
                "AuditEvent",
                "Provenance",
                "Claim",
                "ClaimResponse",
                "ExplanationOfBenefit",
                "Coverage",
                "PaymentReconciliation"
            ]
        );
        assert_eq!(statement["date"], "2026-11-21T19:43:25.123Z");
        let read_codes = statement["rest"][0]["resource"][0]["interaction"].to_string();
        assert_eq!(read_codes.contains("vread"), vread);
    }
    let bare = CapabilityConfig {
        software_version: "0.1.0",
        date_ms: 0,
        implementation_description: "medledger",
        base_url: None,
        resource_types: &[],
        vread: false,
        oauth: None,
    };
    assert_valid("a bare CapabilityStatement", &capability_statement(&bare));
}

fn grant(provisions: Vec<Provision>, start_ms: u64, end_ms: Option<u64>) -> ConsentEntry {
    ConsentEntry {
        id: hash(7),
        grant: ConsentGrant {
            patient: key(1),
            provisions,
            start_ms,
            end_ms,
        },
        signed_by: key(1),
        granted_at: 10,
        granted_time_ms: 1_700_000_000_000,
        revoked_at: None,
        revoked_time_ms: None,
    }
}

/// Consents are valid for every kind of grantee, scope and status, and say what the grant says.
#[test]
fn consents_are_valid() {
    let mut scopes: Vec<Scope> = RECORD_CATEGORIES
        .iter()
        .map(|category| Scope::Category((*category).to_owned()))
        .collect();
    scopes.push(Scope::Category("not-on-the-list".to_owned()));
    scopes.push(Scope::ResourceType("Observation".to_owned()));
    scopes.push(Scope::Record(hash(9)));
    let provisions = vec![
        Provision {
            kind: ProvisionKind::Permit,
            actors: vec![
                Grantee::Key(key(2)),
                Grantee::Organisation("org-b".to_owned()),
                Grantee::Role(Role::Practitioner),
            ],
            scope: scopes,
            purposes: Purpose::ALL.to_vec(),
        },
        Provision {
            kind: ProvisionKind::Deny,
            actors: Vec::new(),
            scope: vec![Scope::Category("social-history".to_owned())],
            purposes: Vec::new(),
        },
    ];
    let now = 1_750_000_000_000;
    let active = grant(provisions.clone(), 1_700_000_000_000, None);
    let rendered = consent(&active, "Patient/p1", now);
    assert_valid("an active Consent", &rendered);
    assert_eq!(rendered["status"], "active");
    assert_eq!(rendered["id"], hash(7).to_hex());
    assert_eq!(rendered["patient"]["reference"], "Patient/p1");
    let nested = &rendered["provision"]["provision"];
    assert_eq!(nested[0]["type"], "permit");
    assert_eq!(nested[1]["type"], "deny");
    assert_eq!(nested[0]["actor"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        nested[0]["purpose"].as_array().map(Vec::len),
        Some(Purpose::ALL.len())
    );
    assert_eq!(
        nested[0]["data"][0]["reference"]["identifier"]["value"],
        hash(9).to_hex()
    );
    assert_eq!(
        nested[0]["code"][9]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/condition-category"
    );
    assert!(
        nested[1].get("actor").is_none(),
        "a deny for everyone names no actor"
    );

    let mut revoked = active.clone();
    revoked.revoked_at = Some(20);
    revoked.revoked_time_ms = Some(1_720_000_000_000);
    let rendered = consent(&revoked, "Patient/p1", now);
    assert_valid("a revoked Consent", &rendered);
    assert_eq!(rendered["status"], "inactive");

    let expired = grant(provisions.clone(), 1_700_000_000_000, Some(now));
    let rendered = consent(&expired, "Patient/p1", now);
    assert_valid("an expired Consent", &rendered);
    assert_eq!(rendered["status"], "inactive");

    let future = grant(provisions, now + 1, Some(now + 2));
    let rendered = consent(&future, "Patient/p1", now);
    assert_valid("a future Consent", &rendered);
    assert_eq!(rendered["status"], "active");

    let empty = grant(Vec::new(), 0, None);
    assert_valid(
        "a Consent without provisions",
        &consent(&empty, "Patient/p1", now),
    );
}

fn access_event(break_glass: bool, decisions: Vec<(Hash, AccessRule)>) -> AccessEvent {
    AccessEvent {
        request: hash(3),
        reader: key(4),
        reader_org: "org-b".to_owned(),
        reader_role: Some(Role::Practitioner),
        custodian: "org-a".to_owned(),
        patient: hash(5),
        purpose: if break_glass {
            Purpose::EmergencyTreat
        } else {
            Purpose::Treat
        },
        break_glass,
        decisions,
        height: 42,
        time_ms: 1_795_290_205_123,
        tx: hash(6),
    }
}

/// AuditEvents are valid whether access was allowed, denied or forced, and break-glass shows.
#[test]
fn audit_events_are_valid() {
    let allowed = access_event(
        false,
        vec![
            (hash(10), AccessRule::Permit(hash(7))),
            (hash(11), AccessRule::Permit(hash(7))),
        ],
    );
    let rendered = audit_event(&allowed, "Patient/p1");
    assert_valid("an allowed AuditEvent", &rendered);
    assert_eq!(rendered["outcome"], "0");
    assert_eq!(rendered["recorded"], "2026-11-21T19:43:25.123Z");
    assert_eq!(
        rendered["outcomeDesc"],
        format!(
            "allowed: 2 records permitted by consent grant {}",
            hash(7).to_hex()
        )
    );
    assert!(rendered.get("meta").is_none());

    let denied = access_event(
        false,
        vec![
            (hash(10), AccessRule::Permit(hash(7))),
            (hash(11), AccessRule::Deny(hash(8))),
            (hash(12), AccessRule::NoConsent),
            (hash(13), AccessRule::Erased),
        ],
    );
    let rendered = audit_event(&denied, "Patient/p1");
    assert_valid("a denied AuditEvent", &rendered);
    assert_eq!(rendered["outcome"], "4");
    let description = rendered["outcomeDesc"].as_str().unwrap_or_default();
    assert!(
        description.starts_with("denied: 1 record permitted"),
        "{description}"
    );
    assert!(
        description.contains("no consent grant permits it"),
        "{description}"
    );
    // The patient, the transaction, then one entity per record with its decision.
    assert_eq!(rendered["entity"].as_array().map(Vec::len), Some(6));
    assert_eq!(rendered["entity"][3]["detail"][0]["valueString"], "deny");

    let forced = access_event(true, vec![(hash(10), AccessRule::BreakGlass)]);
    let rendered = audit_event(&forced, "Patient/p1");
    assert_valid("a break-glass AuditEvent", &rendered);
    assert_eq!(rendered["meta"]["security"][0]["code"], "BTG");
    assert_eq!(
        rendered["meta"]["security"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    );
    let description = rendered["outcomeDesc"].as_str().unwrap_or_default();
    assert!(description.starts_with("BREAK-GLASS"), "{description}");
    assert_eq!(rendered["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");

    let mut nobody = access_event(false, Vec::new());
    nobody.reader_role = None;
    assert_valid(
        "an AuditEvent for no records",
        &audit_event(&nobody, "Patient/p1"),
    );
}

/// Provenance, one per version, is valid, and links each update to the version it revised.
#[test]
fn provenances_are_valid() {
    let versions: Vec<RecordVersion> = (1..=3)
        .map(|version| RecordVersion {
            version,
            commitment: hash(20 + version as u8),
            author: key(30 + version as u8),
            recorded_by: key(40),
            height: u64::from(version) * 10,
            time_ms: 1_700_000_000_000 + u64::from(version),
            tx: hash(50 + version as u8),
        })
        .collect();
    let rendered = provenance("Observation/abc", &hash(9), &versions, "org-a");
    for (position, resource) in rendered.iter().enumerate() {
        let id = resource["id"].as_str().expect("id");
        assert!(medledger_fhir::is_id(id), "{id}");
        assert_eq!(
            medledger_fhir::parse_provenance_id(id),
            Some((hash(9), versions[position].version))
        );
    }
    assert_eq!(medledger_fhir::parse_provenance_id("abc-1"), None);
    assert_eq!(rendered.len(), 3);
    for (index, resource) in rendered.iter().enumerate() {
        assert_valid(&format!("Provenance of version {}", index + 1), resource);
        assert_eq!(
            resource["target"][0]["reference"],
            format!("Observation/abc/_history/{}", index + 1)
        );
    }
    assert_eq!(rendered[0]["activity"]["coding"][0]["code"], "CREATE");
    assert_eq!(rendered[2]["activity"]["coding"][0]["code"], "UPDATE");
    assert_eq!(
        rendered[2]["entity"][0]["what"]["reference"],
        "Observation/abc/_history/2"
    );
    assert!(rendered[0].get("entity").is_none());
    assert_ne!(rendered[0]["id"], rendered[1]["id"]);
}

/// A searchset embeds stored bytes verbatim and is valid, for Synthea's records and HL7's.
#[test]
fn searchsets_are_valid_and_byte_exact() {
    let input = common::synthea_bundle();
    let parsed = parse_bundle(&input).expect("parses");
    let entries: Vec<SearchEntry> = parsed
        .entries
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            let id = entry.resource.id.as_deref().unwrap_or_default();
            SearchEntry {
                full_url: format!(
                    "https://org-a.example/fhir/{}/{id}",
                    entry.resource.resource_type
                ),
                resource: entry.resource.bytes.into(),
                include: position == 0,
            }
        })
        .collect();
    let bytes = searchset(
        &entries,
        1_000,
        &[
            (
                "self",
                "https://org-a.example/fhir/Observation?patient=p&_count=314".to_owned(),
            ),
            (
                "next",
                "https://org-a.example/fhir/Observation?patient=p&_count=314&_offset=314"
                    .to_owned(),
            ),
        ],
    );
    let value: Value = serde_json::from_slice(&bytes).expect("searchset is JSON");
    assert_valid("a searchset of Synthea's records", &value);
    assert_eq!(value["total"], 1_000);
    assert_eq!(value["entry"].as_array().map(Vec::len), Some(314));
    assert_eq!(value["entry"][0]["search"]["mode"], "include");
    assert_eq!(value["link"][1]["relation"], "next");
    for entry in &entries {
        let resource = &entry.resource;
        assert!(
            bytes
                .windows(resource.len())
                .any(|window| window == resource.as_ref()),
            "a resource's bytes are not embedded verbatim"
        );
    }
    let examples = common::hl7_examples();
    let entries: Vec<SearchEntry> = examples
        .iter()
        .map(|(name, bytes)| SearchEntry {
            full_url: format!("https://example.org/{name}"),
            resource: bytes.as_slice().into(),
            include: false,
        })
        .collect();
    let value: Value = serde_json::from_slice(&searchset(
        &entries,
        25,
        &[("self", "https://example.org/x?a=\"b\"".to_owned())],
    ))
    .expect("JSON");
    assert_valid("a searchset of HL7's examples", &value);
    let value: Value = serde_json::from_slice(&searchset(
        &[],
        0,
        &[("self", "https://example.org/x".to_owned())],
    ))
    .expect("JSON");
    assert_valid("an empty searchset", &value);
}

/// Response Bundles and Bundles of rendered resources are valid.
#[test]
fn other_bundles_are_valid() {
    let mut created = EntryResponse::new("201 Created");
    created.location = Some("Observation/abc/_history/1".to_owned());
    created.etag = Some("W/\"1\"".to_owned());
    let mut failed = EntryResponse::new("404 Not Found");
    failed.outcome = Some(operation_outcome(&[Issue::error(
        IssueType::NotFound,
        "no such patient",
    )]));
    for kind in [ResponseKind::Transaction, ResponseKind::Batch] {
        assert_valid(
            kind.code(),
            &response_bundle(
                kind,
                &[
                    created.clone(),
                    failed.clone(),
                    EntryResponse::new("200 OK"),
                ],
            ),
        );
        assert_valid("an empty response", &response_bundle(kind, &[]));
    }
    let resources = vec![
        consent(&grant(Vec::new(), 0, None), "Patient/p1", 5),
        audit_event(&access_event(false, Vec::new()), "Patient/p1"),
    ];
    for bundle_type in [OutputBundleType::Searchset, OutputBundleType::Collection] {
        assert_valid(
            "a bundle of rendered resources",
            &bundle(bundle_type, resources.clone()),
        );
        assert_valid("an empty bundle", &bundle(bundle_type, Vec::new()));
    }
}

/// Every resource Synthea writes passes the validation writes go through, HL7's examples too, and
/// what the renderers produce; so a valid import is never refused by it.
#[test]
fn validation_accepts_synthea_hl7_examples_and_rendered_resources() {
    let bundle: Value = serde_json::from_slice(&common::synthea_bundle()).expect("json");
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(entries.len() > 100);
    for entry in entries {
        let issues = medledger_fhir::validate(&entry["resource"]);
        assert!(issues.is_empty(), "{}: {issues:#?}", entry["fullUrl"]);
    }
    for (name, bytes) in common::hl7_examples() {
        let resource: Value = serde_json::from_slice(&bytes).expect("json");
        let issues = medledger_fhir::validate(&resource);
        assert!(issues.is_empty(), "{name}: {issues:#?}");
    }
}
