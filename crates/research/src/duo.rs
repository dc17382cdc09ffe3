//! The GA4GH Data Use Ontology (DUO) terms research consent and data requests are written in, and
//! the one rule that matches them.
//!
//! A patient's consent names one data use permission (what research their data may serve) and
//! any data use modifiers (conditions on that use). A researcher's request names its research
//! purpose, in the same vocabulary, and the modifiers it satisfies or accepts (an ethics approval,
//! non-commercial use, a publication duty). The request matches the consent when the permission
//! covers the purpose and every modifier of the consent is satisfied ([`permits`]).
//!
//! Terms travel as DUO CURIEs (`DUO:0000006`) and are parsed here, so what is on chain is what a
//! DUO-aware system reads.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A data use permission: what kind of research the data may be used for (DUO's primary
/// categories), most permissive first.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Permission {
    /// DUO:0000004, no restriction (NRES).
    NoRestriction,
    /// DUO:0000042, general research use (GRU).
    GeneralResearch,
    /// DUO:0000006, health or medical or biomedical research (HMB); not population origins or
    /// ancestry.
    HealthMedicalBiomedical,
    /// DUO:0000007, disease specific research (DS), for one disease (a MONDO, SNOMED CT or ICD
    /// code, as DUO recommends MONDO).
    DiseaseSpecific { disease: String },
    /// DUO:0000011, population origins or ancestry research only (POA).
    PopulationOriginsAncestry,
}

/// A data use modifier: a condition on use.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum Modifier {
    /// DUO:0000021 (IRB): the requester documents an ethics approval.
    EthicsApprovalRequired = 0,
    /// DUO:0000046 (NCU): non-commercial use only.
    NonCommercialUse = 1,
    /// DUO:0000045 (NPU): use by not-for-profit organisations only.
    NotForProfitOrganisation = 2,
    /// DUO:0000018 (NPUNCU): not-for-profit organisations and non-commercial use only.
    NotForProfitNonCommercial = 3,
    /// DUO:0000019 (PUB): results must be published.
    PublicationRequired = 4,
    /// DUO:0000020 (COL): collaboration with the primary investigators is required.
    CollaborationRequired = 5,
    /// DUO:0000029 (RTN): derived data must be returned to the resource.
    ReturnToResource = 6,
    /// DUO:0000016 (GSO): genetic studies only.
    GeneticStudiesOnly = 7,
    /// DUO:0000015 (NMDS): no general methods research.
    NoGeneralMethodsResearch = 8,
    /// DUO:0000024 (MOR): a publication moratorium applies.
    PublicationMoratorium = 9,
    /// DUO:0000044 (NPOA): population origins or ancestry research prohibited.
    NoPopulationOriginsAncestry = 10,
    /// DUO:0000028 (IS): use by named institutions only (the consent lists them).
    InstitutionSpecific = 11,
}

const PERMISSIONS: &[(&str, &str)] = &[
    ("DUO:0000004", "NRES"),
    ("DUO:0000042", "GRU"),
    ("DUO:0000006", "HMB"),
    ("DUO:0000007", "DS"),
    ("DUO:0000011", "POA"),
];

const MODIFIERS: &[(&str, Modifier)] = &[
    ("DUO:0000021", Modifier::EthicsApprovalRequired),
    ("DUO:0000046", Modifier::NonCommercialUse),
    ("DUO:0000045", Modifier::NotForProfitOrganisation),
    ("DUO:0000018", Modifier::NotForProfitNonCommercial),
    ("DUO:0000019", Modifier::PublicationRequired),
    ("DUO:0000020", Modifier::CollaborationRequired),
    ("DUO:0000029", Modifier::ReturnToResource),
    ("DUO:0000016", Modifier::GeneticStudiesOnly),
    ("DUO:0000015", Modifier::NoGeneralMethodsResearch),
    ("DUO:0000024", Modifier::PublicationMoratorium),
    ("DUO:0000044", Modifier::NoPopulationOriginsAncestry),
    ("DUO:0000028", Modifier::InstitutionSpecific),
];

/// The longest disease code or institution id.
pub const TERM_BYTES_MAX: usize = 64;
/// The most DUO codes or institutions in one set of terms.
pub const TERMS_MAX: usize = 32;

/// DUO terms as they travel: CURIEs, the disease a DS permission names, the institutions an IS
/// modifier names.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct DuoTerms {
    pub codes: Vec<String>,
    #[serde(default)]
    pub disease: Option<String>,
    #[serde(default)]
    pub institutions: Vec<String>,
}

/// Terms parsed: one permission, its modifiers, and the institutions named.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DataUse {
    pub permission: Permission,
    pub modifiers: BTreeSet<Modifier>,
    pub institutions: BTreeSet<String>,
}

/// Why terms do not parse, or a request does not match a consent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DuoError {
    #[error(
        "no DUO terms: name one data use permission (e.g. DUO:0000006 for health/medical/biomedical research)"
    )]
    NoPermission,
    #[error("more than one DUO data use permission ({0} and {1})")]
    TwoPermissions(String, String),
    #[error("{0:?} is not a DUO term this ledger knows")]
    UnknownCode(String),
    #[error("disease-specific research (DUO:0000007) names its disease, and only it does")]
    Disease,
    #[error("institution-specific use (DUO:0000028) names its institutions, and only it does")]
    Institutions,
    #[error("too many terms, or a term too long")]
    TooLarge,
}

fn check_term(text: &str) -> Result<(), DuoError> {
    let ok = !text.is_empty()
        && text.len() <= TERM_BYTES_MAX
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b":_.-".contains(&byte));
    if ok { Ok(()) } else { Err(DuoError::TooLarge) }
}

impl DuoTerms {
    /// Parses the terms: exactly one permission, known modifiers, a disease exactly when the
    /// permission is DS, institutions exactly when IS is among the modifiers.
    pub fn parse(&self) -> Result<DataUse, DuoError> {
        if self.codes.len() > TERMS_MAX || self.institutions.len() > TERMS_MAX {
            return Err(DuoError::TooLarge);
        }
        let mut permission: Option<(Permission, &str)> = None;
        let mut modifiers = BTreeSet::new();
        for code in &self.codes {
            let code = code.trim();
            check_term(code)?;
            if let Some((_, short)) = PERMISSIONS.iter().find(|(curie, _)| *curie == code) {
                let parsed = match *short {
                    "NRES" => Permission::NoRestriction,
                    "GRU" => Permission::GeneralResearch,
                    "HMB" => Permission::HealthMedicalBiomedical,
                    "DS" => Permission::DiseaseSpecific {
                        disease: self.disease.clone().ok_or(DuoError::Disease)?,
                    },
                    _ => Permission::PopulationOriginsAncestry,
                };
                if let Some((_, first)) = permission {
                    return Err(DuoError::TwoPermissions(first.into(), code.into()));
                }
                permission = Some((parsed, code));
            } else if let Some((_, modifier)) = MODIFIERS.iter().find(|(curie, _)| *curie == code) {
                modifiers.insert(*modifier);
            } else {
                return Err(DuoError::UnknownCode(code.chars().take(80).collect()));
            }
        }
        let (permission, _) = permission.ok_or(DuoError::NoPermission)?;
        match (&permission, &self.disease) {
            (Permission::DiseaseSpecific { disease }, _) => check_term(disease)?,
            (_, Some(_)) => return Err(DuoError::Disease),
            _ => {}
        }
        let institutions: BTreeSet<String> = self.institutions.iter().cloned().collect();
        for institution in &institutions {
            check_term(institution)?;
        }
        if modifiers.contains(&Modifier::InstitutionSpecific) == institutions.is_empty() {
            return Err(DuoError::Institutions);
        }
        Ok(DataUse {
            permission,
            modifiers,
            institutions,
        })
    }
}

/// Why a consent does not permit a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Mismatch {
    /// The consent's permission does not cover the request's purpose.
    Purpose,
    /// The consent sets a condition the request does not satisfy.
    Modifier { modifier: Modifier },
    /// The consent is for named institutions, and the requester's is not one.
    Institution,
}

/// Does a patient's consent (`consent`) permit a request (`request`) by a researcher of
/// organisation `org`? The request's permission is its research purpose; its modifiers are the
/// conditions it satisfies or accepts.
///
/// - NRES and GRU permit every purpose; HMB permits HMB and disease-specific research; DS permits
///   research on the same disease only; POA permits POA only.
/// - Every modifier of the consent must be among the request's, except NPOA (the purpose must
///   not be POA) and IS (`org` must be a named institution).
pub fn permits(consent: &DataUse, request: &DataUse, org: &str) -> Result<(), Mismatch> {
    use Permission::*;
    let covered = match (&consent.permission, &request.permission) {
        (NoRestriction | GeneralResearch, _) => true,
        (HealthMedicalBiomedical, HealthMedicalBiomedical | DiseaseSpecific { .. }) => true,
        (DiseaseSpecific { disease: allowed }, DiseaseSpecific { disease: asked }) => {
            allowed.eq_ignore_ascii_case(asked)
        }
        (PopulationOriginsAncestry, PopulationOriginsAncestry) => true,
        _ => false,
    };
    if !covered {
        return Err(Mismatch::Purpose);
    }
    for modifier in &consent.modifiers {
        let satisfied = match modifier {
            Modifier::NoPopulationOriginsAncestry => {
                request.permission != PopulationOriginsAncestry
            }
            Modifier::InstitutionSpecific => {
                if !consent.institutions.contains(org) {
                    return Err(Mismatch::Institution);
                }
                true
            }
            other => request.modifiers.contains(other),
        };
        if !satisfied {
            return Err(Mismatch::Modifier {
                modifier: *modifier,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PERMISSION_CODES: [&str; 5] = [
        "DUO:0000004",
        "DUO:0000042",
        "DUO:0000006",
        "DUO:0000007",
        "DUO:0000011",
    ];

    /// Consent terms from a permission's index and a set of modifier indexes.
    fn generated(permission: usize, modifiers: &std::collections::BTreeSet<usize>) -> DuoTerms {
        let mut codes = vec![PERMISSION_CODES[permission].to_string()];
        codes.extend(modifiers.iter().map(|m| MODIFIERS[*m].0.to_string()));
        let institution_specific = modifiers
            .iter()
            .any(|m| MODIFIERS[*m].1 == Modifier::InstitutionSpecific);
        DuoTerms {
            codes,
            disease: (permission == 3).then(|| "MONDO:0005148".to_string()),
            institutions: if institution_specific {
                vec!["uni-a".into()]
            } else {
                Vec::new()
            },
        }
    }

    proptest! {
        /// A request for the consent's own purpose that satisfies all its conditions, from a
        /// named institution, is always permitted; one that drops any condition it must declare
        /// never is.
        #[test]
        fn a_request_meeting_every_condition_is_permitted(
            permission in 0usize..5,
            modifiers in proptest::collection::btree_set(0usize..MODIFIERS.len(), 0..6),
        ) {
            let mut modifiers = modifiers;
            // A POA-only consent that also prohibits POA permits nothing; not a consent to test.
            if permission == 4 {
                modifiers.retain(|m| MODIFIERS[*m].1 != Modifier::NoPopulationOriginsAncestry);
            }
            let consent = generated(permission, &modifiers).parse().expect("consent parses");
            let request = generated(permission, &modifiers).parse().expect("request parses");
            prop_assert_eq!(permits(&consent, &request, "uni-a"), Ok(()));
            for dropped in &modifiers {
                let modifier = MODIFIERS[*dropped].1;
                if matches!(modifier, Modifier::NoPopulationOriginsAncestry | Modifier::InstitutionSpecific) {
                    continue;
                }
                let mut fewer = modifiers.clone();
                fewer.remove(dropped);
                fewer.retain(|m| MODIFIERS[*m].1 != Modifier::InstitutionSpecific);
                let request = generated(permission, &fewer).parse().expect("request parses");
                prop_assert!(permits(&consent, &request, "uni-a").is_err());
            }
        }

        /// Terms from anywhere parse or are refused; they never panic.
        #[test]
        fn any_terms_parse_or_are_refused(
            codes in proptest::collection::vec("(DUO:00000[0-9]{2}|.{0,12})", 0..6),
            disease in proptest::option::of(".{0,70}"),
            institutions in proptest::collection::vec(".{0,10}", 0..3),
        ) {
            let terms = DuoTerms { codes, disease, institutions };
            if let Ok(parsed) = terms.parse() {
                let _ = permits(&parsed, &parsed, "o");
            }
        }
    }

    fn terms(codes: &[&str]) -> DuoTerms {
        DuoTerms {
            codes: codes.iter().map(|code| code.to_string()).collect(),
            disease: None,
            institutions: Vec::new(),
        }
    }

    fn ds(disease: &str, codes: &[&str]) -> DuoTerms {
        let mut terms = terms(codes);
        terms.codes.insert(0, "DUO:0000007".into());
        terms.disease = Some(disease.into());
        terms
    }

    fn check(consent: DuoTerms, request: DuoTerms, org: &str, expected: Result<(), Mismatch>) {
        let consent = consent.parse().expect("consent terms parse");
        let request = request.parse().expect("request terms parse");
        assert_eq!(
            permits(&consent, &request, org),
            expected,
            "{consent:?} / {request:?}"
        );
    }

    #[test]
    fn permissions_cover_purposes_as_duo_defines_them() {
        let gru = || terms(&["DUO:0000042"]);
        let hmb = || terms(&["DUO:0000006"]);
        let poa = || terms(&["DUO:0000011"]);
        let diabetes = || ds("MONDO:0005148", &[]);
        let asthma = || ds("MONDO:0004979", &[]);
        check(terms(&["DUO:0000004"]), poa(), "o", Ok(()));
        check(gru(), hmb(), "o", Ok(()));
        check(gru(), poa(), "o", Ok(()));
        check(hmb(), diabetes(), "o", Ok(()));
        check(hmb(), hmb(), "o", Ok(()));
        check(hmb(), gru(), "o", Err(Mismatch::Purpose));
        check(hmb(), poa(), "o", Err(Mismatch::Purpose));
        check(diabetes(), diabetes(), "o", Ok(()));
        check(ds("mondo:0005148", &[]), diabetes(), "o", Ok(()));
        check(diabetes(), asthma(), "o", Err(Mismatch::Purpose));
        check(diabetes(), hmb(), "o", Err(Mismatch::Purpose));
        check(poa(), poa(), "o", Ok(()));
        check(poa(), hmb(), "o", Err(Mismatch::Purpose));
    }

    #[test]
    fn every_modifier_of_the_consent_must_be_satisfied() {
        let irb_ncu = terms(&["DUO:0000006", "DUO:0000021", "DUO:0000046"]);
        check(
            irb_ncu.clone(),
            terms(&["DUO:0000006", "DUO:0000021", "DUO:0000046", "DUO:0000019"]),
            "o",
            Ok(()),
        );
        check(
            irb_ncu.clone(),
            terms(&["DUO:0000006", "DUO:0000021"]),
            "o",
            Err(Mismatch::Modifier {
                modifier: Modifier::NonCommercialUse,
            }),
        );
        // Modifiers of the request alone restrict nothing.
        check(
            terms(&["DUO:0000042"]),
            terms(&["DUO:0000006", "DUO:0000021"]),
            "o",
            Ok(()),
        );
        // NPOA is judged from the purpose.
        let npoa = terms(&["DUO:0000042", "DUO:0000044"]);
        check(npoa.clone(), terms(&["DUO:0000006"]), "o", Ok(()));
        check(
            npoa,
            terms(&["DUO:0000011"]),
            "o",
            Err(Mismatch::Modifier {
                modifier: Modifier::NoPopulationOriginsAncestry,
            }),
        );
        // IS is judged from the requester's organisation.
        let mut only_a = terms(&["DUO:0000042", "DUO:0000028"]);
        only_a.institutions = vec!["uni-a".into()];
        check(only_a.clone(), terms(&["DUO:0000006"]), "uni-a", Ok(()));
        check(
            only_a,
            terms(&["DUO:0000006"]),
            "pharma-b",
            Err(Mismatch::Institution),
        );
    }

    #[test]
    fn terms_that_do_not_parse_are_refused() {
        assert_eq!(terms(&[]).parse(), Err(DuoError::NoPermission));
        assert_eq!(terms(&["DUO:0000021"]).parse(), Err(DuoError::NoPermission));
        assert!(matches!(
            terms(&["DUO:0000042", "DUO:0000006"]).parse(),
            Err(DuoError::TwoPermissions(..))
        ));
        assert!(matches!(
            terms(&["DUO:9999999"]).parse(),
            Err(DuoError::UnknownCode(_))
        ));
        assert_eq!(terms(&["DUO:0000007"]).parse(), Err(DuoError::Disease));
        let mut gru_with_disease = terms(&["DUO:0000042"]);
        gru_with_disease.disease = Some("MONDO:0005148".into());
        assert_eq!(gru_with_disease.parse(), Err(DuoError::Disease));
        assert_eq!(
            terms(&["DUO:0000042", "DUO:0000028"]).parse(),
            Err(DuoError::Institutions)
        );
        let mut stray = terms(&["DUO:0000042"]);
        stray.institutions = vec!["uni-a".into()];
        assert_eq!(stray.parse(), Err(DuoError::Institutions));
        assert_eq!(
            terms(&["DUO:0000042 ; drop"]).parse(),
            Err(DuoError::TooLarge)
        );
    }
}
