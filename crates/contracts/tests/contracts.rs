//! Tests of contracts and of governance through the whole ledger: code stored by hash and refused
//! with its reason, deployment only once two thirds of the organisations approve, calls that
//! change state and calls that fail leaving nothing but their nonce and fuel, upgrades that keep
//! state, freezing, the block's fuel budget, admitting an organisation, chain parameters, and
//! replay to the same roots.

use medledger_contracts::*;
use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::governance::{
    Action, AnyProposal, CoreAction, Enactment, GovernanceOp, any_proposal,
};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_ledger::{CoreOp, Tx};
use medledger_state::{MemoryTree, Snapshot, StateRead};
use medledger_types::{Outcome, Role, ValidatorChange};

fn probe() -> Vec<u8> {
    wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/probe.wat")).expect("wat")
}

/// The probe with a custom section: other code (another hash), the same behaviour.
fn probe_v2() -> Vec<u8> {
    let mut code = probe();
    code.extend_from_slice(&[0, 3, 2, b'v', b'2']);
    code
}

fn snapshot(chain: &Chain) -> Snapshot<'_, MemoryTree> {
    Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    }
}

fn run(
    chain: &mut Chain,
    key: &SecretKey,
    payload: impl Into<medledger_ledger::Payload>,
) -> String {
    let tx = chain.tx(key, payload);
    rejected(&chain.one(tx)).to_string()
}

fn upload_ops(code: &[u8]) -> Vec<ContractsOp> {
    let hash = sha256(code);
    code.chunks(PART_BYTES_MAX)
        .enumerate()
        .map(|(part, bytes)| ContractsOp::UploadCode {
            code_hash: hash,
            size: code.len() as u64,
            part: part as u32,
            bytes: bytes.to_vec(),
        })
        .collect()
}

fn upload(chain: &mut Chain, key: &SecretKey, code: &[u8]) -> String {
    let mut last = String::new();
    for op in upload_ops(code) {
        last = run(chain, key, op);
    }
    last
}

fn propose(chain: &mut Chain, key: &SecretKey, action: Action) -> (Tx, String) {
    let expires_at = chain.height + 100;
    let tx = chain.tx(key, GovernanceOp::Propose { action, expires_at });
    let outcome = rejected(&chain.one(tx.clone())).to_string();
    (tx, outcome)
}

fn approve(chain: &mut Chain, key: &SecretKey, proposal: Hash) -> String {
    run(chain, key, GovernanceOp::ApproveProposal { proposal })
}

fn motion_status(chain: &Chain, id: &Hash) -> Enactment {
    match any_proposal(&snapshot(chain), id).expect("read") {
        Some(AnyProposal::Other(proposal)) => proposal.status,
        other => panic!("not a proposal: {other:?}"),
    }
}

struct World {
    chain: Chain,
    alice: SecretKey,
    contract: Hash,
}

/// The probe deployed by a and b, with `instantiate` writing k; alice is a patient of a.
fn world() -> World {
    let mut chain = Chain::new();
    let alice = SecretKey::from_seed(700);
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    assert_eq!(
        rejected(&chain.enrol(&org_a, &alice, Role::Patient)),
        "committed"
    );
    assert_eq!(upload(&mut chain, &org_a, &probe()), "committed");
    let (tx, outcome) = propose(
        &mut chain,
        &org_a,
        Action::Contracts(ContractsAction::DeployContract {
            code_hash: sha256(&probe()),
            label: "probe".into(),
            msg: r#""winit""#.into(),
        }),
    );
    assert_eq!(outcome, "committed");
    let contract = address_of(&tx.id());
    // One organisation of two is not two thirds: nothing is deployed yet.
    assert_eq!(motion_status(&chain, &tx.id()), Enactment::Pending);
    assert!(
        medledger_contracts::contract(&snapshot(&chain), &contract)
            .expect("read")
            .is_none()
    );
    assert_eq!(approve(&mut chain, &org_b, tx.id()), "committed");
    assert!(matches!(
        motion_status(&chain, &tx.id()),
        Enactment::Enacted { .. }
    ));
    World {
        chain,
        alice,
        contract,
    }
}

fn execute(world: &mut World, msg: &str) -> String {
    let alice = world.alice.clone();
    let contract = world.contract;
    run(
        &mut world.chain,
        &alice,
        ContractsOp::ExecuteContract {
            contract,
            msg: msg.into(),
        },
    )
}

fn stored(world: &World, key: &[u8]) -> Option<Vec<u8>> {
    value(&snapshot(&world.chain), &world.contract, key).expect("read")
}

#[test]
fn a_deployed_contract_is_called_changes_its_state_and_answers_queries() {
    let mut world = world();
    let info = contract(&snapshot(&world.chain), &world.contract)
        .expect("read")
        .expect("deployed");
    assert_eq!(
        (info.version, info.frozen, info.label.as_str()),
        (1, false, "probe")
    );
    assert_eq!(stored(&world, b"k"), Some(br#""winit""#.to_vec()));
    assert_eq!(
        list(&snapshot(&world.chain), 0, 10).expect("list"),
        vec![world.contract]
    );

    let tx = world.chain.tx(
        &world.alice,
        ContractsOp::ExecuteContract {
            contract: world.contract,
            msg: r#""w-by-alice""#.into(),
        },
    );
    assert_eq!(rejected(&world.chain.one(tx.clone())), "committed");
    assert_eq!(stored(&world, b"k"), Some(br#""w-by-alice""#.to_vec()));
    let record = call_record(&snapshot(&world.chain), &tx.id())
        .expect("read")
        .expect("recorded");
    assert_eq!(record.entry, "execute");
    assert_eq!(record.caller, Some(world.alice.public_key().to_string()));
    assert!(record.fuel_used > 0);

    // Events are numbered per contract and kept with the block and transaction.
    assert_eq!(execute(&mut world, r#""e""#), "committed");
    let event = event(&snapshot(&world.chain), 0)
        .expect("read")
        .expect("event");
    assert_eq!(
        events_of(&snapshot(&world.chain), &world.contract, 0, 10).expect("read"),
        vec![event.clone()]
    );
    assert_eq!(event.event, r#"{"kind":"probe"}"#);
    assert_eq!(event.height, world.chain.height);

    // The environment names the caller's organisation and role, and the block.
    let tx = world.chain.tx(
        &world.alice,
        ContractsOp::ExecuteContract {
            contract: world.contract,
            msg: r#""v""#.into(),
        },
    );
    world.chain.one(tx.clone());
    let env: serde_json::Value = serde_json::from_str(
        &call_record(&snapshot(&world.chain), &tx.id())
            .expect("read")
            .expect("recorded")
            .result,
    )
    .expect("json");
    assert_eq!(env["caller"]["org"], "a");
    assert_eq!(env["caller"]["role"], "patient");
    assert_eq!(env["block"]["height"], world.chain.height);
    assert_eq!(env["contract"], world.contract.to_string());

    // A read-only query answers from committed state, and chain queries answer what is on chain.
    let state = snapshot(&world.chain);
    let answer = query_contract(&state, &world.contract, r#""r""#)
        .expect("state")
        .expect("known");
    assert_eq!(answer.result, br#""w-by-alice""#);
    let answer = query_contract(&state, &world.contract, r#""q""#)
        .expect("state")
        .expect("known");
    assert_eq!(answer.result, br#"{"exists":true}"#);
    let answer = query_contract(&state, &world.contract, r#""Q""#)
        .expect("state")
        .expect("known");
    assert!(String::from_utf8_lossy(&answer.result).contains("unknown or malformed query"));
    // A query that writes is refused, and writes nothing.
    let answer = query_contract(&state, &world.contract, r#""w""#)
        .expect("state")
        .expect("known");
    assert_eq!(
        answer.end,
        runtime::End::Fault(runtime::Fault::WriteInQuery)
    );
}

#[test]
fn a_failing_call_leaves_nothing_but_its_nonce_and_its_fuel() {
    let mut world = world();
    let before = stored(&world, b"k");
    for (msg, code) in [
        (r#""l""#, "contract_out_of_fuel"),
        (r#""t""#, "contract_trap"),
        (r#""g""#, "contract_trap"),
        (r#""a""#, "contract_abort"),
        (r#""o""#, "contract_trap"),
        (r#""b""#, "contract_trap"),
        (r#""x""#, "contract_refused"),
        ("{not json", "message_not_json"),
    ] {
        let tx = world.chain.tx(
            &world.alice,
            ContractsOp::ExecuteContract {
                contract: world.contract,
                msg: msg.into(),
            },
        );
        let (outcomes, _, writes) = world
            .chain
            .block_with_writes(std::slice::from_ref(&tx))
            .expect("valid");
        assert_eq!(rejected(&outcomes[0]), code, "{msg}");
        let written: Vec<String> = writes
            .keys()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .collect();
        let nonce = format!("nonce/{}", world.alice.public_key());
        for key in &written {
            assert!(
                key == &nonce || key == "chain/head" || key == "contract-fuel/block",
                "{msg} wrote {key}"
            );
        }
        assert!(
            call_record(&snapshot(&world.chain), &tx.id())
                .expect("read")
                .is_none()
        );
        assert_eq!(stored(&world, b"k"), before, "{msg}");
    }
    // The refusal carries the contract's reason.
    let tx = world.chain.tx(
        &world.alice,
        ContractsOp::ExecuteContract {
            contract: world.contract,
            msg: r#""x""#.into(),
        },
    );
    match world.chain.one(tx) {
        Outcome::Rejected { reason, .. } => assert_eq!(reason, "the contract refused: denied"),
        other => panic!("{other:?}"),
    }
    // An unknown contract is refused too.
    let alice = world.alice.clone();
    let outcome = run(
        &mut world.chain,
        &alice,
        ContractsOp::ExecuteContract {
            contract: Hash::ZERO,
            msg: "{}".into(),
        },
    );
    assert_eq!(outcome, "unknown_contract");
}

#[test]
fn code_is_checked_when_stored_and_refused_with_the_reason() {
    let mut chain = Chain::new();
    let org_a = chain.org_a.clone();
    let float = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "allocate") (param i32) (result i32) (i32.const 0))
             (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
             (func (export "execute") (param i32 i32) (result i32)
               (i32.trunc_f64_s (f64.sqrt (f64.const 2))))
             (func (export "query") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .expect("wat");
    assert_eq!(upload(&mut chain, &org_a, &float), "code_floating_point");
    assert!(
        code_info(&snapshot(&chain), &sha256(&float))
            .expect("read")
            .is_none()
    );
    let import = wat::parse_str(
        r#"(module (import "env" "random" (func (result i32))) (memory (export "memory") 1))"#,
    )
    .expect("wat");
    assert_eq!(upload(&mut chain, &org_a, &import), "code_unknown_import");
    // The parts must hash to the name they were sent under.
    let code = probe();
    let mut ops = upload_ops(&code);
    if let ContractsOp::UploadCode { code_hash, .. } = &mut ops[0] {
        *code_hash = Hash::ZERO;
    }
    assert_eq!(
        run(&mut chain, &org_a, ops[0].clone()),
        "code_hash_mismatch"
    );
    // A member other than the node may not upload; a deployment of unknown code is refused.
    let member = SecretKey::from_seed(701);
    chain.enrol(&org_a, &member, Role::Practitioner);
    assert_eq!(upload(&mut chain, &member, &code), "not_an_uploader");
    let (_, outcome) = propose(
        &mut chain,
        &org_a,
        Action::Contracts(ContractsAction::DeployContract {
            code_hash: sha256(&code),
            label: "probe".into(),
            msg: "{}".into(),
        }),
    );
    assert_eq!(outcome, "unknown_code");
    assert_eq!(upload(&mut chain, &org_a, &code), "committed");
    assert_eq!(upload(&mut chain, &org_a, &code), "code_exists");
    // A deployment's message must be JSON, its label short.
    for (label, msg, code_) in [("probe", "nope", "message_not_json"), ("", "{}", "invalid")] {
        let (_, outcome) = propose(
            &mut chain,
            &org_a,
            Action::Contracts(ContractsAction::DeployContract {
                code_hash: sha256(&code),
                label: label.into(),
                msg: msg.into(),
            }),
        );
        assert_eq!(outcome, code_);
    }
}

#[test]
fn large_code_arrives_in_parts_in_any_order() {
    let mut chain = Chain::new();
    let org_b = chain.org_b.clone();
    // The probe with a 120 KiB custom section: three parts.
    let mut code = probe();
    let section = vec![b'x'; 120 * 1024];
    code.push(0);
    let mut len = section.len() as u32 + 2;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            code.push(byte);
            break;
        }
        code.push(byte | 0x80);
    }
    code.extend_from_slice(&[1, b'x']);
    code.extend_from_slice(&section);
    let ops = upload_ops(&code);
    assert_eq!(ops.len(), 3);
    assert_eq!(run(&mut chain, &org_b, ops[2].clone()), "committed");
    assert_eq!(run(&mut chain, &org_b, ops[2].clone()), "part_exists");
    assert_eq!(run(&mut chain, &org_b, ops[0].clone()), "committed");
    assert!(
        code_info(&snapshot(&chain), &sha256(&code))
            .expect("read")
            .is_none()
    );
    assert_eq!(run(&mut chain, &org_b, ops[1].clone()), "committed");
    let info = code_info(&snapshot(&chain), &sha256(&code))
        .expect("read")
        .expect("stored");
    assert_eq!(info.facts.size, code.len() as u64);
    assert_eq!(info.uploaded_by, "b");
    // The parts are gone; the code is whole.
    assert!(chain.get(&key_upload_part(&sha256(&code), 0)).is_none());
    assert_eq!(chain.get(&key_code(&sha256(&code))), Some(code));
}

#[test]
fn an_upgrade_by_governance_migrates_and_keeps_state_and_a_freeze_stops_calls() {
    let mut world = world();
    let (org_a, org_b) = (world.chain.org_a.clone(), world.chain.org_b.clone());
    assert_eq!(upload(&mut world.chain, &org_b, &probe_v2()), "committed");
    let (tx, outcome) = propose(
        &mut world.chain,
        &org_b,
        Action::Contracts(ContractsAction::UpgradeContract {
            contract: world.contract,
            code_hash: sha256(&probe_v2()),
            msg: r#""Mmigrated""#.into(),
        }),
    );
    assert_eq!(outcome, "committed");
    assert_eq!(approve(&mut world.chain, &org_a, tx.id()), "committed");
    let info = contract(&snapshot(&world.chain), &world.contract)
        .expect("read")
        .expect("deployed");
    assert_eq!((info.version, info.code_hash), (2, sha256(&probe_v2())));
    assert_eq!(stored(&world, b"k"), Some(br#""winit""#.to_vec()));
    assert_eq!(stored(&world, b"m"), Some(br#""Mmigrated""#.to_vec()));

    // A migration that traps fails the proposal and changes nothing.
    let (tx, _) = propose(
        &mut world.chain,
        &org_a,
        Action::Contracts(ContractsAction::UpgradeContract {
            contract: world.contract,
            code_hash: sha256(&probe()),
            msg: r#""t""#.into(),
        }),
    );
    assert_eq!(approve(&mut world.chain, &org_b, tx.id()), "committed");
    match motion_status(&world.chain, &tx.id()) {
        Enactment::Failed { code, .. } => assert_eq!(code, "contract_trap"),
        other => panic!("{other:?}"),
    }
    let info = contract(&snapshot(&world.chain), &world.contract)
        .expect("read")
        .expect("deployed");
    assert_eq!(info.version, 2);

    let (tx, _) = propose(
        &mut world.chain,
        &org_a,
        Action::Contracts(ContractsAction::FreezeContract {
            contract: world.contract,
        }),
    );
    assert_eq!(approve(&mut world.chain, &org_b, tx.id()), "committed");
    assert_eq!(execute(&mut world, r#""w""#), "contract_frozen");
    // A frozen contract still answers queries.
    let answer = query_contract(&snapshot(&world.chain), &world.contract, r#""r""#)
        .expect("state")
        .expect("known");
    assert_eq!(answer.end, runtime::End::Done);
    let (tx, _) = propose(
        &mut world.chain,
        &org_b,
        Action::Contracts(ContractsAction::UnfreezeContract {
            contract: world.contract,
        }),
    );
    assert_eq!(approve(&mut world.chain, &org_a, tx.id()), "committed");
    assert_eq!(execute(&mut world, r#""w""#), "committed");
}

#[test]
fn a_failed_deployment_is_recorded_and_deploys_nothing() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    upload(&mut chain, &org_a, &probe());
    let (tx, _) = propose(
        &mut chain,
        &org_a,
        Action::Contracts(ContractsAction::DeployContract {
            code_hash: sha256(&probe()),
            label: "probe".into(),
            msg: r#""l""#.into(),
        }),
    );
    assert_eq!(approve(&mut chain, &org_b, tx.id()), "committed");
    match motion_status(&chain, &tx.id()) {
        Enactment::Failed { code, .. } => assert_eq!(code, "contract_out_of_fuel"),
        other => panic!("{other:?}"),
    }
    assert!(
        contract(&snapshot(&chain), &address_of(&tx.id()))
            .expect("read")
            .is_none()
    );
    assert!(list(&snapshot(&chain), 0, 10).expect("list").is_empty());
    // A closed proposal takes no more approvals.
    assert_eq!(approve(&mut chain, &org_a, tx.id()), "proposal_closed");
}

#[test]
fn the_blocks_fuel_budget_counts_failed_calls_too() {
    let mut world = world();
    let (org_a, org_b) = (world.chain.org_a.clone(), world.chain.org_b.clone());
    let (tx, _) = propose(
        &mut world.chain,
        &org_a,
        Action::Core(CoreAction::SetParameter {
            name: CALL_FUEL_MAX.name.into(),
            value: 100_000,
        }),
    );
    approve(&mut world.chain, &org_b, tx.id());
    let (tx, _) = propose(
        &mut world.chain,
        &org_a,
        Action::Core(CoreAction::SetParameter {
            name: BLOCK_FUEL_MAX.name.into(),
            value: 150_000,
        }),
    );
    approve(&mut world.chain, &org_b, tx.id());
    // Two calls that loop: the first burns 100,000, the second the 50,000 left; the third finds
    // the budget spent. A fresh block has a fresh budget.
    let bob = SecretKey::from_seed(702);
    let carol = SecretKey::from_seed(703);
    world.chain.enrol(&org_a, &bob, Role::Patient);
    world.chain.enrol(&org_a, &carol, Role::Patient);
    let call = |chain: &Chain, key: &SecretKey, msg: &str| {
        chain.tx(
            key,
            ContractsOp::ExecuteContract {
                contract: world.contract,
                msg: msg.into(),
            },
        )
    };
    let txs = [
        call(&world.chain, &world.alice, r#""l""#),
        call(&world.chain, &bob, r#""l""#),
        call(&world.chain, &carol, r#""w""#),
    ];
    let (outcomes, _) = world.chain.block(&txs).expect("valid");
    let codes: Vec<&str> = outcomes.iter().map(rejected).collect();
    assert_eq!(
        codes,
        [
            "contract_out_of_fuel",
            "contract_out_of_fuel",
            "block_fuel_spent"
        ]
    );
    let spent: BlockFuel = medledger_module::read(&snapshot(&world.chain), KEY_BLOCK_FUEL)
        .expect("read")
        .expect("kept");
    assert_eq!(spent.used, 150_000);
    assert_eq!(execute(&mut world, r#""w""#), "committed");
}

#[test]
fn governance_admits_an_organisation_sets_parameters_and_refuses_bad_proposals() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let org_c = SecretKey::from_seed(300);
    let admit = |id: &str, key: &SecretKey| {
        Action::Core(CoreAction::AdmitOrganisation {
            id: id.into(),
            name: "Clinic C".into(),
            root_key: key.public_key(),
        })
    };
    let (tx, outcome) = propose(&mut chain, &org_a, admit("c", &org_c));
    assert_eq!(outcome, "committed");
    // Before admission, c's key acts for no one.
    let member = SecretKey::from_seed(301);
    let enrol = CoreOp::Enrol {
        member: member.public_key(),
        role: Role::Practitioner,
    };
    assert_eq!(
        medledger_ledger::authority(&snapshot(&chain), &org_c.public_key())
            .expect_err("unknown")
            .code(),
        "unknown_sender"
    );
    assert_eq!(approve(&mut chain, &org_a, tx.id()), "already_approved");
    assert_eq!(approve(&mut chain, &org_b, tx.id()), "committed");
    assert_eq!(
        medledger_module::organisations(&snapshot(&chain)).expect("read"),
        ["a", "b", "c"]
    );
    assert_eq!(run(&mut chain, &org_c, enrol), "committed");
    // Now two of three organisations are two thirds: c and a deploy without b.
    let (tx, _) = propose(
        &mut chain,
        &org_c,
        Action::Core(CoreAction::SetParameter {
            name: MEMORY_PAGES_MAX.name.into(),
            value: 4,
        }),
    );
    assert!(matches!(
        motion_status(&chain, &tx.id()),
        Enactment::Pending
    ));
    assert_eq!(approve(&mut chain, &org_a, tx.id()), "committed");
    assert_eq!(
        parameter_value(&snapshot(&chain), MEMORY_PAGES_MAX).expect("read"),
        4
    );

    for (action, code) in [
        (
            admit("c", &SecretKey::from_seed(302)),
            "organisation_exists",
        ),
        (admit("d", &org_c), "key_in_use"),
        (admit("d", &member), "key_in_use"),
        (
            admit("Not An Id", &SecretKey::from_seed(303)),
            "invalid_organisation",
        ),
        (
            Action::Core(CoreAction::SetParameter {
                name: "contracts.nothing".into(),
                value: 1,
            }),
            "unknown_parameter",
        ),
        (
            Action::Core(CoreAction::SetParameter {
                name: MEMORY_PAGES_MAX.name.into(),
                value: 100_000,
            }),
            "parameter_range",
        ),
    ] {
        assert_eq!(propose(&mut chain, &org_a, action).1, code);
    }
    // Only root keys govern; an unknown proposal cannot be approved; an expired one neither.
    assert_eq!(
        propose(&mut chain, &member, admit("e", &SecretKey::from_seed(304))).1,
        "not_an_organisation"
    );
    assert_eq!(approve(&mut chain, &org_a, Hash::ZERO), "unknown_proposal");
    // Open while block `expires_at` is decided, closed after it.
    let expires_at = chain.height + 2;
    let tx = chain.tx(
        &org_a,
        GovernanceOp::Propose {
            action: admit("f", &SecretKey::from_seed(305)),
            expires_at,
        },
    );
    assert_eq!(rejected(&chain.one(tx.clone())), "committed");
    chain.one(chain.tx(
        &org_a,
        CoreOp::Anchor {
            id: Hash::ZERO,
            commitment: Hash::ZERO,
        },
    ));
    assert_eq!(approve(&mut chain, &org_b, tx.id()), "proposal_expired");
    let past = chain.tx(
        &org_a,
        GovernanceOp::Propose {
            action: admit("g", &SecretKey::from_seed(306)),
            expires_at: chain.height,
        },
    );
    assert_eq!(rejected(&chain.one(past)), "bad_effective_height");
}

#[test]
fn a_validator_change_goes_through_the_same_proposals() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let validator = medledger_types::Validator {
        key: SecretKey::from_seed(2).public_key(),
        power: 1,
        org: "b".into(),
    };
    let effective_height = chain.height + 10;
    let tx = chain.tx(
        &org_b,
        GovernanceOp::Propose {
            action: Action::Core(CoreAction::ChangeValidators {
                change: ValidatorChange::Add(validator),
                effective_height,
            }),
            expires_at: effective_height,
        },
    );
    assert_eq!(rejected(&chain.one(tx.clone())), "committed");
    // It is stored as validator proposals always were, and approved by the general operation.
    assert!(matches!(
        any_proposal(&snapshot(&chain), &tx.id()).expect("read"),
        Some(AnyProposal::Validators(_))
    ));
    assert_eq!(approve(&mut chain, &org_a, tx.id()), "committed");
    match any_proposal(&snapshot(&chain), &tx.id()).expect("read") {
        Some(AnyProposal::Validators(proposal)) => assert!(matches!(
            proposal.status,
            medledger_ledger::governance::ProposalStatus::Scheduled { .. }
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replay_of_the_same_transactions_gives_the_same_roots() {
    // Two chains built alike run the same transactions: every root agrees, contracts included.
    fn replay() -> Vec<Hash> {
        let mut world = world();
        let mut roots = Vec::new();
        for msg in [r#""w1""#, r#""e""#, r#""l""#, r#""t""#, r#""w2""#, r#""d""#] {
            let tx = world.chain.tx(
                &world.alice,
                ContractsOp::ExecuteContract {
                    contract: world.contract,
                    msg: msg.into(),
                },
            );
            roots.push(world.chain.block(&[tx]).expect("valid").1);
        }
        roots
    }
    assert_eq!(replay(), replay());
}

#[test]
fn ranging_walks_every_key_through_the_index() {
    // Many keys through the ledger's index: what `next` walks is what was written, in order.
    let mut world = world();
    let mut view_keys: Vec<Vec<u8>> = vec![b"k".to_vec()];
    assert_eq!(execute(&mut world, r#""M1""#), "committed");
    view_keys.push(b"m".to_vec());
    view_keys.sort();
    let state = snapshot(&world.chain);
    let mut cursor = Vec::new();
    let mut seen = Vec::new();
    while let Some(key) = index::next(&state, &world.contract, &cursor).expect("read") {
        seen.push(key.clone());
        cursor = key;
    }
    assert_eq!(seen, view_keys);
    assert_eq!(execute(&mut world, r#""d""#), "committed");
    let state = snapshot(&world.chain);
    assert_eq!(
        index::next(&state, &world.contract, b"").expect("read"),
        Some(b"m".to_vec())
    );
    let _ = state.get(b"chain/head");
}

fn relay() -> Vec<u8> {
    wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/relay.wat")).expect("wat")
}

/// Deploys `code` (stored already, or stored now) by both organisations; answers its address.
fn deploy(chain: &mut Chain, code: &[u8], label: &str) -> Hash {
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    if code_info(&snapshot(chain), &sha256(code))
        .expect("read")
        .is_none()
    {
        assert_eq!(upload(chain, &org_a, code), "committed");
    }
    let (tx, outcome) = propose(
        chain,
        &org_a,
        Action::Contracts(ContractsAction::DeployContract {
            code_hash: sha256(code),
            label: label.into(),
            msg: r#""winit""#.into(),
        }),
    );
    assert_eq!(outcome, "committed");
    assert_eq!(approve(chain, &org_b, tx.id()), "committed");
    address_of(&tx.id())
}

fn call_msg(contract: &Hash, msg: serde_json::Value) -> String {
    serde_json::json!({ "contract": contract.to_string(), "msg": msg }).to_string()
}

#[test]
fn a_contract_calls_another_whose_writes_stand_only_with_its_callers() {
    let mut world = world();
    let probe_address = world.contract;
    let relay_a = deploy(&mut world.chain, &relay(), "relay-a");
    let alice = world.alice.clone();
    let execute = |chain: &mut Chain, contract: Hash, msg: String| {
        let tx = chain.tx(&alice, ContractsOp::ExecuteContract { contract, msg });
        let outcome = rejected(&chain.one(tx.clone())).to_string();
        let answer = call_record(&snapshot(chain), &tx.id())
            .expect("read")
            .map(|record| record.result);
        (outcome, answer)
    };

    // The relay calls the probe, which writes its own key and emits an event attributed to it.
    let (outcome, answer) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&probe_address, serde_json::json!("w-via-relay")),
    );
    assert_eq!(outcome, "committed");
    assert_eq!(answer.as_deref(), Some(r#"{"ok":""}"#));
    assert_eq!(stored(&world, b"k"), Some(br#""w-via-relay""#.to_vec()));
    let (_, _) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&probe_address, serde_json::json!("e")),
    );
    let events = events_of(&snapshot(&world.chain), &probe_address, 0, 10).expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].contract, probe_address);
    // The callee's environment names the calling contract.
    let (_, answer) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&probe_address, serde_json::json!("v")),
    );
    let envelope: serde_json::Value = serde_json::from_str(&answer.expect("answer")).expect("json");
    assert_eq!(envelope["ok"]["caller"]["role"], "contract");
    assert_eq!(envelope["ok"]["caller"]["key"], relay_a.to_string());

    // A callee's refusal is the caller's to handle: the caller ends well, the callee wrote nothing.
    let (outcome, answer) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&probe_address, serde_json::json!("x")),
    );
    assert_eq!(outcome, "committed");
    assert_eq!(answer.as_deref(), Some(r#"{"refused":"denied"}"#));
    // A callee's fault is the caller's: the whole call leaves nothing, the callee's write included.
    let (outcome, _) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&probe_address, serde_json::json!("g")),
    );
    assert_eq!(outcome, "contract_trap");
    assert_eq!(stored(&world, b"k"), Some(br#""w-via-relay""#.to_vec()));

    // No re-entrancy: a contract already running cannot be called again.
    let (outcome, _) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&relay_a, serde_json::json!({})),
    );
    assert_eq!(outcome, "contract_limit");
    // Four contracts deep is the bound: a -> b -> c -> d answers, a -> b -> c -> d -> e does not.
    let relay_b = deploy(&mut world.chain, &relay(), "relay-b");
    let relay_c = deploy(&mut world.chain, &relay(), "relay-c");
    let relay_d = deploy(&mut world.chain, &relay(), "relay-d");
    let nest = |path: &[Hash], last: serde_json::Value| {
        path.iter().rev().fold(
            last,
            |msg, contract| serde_json::json!({ "contract": contract.to_string(), "msg": msg }),
        )
    };
    let three = nest(&[relay_b, relay_c, probe_address], serde_json::json!("r"));
    let (outcome, answer) = execute(&mut world.chain, relay_a, three.to_string());
    assert_eq!(outcome, "committed", "{answer:?}");
    let four = nest(
        &[relay_b, relay_c, relay_d, probe_address],
        serde_json::json!("r"),
    );
    let (outcome, _) = execute(&mut world.chain, relay_a, four.to_string());
    assert_eq!(outcome, "contract_limit");
    // A call of no contract is refused to the caller, which may go on.
    let (outcome, answer) = execute(
        &mut world.chain,
        relay_a,
        call_msg(&Hash::ZERO, serde_json::json!({})),
    );
    assert_eq!(outcome, "committed");
    assert!(answer.expect("answer").contains("refused"));
}

#[test]
fn a_contract_pays_out_of_its_own_account_through_the_token_modules_checks() {
    use medledger_tokens::{Amount, ClassSpec, TokensOp};
    let mut world = world();
    let (org_a, org_b) = (world.chain.org_a.clone(), world.chain.org_b.clone());
    let relay_a = deploy(&mut world.chain, &relay(), "relay-a");
    let account = account_of(&relay_a);
    let spec = ClassSpec {
        symbol: "USD".into(),
        name: "Dollar".into(),
        decimals: 2,
        issuers: vec!["a".into()],
    };
    assert_eq!(
        run(&mut world.chain, &org_a, TokensOp::ProposeClass { spec }),
        "committed"
    );
    assert_eq!(
        run(
            &mut world.chain,
            &org_b,
            TokensOp::ApproveClass {
                symbol: "USD".into()
            }
        ),
        "committed"
    );
    // The issuer funds the contract's account: a contract's address is an account.
    let mint = TokensOp::Mint {
        symbol: "USD".into(),
        to: account,
        amount: Amount(1_000),
        reference: None,
    };
    assert_eq!(run(&mut world.chain, &org_a, mint), "committed");
    let balance = |chain: &Chain, key: &medledger_crypto::PublicKey| {
        medledger_tokens::balance(&snapshot(chain), "USD", key).expect("read")
    };
    assert_eq!(balance(&world.chain, &account), 1_000);
    let alice = world.alice.clone();
    // The relay reads a transfer from a message that begins with its symbol.
    let pay = |to: &medledger_crypto::PublicKey, amount: &str| {
        format!(r#"{{"symbol":"USD","to":"{to}","amount":"{amount}"}}"#)
    };
    let outcome = run(
        &mut world.chain,
        &alice,
        ContractsOp::ExecuteContract {
            contract: relay_a,
            msg: pay(&alice.public_key(), "400"),
        },
    );
    assert_eq!(outcome, "committed");
    assert_eq!(balance(&world.chain, &account), 600);
    assert_eq!(balance(&world.chain, &alice.public_key()), 400);
    // The token module's checks: more than the contract holds, or to no account, is refused, and
    // the whole call with it.
    for (msg, code) in [
        (pay(&alice.public_key(), "601"), "insufficient_balance"),
        (
            pay(&SecretKey::from_seed(999).public_key(), "1"),
            "unknown_account",
        ),
        (
            r#"{"symbol":"USD","to":"00","amount":"1"}"#.to_string(),
            "contract_limit",
        ),
    ] {
        let outcome = run(
            &mut world.chain,
            &alice,
            ContractsOp::ExecuteContract {
                contract: relay_a,
                msg,
            },
        );
        assert_eq!(outcome, code);
        assert_eq!(balance(&world.chain, &account), 600);
    }
    // Nobody spends a contract's account by signing: it is no one's key, so no transaction of it
    // passes authentication.
    assert_eq!(
        medledger_ledger::authority(&snapshot(&world.chain), &account)
            .expect_err("no one")
            .code(),
        "unknown_sender"
    );
    // A query may not pay.
    let answer = query_contract(
        &snapshot(&world.chain),
        &relay_a,
        &pay(&alice.public_key(), "1"),
    )
    .expect("state")
    .expect("known");
    assert_eq!(
        answer.end,
        runtime::End::Fault(runtime::Fault::WriteInQuery)
    );
}

#[test]
fn chain_queries_answer_what_is_on_chain_through_the_modules_rules() {
    use medledger_records::{
        ConsentGrant, Grantee, Provision, ProvisionKind, Purpose, RecordWrite, RecordsOp,
    };
    let mut world = world();
    let org_a = world.chain.org_a.clone();
    let (doctor, patient) = (SecretKey::from_seed(710), SecretKey::from_seed(711));
    world.chain.enrol(&org_a, &doctor, Role::Practitioner);
    world.chain.enrol(&org_a, &patient, Role::Patient);
    let (patient_id, record) = (Hash([60; 32]), Hash([61; 32]));
    let put = RecordsOp::PutRecords {
        records: vec![RecordWrite {
            record,
            patient: patient_id,
            resource_type: "Observation".into(),
            category: None,
            version: 1,
            commitment: Hash([1; 32]),
            author: doctor.public_key(),
        }],
    };
    assert_eq!(run(&mut world.chain, &org_a, put), "committed");
    let bind = RecordsOp::BindPatient {
        patient: patient_id,
        key: patient.public_key(),
    };
    assert_eq!(run(&mut world.chain, &org_a, bind), "committed");
    let ask = |chain: &Chain, request: serde_json::Value| -> serde_json::Value {
        let answer =
            query::answer(&snapshot(chain), request.to_string().as_bytes(), 5_000).expect("state");
        serde_json::from_slice(&answer).expect("json")
    };
    let consent = serde_json::json!({"consent": {"record": record.to_string(),
        "reader": doctor.public_key().to_string(), "purpose": "TREAT"}});
    assert_eq!(ask(&world.chain, consent.clone())["decision"], "no_consent");
    let grant = RecordsOp::GrantConsent {
        grant: ConsentGrant {
            patient: patient.public_key(),
            provisions: vec![Provision {
                kind: ProvisionKind::Permit,
                actors: vec![Grantee::Organisation("a".into())],
                scope: vec![],
                purposes: vec![Purpose::Treat],
            }],
            start_ms: 0,
            end_ms: None,
        },
    };
    assert_eq!(run(&mut world.chain, &patient, grant), "committed");
    assert_eq!(ask(&world.chain, consent)["decision"], "permit");
    // Another purpose is not permitted; an unknown record or reader is an error answer.
    let research = serde_json::json!({"consent": {"record": record.to_string(),
        "reader": doctor.public_key().to_string(), "purpose": "HRESCH"}});
    assert_eq!(ask(&world.chain, research)["decision"], "no_consent");
    let unknown = serde_json::json!({"consent": {"record": Hash::ZERO.to_string(),
        "reader": doctor.public_key().to_string(), "purpose": "TREAT"}});
    assert!(ask(&world.chain, unknown)["error"].is_string());

    let member = serde_json::json!({"member": {"key": doctor.public_key().to_string()}});
    let answer = ask(&world.chain, member);
    assert_eq!(
        (answer["org"].as_str(), answer["role"].as_str()),
        (Some("a"), Some("practitioner"))
    );
    let unit = serde_json::json!({"unit": {"gtin": "00614141000012", "serial": "1"}});
    assert_eq!(ask(&world.chain, unit)["found"], false);
    let organisation = serde_json::json!({"organisation": {"id": "b"}});
    assert_eq!(ask(&world.chain, organisation)["exists"], true);
    for malformed in [
        serde_json::json!({"secrets": {}}),
        serde_json::json!({"unit": {"gtin": "123", "serial": "1"}}),
        serde_json::json!({"member": {"key": "zz"}}),
    ] {
        assert!(
            ask(&world.chain, malformed.clone())["error"].is_string(),
            "{malformed}"
        );
    }
}
