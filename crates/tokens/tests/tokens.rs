//! Tests of the token ledger through the whole ledger: a class created by two thirds of the
//! organisations, minting and burning by its issuer only, transfers (zero included) only to
//! accounts, compare-and-set allowances, statements, every refusal leaving balances and the class
//! as they were, and conservation of supply under random operations.

use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_state::{MemoryTree, Snapshot};
use medledger_tokens::*;
use medledger_types::Role;
use proptest::prelude::*;

const USD: &str = "USD";

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

fn run(chain: &mut Chain, key: &SecretKey, op: TokensOp) -> String {
    let tx = chain.tx(key, op);
    rejected(&chain.one(tx)).to_string()
}

fn spec(symbol: &str, issuers: &[&str]) -> ClassSpec {
    ClassSpec {
        symbol: symbol.into(),
        name: "Consortium settlement dollar".into(),
        decimals: 2,
        issuers: issuers.iter().map(|org| org.to_string()).collect(),
    }
}

struct World {
    chain: Chain,
    alice: SecretKey,
    bob: SecretKey,
    stranger: SecretKey,
}

/// Organisation a issues USD (approved by a and b); alice and bob are members.
fn world() -> World {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let (alice, bob) = (SecretKey::from_seed(600), SecretKey::from_seed(601));
    assert_eq!(
        rejected(&chain.enrol(&org_a, &alice, Role::Patient)),
        "committed"
    );
    assert_eq!(
        rejected(&chain.enrol(&org_b, &bob, Role::Practitioner)),
        "committed"
    );
    let propose = TokensOp::ProposeClass {
        spec: spec(USD, &["a"]),
    };
    assert_eq!(run(&mut chain, &org_a, propose), "committed");
    let approve = TokensOp::ApproveClass { symbol: USD.into() };
    assert_eq!(run(&mut chain, &org_b, approve), "committed");
    World {
        chain,
        alice,
        bob,
        stranger: SecretKey::from_seed(699),
    }
}

fn mint(to: &SecretKey, amount: u128) -> TokensOp {
    TokensOp::Mint {
        symbol: USD.into(),
        to: to.public_key(),
        amount: Amount(amount),
        reference: None,
    }
}

fn pay(to: &SecretKey, amount: u128) -> TokensOp {
    TokensOp::Transfer {
        symbol: USD.into(),
        to: to.public_key(),
        amount: Amount(amount),
        reason: Reason::Settlement,
        reference: Some(Hash([4; 32])),
    }
}

/// The movements of the USD log that touched `account`, oldest first: what a node's statement
/// index lists for it.
fn statement(state: &Snapshot<'_, MemoryTree>, account: &SecretKey) -> Vec<Movement> {
    let length = class(state, USD).expect("read").expect("class").movements;
    let account = account.public_key();
    (0..length)
        .map(|seq| movement(state, USD, seq).expect("read").expect("logged"))
        .filter(|entry| entry.from == Some(account) || entry.to == Some(account))
        .collect()
}

fn balance_of(chain: &Chain, key: &SecretKey) -> u128 {
    balance(&snapshot(chain), USD, &key.public_key()).expect("read")
}

/// The token state a refusal must leave alone: the class and the balances and allowances of
/// every party.
fn tokens_state(world: &World) -> Vec<Option<Vec<u8>>> {
    let chain = &world.chain;
    let keys = [
        &world.alice,
        &world.bob,
        &world.stranger,
        &chain.org_a,
        &chain.org_b,
    ];
    let mut out = vec![chain.get(&key_class(USD))];
    for owner in keys {
        out.push(chain.get(&key_balance(USD, &owner.public_key())));
        for spender in keys {
            out.push(chain.get(&key_allowance(
                USD,
                &owner.public_key(),
                &spender.public_key(),
            )));
        }
    }
    out
}

/// Runs `op` as `key`, expects the refusal `code`, and checks nothing of the tokens changed.
fn refused(world: &mut World, key: &SecretKey, op: TokensOp, code: &str) {
    let before = tokens_state(world);
    assert_eq!(run(&mut world.chain, key, op), code);
    assert_eq!(
        tokens_state(world),
        before,
        "a refused {code} changed the tokens"
    );
}

/// A class exists only once two thirds of the organisations approved it, and its proposal is
/// checked first.
#[test]
fn a_class_is_created_by_two_thirds_of_the_organisations() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let member = SecretKey::from_seed(610);
    assert_eq!(
        rejected(&chain.enrol(&org_a, &member, Role::Insurer)),
        "committed"
    );
    let propose = |spec| TokensOp::ProposeClass { spec };
    assert_eq!(
        run(&mut chain, &member, propose(spec("RWD", &["a"]))),
        "not_an_organisation"
    );
    for (bad, code) in [
        (spec("rwd", &["a"]), "invalid"),
        (spec("TOOLONGSYMBOL1", &["a"]), "invalid"),
        (spec("RWD", &[]), "invalid"),
        (spec("RWD", &["a", "a"]), "invalid"),
        (spec("RWD", &["nowhere"]), "unknown_organisation"),
        (
            ClassSpec {
                decimals: 19,
                ..spec("RWD", &["a"])
            },
            "invalid",
        ),
    ] {
        assert_eq!(run(&mut chain, &org_a, propose(bad)), code);
    }
    assert_eq!(
        run(&mut chain, &org_a, propose(spec("RWD", &["a", "b"]))),
        "committed"
    );
    let state = snapshot(&chain);
    assert!(
        class(&state, "RWD").expect("read").is_none(),
        "one of two is not enough"
    );
    assert_eq!(
        run(&mut chain, &org_b, propose(spec("RWD", &["b"]))),
        "already_proposed"
    );
    let approve = || TokensOp::ApproveClass {
        symbol: "RWD".into(),
    };
    assert_eq!(run(&mut chain, &org_a, approve()), "already_approved");
    assert_eq!(run(&mut chain, &org_b, approve()), "committed");
    let created = class(&snapshot(&chain), "RWD")
        .expect("read")
        .expect("created");
    assert_eq!(created.issuers, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(created.supply(), 0);
    assert!(proposal(&snapshot(&chain), "RWD").expect("read").is_none());
    assert_eq!(run(&mut chain, &org_b, approve()), "no_proposal");
    assert_eq!(
        run(&mut chain, &org_a, propose(spec("RWD", &["a"]))),
        "class_exists"
    );
}

/// Only an issuer's root key mints, only to accounts, never past u128; burning takes from the
/// issuer's own balance.
#[test]
fn issuers_mint_and_burn() {
    let mut world = world();
    let (org_a, org_b, alice, bob, stranger) = (
        world.chain.org_a.clone(),
        world.chain.org_b.clone(),
        world.alice.clone(),
        world.bob.clone(),
        world.stranger.clone(),
    );
    refused(&mut world, &org_b, mint(&alice, 10), "not_issuer");
    refused(&mut world, &alice, mint(&alice, 10), "not_issuer");
    refused(&mut world, &org_a, mint(&stranger, 10), "unknown_account");
    let unknown = TokensOp::Mint {
        symbol: "EUR".into(),
        to: alice.public_key(),
        amount: Amount(1),
        reference: None,
    };
    refused(&mut world, &org_a, unknown, "unknown_class");
    assert_eq!(
        run(&mut world.chain, &org_a, mint(&alice, 10_000)),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, mint(&org_a, 500)),
        "committed"
    );
    assert_eq!(balance_of(&world.chain, &alice), 10_000);
    refused(&mut world, &org_a, mint(&bob, u128::MAX), "overflow");
    let burn = |amount| TokensOp::Burn {
        symbol: USD.into(),
        amount: Amount(amount),
        reference: None,
    };
    refused(&mut world, &org_a, burn(501), "insufficient_balance");
    refused(&mut world, &alice, burn(1), "not_issuer");
    assert_eq!(run(&mut world.chain, &org_a, burn(200)), "committed");
    let record = class(&snapshot(&world.chain), USD)
        .expect("read")
        .expect("class");
    assert_eq!(
        (record.minted.0, record.burned.0, record.supply()),
        (10_500, 200, 10_300)
    );
    assert_eq!(record.movements, 3);
    let burned = movement(&snapshot(&world.chain), USD, 2)
        .expect("read")
        .expect("logged");
    assert_eq!((burned.from, burned.to), (Some(org_a.public_key()), None));
    assert_eq!(burned.reason, Reason::Redemption);
}

/// Transfers move value between accounts (zero is valid), are refused beyond the balance or to a
/// key that holds nothing, and every movement is on both parties' statements.
#[test]
fn transfers_move_value_and_are_logged() {
    let mut world = world();
    let (org_a, alice, bob, stranger) = (
        world.chain.org_a.clone(),
        world.alice.clone(),
        world.bob.clone(),
        world.stranger.clone(),
    );
    assert_eq!(
        run(&mut world.chain, &org_a, mint(&alice, 1_000)),
        "committed"
    );
    assert_eq!(run(&mut world.chain, &alice, pay(&bob, 250)), "committed");
    assert_eq!(run(&mut world.chain, &alice, pay(&bob, 0)), "committed");
    assert_eq!(
        (
            balance_of(&world.chain, &alice),
            balance_of(&world.chain, &bob)
        ),
        (750, 250)
    );
    refused(&mut world, &alice, pay(&bob, 751), "insufficient_balance");
    refused(&mut world, &alice, pay(&stranger, 1), "unknown_account");
    let entries = statement(&snapshot(&world.chain), &bob);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].amount, Amount(250));
    assert_eq!(entries[0].reason, Reason::Settlement);
    assert_eq!(entries[0].reference, Some(Hash([4; 32])));
    assert_eq!(
        entries[1].amount,
        Amount(0),
        "a zero transfer is a movement too"
    );
    let entries = statement(&snapshot(&world.chain), &alice);
    assert_eq!(entries.len(), 3, "minted to, then paid twice");
    let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
    assert_eq!(
        seqs,
        [0, 1, 2],
        "the log numbers every movement of the class"
    );
    assert_eq!(classes(&snapshot(&world.chain)).expect("read"), [USD]);
}

/// Allowances change only by compare-and-set or by a difference, never below zero, and a spender
/// pays within its allowance, which shrinks by what it paid.
#[test]
fn allowances_are_race_free() {
    let mut world = world();
    let (org_a, alice, bob) = (
        world.chain.org_a.clone(),
        world.alice.clone(),
        world.bob.clone(),
    );
    assert_eq!(
        run(&mut world.chain, &org_a, mint(&alice, 1_000)),
        "committed"
    );
    let approve = |expected, amount| TokensOp::Approve {
        symbol: USD.into(),
        spender: bob.public_key(),
        expected: Amount(expected),
        amount: Amount(amount),
    };
    assert_eq!(run(&mut world.chain, &alice, approve(0, 300)), "committed");
    // The owner meant to replace 0; the allowance is 300 now, so a second 0→100 is refused.
    refused(&mut world, &alice, approve(0, 100), "allowance_changed");
    let spend = |amount| TokensOp::TransferFrom {
        symbol: USD.into(),
        from: alice.public_key(),
        to: bob.public_key(),
        amount: Amount(amount),
        reason: Reason::PatientShare,
        reference: None,
    };
    refused(&mut world, &bob, spend(301), "insufficient_allowance");
    assert_eq!(run(&mut world.chain, &bob, spend(120)), "committed");
    let left = |chain: &Chain| {
        allowance(
            &snapshot(chain),
            USD,
            &alice.public_key(),
            &bob.public_key(),
        )
        .expect("read")
    };
    assert_eq!(left(&world.chain), 180);
    let change = |increase: bool, by| {
        if increase {
            TokensOp::IncreaseAllowance {
                symbol: USD.into(),
                spender: bob.public_key(),
                by: Amount(by),
            }
        } else {
            TokensOp::DecreaseAllowance {
                symbol: USD.into(),
                spender: bob.public_key(),
                by: Amount(by),
            }
        }
    };
    refused(
        &mut world,
        &alice,
        change(false, 181),
        "insufficient_allowance",
    );
    assert_eq!(run(&mut world.chain, &alice, change(true, 20)), "committed");
    assert_eq!(
        run(&mut world.chain, &alice, change(false, 200)),
        "committed"
    );
    assert_eq!(left(&world.chain), 0);
    assert_eq!(run(&mut world.chain, &alice, change(true, 1)), "committed");
    refused(&mut world, &alice, change(true, u128::MAX), "overflow");
}

/// Locked funds leave the payer's balance for the escrow; only the arbiter organisation (its root
/// key or an insurer of it) releases them to the payee or returns them, once.
#[test]
fn escrow_is_released_or_returned_by_its_arbiter_once() {
    let mut world = world();
    let (org_a, org_b, alice, bob) = (
        world.chain.org_a.clone(),
        world.chain.org_b.clone(),
        world.alice.clone(),
        world.bob.clone(),
    );
    let insurer = SecretKey::from_seed(620);
    assert_eq!(
        rejected(&world.chain.enrol(&org_a, &insurer, Role::Insurer)),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, mint(&insurer, 1_000)),
        "committed"
    );
    let lock = |id: u8, amount, arbiter: &str| TokensOp::Lock {
        id: Hash([id; 32]),
        symbol: USD.into(),
        payee: bob.public_key(),
        amount: Amount(amount),
        arbiter: arbiter.into(),
        reference: Some(Hash([77; 32])),
    };
    refused(
        &mut world,
        &insurer,
        lock(1, 1_001, "a"),
        "insufficient_balance",
    );
    refused(
        &mut world,
        &insurer,
        lock(1, 10, "nowhere"),
        "unknown_organisation",
    );
    assert_eq!(
        run(&mut world.chain, &insurer, lock(1, 400, "a")),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &insurer, lock(2, 100, "a")),
        "committed"
    );
    refused(&mut world, &insurer, lock(1, 1, "a"), "escrow_exists");
    assert_eq!(balance_of(&world.chain, &insurer), 500);
    let record = class(&snapshot(&world.chain), USD)
        .expect("read")
        .expect("class");
    assert_eq!(record.escrowed, Amount(500));
    let release = TokensOp::Release { id: Hash([1; 32]) };
    let give_back = TokensOp::Return { id: Hash([2; 32]) };
    refused(&mut world, &org_b, release.clone(), "not_arbiter");
    refused(&mut world, &alice, release.clone(), "not_arbiter");
    refused(
        &mut world,
        &org_a,
        TokensOp::Release { id: Hash([3; 32]) },
        "unknown_escrow",
    );
    assert_eq!(
        run(&mut world.chain, &insurer, release.clone()),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, give_back.clone()),
        "committed"
    );
    refused(&mut world, &org_a, release, "escrow_settled");
    refused(&mut world, &org_a, give_back, "escrow_settled");
    assert_eq!(balance_of(&world.chain, &bob), 400);
    assert_eq!(balance_of(&world.chain, &insurer), 600);
    let state = snapshot(&world.chain);
    let record = class(&state, USD).expect("read").expect("class");
    assert_eq!(record.escrowed, Amount(0));
    let held = escrow(&state, &Hash([1; 32]))
        .expect("read")
        .expect("escrow");
    assert!(matches!(held.state, EscrowState::Released { .. }));
    let entries = statement(&state, &bob);
    assert_eq!(entries[0].escrow, Some(Hash([1; 32])));
    assert_eq!(entries[0].reason, Reason::Settlement);
}

/// A reward program mints to patients only, by its issuer only, never past its cap for one
/// patient in one period.
#[test]
fn rewards_are_capped_per_patient_and_period() {
    let mut world = world();
    let (org_a, org_b, alice, bob) = (
        world.chain.org_a.clone(),
        world.chain.org_b.clone(),
        world.alice.clone(),
        world.bob.clone(),
    );
    let program = |id: &str, period_ms| RewardProgram {
        id: id.into(),
        symbol: USD.into(),
        issuer: "a".into(),
        purpose: RewardPurpose::ResearchSharing,
        cap_per_period: Amount(100),
        period_ms,
        per_event: None,
    };
    let create = |program| TokensOp::CreateRewardProgram { program };
    refused(
        &mut world,
        &org_b,
        create(program("sharing", 1_000_000)),
        "not_issuer",
    );
    refused(
        &mut world,
        &org_a,
        create(program("", 1_000_000)),
        "invalid",
    );
    refused(&mut world, &org_a, create(program("sharing", 0)), "invalid");
    assert_eq!(
        run(
            &mut world.chain,
            &org_a,
            create(program("sharing", 1_000_000))
        ),
        "committed"
    );
    refused(
        &mut world,
        &org_a,
        create(program("sharing", 1_000_000)),
        "program_exists",
    );
    let reward = |patient: &SecretKey, amount| TokensOp::Reward {
        program: "sharing".into(),
        patient: patient.public_key(),
        amount: Amount(amount),
        reference: None,
    };
    refused(&mut world, &org_a, reward(&bob, 10), "not_a_patient");
    refused(&mut world, &org_b, reward(&alice, 10), "not_issuer");
    assert_eq!(
        run(&mut world.chain, &org_a, reward(&alice, 60)),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &org_a, reward(&alice, 40)),
        "committed"
    );
    refused(&mut world, &org_a, reward(&alice, 1), "over_cap");
    assert_eq!(balance_of(&world.chain, &alice), 100);
    let record = class(&snapshot(&world.chain), USD)
        .expect("read")
        .expect("class");
    assert_eq!(record.minted, Amount(100), "rewards are minted");
    // A program whose period is one millisecond starts a new period with every block.
    assert_eq!(
        run(&mut world.chain, &org_a, create(program("adherence", 1))),
        "committed"
    );
    let adherence = |amount| TokensOp::Reward {
        program: "adherence".into(),
        patient: alice.public_key(),
        amount: Amount(amount),
        reference: None,
    };
    assert_eq!(run(&mut world.chain, &org_a, adherence(100)), "committed");
    assert_eq!(run(&mut world.chain, &org_a, adherence(100)), "committed");
    assert_eq!(balance_of(&world.chain, &alice), 300);
}

#[derive(Clone, Debug)]
enum Step {
    Mint(usize, u128),
    Burn(u128),
    Pay(usize, usize, u128),
    Approve(usize, usize, u128),
    Spend(usize, usize, usize, u128),
    Lock(usize, usize, u128),
    Settle(u8, bool),
}

fn step() -> impl Strategy<Value = Step> {
    let who = 0usize..3;
    let amount = prop_oneof![0u128..50, 0u128..5_000, Just(u128::MAX)];
    prop_oneof![
        (who.clone(), amount.clone()).prop_map(|(to, amount)| Step::Mint(to, amount)),
        amount.clone().prop_map(Step::Burn),
        (who.clone(), who.clone(), amount.clone()).prop_map(|(a, b, n)| Step::Pay(a, b, n)),
        (who.clone(), who.clone(), amount.clone()).prop_map(|(a, b, n)| Step::Approve(a, b, n)),
        (who.clone(), who.clone(), who.clone(), amount.clone())
            .prop_map(|(s, a, b, n)| Step::Spend(s, a, b, n)),
        (who.clone(), who, amount).prop_map(|(a, b, n)| Step::Lock(a, b, n)),
        (0u8..4, any::<bool>()).prop_map(|(id, release)| Step::Settle(id, release)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Whatever operations are sent, accepted or refused, the balances and the locked escrows sum
    /// to minted - burned.
    #[test]
    fn supply_is_conserved(steps in proptest::collection::vec(step(), 1..24)) {
        let mut world = world();
        let org_a = world.chain.org_a.clone();
        // The accounts: alice, bob and the issuer's root key.
        let accounts = [world.alice.clone(), world.bob.clone(), org_a.clone()];
        let mut locks = 0u8;
        for step in steps {
            let (signer, op) = match step {
                Step::Mint(to, amount) => (org_a.clone(), mint(&accounts[to], amount)),
                Step::Burn(amount) => (org_a.clone(), TokensOp::Burn { symbol: USD.into(), amount: Amount(amount), reference: None }),
                Step::Pay(from, to, amount) => (accounts[from].clone(), pay(&accounts[to], amount)),
                Step::Approve(owner, spender, amount) => {
                    let current = allowance(&snapshot(&world.chain), USD, &accounts[owner].public_key(), &accounts[spender].public_key()).expect("read");
                    (accounts[owner].clone(), TokensOp::Approve { symbol: USD.into(), spender: accounts[spender].public_key(), expected: Amount(current), amount: Amount(amount) })
                }
                Step::Spend(spender, from, to, amount) => (accounts[spender].clone(), TokensOp::TransferFrom { symbol: USD.into(), from: accounts[from].public_key(), to: accounts[to].public_key(), amount: Amount(amount), reason: Reason::Transfer, reference: None }),
                Step::Lock(payer, payee, amount) => {
                    locks = locks.wrapping_add(1) % 4;
                    (accounts[payer].clone(), TokensOp::Lock { id: Hash([locks; 32]), symbol: USD.into(), payee: accounts[payee].public_key(), amount: Amount(amount), arbiter: "a".into(), reference: None })
                }
                Step::Settle(id, release) => (org_a.clone(), if release { TokensOp::Release { id: Hash([id; 32]) } } else { TokensOp::Return { id: Hash([id; 32]) } }),
            };
            run(&mut world.chain, &signer, op);
            let state = snapshot(&world.chain);
            let record = class(&state, USD).expect("read").expect("class");
            let held: u128 = accounts.iter().map(|account| balance(&state, USD, &account.public_key()).expect("read")).sum();
            let locked: u128 = (0u8..4)
                .filter_map(|id| escrow(&state, &Hash([id; 32])).expect("read"))
                .filter(|held| held.state == EscrowState::Locked)
                .map(|held| held.amount.0)
                .sum();
            prop_assert_eq!(locked, record.escrowed.0);
            prop_assert_eq!(held + locked, record.minted.0 - record.burned.0);
        }
    }
}

/// An adherence program's rule pays a care plan's patient when a practitioner of the plan's
/// custodian attests its goals met: once per plan and period, within the cap, and only for a
/// CarePlan record whose patient holds a key.
#[test]
fn adherence_is_attested_by_the_custodian_and_paid_by_rule() {
    use medledger_records::{RecordWrite, RecordsOp};
    let mut world = world();
    let (org_a, org_b, alice, bob) = (
        world.chain.org_a.clone(),
        world.chain.org_b.clone(),
        world.alice.clone(),
        world.bob.clone(),
    );
    let doctor = SecretKey::from_seed(602);
    assert_eq!(
        rejected(&world.chain.enrol(&org_a, &doctor, Role::Practitioner)),
        "committed"
    );
    // Organisation a's node holds two CarePlans of alice (bound to her key), one of a patient
    // with no key, and an Encounter.
    let node = SecretKey::from_seed(1);
    let (alice_id, unbound_id) = (Hash([50; 32]), Hash([52; 32]));
    let (plan, second_plan, third_plan, unbound_plan, encounter) = (
        Hash([60; 32]),
        Hash([61; 32]),
        Hash([62; 32]),
        Hash([63; 32]),
        Hash([64; 32]),
    );
    let write = |record, patient, resource_type: &str| RecordWrite {
        record,
        patient,
        resource_type: resource_type.into(),
        category: None,
        version: 1,
        commitment: Hash([1; 32]),
        author: doctor.public_key(),
    };
    let put = RecordsOp::PutRecords {
        records: vec![
            write(plan, alice_id, "CarePlan"),
            write(second_plan, alice_id, "CarePlan"),
            write(third_plan, alice_id, "CarePlan"),
            write(unbound_plan, unbound_id, "CarePlan"),
            write(encounter, alice_id, "Encounter"),
        ],
    };
    let tx = world.chain.tx(&node, put);
    assert_eq!(rejected(&world.chain.one(tx)), "committed");
    let bind = RecordsOp::BindPatient {
        patient: alice_id,
        key: alice.public_key(),
    };
    let tx = world.chain.tx(&node, bind);
    assert_eq!(rejected(&world.chain.one(tx)), "committed");

    let program = |id: &str, purpose, per_event: Option<u128>| TokensOp::CreateRewardProgram {
        program: RewardProgram {
            id: id.into(),
            symbol: USD.into(),
            issuer: "a".into(),
            purpose,
            cap_per_period: Amount(100),
            period_ms: 1_000_000_000_000,
            per_event: per_event.map(Amount),
        },
    };
    use RewardPurpose::{Adherence, ResearchSharing};
    refused(
        &mut world,
        &org_a,
        program("adhere", Adherence, Some(0)),
        "invalid",
    );
    refused(
        &mut world,
        &org_a,
        program("adhere", Adherence, Some(101)),
        "invalid",
    );
    for (id, purpose, per_event) in [
        ("adhere", Adherence, Some(60)),
        ("manual", Adherence, None),
        ("sharing", ResearchSharing, Some(10)),
    ] {
        let create = program(id, purpose, per_event);
        assert_eq!(run(&mut world.chain, &org_a, create), "committed");
    }
    assert_eq!(
        rules(&snapshot(&world.chain), Adherence).expect("read"),
        ["adhere"]
    );
    let attest = |program: &str, care_plan| TokensOp::AttestAdherence {
        program: program.into(),
        care_plan,
    };
    refused(&mut world, &doctor, attest("nope", plan), "unknown_program");
    refused(&mut world, &doctor, attest("manual", plan), "no_rule");
    refused(
        &mut world,
        &doctor,
        attest("sharing", plan),
        "wrong_purpose",
    );
    refused(
        &mut world,
        &doctor,
        attest("adhere", Hash([99; 32])),
        "unknown_care_plan",
    );
    refused(
        &mut world,
        &doctor,
        attest("adhere", encounter),
        "unknown_care_plan",
    );
    // Not the custodian's practitioner: another organisation's, or the patient herself.
    refused(&mut world, &bob, attest("adhere", plan), "not_custodian");
    refused(&mut world, &org_b, attest("adhere", plan), "not_custodian");
    refused(&mut world, &alice, attest("adhere", plan), "not_custodian");
    refused(
        &mut world,
        &doctor,
        attest("adhere", unbound_plan),
        "patient_unlinked",
    );

    assert_eq!(
        run(&mut world.chain, &doctor, attest("adhere", plan)),
        "committed"
    );
    assert_eq!(balance_of(&world.chain, &alice), 60);
    refused(
        &mut world,
        &doctor,
        attest("adhere", plan),
        "already_attested",
    );
    // The cap leaves 40 of the next plan's 60, then nothing: the attestations still stand.
    assert_eq!(
        run(&mut world.chain, &org_a, attest("adhere", second_plan)),
        "committed"
    );
    assert_eq!(
        run(&mut world.chain, &doctor, attest("adhere", third_plan)),
        "committed"
    );
    assert_eq!(balance_of(&world.chain, &alice), 100);
    let state = snapshot(&world.chain);
    let period = world.chain.time_base_ms / 1_000_000_000_000;
    let paid: Vec<u128> = [plan, second_plan, third_plan]
        .iter()
        .map(|care_plan| {
            let found = attestation(&state, "adhere", care_plan, period)
                .expect("read")
                .expect("attested");
            assert_eq!(found.patient, alice.public_key());
            found.paid.0
        })
        .collect();
    assert_eq!(paid, [60, 40, 0]);
    let rewards: Vec<(u128, Option<Hash>)> = statement(&state, &alice)
        .iter()
        .map(|entry| (entry.amount.0, entry.reference))
        .collect();
    assert_eq!(
        rewards,
        [(60, Some(plan)), (40, Some(second_plan))],
        "each payment names its care plan; nothing paid is no movement"
    );
    assert_eq!(
        class(&state, USD).expect("read").expect("class").minted,
        Amount(100)
    );
}
