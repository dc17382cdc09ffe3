//! The FHIR R4 (4.0.1) vocabulary this crate checks against: resource type names and the id rule.

/// Every FHIR R4 resource type name, sorted by byte order so that lookups can binary search.
///
/// The list is the one in the official R4 JSON Schema's `discriminator.mapping` (146 names,
/// `Bundle` included); a test checks it against the vendored schema.
pub const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// The longest FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub const ID_BYTES_MAX: usize = 64;

/// Whether `name` is a FHIR R4 resource type, e.g. `Observation` (case-sensitive).
pub fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// Whether `id` satisfies the FHIR id rule: 1 to 64 ASCII letters, digits, `-` or `.`.
pub fn is_id(id: &str) -> bool {
    (1..=ID_BYTES_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// Whether `text` is a UUID in the lowercase form FHIR's `uuid` type requires
/// (`8-4-4-4-12` hexadecimal digits).
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is sorted and free of duplicates, which `is_resource_type`'s binary search needs.
    #[test]
    fn resource_types_are_sorted_and_unique() {
        assert!(RESOURCE_TYPES.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(RESOURCE_TYPES.len(), 146);
    }

    /// Names, ids and UUIDs are accepted exactly when they follow the FHIR rules.
    #[test]
    fn vocabulary_rules() {
        fn check(text: &str, resource_type: bool, id: bool, uuid: bool) {
            assert_eq!(
                is_resource_type(text),
                resource_type,
                "resource type {text:?}"
            );
            assert_eq!(is_id(text), id, "id {text:?}");
            assert_eq!(is_uuid(text), uuid, "uuid {text:?}");
        }
        check("Observation", true, true, false);
        check("observation", false, true, false);
        check("Bundle", true, true, false);
        check("MedicinalProductUndesirableEffect", true, true, false);
        check("Foo", false, true, false);
        check("", false, false, false);
        check("a.b-C9", false, true, false);
        check("a_b", false, false, false);
        check("a b", false, false, false);
        check("é", false, false, false);
        check(&"x".repeat(64), false, true, false);
        check(&"x".repeat(65), false, false, false);
        check("d5582579-7193-4866-5560-a01e723b6552", false, true, true);
        check("D5582579-7193-4866-5560-A01E723B6552", false, true, false);
        check("d5582579-7193-4866-5560-a01e723b655", false, true, false);
        check("d5582579x7193-4866-5560-a01e723b6552", false, true, false);
    }
}
