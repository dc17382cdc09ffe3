//! Tests of the identity rules and of block execution, run on an in-memory tree.

use medledger_crypto::{Hash, SecretKey};
use medledger_state::Snapshot;
use medledger_types::{Outcome, Role, Validator};

use crate::testkit::{Chain, rejected};

use super::*;

fn anchor(n: u8) -> CoreOp {
    CoreOp::Anchor {
        id: Hash([n; 32]),
        commitment: Hash([n + 1; 32]),
    }
}

#[test]
fn an_enrolled_member_may_transact_and_an_unknown_key_may_not() {
    let mut chain = Chain::new();
    let alice = SecretKey::from_seed(1);
    let stranger = SecretKey::from_seed(2);
    assert_eq!(
        chain.enrol(&chain.org_a.clone(), &alice, Role::Practitioner),
        Outcome::Committed
    );
    let tx = chain.tx(&alice, anchor(1));
    assert_eq!(chain.one(tx), Outcome::Committed);
    assert!(chain.get(&key_anchor(&Hash([1; 32]))).is_some());

    let tx = chain.tx(&stranger, anchor(2));
    let error = chain
        .block(&[tx])
        .expect_err("a stranger's transaction invalidates the block");
    assert!(
        matches!(
            error,
            BlockError::InvalidTx {
                error: TxError::UnknownSender(_),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_revoked_member_can_no_longer_transact_or_be_enrolled_again() {
    let mut chain = Chain::new();
    let org = chain.org_a.clone();
    let alice = SecretKey::from_seed(1);
    chain.enrol(&org, &alice, Role::Patient);
    let tx = chain.tx(
        &org,
        CoreOp::Revoke {
            member: alice.public_key(),
        },
    );
    assert_eq!(chain.one(tx), Outcome::Committed);
    let tx = chain.tx(&alice, anchor(1));
    let error = chain.block(&[tx]).expect_err("revoked");
    assert!(
        matches!(
            error,
            BlockError::InvalidTx {
                error: TxError::RevokedSender { height: 2, .. },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        rejected(&chain.enrol(&org, &alice, Role::Patient)),
        "key_revoked"
    );
    let tx = chain.tx(
        &org,
        CoreOp::Revoke {
            member: alice.public_key(),
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "already_revoked");
}

#[test]
fn authentication_failures_name_their_cause() {
    let mut chain = Chain::new();
    let org = chain.org_a.clone();
    let first = chain.tx(&org, anchor(1));
    assert_eq!(chain.one(first.clone()), Outcome::Committed);

    let check = |chain: &mut Chain, tx: Tx, expected: &str| {
        let error = chain.block(&[tx]).expect_err("invalid");
        let BlockError::InvalidTx { error, .. } = error else {
            panic!("unexpected {error}")
        };
        assert_eq!(error.code(), expected, "{error}");
    };
    // The same transaction again: its nonce is used.
    check(&mut chain, first, "nonce_used");
    // A nonce from the future.
    let mut gap = chain.tx(&org, anchor(2)).body;
    gap.nonce += 1;
    check(&mut chain, gap.sign(&org), "nonce_gap");
    // Another chain's transaction.
    let mut foreign = chain.tx(&org, anchor(3)).body;
    foreign.chain_id = "other".into();
    check(&mut chain, foreign.sign(&org), "wrong_chain");
    // Nothing of the refused blocks reached the state.
    assert!(chain.get(&key_anchor(&Hash([2; 32]))).is_none());
    assert_eq!(chain.height, 1);
}

#[test]
fn a_refused_payload_uses_its_nonce_and_leaves_no_other_trace() {
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let alice = SecretKey::from_seed(1);
    let bob = SecretKey::from_seed(2);
    chain.enrol(&org_a, &alice, Role::Practitioner);

    // A member is not an organisation: it cannot enrol anyone.
    let tx = chain.tx(
        &alice,
        CoreOp::Enrol {
            member: bob.public_key(),
            role: Role::Patient,
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "not_an_organisation");
    assert!(chain.get(&key_member(&bob.public_key())).is_none());
    assert_eq!(
        next_nonce(
            &Snapshot {
                reader: &chain.tree,
                version: Some(chain.height)
            },
            &alice.public_key()
        )
        .expect("nonce"),
        2
    );

    // Organisation b cannot revoke a's member.
    let tx = chain.tx(
        &org_b,
        CoreOp::Revoke {
            member: alice.public_key(),
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "not_your_member");
    // Nor enrol a key twice, nor enrol an organisation's root key.
    assert_eq!(
        rejected(&chain.enrol(&org_b, &alice, Role::Patient)),
        "already_enrolled"
    );
    assert_eq!(
        rejected(&chain.enrol(&org_b, &org_a, Role::Patient)),
        "key_is_organisation"
    );
    let tx = chain.tx(
        &org_b,
        CoreOp::Revoke {
            member: bob.public_key(),
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "not_a_member");

    // An anchor is written once; the first stays.
    let tx = chain.tx(&alice, anchor(7));
    assert_eq!(chain.one(tx), Outcome::Committed);
    let tx = chain.tx(
        &org_b,
        CoreOp::Anchor {
            id: Hash([7; 32]),
            commitment: Hash([0; 32]),
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "anchor_exists");
    let stored = chain.get(&key_anchor(&Hash([7; 32]))).expect("anchor");
    let record: AnchorRecord = medledger_state::decode_value(b"anchor", &stored).expect("decodes");
    assert_eq!(
        (record.owner, record.commitment),
        (alice.public_key(), Hash([8; 32]))
    );
}

#[test]
fn an_invalid_key_is_refused_at_enrolment() {
    let mut chain = Chain::new();
    let org = chain.org_a.clone();
    let mut bytes = [0u8; 32];
    bytes[0] = 2; // not a curve point
    let tx = chain.tx(
        &org,
        CoreOp::Enrol {
            member: medledger_crypto::PublicKey(bytes),
            role: Role::Device,
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "invalid_key");
}

#[test]
fn the_same_blocks_give_the_same_root_on_every_replay() {
    let run = || {
        let mut chain = Chain::new();
        let org = chain.org_a.clone();
        let members: Vec<SecretKey> = (10..20).map(SecretKey::from_seed).collect();
        let enrolments: Vec<Tx> = members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                TxBody {
                    chain_id: "test".into(),
                    sender: org.public_key(),
                    nonce: i as u64 + 1,
                    payload: CoreOp::Enrol {
                        member: member.public_key(),
                        role: Role::Device,
                    }
                    .into(),
                }
                .sign(&org)
            })
            .collect();
        chain.block(&enrolments).expect("valid");
        let anchors: Vec<Tx> = members
            .iter()
            .enumerate()
            .map(|(i, member)| chain.tx(member, anchor(i as u8)))
            .collect();
        chain.block(&anchors).expect("valid").1
    };
    assert_eq!(run(), run());
}

/// Each broken link between a header and its parent is named; a well-linked header passes.
#[test]
fn header_links_are_checked_one_by_one() {
    let validators = ValidatorSet::new(vec![Validator {
        key: SecretKey::from_seed(9).public_key(),
        power: 1,
        org: "org".into(),
    }])
    .expect("valid set");
    let parent = ParentLink {
        height: 4,
        hash: medledger_crypto::sha256(b"parent"),
        time_ms: 1_000,
        certificate_hash: medledger_crypto::sha256(b"certificate"),
    };
    let good = medledger_types::Header {
        chain_id: "chain".into(),
        height: 5,
        time_ms: 1_001,
        prev_hash: parent.hash,
        last_commit_hash: parent.certificate_hash,
        txs_root: Hash::ZERO,
        receipts_root: Hash::ZERO,
        state_root: Hash::ZERO,
        validators_hash: validators.hash(),
        proposer: SecretKey::from_seed(9).public_key(),
    };
    let check = |header: &medledger_types::Header, expected: Option<&str>| {
        let got = check_header(header, "chain", &parent, &validators);
        match expected {
            None => assert_eq!(got, Ok(())),
            Some(fragment) => {
                let error = got.expect_err("the broken link is refused");
                assert!(error.contains(fragment), "{error} lacks {fragment}");
            }
        }
    };
    check(&good, None);
    check(
        &medledger_types::Header {
            height: 6,
            ..good.clone()
        },
        Some("height"),
    );
    check(
        &medledger_types::Header {
            chain_id: "other".into(),
            ..good.clone()
        },
        Some("chain"),
    );
    check(
        &medledger_types::Header {
            prev_hash: Hash::ZERO,
            ..good.clone()
        },
        Some("previous hash"),
    );
    check(
        &medledger_types::Header {
            last_commit_hash: Hash::ZERO,
            ..good.clone()
        },
        Some("certificate"),
    );
    check(
        &medledger_types::Header {
            time_ms: 1_000,
            ..good.clone()
        },
        Some("time"),
    );
    check(
        &medledger_types::Header {
            validators_hash: Hash::ZERO,
            ..good.clone()
        },
        Some("validator set"),
    );
}

fn current_validators(chain: &Chain) -> ValidatorSet {
    validators(&Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    })
    .expect("validator set")
}

fn proposal_status(chain: &Chain, id: &Hash) -> governance::ProposalStatus {
    governance::proposal(
        &Snapshot {
            reader: &chain.tree,
            version: Some(chain.height),
        },
        id,
    )
    .expect("read")
    .expect("proposal exists")
    .status
}

/// A validator added by proposal joins the set exactly at its effective height, and only once
/// two thirds of the organisations have approved; the change is recorded for light clients.
#[test]
fn an_approved_validator_change_takes_effect_at_its_height() {
    let mut chain = Chain::new();
    let newcomer = SecretKey::from_seed(42).public_key();
    let add = CoreOp::ProposeValidatorChange {
        change: medledger_types::ValidatorChange::Add(Validator {
            key: newcomer,
            power: 1,
            org: "b".into(),
        }),
        effective_height: 4,
    };
    let propose = chain.tx(&chain.org_a.clone(), add);
    let id = propose.id();
    assert_eq!(chain.one(propose), Outcome::Committed);
    // One of two organisations is not two thirds: still pending, set unchanged.
    assert_eq!(
        proposal_status(&chain, &id),
        governance::ProposalStatus::Pending
    );
    let approve = chain.tx(
        &chain.org_b.clone(),
        CoreOp::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(chain.one(approve), Outcome::Committed);
    assert_eq!(
        proposal_status(&chain, &id),
        governance::ProposalStatus::Scheduled { approved_at: 2 }
    );
    assert!(current_validators(&chain).get(&newcomer).is_none());
    // Block 3 closes: the set for height 4 (the state after block 3) has the newcomer.
    chain.block(&[]).expect("block 3");
    let set = current_validators(&chain);
    assert!(set.get(&newcomer).is_some());
    assert_eq!(set.validators.len(), 2);
    assert_eq!(
        proposal_status(&chain, &id),
        governance::ProposalStatus::Applied
    );
    let changes = governance::validator_changes(&Snapshot {
        reader: &chain.tree,
        version: Some(chain.height),
    })
    .expect("changes");
    assert_eq!(changes, vec![3]);

    // Removing it again works the same way; removing the last validator cannot even be proposed.
    let remove = chain.tx(
        &chain.org_b.clone(),
        CoreOp::ProposeValidatorChange {
            change: medledger_types::ValidatorChange::Remove { key: newcomer },
            effective_height: 10,
        },
    );
    let remove_id = remove.id();
    assert_eq!(chain.one(remove), Outcome::Committed);
    let approve = chain.tx(
        &chain.org_a.clone(),
        CoreOp::ApproveValidatorChange {
            proposal: remove_id,
        },
    );
    assert_eq!(chain.one(approve), Outcome::Committed);
    while chain.height < 9 {
        chain.block(&[]).expect("empty block");
    }
    assert!(current_validators(&chain).get(&newcomer).is_none());
    let last = current_validators(&chain).validators[0].key;
    let empty_set = chain.tx(
        &chain.org_a.clone(),
        CoreOp::ProposeValidatorChange {
            change: medledger_types::ValidatorChange::Remove { key: last },
            effective_height: 20,
        },
    );
    assert_eq!(rejected(&chain.one(empty_set)), "invalid_validator_set");
}

/// Each way a governance transaction can be wrong is refused with its own code, and leaves the
/// validator set alone.
#[test]
fn bad_governance_transactions_are_refused_by_cause() {
    let mut chain = Chain::new();
    let member = SecretKey::from_seed(7);
    assert_eq!(
        chain.enrol(&chain.org_a.clone(), &member, Role::Practitioner),
        Outcome::Committed
    );
    let existing = current_validators(&chain).validators[0].clone();
    let add = |key: u64, org: &str, effective_height: u64| CoreOp::ProposeValidatorChange {
        change: medledger_types::ValidatorChange::Add(Validator {
            key: SecretKey::from_seed(key).public_key(),
            power: 1,
            org: org.into(),
        }),
        effective_height,
    };
    let before = current_validators(&chain);
    let cases: Vec<(SecretKey, CoreOp, &str)> = vec![
        (member.clone(), add(50, "a", 10), "not_an_organisation"),
        (
            chain.org_a.clone(),
            add(50, "nobody", 10),
            "unknown_organisation",
        ),
        (chain.org_a.clone(), add(50, "a", 1), "bad_effective_height"),
        (
            chain.org_a.clone(),
            add(50, "a", u64::MAX),
            "bad_effective_height",
        ),
        (
            chain.org_a.clone(),
            CoreOp::ProposeValidatorChange {
                change: medledger_types::ValidatorChange::Add(existing.clone()),
                effective_height: 10,
            },
            "already_validator",
        ),
        (
            chain.org_a.clone(),
            CoreOp::ProposeValidatorChange {
                change: medledger_types::ValidatorChange::Remove {
                    key: SecretKey::from_seed(51).public_key(),
                },
                effective_height: 10,
            },
            "not_a_validator",
        ),
        (
            chain.org_a.clone(),
            CoreOp::ApproveValidatorChange {
                proposal: Hash::ZERO,
            },
            "unknown_proposal",
        ),
    ];
    for (key, payload, code) in cases {
        let tx = chain.tx(&key, payload.clone());
        assert_eq!(rejected(&chain.one(tx)), code, "{payload:?}");
    }

    // Approving twice, approving a closed proposal, and approving after the effective height.
    let propose = chain.tx(&chain.org_a.clone(), add(60, "a", chain.height + 3));
    let id = propose.id();
    assert_eq!(chain.one(propose), Outcome::Committed);
    let again = chain.tx(
        &chain.org_a.clone(),
        CoreOp::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(rejected(&chain.one(again)), "already_approved");
    chain.block(&[]).expect("block");
    chain.block(&[]).expect("block");
    let late = chain.tx(
        &chain.org_b.clone(),
        CoreOp::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(rejected(&chain.one(late)), "proposal_expired");
    assert_eq!(current_validators(&chain), before);

    let propose = chain.tx(&chain.org_a.clone(), add(61, "a", chain.height + 5));
    let id = propose.id();
    assert_eq!(chain.one(propose), Outcome::Committed);
    let approve = chain.tx(
        &chain.org_b.clone(),
        CoreOp::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(chain.one(approve), Outcome::Committed);
    let closed = chain.tx(
        &chain.org_b.clone(),
        CoreOp::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(rejected(&chain.one(closed)), "proposal_closed");
}

/// Two thirds of the organisations, rounded up, approve a change.
#[test]
fn approval_needs_two_thirds_of_the_organisations() {
    let check = |approvals, organisations, expected| {
        assert_eq!(
            governance::is_approved(approvals, organisations),
            expected,
            "{approvals} of {organisations}"
        );
    };
    check(1, 1, true);
    check(1, 2, false);
    check(2, 2, true);
    check(2, 3, true);
    check(1, 3, false);
    check(2, 4, false);
    check(3, 4, true);
    check(3, 5, false);
    check(4, 5, true);
    check(4, 7, false);
    check(5, 7, true);
}
