//! Tests of research data sharing through the whole ledger: patients grant research consent in
//! DUO terms, a researcher files a request, a custodian records only patients whose consent
//! matches, releases become entries of each patient's research access log, a revocation stops
//! later releases, and every refusal leaves the state as it was.

use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_research::duo::DuoTerms;
use medledger_research::*;
use medledger_state::{MemoryTree, Snapshot};
use medledger_types::Role;

fn terms(codes: &[&str]) -> DuoTerms {
    DuoTerms {
        codes: codes.iter().map(|code| code.to_string()).collect(),
        disease: None,
        institutions: Vec::new(),
    }
}

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

fn run(chain: &mut Chain, key: &SecretKey, op: ResearchOp) -> String {
    let tx = chain.tx(key, op);
    rejected(&chain.one(tx)).to_string()
}

struct World {
    chain: Chain,
    researcher: SecretKey,
    /// Consents to health/medical/biomedical research with an ethics approval.
    hmb: SecretKey,
    /// Consents to research on diabetes only.
    diabetes: SecretKey,
    /// Never consents.
    silent: SecretKey,
}

fn world() -> World {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let researcher = SecretKey::from_seed(500);
    let (hmb, diabetes, silent) = (
        SecretKey::from_seed(501),
        SecretKey::from_seed(502),
        SecretKey::from_seed(503),
    );
    assert_eq!(
        rejected(&chain.enrol(&org_b, &researcher, Role::Researcher)),
        "committed"
    );
    for patient in [&hmb, &diabetes, &silent] {
        assert_eq!(
            rejected(&chain.enrol(&org_a, patient, Role::Patient)),
            "committed"
        );
    }
    let grant = ResearchOp::GrantResearchConsent {
        terms: terms(&["DUO:0000006", "DUO:0000021"]),
        resource_types: vec!["Observation".into(), "Condition".into()],
        end_ms: None,
    };
    assert_eq!(run(&mut chain, &hmb, grant), "committed");
    let mut diabetes_only = terms(&["DUO:0000007"]);
    diabetes_only.disease = Some("MONDO:0005148".into());
    let grant = ResearchOp::GrantResearchConsent {
        terms: diabetes_only,
        resource_types: Vec::new(),
        end_ms: None,
    };
    assert_eq!(run(&mut chain, &diabetes, grant), "committed");
    World {
        chain,
        researcher,
        hmb,
        diabetes,
        silent,
    }
}

/// A request for health/medical research with an ethics approval, for Observations.
fn file(world: &mut World, codes: &[&str]) -> (String, Hash) {
    let op = ResearchOp::FileRequest {
        title: "HbA1c trajectories".into(),
        terms: terms(codes),
        resource_types: vec!["Observation".into()],
        recipient: [7; 32],
    };
    let researcher = world.researcher.clone();
    let tx = world.chain.tx(&researcher, op);
    let id = tx.id();
    (rejected(&world.chain.one(tx)).to_string(), id)
}

fn matches(world: &mut World, request: Hash, patients: &[&SecretKey]) -> String {
    let custodian = world.chain.org_a.clone();
    let op = ResearchOp::RecordMatches {
        request,
        patients: patients.iter().map(|key| key.public_key()).collect(),
    };
    run(&mut world.chain, &custodian, op)
}

fn release(world: &mut World, request: Hash, patients: &[&SecretKey]) -> String {
    let custodian = world.chain.org_a.clone();
    let op = ResearchOp::RecordRelease {
        request,
        patients: patients.iter().map(|key| key.public_key()).collect(),
        resources: 12,
        sealed: Hash([5; 32]),
    };
    run(&mut world.chain, &custodian, op)
}

#[test]
fn requests_need_duo_terms_and_an_enrolled_researcher() {
    let mut world = world();
    assert_eq!(file(&mut world, &[]).0, "no_duo_terms");
    assert_eq!(file(&mut world, &["DUO:0000021"]).0, "no_duo_terms");
    assert_eq!(file(&mut world, &["DUO:1234567"]).0, "invalid_duo_terms");
    let hmb = world.hmb.clone();
    let op = ResearchOp::FileRequest {
        title: "t".into(),
        terms: terms(&["DUO:0000042"]),
        resource_types: vec!["Observation".into()],
        recipient: [7; 32],
    };
    assert_eq!(run(&mut world.chain, &hmb, op), "not_researcher");
    let op = ResearchOp::FileRequest {
        title: "t".into(),
        terms: terms(&["DUO:0000042"]),
        resource_types: Vec::new(),
        recipient: [7; 32],
    };
    let researcher = world.researcher.clone();
    assert_eq!(
        run(&mut world.chain, &researcher, op),
        "invalid_research_input"
    );
    let (outcome, id) = file(&mut world, &["DUO:0000006", "DUO:0000021"]);
    assert_eq!(outcome, "committed");
    let found = request(&snapshot(&world.chain), &id)
        .expect("read")
        .expect("filed");
    assert_eq!(found.org, "b");
    assert_eq!(found.resource_types, vec!["Observation".to_string()]);
    // A patient's consent needs its terms too.
    let op = ResearchOp::GrantResearchConsent {
        terms: terms(&[]),
        resource_types: Vec::new(),
        end_ms: None,
    };
    let silent = world.silent.clone();
    assert_eq!(run(&mut world.chain, &silent, op), "no_duo_terms");
    assert!(
        consent(&snapshot(&world.chain), &silent.public_key())
            .expect("read")
            .is_none()
    );
    let op = ResearchOp::GrantResearchConsent {
        terms: terms(&["DUO:0000042"]),
        resource_types: Vec::new(),
        end_ms: None,
    };
    assert_eq!(run(&mut world.chain, &researcher, op), "not_patient");
}

#[test]
fn only_matching_consents_are_recorded_and_released() {
    let mut world = world();
    let (_, request) = file(&mut world, &["DUO:0000006", "DUO:0000021"]);
    // The diabetes-only consent does not permit general health research; the silent patient
    // never consented. Either refuses the whole match, and nothing is recorded.
    let (hmb, diabetes, silent) = (
        world.hmb.clone(),
        world.diabetes.clone(),
        world.silent.clone(),
    );
    assert_eq!(matches(&mut world, request, &[&hmb, &diabetes]), "no_match");
    assert_eq!(matches(&mut world, request, &[&silent]), "no_match");
    assert!(
        matched(&snapshot(&world.chain), &request, &hmb.public_key())
            .expect("read")
            .is_none()
    );
    // A member who is not a custodian cannot match.
    let researcher = world.researcher.clone();
    let op = ResearchOp::RecordMatches {
        request,
        patients: vec![hmb.public_key()],
    };
    assert_eq!(run(&mut world.chain, &researcher, op), "not_custodian");
    assert_eq!(matches(&mut world, request, &[&hmb]), "committed");
    assert_eq!(matches(&mut world, request, &[&hmb]), "already_matched");
    let state = snapshot(&world.chain);
    assert_eq!(cohort_size(&state, &request, "a").expect("read"), 1);
    assert_eq!(request_of(&world, &request).matched, 1);

    // Only matched patients, and only by the custodian that matched them, are released.
    assert_eq!(release(&mut world, request, &[&diabetes]), "not_matched");
    let other_custodian = world.chain.org_b.clone();
    let op = ResearchOp::RecordRelease {
        request,
        patients: vec![hmb.public_key()],
        resources: 1,
        sealed: Hash([1; 32]),
    };
    assert_eq!(run(&mut world.chain, &other_custodian, op), "not_matched");
    assert_eq!(release(&mut world, request, &[&hmb]), "committed");
    let state = snapshot(&world.chain);
    assert_eq!(access_count(&state, &hmb.public_key()).expect("read"), 1);
    let entry = access(&state, &hmb.public_key(), 0)
        .expect("read")
        .expect("logged");
    assert_eq!(entry.request, request);
    assert_eq!(entry.researcher, researcher.public_key());
    assert_eq!(entry.custodian, "a");
    let first = medledger_research::release(&state, &request, 0)
        .expect("read")
        .expect("release");
    assert_eq!(first.patients, vec![hmb.public_key()]);
    assert_eq!(first.resources, 12);

    // The patient revokes: no later release, while the earlier one stays on record.
    assert_eq!(
        run(&mut world.chain, &hmb, ResearchOp::RevokeResearchConsent),
        "committed"
    );
    assert_eq!(release(&mut world, request, &[&hmb]), "no_match");
    assert_eq!(
        run(&mut world.chain, &hmb, ResearchOp::RevokeResearchConsent),
        "no_research_consent"
    );
    let state = snapshot(&world.chain);
    assert_eq!(access_count(&state, &hmb.public_key()).expect("read"), 1);

    // The researcher closes the request; nothing more is matched or released.
    let close = ResearchOp::CloseRequest { request };
    assert_eq!(run(&mut world.chain, &hmb, close.clone()), "not_requester");
    assert_eq!(
        run(&mut world.chain, &researcher, close.clone()),
        "committed"
    );
    assert_eq!(run(&mut world.chain, &researcher, close), "request_closed");
    assert_eq!(matches(&mut world, request, &[&diabetes]), "request_closed");
}

#[test]
fn a_disease_specific_request_matches_disease_and_broad_consents_not_others() {
    let mut world = world();
    let op = ResearchOp::FileRequest {
        title: "Type 2 diabetes outcomes".into(),
        terms: DuoTerms {
            codes: vec!["DUO:0000007".into(), "DUO:0000021".into()],
            disease: Some("MONDO:0005148".into()),
            institutions: Vec::new(),
        },
        resource_types: vec!["Observation".into()],
        recipient: [7; 32],
    };
    let researcher = world.researcher.clone();
    let tx = world.chain.tx(&researcher, op);
    let request = tx.id();
    assert_eq!(rejected(&world.chain.one(tx)), "committed");
    let (hmb, diabetes) = (world.hmb.clone(), world.diabetes.clone());
    assert_eq!(
        matches(&mut world, request, &[&hmb, &diabetes]),
        "committed"
    );
    assert_eq!(
        cohort_size(&snapshot(&world.chain), &request, "a").expect("read"),
        2
    );
}

#[test]
fn a_researcher_no_longer_enrolled_gets_no_release() {
    let mut world = world();
    let (_, request) = file(&mut world, &["DUO:0000006", "DUO:0000021"]);
    let hmb = world.hmb.clone();
    assert_eq!(matches(&mut world, request, &[&hmb]), "committed");
    let (org_b, researcher) = (world.chain.org_b.clone(), world.researcher.clone());
    let revoke = world.chain.tx(
        &org_b,
        medledger_ledger::CoreOp::Revoke {
            member: researcher.public_key(),
        },
    );
    assert_eq!(rejected(&world.chain.one(revoke)), "committed");
    assert_eq!(
        release(&mut world, request, &[&hmb]),
        "researcher_not_enrolled"
    );
    assert_eq!(
        access_count(&snapshot(&world.chain), &hmb.public_key()).expect("read"),
        0
    );
}

#[test]
fn a_consent_with_conditions_and_a_term_is_judged_at_each_block() {
    let mut world = world();
    // A consent for non-commercial use that ends soon.
    let patient = world.silent.clone();
    let now = world.chain.time_base_ms + 1_000 + world.chain.height;
    let op = ResearchOp::GrantResearchConsent {
        terms: terms(&["DUO:0000042", "DUO:0000046"]),
        resource_types: Vec::new(),
        end_ms: Some(now + 60_000),
    };
    assert_eq!(run(&mut world.chain, &patient, op), "committed");
    let (_, commercial) = file(&mut world, &["DUO:0000006"]);
    assert_eq!(matches(&mut world, commercial, &[&patient]), "no_match");
    let (_, non_commercial) = file(&mut world, &["DUO:0000006", "DUO:0000046"]);
    assert_eq!(
        matches(&mut world, non_commercial, &[&patient]),
        "committed"
    );
    // After the consent's end, no release.
    world.chain.time_base_ms += 120_000;
    assert_eq!(release(&mut world, non_commercial, &[&patient]), "no_match");
}

fn request_of(world: &World, id: &Hash) -> DataRequest {
    request(&snapshot(&world.chain), id)
        .expect("read")
        .expect("request")
}

/// A release pays each released patient by every research-sharing reward rule, within the cap,
/// naming the request; a release with no such program pays nothing and still commits.
#[test]
fn a_release_pays_the_released_patients_by_the_sharing_rules() {
    use medledger_tokens::{
        Amount, ClassSpec, RewardProgram, RewardPurpose, TokensOp, balance, class, movement,
    };
    let mut world = world();
    let (org_a, org_b) = (world.chain.org_a.clone(), world.chain.org_b.clone());
    let hmb = world.hmb.clone();
    let (_, request) = file(&mut world, &["DUO:0000006", "DUO:0000021"]);
    assert_eq!(matches(&mut world, request, &[&hmb]), "committed");
    assert_eq!(release(&mut world, request, &[&hmb]), "committed");

    let tokens = |chain: &mut Chain, key: &SecretKey, op: TokensOp| {
        let tx = chain.tx(key, op);
        rejected(&chain.one(tx)).to_string()
    };
    let propose = TokensOp::ProposeClass {
        spec: ClassSpec {
            symbol: "CARE".into(),
            name: "Care reward".into(),
            decimals: 0,
            issuers: vec!["a".into()],
        },
    };
    assert_eq!(tokens(&mut world.chain, &org_a, propose), "committed");
    let approve = TokensOp::ApproveClass {
        symbol: "CARE".into(),
    };
    assert_eq!(tokens(&mut world.chain, &org_b, approve), "committed");
    for (id, per_event) in [("share", Some(30)), ("manual", None)] {
        let create = TokensOp::CreateRewardProgram {
            program: RewardProgram {
                id: id.into(),
                symbol: "CARE".into(),
                issuer: "a".into(),
                purpose: RewardPurpose::ResearchSharing,
                cap_per_period: Amount(50),
                period_ms: 1_000_000_000_000,
                per_event: per_event.map(Amount),
            },
        };
        assert_eq!(tokens(&mut world.chain, &org_a, create), "committed");
    }
    let held =
        |world: &World| balance(&snapshot(&world.chain), "CARE", &hmb.public_key()).expect("read");
    assert_eq!(
        held(&world),
        0,
        "the release before the program paid nothing"
    );
    // 30, then the 20 the cap leaves, then nothing; each release still commits.
    for expected in [30, 50, 50] {
        assert_eq!(release(&mut world, request, &[&hmb]), "committed");
        assert_eq!(held(&world), expected);
    }
    let state = snapshot(&world.chain);
    assert_eq!(
        class(&state, "CARE")
            .expect("read")
            .expect("class")
            .movements,
        2
    );
    let first = movement(&state, "CARE", 0).expect("read").expect("logged");
    assert_eq!(first.reference, Some(request));
    assert_eq!(first.to, Some(hmb.public_key()));
    assert_eq!(request_of(&world, &request).releases, 4);
}

#[test]
fn a_custodians_release_condition_contract_permits_or_refuses_each_release_and_fails_closed() {
    let mut world = world();
    let (_, request) = file(&mut world, &["DUO:0000006", "DUO:0000021"]);
    let hmb = world.hmb.clone();
    assert_eq!(matches(&mut world, request, &[&hmb]), "committed");
    // The answering contract permits at first; custodian a names it as its condition.
    let code = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/tests/data/answer.wat"
    ))
    .expect("wat");
    let condition = world
        .chain
        .deploy_contract(&code, "release-condition", r#"{"permit":true}"#);
    let (org_a, org_b) = (world.chain.org_a.clone(), world.chain.org_b.clone());
    let researcher = world.researcher.clone();
    let set = |contract| ResearchOp::SetReleaseCondition { contract };
    assert_eq!(
        run(&mut world.chain, &researcher, set(Some(condition))),
        "not_custodian"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, set(Some(Hash::ZERO))),
        "unknown_contract"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, set(Some(condition))),
        "committed"
    );
    assert_eq!(
        release_condition(&snapshot(&world.chain), "a")
            .expect("read")
            .expect("set")
            .contract,
        condition
    );
    assert_eq!(release(&mut world, request, &[&hmb]), "committed");

    // The condition refuses with its reason; one that fails or answers otherwise refuses too, and
    // a refused release writes nothing (no access log entry).
    for (answer, expected) in [
        (
            r#"{"permit":false,"reason":"the data access committee has not approved org b"}"#,
            "the data access committee has not approved org b",
        ),
        (r#""trap""#, "trapped"),
        (r#"{"maybe":true}"#, "is not"),
    ] {
        let update = medledger_contracts::ContractsOp::ExecuteContract {
            contract: condition,
            msg: answer.into(),
        };
        let tx = world.chain.tx(&org_b, update);
        assert_eq!(rejected(&world.chain.one(tx)), "committed");
        let op = ResearchOp::RecordRelease {
            request,
            patients: vec![hmb.public_key()],
            resources: 3,
            sealed: Hash([6; 32]),
        };
        let tx = world.chain.tx(&org_a, op);
        match world.chain.one(tx) {
            medledger_types::Outcome::Rejected { code, reason } => {
                assert_eq!(code, "release_condition_refused");
                assert!(reason.contains(expected), "{answer}: {reason}");
            }
            other => panic!("{answer}: {other:?}"),
        }
        assert_eq!(
            access_count(&snapshot(&world.chain), &hmb.public_key()).expect("read"),
            1
        );
    }
    // A custodian may drop its condition.
    assert_eq!(run(&mut world.chain, &org_a, set(None)), "committed");
    assert_eq!(release(&mut world, request, &[&hmb]), "committed");
}
