//! Real Claims: the 49 Claims of Synthea's patient (institutional and pharmacy, written by a
//! third party) are read for adjudication once their references point at this node's resources,
//! and refused with the element named while they carry no line charge (Synthea puts the charge
//! only in `total`).

mod common;

use medledger_claims::{ClaimKind, ClaimUse};
use medledger_fhir::claim::parse_claim;
use serde_json::{Value, json};

fn synthea_claims() -> Vec<Value> {
    let bundle: Value = serde_json::from_slice(&common::synthea_bundle()).expect("json");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["resource"].clone())
        .filter(|resource| resource["resourceType"] == "Claim")
        .collect()
}

/// Points a Synthea Claim's references at this node's Patient, Coverage and Encounter.
fn localised(mut claim: Value) -> Value {
    claim["patient"] = json!({ "reference": "Patient/p1" });
    claim["insurance"][0]["coverage"] =
        json!({ "reference": format!("Coverage/{}", "ab".repeat(32)) });
    for item in claim["item"].as_array_mut().expect("items") {
        if item["encounter"].is_array() {
            item["encounter"] = json!([{ "reference": "Encounter/e1" }]);
        }
    }
    claim
}

#[test]
fn synthea_claims_are_read_for_adjudication() {
    let claims = synthea_claims();
    assert_eq!(claims.len(), 49);
    let (mut institutional, mut pharmacy) = (0, 0);
    for original in claims {
        let id = original["id"].as_str().unwrap_or_default().to_string();
        let claim = localised(original);
        // As Synthea writes them: no item has a charge, and the refusal says which element.
        let issues = parse_claim(claim.to_string().as_bytes(), 2).expect_err("no line charge");
        assert!(
            issues
                .iter()
                .any(|issue| issue.expression.as_deref() == Some("item[0].net.value")),
            "{id}: {issues:?}"
        );
        // With the total as the first line's charge (and nothing on the others), it is read.
        let mut priced = claim.clone();
        let total = priced["total"].clone();
        for (i, item) in priced["item"]
            .as_array_mut()
            .expect("items")
            .iter_mut()
            .enumerate()
        {
            item["net"] = if i == 0 {
                total.clone()
            } else {
                json!({ "value": 0, "currency": "USD" })
            };
        }
        let (_, facts) = parse_claim(priced.to_string().as_bytes(), 2)
            .unwrap_or_else(|issues| panic!("{id}: {issues:?}"));
        assert_eq!(facts.use_, ClaimUse::Claim);
        assert_eq!(facts.patient, "p1");
        assert_eq!(facts.currency.as_deref(), Some("USD"));
        let cents = (total["value"].as_f64().expect("total") * 100.0).round() as u128;
        assert_eq!(facts.items[0].charge, cents, "{id}");
        assert_eq!(
            facts.items.len(),
            priced["item"].as_array().map_or(0, Vec::len)
        );
        assert_eq!(
            facts.items[0].service_date.len(),
            10,
            "{id}: from billablePeriod.start"
        );
        match facts.kind {
            ClaimKind::Institutional => {
                institutional += 1;
                assert_eq!(facts.encounter.as_deref(), Some("e1"), "{id}");
            }
            ClaimKind::Pharmacy => pharmacy += 1,
            ClaimKind::Professional => panic!("{id}: Synthea writes no professional claims"),
        }
    }
    assert_eq!((institutional, pharmacy), (37, 12));
}

#[test]
fn malformed_claims_name_what_is_wrong() {
    let base = localised(synthea_claims().remove(0));
    let check = |edit: &dyn Fn(&mut Value), expression: &str| {
        let mut claim = base.clone();
        claim["item"][0]["net"] = json!({ "value": 10, "currency": "USD" });
        edit(&mut claim);
        let issues = parse_claim(claim.to_string().as_bytes(), 2).expect_err(expression);
        assert!(
            issues
                .iter()
                .any(|i| i.expression.as_deref() == Some(expression)),
            "{expression}: {issues:?}"
        );
    };
    check(&|c| c["use"] = json!("predetermination"), "use");
    check(
        &|c| c["type"]["coding"][0]["code"] = json!("vision"),
        "type",
    );
    check(
        &|c| c["patient"] = json!({ "reference": "Group/1" }),
        "patient",
    );
    check(
        &|c| c["insurance"][0]["coverage"] = json!({ "display": "Humana" }),
        "insurance.coverage",
    );
    check(
        &|c| c["item"][0]["net"]["value"] = json!(1.001),
        "item[0].net.value",
    );
    check(
        &|c| c["item"][0]["net"]["value"] = json!(-5),
        "item[0].net.value",
    );
    check(
        &|c| c["item"][0]["quantity"] = json!({ "value": 1.5 }),
        "item[0].quantity.value",
    );
    check(
        &|c| c["item"][1]["net"] = json!({ "value": 1, "currency": "EUR" }),
        "item[1].net.currency",
    );
    check(&|c| c["resourceType"] = json!("Patient"), "resourceType");
    // The R4 schema runs first: a status outside its value set is refused by it.
    let mut claim = base.clone();
    claim["status"] = json!(17);
    assert!(parse_claim(claim.to_string().as_bytes(), 2).is_err());
}
