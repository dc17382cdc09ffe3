//! FHIR R4 AdverseEvent as a clinical trial reads it: which study and subject it is about, and
//! its seriousness, expectedness and relatedness, from the standard code systems. Pure: the
//! caller decides what the classification starts (a regulatory clock).

use serde_json::{Value, json};

/// The extension that says whether an adverse event was expected (R4 has no element for it):
/// `valueCode` `expected` or `unexpected`.
pub const EXPECTEDNESS_URL: &str =
    "https://medledger.dev/fhir/StructureDefinition/adverse-event-expectedness";
pub const SERIOUSNESS_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness";
const OUTCOME_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome";
const CAUSALITY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess";

/// How serious an event is, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdverseEventSeriousness {
    NonSerious,
    Serious,
    LifeThreatening,
    Fatal,
}

/// A classified adverse event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdverseEventClass {
    /// The ResearchStudy's id.
    pub study: String,
    /// The study's subject id.
    pub subject: String,
    pub seriousness: AdverseEventSeriousness,
    pub expected: bool,
    pub related: bool,
}

fn codes<'v>(concept: &'v Value, system: &str) -> Vec<&'v str> {
    concept["coding"]
        .as_array()
        .map(|codings| {
            codings
                .iter()
                .filter(|coding| coding["system"] == json!(system))
                .filter_map(|coding| coding["code"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// What a FHIR AdverseEvent says for a trial: its study, subject and classification.
/// Seriousness is R4's `adverse-event-seriousness` (with outcome `fatal` as death); relatedness
/// is a WHO-UMC causality assessment of a suspect entity (certain, probable, possible or
/// conditional counts as related); expectedness is the extension [`EXPECTEDNESS_URL`].
pub fn classify_adverse_event(resource: &Value) -> Result<AdverseEventClass, String> {
    let study = resource["study"]
        .as_array()
        .and_then(|studies| studies.first())
        .and_then(|study| study["reference"].as_str())
        .and_then(|reference| reference.strip_prefix("ResearchStudy/"))
        .ok_or("AdverseEvent.study must reference the ResearchStudy (ResearchStudy/<id>)")?
        .to_string();
    let subject = resource["subject"]["identifier"]["value"]
        .as_str()
        .ok_or("AdverseEvent.subject must name the study's subject id (subject.identifier.value)")?
        .to_string();
    let seriousness_codes = codes(&resource["seriousness"], SERIOUSNESS_SYSTEM);
    let mut seriousness = None;
    for code in seriousness_codes {
        let level = match code {
            "Non-serious" => AdverseEventSeriousness::NonSerious,
            "Serious"
            | "SeriousResultsInHospitalization"
            | "SeriousResultsInDisability"
            | "SeriousIsBirthDefect"
            | "SeriousRequiresPreventImpairment" => AdverseEventSeriousness::Serious,
            "SeriousIsLifeThreatening" => AdverseEventSeriousness::LifeThreatening,
            "SeriousResultsInDeath" => AdverseEventSeriousness::Fatal,
            other => return Err(format!("unknown seriousness code {other:?}")),
        };
        seriousness =
            Some(seriousness.map_or(level, |known: AdverseEventSeriousness| known.max(level)));
    }
    let mut seriousness = seriousness.ok_or(format!(
        "AdverseEvent.seriousness must carry a code of {SERIOUSNESS_SYSTEM}"
    ))?;
    if codes(&resource["outcome"], OUTCOME_SYSTEM).contains(&"fatal") {
        seriousness = AdverseEventSeriousness::Fatal;
    }
    let assessments: Vec<&str> = resource["suspectEntity"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entity| entity["causality"].as_array().into_iter().flatten())
        .flat_map(|causality| codes(&causality["assessment"], CAUSALITY_SYSTEM))
        .collect();
    if assessments.is_empty() {
        return Err(format!(
            "AdverseEvent.suspectEntity.causality.assessment must carry a code of {CAUSALITY_SYSTEM}"
        ));
    }
    let related = assessments.iter().any(|code| {
        matches!(
            *code,
            "Certain" | "Probably-Likely" | "Possible" | "Conditional-Classified"
        )
    });
    let expectedness = resource["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == json!(EXPECTEDNESS_URL))
        .and_then(|extension| extension["valueCode"].as_str())
        .ok_or(format!(
            "the extension {EXPECTEDNESS_URL} must say whether the event was expected (valueCode expected or unexpected)"
        ))?;
    let expected = match expectedness {
        "expected" => true,
        "unexpected" => false,
        other => {
            return Err(format!(
                "expectedness {other:?} is neither expected nor unexpected"
            ));
        }
    };
    Ok(AdverseEventClass {
        study,
        subject,
        seriousness,
        expected,
        related,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fatal, unexpected, possibly related event of subject S-001 in study s1, changed by
    /// `edit`.
    fn event(edit: impl Fn(&mut Value)) -> Value {
        let mut value = json!({
            "resourceType": "AdverseEvent",
            "extension": [{"url": EXPECTEDNESS_URL, "valueCode": "unexpected"}],
            "actuality": "actual",
            "subject": {"identifier": {"value": "S-001"}},
            "seriousness": {"coding": [{"system": SERIOUSNESS_SYSTEM, "code": "SeriousResultsInDeath"}]},
            "suspectEntity": [{"instance": {"display": "drug"}, "causality": [{"assessment": {"coding": [{"system": CAUSALITY_SYSTEM, "code": "Possible"}]}}]}],
            "study": [{"reference": "ResearchStudy/s1"}],
        });
        edit(&mut value);
        value
    }

    fn check(
        edit: impl Fn(&mut Value),
        expected: Result<(AdverseEventSeriousness, bool, bool), &str>,
    ) {
        let got = classify_adverse_event(&event(edit));
        match (got, expected) {
            (Ok(class), Ok((seriousness, expected, related))) => {
                assert_eq!(
                    (class.study.as_str(), class.subject.as_str()),
                    ("s1", "S-001")
                );
                assert_eq!(
                    (class.seriousness, class.expected, class.related),
                    (seriousness, expected, related)
                );
            }
            (Err(message), Err(part)) => assert!(message.contains(part), "{message}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn events_are_classified_from_the_standard_codes() {
        use AdverseEventSeriousness::*;
        check(|_| {}, Ok((Fatal, false, true)));
        let code = |code: &'static str| {
            move |value: &mut Value| value["seriousness"]["coding"][0]["code"] = json!(code)
        };
        check(
            code("SeriousIsLifeThreatening"),
            Ok((LifeThreatening, false, true)),
        );
        check(
            code("SeriousResultsInHospitalization"),
            Ok((Serious, false, true)),
        );
        check(code("Non-serious"), Ok((NonSerious, false, true)));
        // A fatal outcome makes any event fatal.
        check(
            |value| {
                value["seriousness"]["coding"][0]["code"] = json!("Serious");
                value["outcome"] = json!({"coding": [{"system": OUTCOME_SYSTEM, "code": "fatal"}]});
            },
            Ok((Fatal, false, true)),
        );
        check(
            |value| {
                value["suspectEntity"][0]["causality"][0]["assessment"]["coding"][0]["code"] =
                    json!("Unlikely")
            },
            Ok((Fatal, false, false)),
        );
        check(
            |value| value["extension"][0]["valueCode"] = json!("expected"),
            Ok((Fatal, true, true)),
        );
    }

    #[test]
    fn an_event_missing_what_the_clock_needs_is_refused() {
        check(|value| value["study"] = json!([]), Err("ResearchStudy"));
        check(
            |value| value["study"][0]["reference"] = json!("Patient/x"),
            Err("ResearchStudy"),
        );
        check(
            |value| value["subject"] = json!({"reference": "Patient/x"}),
            Err("subject id"),
        );
        check(
            |value| value["seriousness"] = json!({"text": "bad"}),
            Err("seriousness"),
        );
        check(
            |value| value["seriousness"]["coding"][0]["code"] = json!("Awful"),
            Err("unknown seriousness"),
        );
        check(|value| value["suspectEntity"] = json!([]), Err("causality"));
        check(|value| value["extension"] = json!([]), Err("expected"));
        check(
            |value| value["extension"][0]["valueCode"] = json!("maybe"),
            Err("neither"),
        );
        assert!(classify_adverse_event(&json!("not an object")).is_err());
    }
}
