//! Tests of the claims module through the whole ledger: a payer's policy and coverage, claims
//! adjudicated with the member's share and settled through the token ledger in the same
//! transaction, every check's reason, the review queue, prior authorisation with escrow, appeals,
//! policy versions, refusals that leave nothing written, and adjudication that replays the same.

use medledger_claims::*;
use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_records::{
    ConsentGrant, Grantee, Provision, ProvisionKind, Purpose, RecordWrite, RecordsOp,
};
use medledger_state::{MemoryTree, Snapshot};
use medledger_tokens::{Amount, ClassSpec, EscrowState, TokensOp};
use medledger_types::Role;
use proptest::prelude::*;

const USD: &str = "USD";
const PLAN: &str = "gold";

fn date(text: &str) -> Date {
    text.parse().expect("a date")
}

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

struct World {
    chain: Chain,
    /// Organisation a's node: the provider's custodian, which submits claims.
    node: SecretKey,
    doctor: SecretKey,
    patient: SecretKey,
    patient_id: Hash,
    encounter: Hash,
    coverage: Hash,
    claims: u8,
}

fn rule(code: &str, allowed: u128, per_day: u32) -> ServiceRule {
    ServiceRule {
        code: code.into(),
        allowed: Amount(allowed),
        units_per_day_max: per_day,
        annual_units_max: None,
        prior_auth: PriorAuth::NotRequired,
    }
}

fn policy(effective: &str, office_visit: u128) -> PolicyInput {
    PolicyInput {
        plan: PLAN.into(),
        effective: date(effective),
        symbol: USD.into(),
        account: SecretKey::from_seed(200).public_key(),
        deductible: Amount(5_000),
        copay: Amount(1_000),
        coinsurance_bp: 2_000,
        annual_limit: Some(Amount(200_000)),
        payment_consent_required: false,
        review_charge_ratio_bp: 30_000,
        authorisation_days: 90,
        escrow_authorisations: true,
        services: vec![
            rule("99213", office_visit, 1),
            rule("93000", 2_500, 1),
            rule("93010", 1_000, 1),
            ServiceRule {
                annual_units_max: Some(6),
                ..rule("97110", 4_000, 4)
            },
            ServiceRule {
                prior_auth: PriorAuth::Automatic,
                ..rule("70553", 80_000, 1)
            },
            ServiceRule {
                prior_auth: PriorAuth::Review,
                ..rule("27447", 1_500_000, 1)
            },
        ],
        edits: vec![CodePairEdit {
            column_one: "93000".into(),
            column_two: "93010".into(),
        }],
    }
}

fn item(sequence: u32, code: &str, day: &str, units: u32, charge: u128) -> ClaimItem {
    ClaimItem {
        sequence,
        code: code.into(),
        service_date: date(day),
        units,
        charge: Amount(charge),
    }
}

impl World {
    /// Provider a (a doctor, a patient with an Encounter on record), payer b (plan gold, the
    /// patient covered from 2026-01-01, 1,000,000 USD cents in its account); blocks on 2026-03-01.
    fn new() -> World {
        let mut chain = Chain::new();
        chain.time_base_ms = u64::from(date("2026-03-01").0) * 86_400_000;
        let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
        let node = SecretKey::from_seed(1);
        let (doctor, patient) = (SecretKey::from_seed(11), SecretKey::from_seed(10));
        chain.enrol(&org_a, &doctor, Role::Practitioner);
        chain.enrol(&org_a, &patient, Role::Patient);
        let (patient_id, encounter) = (Hash([50; 32]), Hash([51; 32]));
        let mut world = World {
            chain,
            node: node.clone(),
            doctor,
            patient: patient.clone(),
            patient_id,
            encounter,
            coverage: Hash([7; 32]),
            claims: 0,
        };
        let put = RecordsOp::PutRecords {
            records: vec![RecordWrite {
                record: encounter,
                patient: patient_id,
                resource_type: "Encounter".into(),
                category: None,
                version: 1,
                commitment: Hash([1; 32]),
                author: world.doctor.public_key(),
            }],
        };
        world.ok(&node, put);
        let bind = RecordsOp::BindPatient {
            patient: patient_id,
            key: patient.public_key(),
        };
        world.ok(&node, bind);
        let propose = TokensOp::ProposeClass {
            spec: ClassSpec {
                symbol: USD.into(),
                name: "Consortium settlement dollar".into(),
                decimals: 2,
                issuers: vec!["b".into()],
            },
        };
        world.ok(&org_b, propose);
        world.ok(&org_a, TokensOp::ApproveClass { symbol: USD.into() });
        let mint = TokensOp::Mint {
            symbol: USD.into(),
            to: org_b.public_key(),
            amount: Amount(1_000_000),
            reference: None,
        };
        world.ok(&org_b, mint);
        world.ok(
            &org_b,
            ClaimsOp::PublishPolicy {
                policy: policy("2026-01-01", 15_000),
            },
        );
        let cover = ClaimsOp::Cover {
            coverage: CoverageInput {
                id: world.coverage,
                plan: PLAN.into(),
                member: patient.public_key(),
                start: date("2026-01-01"),
                end: None,
            },
        };
        world.ok(&org_b, cover);
        world
    }

    fn run(&mut self, key: &SecretKey, op: impl Into<medledger_ledger::Payload>) -> String {
        let tx = self.chain.tx(key, op);
        rejected(&self.chain.one(tx)).to_string()
    }

    fn ok(&mut self, key: &SecretKey, op: impl Into<medledger_ledger::Payload>) {
        assert_eq!(self.run(key, op), "committed");
    }

    fn claim(&mut self, items: Vec<ClaimItem>) -> ClaimSubmission {
        self.claims += 1;
        ClaimSubmission {
            id: Hash([100 + self.claims; 32]),
            use_: ClaimUse::Claim,
            kind: ClaimKind::Professional,
            coverage: self.coverage,
            patient: self.patient_id,
            provider: self.doctor.public_key(),
            payee: self.chain.org_a.public_key(),
            encounter: Some(self.encounter),
            authorisation: None,
            diagnoses: vec!["E11.9".into()],
            items,
            commitment: Hash([9; 32]),
        }
    }

    /// Submits a claim from the provider's node and returns its entry.
    fn submit(&mut self, claim: ClaimSubmission) -> ClaimEntry {
        let id = claim.id;
        let node = self.node.clone();
        self.ok(&node, ClaimsOp::Submit { claim });
        self.entry(&id)
    }

    fn entry(&self, id: &Hash) -> ClaimEntry {
        medledger_claims::claim(&snapshot(&self.chain), id)
            .expect("read")
            .expect("claim")
    }

    fn balance(&self, key: &SecretKey) -> u128 {
        medledger_tokens::balance(&snapshot(&self.chain), USD, &key.public_key()).expect("read")
    }

    fn payer(&self) -> SecretKey {
        self.chain.org_b.clone()
    }
}

fn adjustments(result: &ItemResult) -> Vec<(Group, String, u128)> {
    result
        .adjustments
        .iter()
        .map(|a| (a.group, a.carc.clone(), a.amount.0))
        .collect()
}

fn checks(entry: &ClaimEntry) -> Vec<(&'static str, Option<u32>)> {
    entry
        .findings
        .iter()
        .map(|f| (f.check.code(), f.sequence))
        .collect()
}

#[test]
fn a_clean_claim_is_adjudicated_with_the_members_share_and_settled_in_the_same_block() {
    let mut world = World::new();
    let (provider, payer) = (world.chain.org_a.clone(), world.payer());
    let claim = world.claim(vec![item(1, "99213", "2026-02-20", 1, 20_000)]);
    let entry = world.submit(claim);
    assert_eq!(entry.status, ClaimStatus::Adjudicated);
    assert_eq!(entry.outcome(), Outcome::Complete);
    let line = &entry.items[0];
    assert_eq!(line.outcome, ItemOutcome::Reduced);
    // Allowed 150.00 of 200.00 (CO-45); deductible 50.00, copay 10.00, 20% of the 90.00 left.
    assert_eq!(
        adjustments(line),
        vec![
            (Group::CO, "45".into(), 5_000),
            (Group::PR, "1".into(), 5_000),
            (Group::PR, "3".into(), 1_000),
            (Group::PR, "2".into(), 1_800),
        ]
    );
    assert_eq!(
        (line.allowed.0, line.payer.0, line.patient()),
        (15_000, 7_200, 7_800)
    );
    assert_eq!(entry.paid.0, 7_200);
    assert_eq!(world.balance(&provider), 7_200);
    assert_eq!(world.balance(&payer), 1_000_000 - 7_200);
    assert!(entry.findings.is_empty(), "{:?}", entry.findings);
    // The settlement is a movement with reason settlement and the claim as its reference.
    let state = snapshot(&world.chain);
    let length = medledger_tokens::class(&state, USD)
        .expect("read")
        .expect("class")
        .movements;
    let last = medledger_tokens::movement(&state, USD, length - 1)
        .expect("read")
        .expect("logged");
    assert_eq!(last.to, Some(provider.public_key()));
    assert_eq!(last.reason, medledger_tokens::Reason::Settlement);
    assert_eq!(last.reference, Some(entry.claim.id));
    // The deductible is met for the year: a second visit pays copay and coinsurance only.
    let claim = world.claim(vec![item(1, "99213", "2026-02-21", 1, 15_000)]);
    let second = world.submit(claim);
    assert_eq!(second.items[0].deductible.0, 0);
    assert_eq!(second.items[0].payer.0, 15_000 - 1_000 - 2_800);
    let accrual = accrual(
        &snapshot(&world.chain),
        PLAN,
        &world.patient.public_key(),
        2026,
    )
    .expect("read");
    assert_eq!(accrual.deductible_met.0, 5_000);
    assert_eq!(accrual.paid.0, 7_200 + 11_200);
}

#[test]
fn each_rule_denies_with_its_own_reason() {
    let mut world = World::new();
    // A duplicate: the same provider, patient, code and day.
    let first = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    world.submit(first);
    let again = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    let duplicate = world.submit(again);
    assert_eq!(checks(&duplicate), vec![("duplicate", Some(1))]);
    assert_eq!(
        adjustments(&duplicate.items[0]),
        vec![(Group::CO, "18".into(), 15_000)]
    );
    assert_eq!(duplicate.outcome(), Outcome::Error);
    assert_eq!(duplicate.paid.0, 0);

    // Not covered on the day (before the coverage began), and a code the plan does not cover.
    let claim = world.claim(vec![
        item(1, "99213", "2025-12-30", 1, 15_000),
        item(2, "99999", "2026-02-22", 1, 5_000),
        item(3, "93000", "2026-02-22", 1, 2_500),
    ]);
    let mixed = world.submit(claim);
    assert_eq!(
        checks(&mixed),
        vec![
            ("not-covered-on-date", Some(1)),
            ("code-not-covered", Some(2))
        ]
    );
    assert_eq!(adjustments(&mixed.items[0])[0].1, "26");
    assert_eq!(adjustments(&mixed.items[1])[0].1, "96");
    assert_eq!(mixed.items[2].outcome, ItemOutcome::Approved);
    assert_eq!(mixed.outcome(), Outcome::Partial);

    // A code pair: 93010 is included in 93000 billed the same day (here, by the claim before).
    let claim = world.claim(vec![item(1, "93010", "2026-02-22", 1, 1_000)]);
    let bundled = world.submit(claim);
    assert_eq!(checks(&bundled), vec![("code-pair", Some(1))]);
    assert_eq!(adjustments(&bundled.items[0])[0].1, "97");
    assert_eq!(bundled.items[0].remarks, vec!["M80".to_string()]);

    // A service that needs an authorisation, billed without one.
    let claim = world.claim(vec![item(1, "70553", "2026-02-23", 1, 90_000)]);
    let unauthorised = world.submit(claim);
    assert_eq!(checks(&unauthorised), vec![("no-authorisation", Some(1))]);
    assert_eq!(adjustments(&unauthorised.items[0])[0].1, "197");

    // Annual units: six a year; the seventh unit is reduced, then nothing is left.
    let claim = world.claim(vec![item(1, "97110", "2026-02-10", 4, 16_000)]);
    world.submit(claim);
    let claim = world.claim(vec![item(1, "97110", "2026-02-11", 3, 12_000)]);
    let capped = world.submit(claim);
    assert_eq!(capped.items[0].units, 2);
    assert_eq!(checks(&capped), vec![("benefit-maximum", Some(1))]);
    assert_eq!(
        adjustments(&capped.items[0])[0],
        (Group::CO, "119".into(), 4_000)
    );
    let claim = world.claim(vec![item(1, "97110", "2026-02-12", 1, 4_000)]);
    let exhausted = world.submit(claim);
    assert_eq!(exhausted.items[0].outcome, ItemOutcome::Denied);
    assert_eq!(adjustments(&exhausted.items[0])[0].1, "119");
}

#[test]
fn patients_not_insured_and_ineligible_providers_deny_the_whole_claim() {
    let mut world = World::new();
    // A patient id of the provider bound to another key than the coverage's member.
    let (stranger, stranger_id) = (SecretKey::from_seed(30), Hash([60; 32]));
    let org_a = world.chain.org_a.clone();
    world.chain.enrol(&org_a, &stranger, Role::Patient);
    let node = world.node.clone();
    let put = RecordsOp::PutRecords {
        records: vec![RecordWrite {
            record: Hash([61; 32]),
            patient: stranger_id,
            resource_type: "Encounter".into(),
            category: None,
            version: 1,
            commitment: Hash([1; 32]),
            author: world.doctor.public_key(),
        }],
    };
    world.ok(&node, put);
    world.ok(
        &node,
        RecordsOp::BindPatient {
            patient: stranger_id,
            key: stranger.public_key(),
        },
    );
    let mut claim = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    claim.patient = stranger_id;
    let entry = world.submit(claim);
    assert_eq!(checks(&entry), vec![("not-insured", None)]);
    assert_eq!(adjustments(&entry.items[0])[0].1, "31");
    assert_eq!(entry.outcome(), Outcome::Error);
    assert_eq!(entry.member, Some(stranger.public_key()));

    // A rendering provider revoked before the claim.
    world.ok(
        &org_a,
        medledger_ledger::CoreOp::Revoke {
            member: world.doctor.public_key(),
        },
    );
    let claim = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    let entry = world.submit(claim);
    assert_eq!(checks(&entry), vec![("provider-not-eligible", None)]);
    assert_eq!(adjustments(&entry.items[0])[0].1, "B7");
    assert_eq!(world.balance(&org_a), 0);
}

#[test]
fn suspicions_queue_the_claim_for_the_payers_signed_decision() {
    let mut world = World::new();
    let (provider, payer) = (world.chain.org_a.clone(), world.payer());
    // No Encounter on record for the service.
    let mut claim = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    claim.encounter = None;
    let pending = world.submit(claim);
    assert_eq!(pending.status, ClaimStatus::Pending);
    assert_eq!(pending.outcome(), Outcome::Queued);
    assert_eq!(checks(&pending), vec![("no-encounter", None)]);
    assert_eq!(world.balance(&provider), 0, "nothing is paid while queued");
    // A charge above three times the allowed amount, and more units than a day allows.
    let claim = world.claim(vec![
        item(1, "93000", "2026-02-21", 1, 9_000),
        item(2, "97110", "2026-02-21", 6, 24_000),
    ]);
    let suspicious = world.submit(claim);
    assert_eq!(
        checks(&suspicious),
        vec![("above-allowed", Some(1)), ("impossible-quantity", Some(2))]
    );
    assert_eq!(suspicious.items[1].units, 4);
    assert_eq!(
        adjustments(&suspicious.items[1])[0],
        (Group::CO, "151".into(), 8_000)
    );

    // The queue lists both; only the payer decides.
    let state = snapshot(&world.chain);
    let (total, queued) = list(&state, &Listing::Review("b".into()), 0, 10).expect("read");
    assert_eq!(
        (total, queued),
        (2, vec![pending.claim.id, suspicious.claim.id])
    );
    let decide = |claim, approve| ClaimsOp::Decide { claim, approve };
    let node = world.node.clone();
    assert_eq!(
        world.run(&node, decide(pending.claim.id, true)),
        "not_payer"
    );
    world.ok(&payer, decide(pending.claim.id, true));
    let approved = world.entry(&pending.claim.id);
    assert_eq!(approved.status, ClaimStatus::Adjudicated);
    assert_eq!(world.balance(&provider), approved.totals().payer);
    assert_eq!(
        world.run(&payer, decide(pending.claim.id, true)),
        "wrong_status"
    );

    // Denied on review: nothing paid, and its lines no longer count, so a corrected claim for
    // the same day is not a duplicate.
    let paid_before = world.balance(&provider);
    world.ok(&payer, decide(suspicious.claim.id, false));
    let refused = world.entry(&suspicious.claim.id);
    assert_eq!(refused.status, ClaimStatus::Denied);
    assert!(
        refused
            .items
            .iter()
            .all(|i| i.outcome == ItemOutcome::Denied)
    );
    assert_eq!(adjustments(&refused.items[0])[0].1, "45");
    assert_eq!(world.balance(&provider), paid_before);
    let claim = world.claim(vec![item(1, "93000", "2026-02-21", 1, 2_500)]);
    let corrected = world.submit(claim);
    assert_eq!(corrected.status, ClaimStatus::Adjudicated);
    assert!(corrected.findings.is_empty(), "{:?}", corrected.findings);
}

#[test]
fn payment_consent_is_decided_by_the_records_consent_rule() {
    let mut world = World::new();
    let payer = world.payer();
    world.ok(
        &payer,
        ClaimsOp::PublishPolicy {
            policy: PolicyInput {
                payment_consent_required: true,
                ..policy("2026-02-01", 15_000)
            },
        },
    );
    let claim = world.claim(vec![item(1, "99213", "2026-02-20", 1, 15_000)]);
    let without = world.submit(claim);
    assert_eq!(checks(&without), vec![("no-payment-consent", None)]);
    assert_eq!(without.status, ClaimStatus::Pending);
    // The patient permits organisation b to see Encounters for payment.
    let patient = world.patient.clone();
    world.ok(
        &patient,
        RecordsOp::GrantConsent {
            grant: ConsentGrant {
                patient: patient.public_key(),
                provisions: vec![Provision {
                    kind: ProvisionKind::Permit,
                    actors: vec![Grantee::Organisation("b".into())],
                    scope: vec![],
                    purposes: vec![Purpose::Payment],
                }],
                start_ms: 0,
                end_ms: None,
            },
        },
    );
    let claim = world.claim(vec![item(1, "99213", "2026-02-21", 1, 15_000)]);
    let with = world.submit(claim);
    assert!(with.findings.is_empty(), "{:?}", with.findings);
    assert_eq!(with.status, ClaimStatus::Adjudicated);
}

#[test]
fn a_claim_is_judged_by_the_policy_version_in_force_on_its_date_of_service() {
    let mut world = World::new();
    let payer = world.payer();
    world.ok(
        &payer,
        ClaimsOp::PublishPolicy {
            policy: policy("2026-02-15", 18_000),
        },
    );
    let claim = world.claim(vec![
        item(1, "99213", "2026-02-10", 1, 20_000),
        item(2, "99213", "2026-02-16", 1, 20_000),
    ]);
    let entry = world.submit(claim);
    assert_eq!(
        entry
            .items
            .iter()
            .map(|i| (i.version, i.allowed.0))
            .collect::<Vec<_>>(),
        vec![(Some(1), 15_000), (Some(2), 18_000)]
    );
    // A version may not take effect before the last one.
    let earlier = ClaimsOp::PublishPolicy {
        policy: policy("2026-02-01", 1),
    };
    assert_eq!(world.run(&payer, earlier), "version_order");
}

#[test]
fn an_authorisation_locks_escrow_that_the_claim_relying_on_it_settles_once() {
    let mut world = World::new();
    let (provider, payer) = (world.chain.org_a.clone(), world.payer());
    // Pay the deductible first, so the authorisation's expected payment is plain coinsurance.
    let claim = world.claim(vec![item(1, "99213", "2026-02-01", 1, 15_000)]);
    world.submit(claim);
    let mut request = world.claim(vec![item(1, "70553", "2026-03-10", 1, 80_000)]);
    request.use_ = ClaimUse::Preauthorization;
    request.encounter = None;
    request.diagnoses.clear();
    let authorisation = world.submit(request);
    assert_eq!(authorisation.status, ClaimStatus::Authorised);
    assert_eq!(authorisation.valid_until, Some(date("2026-06-08")));
    let escrow_id = authorisation.escrow.expect("escrow");
    let state = snapshot(&world.chain);
    let held = medledger_tokens::escrow(&state, &escrow_id)
        .expect("read")
        .expect("escrow");
    // The authorisation's expected payment: 800.00 less the claim's 10.00 copay, at 80%.
    assert_eq!(held.amount.0, (80_000 - 1_000) * 8 / 10);
    assert_eq!(held.state, EscrowState::Locked);
    let before = (world.balance(&provider), world.balance(&payer));

    // The MRI on 2026-02-28 (it may be given before the authorisation's dates) relies on it.
    let mut claim = world.claim(vec![item(1, "70553", "2026-02-28", 1, 70_000)]);
    claim.authorisation = Some(authorisation.claim.id);
    let paid = world.submit(claim.clone());
    assert_eq!(paid.status, ClaimStatus::Adjudicated);
    let due = paid.totals().payer;
    assert_eq!(due, (70_000 - 1_000) * 8 / 10);
    assert_eq!(world.balance(&provider), before.0 + due);
    // The rest of the escrow went back to the payer.
    assert_eq!(world.balance(&payer), before.1 + (held.amount.0 - due));
    let state = snapshot(&world.chain);
    let closed = medledger_tokens::escrow(&state, &escrow_id)
        .expect("read")
        .expect("escrow");
    assert!(matches!(closed.state, EscrowState::Released { .. }));
    assert_eq!(
        world.entry(&authorisation.claim.id).used_by,
        Some(paid.claim.id)
    );

    // Used once: another MRI relying on it is not authorised.
    let mut again = world.claim(vec![item(1, "70553", "2026-02-27", 1, 70_000)]);
    again.authorisation = Some(authorisation.claim.id);
    let refused = world.submit(again);
    assert_eq!(checks(&refused), vec![("no-authorisation", Some(1))]);

    // A code whose authorisation the payer reviews waits in the queue, then is authorised.
    let mut request = world.claim(vec![item(1, "27447", "2026-04-01", 1, 2_000_000)]);
    request.use_ = ClaimUse::Preauthorization;
    let queued = world.submit(request);
    assert_eq!(queued.status, ClaimStatus::Pending);
    world.ok(
        &payer,
        ClaimsOp::Decide {
            claim: queued.claim.id,
            approve: true,
        },
    );
    assert_eq!(
        world.entry(&queued.claim.id).status,
        ClaimStatus::Authorised
    );
}

#[test]
fn a_denial_can_be_appealed_once_and_an_approved_appeal_pays() {
    let mut world = World::new();
    let (provider, payer, node) = (world.chain.org_a.clone(), world.payer(), world.node.clone());
    let claim = world.claim(vec![
        item(1, "93000", "2026-02-20", 1, 2_500),
        item(2, "93010", "2026-02-20", 1, 1_000),
    ]);
    let entry = world.submit(claim);
    let id = entry.claim.id;
    assert_eq!(entry.items[1].outcome, ItemOutcome::Denied);
    let paid_before = world.balance(&provider);
    let appeal = |reason| ClaimsOp::Appeal {
        claim: id,
        reason,
        commitment: None,
    };
    // Only the provider appeals.
    assert_eq!(
        world.run(&payer, appeal(AppealReason::CodingCorrected)),
        "not_provider"
    );
    world.ok(&node, appeal(AppealReason::CodingCorrected));
    assert_eq!(world.entry(&id).status, ClaimStatus::Appealed);
    assert_eq!(world.entry(&id).outcome(), Outcome::Queued);
    assert_eq!(
        world.run(&node, appeal(AppealReason::Other)),
        "already_appealed"
    );
    let decide = ClaimsOp::DecideAppeal {
        claim: id,
        approve: true,
    };
    assert_eq!(world.run(&node, decide.clone()), "not_payer");
    world.ok(&payer, decide.clone());
    let decided = world.entry(&id);
    assert_eq!(decided.status, ClaimStatus::Adjudicated);
    assert_eq!(decided.items[1].outcome, ItemOutcome::Approved);
    // 10.00 allowed, 20% coinsurance: the plan pays 8.00 more.
    assert_eq!(world.balance(&provider), paid_before + 800);
    assert!(
        decided
            .appeal
            .expect("appeal")
            .decision
            .expect("decided")
            .approve
    );
    assert_eq!(world.run(&payer, decide), "wrong_status");

    // A claim with nothing denied has nothing to appeal.
    let clean = world.claim(vec![item(1, "99213", "2026-02-25", 1, 15_000)]);
    let clean = world.submit(clean);
    let appeal = ClaimsOp::Appeal {
        claim: clean.claim.id,
        reason: AppealReason::Other,
        commitment: None,
    };
    assert_eq!(world.run(&node, appeal), "nothing_to_appeal");
}

#[test]
fn refusals_leave_nothing_written() {
    let mut world = World::new();
    let (payer, node, doctor) = (world.payer(), world.node.clone(), world.doctor.clone());
    let check = |world: &mut World, key: &SecretKey, claim: ClaimSubmission, code: &str| {
        let id = claim.id;
        assert_eq!(world.run(key, ClaimsOp::Submit { claim }), code);
        let state = snapshot(&world.chain);
        assert!(
            medledger_claims::claim(&state, &id)
                .expect("read")
                .is_none()
        );
        let (listed, _) = list(&state, &Listing::Provider("a".into()), 0, 1).expect("read");
        assert_eq!(listed, 0, "{code}: nothing listed");
    };
    let good = || item(1, "99213", "2026-02-20", 1, 15_000);
    let mut claim = world.claim(vec![good()]);
    claim.diagnoses = vec!["not-icd".into()];
    check(&mut world, &node, claim, "invalid");
    let claim = world.claim(vec![]);
    check(&mut world, &node, claim, "invalid");
    let claim = world.claim(vec![item(1, "99213", "2026-03-05", 1, 15_000)]);
    check(&mut world, &node, claim, "invalid");
    let claim = world.claim(vec![good(), good()]);
    check(&mut world, &node, claim, "invalid");
    let claim = world.claim(vec![item(1, "99213", "2026-02-20", 0, 15_000)]);
    check(&mut world, &node, claim, "invalid");
    let mut claim = world.claim(vec![good()]);
    claim.coverage = Hash([99; 32]);
    check(&mut world, &node, claim, "unknown_coverage");
    let mut claim = world.claim(vec![good()]);
    claim.payee = payer.public_key();
    check(&mut world, &node, claim, "not_provider_account");
    // The payer cannot publish for another's plan, nor a practitioner at all.
    let org_a = world.chain.org_a.clone();
    let steal = ClaimsOp::PublishPolicy {
        policy: policy("2027-01-01", 1),
    };
    assert_eq!(world.run(&org_a, steal.clone()), "not_payer");
    assert_eq!(world.run(&doctor, steal), "not_payer");
    let bad_class = ClaimsOp::PublishPolicy {
        policy: PolicyInput {
            symbol: "EUR".into(),
            ..policy("2027-01-01", 1)
        },
    };
    assert_eq!(world.run(&payer, bad_class), "unknown_class");
    let bad_account = ClaimsOp::PublishPolicy {
        policy: PolicyInput {
            account: org_a.public_key(),
            ..policy("2027-01-01", 1)
        },
    };
    assert_eq!(world.run(&payer, bad_account), "not_payer_account");
    let twice = ClaimsOp::PublishPolicy {
        policy: PolicyInput {
            services: vec![rule("99213", 1, 1), rule("99213", 2, 1)],
            ..policy("2027-01-01", 1)
        },
    };
    assert_eq!(world.run(&payer, twice), "invalid");
    let state = snapshot(&world.chain);
    assert_eq!(
        plan(&state, PLAN)
            .expect("read")
            .expect("plan")
            .versions
            .len(),
        1
    );

    // A payer who cannot pay: the settlement effect is refused, so the whole claim is, and the
    // accruals and day lines it would have written are not.
    let everything = medledger_tokens::balance(&state, USD, &payer.public_key()).expect("read");
    let burn = TokensOp::Burn {
        symbol: USD.into(),
        amount: Amount(everything),
        reference: None,
    };
    world.ok(&payer, burn);
    let claim = world.claim(vec![good()]);
    let id = claim.id;
    assert_eq!(
        world.run(
            &node,
            ClaimsOp::Submit {
                claim: claim.clone()
            }
        ),
        "insufficient_balance"
    );
    let state = snapshot(&world.chain);
    assert!(
        medledger_claims::claim(&state, &id)
            .expect("read")
            .is_none()
    );
    let accrual = accrual(&state, PLAN, &world.patient.public_key(), 2026).expect("read");
    assert_eq!(accrual, Accrual::default());
    let (total, _) = list(&state, &Listing::Provider("a".into()), 0, 1).expect("read");
    assert_eq!(total, 0);
    // Refunded, the same claim goes through: the refusal left no duplicate behind.
    let mint = TokensOp::Mint {
        symbol: USD.into(),
        to: payer.public_key(),
        amount: Amount(100_000),
        reference: None,
    };
    world.ok(&payer, mint);
    assert_eq!(world.run(&node, ClaimsOp::Submit { claim }), "committed");
    assert!(world.entry(&id).findings.is_empty());
}

/// One step of a random sequence.
#[derive(Clone, Debug)]
enum Step {
    Claim {
        code: usize,
        day: u8,
        units: u32,
        charge: u128,
        encounter: bool,
    },
    Decide {
        nth: usize,
        approve: bool,
    },
    Appeal {
        nth: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..7, 1u8..28, 1u32..8, 0u128..60_000, any::<bool>()).prop_map(
            |(code, day, units, charge, encounter)| Step::Claim {
                code,
                day,
                units,
                charge,
                encounter,
            }
        ),
        (0usize..20, any::<bool>()).prop_map(|(nth, approve)| Step::Decide { nth, approve }),
        (0usize..20).prop_map(|nth| Step::Appeal { nth }),
    ]
}

/// Runs the steps, one block each, and returns every block's state root and the claims.
fn replay(steps: &[Step]) -> (Vec<Hash>, Vec<ClaimEntry>, u128) {
    let mut world = World::new();
    let codes = [
        "99213", "93000", "93010", "97110", "70553", "27447", "11111",
    ];
    let mut roots = Vec::new();
    let mut ids = Vec::new();
    let (node, payer) = (world.node.clone(), world.payer());
    for step in steps {
        let tx = match step {
            Step::Claim {
                code,
                day,
                units,
                charge,
                encounter,
            } => {
                let mut claim = world.claim(vec![item(
                    1,
                    codes[*code],
                    &format!("2026-02-{day:02}"),
                    *units,
                    *charge,
                )]);
                if !encounter {
                    claim.encounter = None;
                }
                ids.push(claim.id);
                world.chain.tx(&node, ClaimsOp::Submit { claim })
            }
            Step::Decide { nth, approve } => {
                let claim = ids.get(*nth).copied().unwrap_or(Hash([0; 32]));
                let op = ClaimsOp::Decide {
                    claim,
                    approve: *approve,
                };
                world.chain.tx(&payer, op)
            }
            Step::Appeal { nth } => {
                let claim = ids.get(*nth).copied().unwrap_or(Hash([0; 32]));
                let op = ClaimsOp::Appeal {
                    claim,
                    reason: AppealReason::Other,
                    commitment: None,
                };
                world.chain.tx(&node, op)
            }
        };
        let (_, root) = world.chain.block(&[tx]).expect("valid block");
        roots.push(root);
    }
    let state = snapshot(&world.chain);
    let entries = ids
        .iter()
        .filter_map(|id| medledger_claims::claim(&state, id).expect("read"))
        .collect();
    // Conservation across settlement: what the payer lost, the provider gained (or is in escrow).
    let class = medledger_tokens::class(&state, USD)
        .expect("read")
        .expect("class");
    let held = medledger_tokens::balance(&state, USD, &world.chain.org_a.public_key())
        .expect("read")
        + medledger_tokens::balance(&state, USD, &payer.public_key()).expect("read")
        + class.escrowed.0;
    assert_eq!(held, class.supply());
    let paid: u128 = state_paid(&state, &ids);
    let provider =
        medledger_tokens::balance(&state, USD, &world.chain.org_a.public_key()).expect("read");
    assert_eq!(
        provider, paid,
        "the provider holds exactly what claims paid"
    );
    (roots, entries, paid)
}

fn state_paid(state: &Snapshot<'_, MemoryTree>, ids: &[Hash]) -> u128 {
    ids.iter()
        .filter_map(|id| medledger_claims::claim(state, id).expect("read"))
        .map(|entry| entry.paid.0)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Adjudication is a function of the chain: replaying the same transactions gives the same
    /// state root at every block and the same adjudication, and what claims were paid is what
    /// left the payer.
    #[test]
    fn adjudication_is_the_same_on_replay(steps in proptest::collection::vec(step(), 1..24)) {
        let (roots, entries, paid) = replay(&steps);
        let (again_roots, again_entries, again_paid) = replay(&steps);
        prop_assert_eq!(roots, again_roots);
        prop_assert_eq!(entries, again_entries);
        prop_assert_eq!(paid, again_paid);
    }
}

/// Deploys the answering contract (contracts/tests/data/answer.wat), answering `answer` at
/// first; returns its address.
fn deploy_rule_contract(world: &mut World, answer: &str) -> Hash {
    let code = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/tests/data/answer.wat"
    ))
    .expect("wat");
    world.chain.deploy_contract(&code, "gold-rules", answer)
}

fn set_answer(world: &mut World, contract: Hash, answer: &str) {
    let payer = world.payer();
    world.ok(
        &payer,
        medledger_contracts::ContractsOp::ExecuteContract {
            contract,
            msg: answer.into(),
        },
    );
}

#[test]
fn a_plans_rule_contract_decides_its_items_in_the_checks_reasons_and_a_failing_one_pends_the_claim()
{
    let mut world = World::new();
    let (provider, payer) = (world.chain.org_a.clone(), world.payer());
    let deny_therapy = r#"{"items":[{"sequence":2,"decision":"deny","check":"code-not-covered"}]}"#;
    let contract = deploy_rule_contract(&mut world, deny_therapy);
    // Only the plan's payer names its rule contract, and only a deployed one.
    let set = |contract| ClaimsOp::SetRuleContract {
        plan: PLAN.into(),
        contract: Some(contract),
        codes: vec!["99213".into(), "97110".into()],
    };
    assert_eq!(world.run(&provider, set(contract)), "not_payer");
    assert_eq!(world.run(&payer, set(Hash::ZERO)), "unknown_contract");
    world.ok(&payer, set(contract));
    let rule = rule_contract(&snapshot(&world.chain), PLAN)
        .expect("read")
        .expect("set");
    assert_eq!(rule.codes, ["97110", "99213"]);

    // The contract denies the therapy line with a built-in reason and its CARC; the visit it
    // approves is paid as the built-in rules allow. (A denial for a reason the built-in rules
    // treat as a suspicion, such as impossible-quantity, queues the claim as theirs does.)
    let claim = world.claim(vec![
        item(1, "99213", "2026-02-20", 1, 15_000),
        item(2, "97110", "2026-02-20", 2, 8_000),
    ]);
    let entry = world.submit(claim);
    assert_eq!(
        entry.status,
        ClaimStatus::Adjudicated,
        "{:?}",
        checks(&entry)
    );
    assert_eq!(entry.items[0].outcome, ItemOutcome::Approved);
    assert_eq!(entry.items[1].outcome, ItemOutcome::Denied);
    assert_eq!(
        adjustments(&entry.items[1]),
        vec![(Group::CO, "96".into(), 8_000)]
    );
    assert_eq!(checks(&entry), vec![("code-not-covered", Some(2))]);
    assert!(entry.paid.0 > 0);

    // A code the contract does not decide is judged by the built-in rules alone.
    let claim = world.claim(vec![item(2, "93000", "2026-02-22", 1, 2_500)]);
    assert_eq!(world.submit(claim).items[0].outcome, ItemOutcome::Approved);

    // "review" queues the claim for the payer, as a built-in suspicion does.
    set_answer(
        &mut world,
        contract,
        r#"{"items":[{"sequence":1,"decision":"review","check":"above-allowed"}]}"#,
    );
    let claim = world.claim(vec![item(1, "99213", "2026-02-23", 1, 15_000)]);
    let entry = world.submit(claim);
    assert_eq!(entry.status, ClaimStatus::Pending);
    assert_eq!(checks(&entry), vec![("above-allowed", Some(1))]);
    assert_eq!(entry.paid.0, 0);

    // A contract that traps, or answers what it was not asked, decides nothing: the claim waits
    // for review and nothing is paid.
    for (day, answer) in (10..).zip([
        r#""trap""#,
        r#"{"items":[{"sequence":9,"decision":"deny","check":"duplicate"}]}"#,
        r#"{"items":[{"sequence":1,"decision":"deny","check":"not-a-check"}]}"#,
        r#"{"items":[{"sequence":1,"decision":"maybe"}]}"#,
        r#"{"nothing":true}"#,
    ]) {
        set_answer(&mut world, contract, answer);
        let before = world.balance(&provider);
        let day = format!("2026-02-{day}");
        let claim = world.claim(vec![item(1, "99213", &day, 1, 15_000)]);
        let entry = world.submit(claim);
        assert_eq!(entry.status, ClaimStatus::Pending, "{answer}");
        assert!(
            checks(&entry).contains(&("rule-contract", None))
                && checks(&entry).contains(&("rule-contract", Some(1))),
            "{answer}: {:?}",
            checks(&entry)
        );
        assert_eq!(world.balance(&provider), before, "{answer}");
    }

    // The payer stops consulting it: the built-in rules alone judge again.
    world.ok(
        &payer,
        ClaimsOp::SetRuleContract {
            plan: PLAN.into(),
            contract: None,
            codes: Vec::new(),
        },
    );
    let claim = world.claim(vec![item(1, "99213", "2026-02-28", 1, 15_000)]);
    assert_eq!(world.submit(claim).status, ClaimStatus::Adjudicated);
}
