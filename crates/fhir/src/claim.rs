//! FHIR R4 financial resources: a submitted Claim read into the facts adjudication needs, and the
//! ledger's adjudication rendered as ClaimResponse, ExplanationOfBenefit, Coverage and
//! PaymentReconciliation. Amounts are integers in minor units on chain; here they become FHIR
//! Money with the class's decimals, parsed from and written to decimal text without arithmetic
//! in floating point (a JSON number is only ever formed from its exact decimal text).

use medledger_claims::{ClaimEntry, ClaimStatus, ClaimUse, Coverage, Group, ItemOutcome};
use serde_json::{Value, json};

use crate::outcome::{Issue, IssueType, Severity};

/// The largest FHIR Claim accepted.
pub const CLAIM_BYTES_MAX: usize = 256 * 1024;
pub const CARC_SYSTEM: &str = "https://x12.org/codes/claim-adjustment-reason-codes";
pub const RARC_SYSTEM: &str = "https://x12.org/codes/remittance-advice-remark-codes";
pub const CHECK_SYSTEM: &str = "https://medledger.dev/fhir/CodeSystem/claim-check";
pub const ADJUDICATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adjudication";
pub const CLAIM_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/claim-type";
/// How a member is named where the node has no FHIR Patient for them: their enrolled key.
pub const MEMBER_SYSTEM: &str = "https://medledger.dev/fhir/member-key";

/// One service line of a submitted Claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimLine {
    pub sequence: u32,
    pub code: String,
    /// `YYYY-MM-DD`.
    pub service_date: String,
    pub units: u32,
    /// The line's charge (`net`, or `unitPrice` times `quantity`), in minor units.
    pub charge: u128,
}

/// What a FHIR Claim says that adjudication needs; the rest stays in the kept resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimFacts {
    pub use_: ClaimUse,
    pub kind: medledger_claims::ClaimKind,
    /// The id of `Patient/{id}` at this node.
    pub patient: String,
    /// The id of the focal `Coverage/{id}`.
    pub coverage: String,
    /// The id of the first `Encounter/{id}` an item names.
    pub encounter: Option<String>,
    /// The focal insurance's first `preAuthRef`.
    pub authorisation: Option<String>,
    pub diagnoses: Vec<String>,
    pub items: Vec<ClaimLine>,
    pub currency: Option<String>,
}

fn issue(expression: &str, diagnostics: impl Into<String>) -> Issue {
    Issue {
        severity: Severity::Error,
        code: IssueType::Invalid,
        diagnostics: diagnostics.into(),
        expression: Some(expression.to_string()),
    }
}

/// Minor units from a JSON number's exact decimal text, with at most `decimals` decimals.
pub fn minor_units(value: &Value, decimals: u8, at: &str) -> Result<u128, Issue> {
    let Some(number) = value.as_number() else {
        return Err(issue(at, "must be a decimal number"));
    };
    let text = number.to_string();
    let bad = || {
        issue(
            at,
            format!("{text} is not a non-negative amount with at most {decimals} decimals"),
        )
    };
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction.trim_end_matches('0')),
        None => (text.as_str(), ""),
    };
    if whole.starts_with('-') || text.contains(['e', 'E']) || fraction.len() > usize::from(decimals)
    {
        return Err(bad());
    }
    let digits = format!("{whole}{fraction:0<width$}", width = usize::from(decimals));
    digits.parse::<u128>().map_err(|_| bad())
}

/// A FHIR Money value for `minor` units with `decimals` decimals.
pub fn money(minor: u128, decimals: u8, currency: &str) -> Value {
    let scale = 10u128.pow(u32::from(decimals));
    let text = if decimals == 0 {
        minor.to_string()
    } else {
        format!(
            "{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = usize::from(decimals)
        )
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    json!({ "value": value, "currency": currency })
}

fn reference_id<'v>(value: &'v Value, kind: &str) -> Option<&'v str> {
    value["reference"]
        .as_str()?
        .strip_prefix(kind)?
        .strip_prefix('/')
}

/// Reads a FHIR R4 Claim: checked against the R4 schema, then for what adjudication needs.
/// Every problem found is returned, each naming its element.
pub fn parse_claim(bytes: &[u8], decimals: u8) -> Result<(Value, ClaimFacts), Vec<Issue>> {
    if bytes.len() > CLAIM_BYTES_MAX {
        return Err(vec![issue(
            "Claim",
            format!("a Claim is at most {CLAIM_BYTES_MAX} bytes"),
        )]);
    }
    let resource: Value = serde_json::from_slice(bytes)
        .map_err(|error| vec![issue("Claim", format!("not valid JSON: {error}"))])?;
    if resource["resourceType"] != "Claim" {
        return Err(vec![issue("resourceType", "must be Claim")]);
    }
    let schema = crate::validate(&resource);
    if !schema.is_empty() {
        return Err(schema);
    }
    let mut issues = Vec::new();
    let use_ = match resource["use"].as_str() {
        Some("claim") => Some(ClaimUse::Claim),
        Some("preauthorization") => Some(ClaimUse::Preauthorization),
        _ => {
            issues.push(issue(
                "use",
                "claim or preauthorization (predetermination is not supported)",
            ));
            None
        }
    };
    let kind = resource["type"]["coding"].as_array().and_then(|codings| {
        codings.iter().find_map(|coding| {
            (coding["system"] == CLAIM_TYPE_SYSTEM).then(|| match coding["code"].as_str() {
                Some("professional") => Some(medledger_claims::ClaimKind::Professional),
                Some("institutional") => Some(medledger_claims::ClaimKind::Institutional),
                Some("pharmacy") => Some(medledger_claims::ClaimKind::Pharmacy),
                _ => None,
            })?
        })
    });
    if kind.is_none() {
        issues.push(issue(
            "type",
            format!("a {CLAIM_TYPE_SYSTEM} code: professional, institutional or pharmacy"),
        ));
    }
    let patient = reference_id(&resource["patient"], "Patient").map(str::to_string);
    if patient.is_none() {
        issues.push(issue(
            "patient",
            "a reference Patient/[id] to a patient of this node",
        ));
    }
    let insurance = resource["insurance"].as_array().and_then(|list| {
        list.iter()
            .find(|entry| entry["focal"] == true)
            .or_else(|| list.first())
    });
    let coverage = insurance
        .and_then(|entry| reference_id(&entry["coverage"], "Coverage"))
        .map(str::to_string);
    if coverage.is_none() {
        issues.push(issue(
            "insurance.coverage",
            "a reference Coverage/[id] to the payer's coverage",
        ));
    }
    let authorisation = insurance
        .and_then(|entry| entry["preAuthRef"].as_array())
        .and_then(|refs| refs.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut diagnoses = Vec::new();
    for (i, diagnosis) in resource["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        // A diagnosis given by reference (a Condition kept here, as Synthea writes them) stays
        // with the Claim; only coded ones go on chain, and adjudication needs neither.
        if diagnosis["diagnosisReference"].is_object() {
            continue;
        }
        let code = diagnosis["diagnosisCodeableConcept"]["coding"]
            .as_array()
            .and_then(|codings| codings.iter().find_map(|c| c["code"].as_str()));
        match code {
            Some(code) => diagnoses.push(code.to_string()),
            None => issues.push(issue(
                &format!("diagnosis[{i}].diagnosisCodeableConcept"),
                "an ICD-10-CM code",
            )),
        }
    }
    let mut currency: Option<String> = None;
    let mut items = Vec::new();
    let mut encounter = None;
    let billable = resource["billablePeriod"]["start"]
        .as_str()
        .map(|s| s.get(..10).unwrap_or(s).to_string());
    for (i, item) in resource["item"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |field: &str| format!("item[{i}].{field}");
        let sequence = item["sequence"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok());
        let code = item["productOrService"]["coding"]
            .as_array()
            .and_then(|codings| codings.iter().find_map(|c| c["code"].as_str()));
        let service_date = item["servicedDate"]
            .as_str()
            .map(str::to_string)
            .or_else(|| billable.clone());
        let units = match &item["quantity"]["value"] {
            Value::Null => Some(1),
            value => value.as_u64().and_then(|u| u32::try_from(u).ok()),
        };
        if units.is_none() {
            issues.push(issue(&at("quantity.value"), "a whole number of units"));
        }
        let unit_price = &item["unitPrice"];
        let price = if item["net"].is_object() {
            &item["net"]
        } else {
            unit_price
        };
        for money_value in [&item["net"], unit_price] {
            if let Some(code) = money_value["currency"].as_str() {
                match &currency {
                    Some(seen) if seen != code => {
                        issues.push(issue(&at("net.currency"), "every amount in one currency"))
                    }
                    _ => currency = Some(code.to_string()),
                }
            }
        }
        let charge = match minor_units(&price["value"], decimals, &at("net.value")) {
            Ok(value) if price == unit_price && !item["net"].is_object() => {
                value.checked_mul(u128::from(units.unwrap_or(1)))
            }
            Ok(value) => Some(value),
            Err(problem) => {
                issues.push(problem);
                None
            }
        };
        if encounter.is_none() {
            encounter = item["encounter"]
                .as_array()
                .and_then(|list| list.first())
                .and_then(|r| reference_id(r, "Encounter"))
                .map(str::to_string);
        }
        match (sequence, code, service_date, units, charge) {
            (Some(sequence), Some(code), Some(service_date), Some(units), Some(charge)) => items
                .push(ClaimLine {
                    sequence,
                    code: code.to_string(),
                    service_date,
                    units,
                    charge,
                }),
            (None, ..) => issues.push(issue(&at("sequence"), "a positive integer")),
            (_, None, ..) => issues.push(issue(
                &at("productOrService"),
                "a coded service (CPT, HCPCS, NDC or local)",
            )),
            (_, _, None, ..) => issues.push(issue(
                &at("servicedDate"),
                "a date of service (or the claim's billablePeriod.start)",
            )),
            _ => {}
        }
    }
    if items.is_empty() && issues.is_empty() {
        issues.push(issue("item", "at least one item"));
    }
    match (issues.is_empty(), use_, kind, patient, coverage) {
        (true, Some(use_), Some(kind), Some(patient), Some(coverage)) => Ok((
            resource,
            ClaimFacts {
                use_,
                kind,
                patient,
                coverage,
                encounter,
                authorisation,
                diagnoses,
                items,
                currency,
            },
        )),
        _ => Err(issues),
    }
}

/// How to name the parties of a claim in FHIR, as the serving node knows them.
#[derive(Clone, Debug)]
pub struct ClaimParties {
    /// `Patient/{id}` where this node holds the patient, else `None` (the member key is named).
    pub patient: Option<String>,
    pub currency: String,
    pub decimals: u8,
}

fn instant(time_ms: u64) -> String {
    crate::time::instant(time_ms)
}

fn patient_reference(entry: &ClaimEntry, parties: &ClaimParties) -> Value {
    match (&parties.patient, &entry.member) {
        (Some(reference), _) => json!({ "reference": reference }),
        (None, Some(key)) => {
            json!({ "identifier": { "system": MEMBER_SYSTEM, "value": key.to_string() } })
        }
        (None, None) => json!({ "display": "a patient this payer does not insure" }),
    }
}

fn organisation(org: &str) -> Value {
    json!({ "identifier": { "system": "https://medledger.dev/fhir/organisation", "value": org } })
}

fn category(code: &str) -> Value {
    json!({ "coding": [{ "system": ADJUDICATION_SYSTEM, "code": code }] })
}

/// The adjudication lines of one item: submitted, eligible, each adjustment, and benefit.
fn adjudication(entry: &ClaimEntry, index: usize, parties: &ClaimParties) -> Vec<Value> {
    let item = &entry.items[index];
    let money = |minor| money(minor, parties.decimals, &parties.currency);
    let mut lines = vec![
        json!({ "category": category("submitted"), "amount": money(item.charge.0) }),
        json!({ "category": category("eligible"), "amount": money(item.allowed.0) }),
    ];
    for adjustment in &item.adjustments {
        let (kind, group) = match (adjustment.group, adjustment.carc.as_str()) {
            (Group::PR, "1") => ("deductible", "PR"),
            (Group::PR, "3") => ("copay", "PR"),
            (Group::PR, _) => ("eligpercent", "PR"),
            (Group::CO, _) => ("submitted", "CO"),
        };
        let mut codings = vec![json!({
            "system": CARC_SYSTEM,
            "code": adjustment.carc,
            "display": format!("{group}-{}", adjustment.carc),
        })];
        for remark in &item.remarks {
            codings.push(json!({ "system": RARC_SYSTEM, "code": remark }));
        }
        if let Some(finding) = entry.findings.iter().find(|f| {
            f.sequence.is_none_or(|s| s == item.sequence) && f.check.carc() == adjustment.carc
        }) {
            codings.push(json!({ "system": CHECK_SYSTEM, "code": finding.check.code() }));
        }
        let category_code = if adjustment.group == Group::CO {
            "submitted"
        } else {
            kind
        };
        lines.push(json!({
            "category": category(category_code),
            "reason": { "coding": codings },
            "amount": money(adjustment.amount.0),
        }));
    }
    lines.push(json!({ "category": category("benefit"), "amount": money(item.payer.0) }));
    lines
}

fn disposition(entry: &ClaimEntry) -> String {
    let outcomes = |kind| entry.items.iter().filter(|i| i.outcome == kind).count();
    let mut text = format!(
        "{} approved, {} reduced, {} denied",
        outcomes(ItemOutcome::Approved),
        outcomes(ItemOutcome::Reduced),
        outcomes(ItemOutcome::Denied)
    );
    match entry.status {
        ClaimStatus::Pending => text.push_str("; queued for the payer's review"),
        ClaimStatus::Appealed => text.push_str("; under appeal"),
        ClaimStatus::Authorised => text.push_str("; authorised"),
        _ => {}
    }
    if !entry.findings.is_empty() {
        let checks: Vec<&str> = entry.findings.iter().map(|f| f.check.code()).collect();
        text.push_str(&format!("; checks: {}", checks.join(", ")));
    }
    text
}

fn common(entry: &ClaimEntry, parties: &ClaimParties, resource_type: &str) -> Value {
    let totals = entry.totals();
    let money = |minor| money(minor, parties.decimals, &parties.currency);
    let mut resource = json!({
        "resourceType": resource_type,
        "id": entry.claim.id.to_string(),
        "status": "active",
        "type": { "coding": [{ "system": CLAIM_TYPE_SYSTEM, "code": entry.claim.kind.code() }] },
        "use": match entry.claim.use_ { ClaimUse::Claim => "claim", ClaimUse::Preauthorization => "preauthorization" },
        "patient": patient_reference(entry, parties),
        "created": instant(entry.submitted.time_ms),
        "insurer": organisation(&entry.payer),
        "outcome": entry.outcome().code(),
        "disposition": disposition(entry),
        "item": entry.items.iter().enumerate().map(|(i, item)| json!({
            "itemSequence": item.sequence,
            "adjudication": adjudication(entry, i, parties),
        })).collect::<Vec<_>>(),
        "total": [
            { "category": category("submitted"), "amount": money(totals.charged) },
            { "category": category("eligible"), "amount": money(totals.allowed) },
            { "category": category("benefit"), "amount": money(totals.payer) },
        ],
    });
    if entry.claim.use_ == ClaimUse::Claim && entry.paid.0 > 0 {
        resource["payment"] = json!({
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype",
                "code": if entry.paid.0 == totals.payer { "complete" } else { "partial" },
            }] },
            "amount": money(entry.paid.0),
        });
    }
    if entry.claim.use_ == ClaimUse::Preauthorization && entry.status == ClaimStatus::Authorised {
        resource["preAuthRef"] = json!(entry.claim.id.to_string());
        if let Some(until) = entry.valid_until {
            resource["preAuthPeriod"] = json!({ "end": until.to_string() });
        }
    }
    resource
}

/// The payer's answer to a claim, as R4 ClaimResponse.
pub fn claim_response(entry: &ClaimEntry, parties: &ClaimParties) -> Value {
    let mut resource = common(entry, parties, "ClaimResponse");
    resource["requestor"] = organisation(&entry.provider_org);
    resource["request"] = json!({ "reference": format!("Claim/{}", entry.claim.id) });
    resource
}

/// The patient's view of a claim, as R4 ExplanationOfBenefit: what was billed, what the plan
/// allowed and paid, and what the patient owes.
pub fn explanation_of_benefit(entry: &ClaimEntry, parties: &ClaimParties) -> Value {
    let mut resource = common(entry, parties, "ExplanationOfBenefit");
    let totals = entry.totals();
    // An EOB's items say what was billed, as the claim's did.
    resource["item"] = json!(
        entry
            .claim
            .items
            .iter()
            .enumerate()
            .map(|(i, asked)| json!({
                "sequence": asked.sequence,
                "productOrService": { "coding": [{ "code": asked.code }] },
                "servicedDate": asked.service_date.to_string(),
                "quantity": { "value": asked.units },
                "adjudication": adjudication(entry, i, parties),
            }))
            .collect::<Vec<_>>()
    );
    resource["provider"] = organisation(&entry.provider_org);
    resource["insurance"] = json!([{ "focal": true, "coverage": { "reference": format!("Coverage/{}", entry.claim.coverage) } }]);
    resource["claim"] = json!({ "reference": format!("Claim/{}", entry.claim.id) });
    let patient_share = money(totals.patient, parties.decimals, &parties.currency);
    if let Some(totals_list) = resource["total"].as_array_mut() {
        totals_list.push(json!({
            "category": { "coding": [{ "system": ADJUDICATION_SYSTEM, "code": "deductible" }], "text": "patient responsibility" },
            "amount": patient_share,
        }));
    }
    resource
}

/// A member's coverage, as R4 Coverage.
pub fn coverage_resource(
    found: &Coverage,
    today: medledger_claims::Date,
    patient: Option<&str>,
) -> Value {
    let active = found.covers(today) || found.start > today;
    let beneficiary = match patient {
        Some(reference) => json!({ "reference": reference }),
        None => {
            json!({ "identifier": { "system": MEMBER_SYSTEM, "value": found.member.to_string() } })
        }
    };
    let mut period = json!({ "start": found.start.to_string() });
    if let Some(end) = found.end {
        period["end"] = json!(end.to_string());
    }
    json!({
        "resourceType": "Coverage",
        "id": found.id.to_string(),
        "status": if active { "active" } else { "cancelled" },
        "beneficiary": beneficiary,
        "payor": [organisation(&found.payer)],
        "period": period,
        "class": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan" }] },
            "value": found.plan,
        }],
    })
}

/// One payment a reconciliation lists.
#[derive(Clone, Debug)]
pub struct Payment {
    pub claim: medledger_crypto::Hash,
    pub time_ms: u64,
    pub amount: u128,
}

/// A payer's payments to a provider over a period, as R4 PaymentReconciliation.
#[allow(clippy::too_many_arguments)]
pub fn payment_reconciliation(
    id: &str,
    payer: &str,
    provider: &str,
    period: (u64, u64),
    payments: &[Payment],
    created_ms: u64,
    currency: &str,
    decimals: u8,
) -> Value {
    let total: u128 = payments.iter().map(|p| p.amount).sum();
    json!({
        "resourceType": "PaymentReconciliation",
        "id": id,
        "status": "active",
        "period": { "start": instant(period.0), "end": instant(period.1) },
        "created": instant(created_ms),
        "paymentIssuer": organisation(payer),
        "requestor": organisation(provider),
        "outcome": "complete",
        "disposition": format!("{} claim payments", payments.len()),
        "paymentDate": instant(created_ms).get(..10).unwrap_or_default(),
        "paymentAmount": money(total, decimals, currency),
        "detail": payments.iter().map(|p| json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/payment-type", "code": "payment" }] },
            "request": { "reference": format!("Claim/{}", p.claim) },
            "response": { "reference": format!("ClaimResponse/{}", p.claim) },
            "date": instant(p.time_ms).get(..10).unwrap_or_default(),
            "amount": money(p.amount, decimals, currency),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, decimals: u8, expected: Option<u128>) {
        let value: Value = serde_json::from_str(text).expect("json");
        assert_eq!(minor_units(&value, decimals, "x").ok(), expected, "{text}");
    }

    #[test]
    fn amounts_are_read_exactly_from_their_decimal_text() {
        check("150", 2, Some(15_000));
        check("150.5", 2, Some(15_050));
        check("150.50", 2, Some(15_050));
        check("0.01", 2, Some(1));
        check("0", 2, Some(0));
        check("1.005", 2, None);
        check("-1", 2, None);
        // A JSON number in exponent form is the same number.
        check("1e3", 2, Some(100_000));
        check("\"150\"", 2, None);
        check("12", 0, Some(12));
        assert_eq!(money(15_050, 2, "USD")["value"].to_string(), "150.5");
        assert_eq!(money(7, 0, "USD")["value"], 7);
    }
}
