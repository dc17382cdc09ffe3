//! Tests of the identity rules and of block execution, run on an in-memory tree.

use medledger_crypto::{Hash, SecretKey};
use medledger_state::{MemoryTree, Overlay, Snapshot, StateRead, apply_writes};
use medledger_types::{Genesis, Organisation, Outcome, Payload, Role, Tx, TxBody, Validator};

use super::*;

mod supply;

/// A chain in memory with two organisations, `a` and `b`.
struct Chain {
    tree: MemoryTree,
    height: u64,
    /// Added to every block's time, for modules that care about the calendar.
    time_base_ms: u64,
    org_a: SecretKey,
    org_b: SecretKey,
}

impl Chain {
    fn new() -> Chain {
        let (org_a, org_b) = (SecretKey::from_seed(100), SecretKey::from_seed(200));
        let genesis = Genesis {
            chain_id: "test".into(),
            genesis_time_ms: 1_000,
            organisations: vec![
                Organisation {
                    id: "a".into(),
                    name: "A".into(),
                    root_key: org_a.public_key(),
                    // GS1's example company prefix: the supply tests' keys are under it.
                    gs1_prefixes: vec!["0614141".into()],
                },
                Organisation {
                    id: "b".into(),
                    name: "B".into(),
                    root_key: org_b.public_key(),
                    gs1_prefixes: vec!["9520011".into()],
                },
            ],
            validators: vec![Validator {
                key: SecretKey::from_seed(1).public_key(),
                power: 1,
                org: "a".into(),
            }],
        };
        let mut tree = MemoryTree::default();
        let empty = MemoryTree::default();
        let base = Snapshot {
            reader: &empty,
            version: None,
        };
        let mut overlay = Overlay::new(&base);
        apply_genesis(&genesis, &mut overlay).expect("genesis applies");
        let (_, batch) = apply_writes(&tree, 0, &overlay.into_writes()).expect("tree");
        tree.apply(batch);
        Chain {
            tree,
            height: 0,
            time_base_ms: 0,
            org_a,
            org_b,
        }
    }

    fn tx(&self, key: &SecretKey, payload: Payload) -> Tx {
        let state = Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        };
        let nonce = next_nonce(&state, &key.public_key()).expect("nonce");
        TxBody {
            chain_id: "test".into(),
            sender: key.public_key(),
            nonce,
            payload,
        }
        .sign(key)
    }

    /// Executes one block; commits it only if it is valid.
    fn block(&mut self, txs: &[Tx]) -> Result<(Vec<Outcome>, Hash), BlockError> {
        let height = self.height + 1;
        let ctx = BlockContext {
            chain_id: "test".into(),
            height,
            time_ms: self.time_base_ms + 1_000 + height,
            proposer: self.org_a.public_key(),
        };
        let base = Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        };
        let mut overlay = Overlay::new(&base);
        let execution = execute_block(&mut overlay, &ctx, txs)?;
        let (root, batch) = apply_writes(&self.tree, height, &overlay.into_writes())?;
        self.tree.apply(batch);
        self.height = height;
        Ok((
            execution
                .receipts
                .into_iter()
                .map(|receipt| receipt.outcome)
                .collect(),
            root,
        ))
    }

    fn one(&mut self, tx: Tx) -> Outcome {
        self.block(&[tx]).expect("block is valid").0.remove(0)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        }
        .get(key)
        .expect("read")
    }

    fn enrol(&mut self, org: &SecretKey, member: &SecretKey, role: Role) -> Outcome {
        let tx = self.tx(
            org,
            Payload::Enrol {
                member: member.public_key(),
                role,
            },
        );
        self.one(tx)
    }
}

fn rejected(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Rejected { code, .. } => code,
        Outcome::Committed => "committed",
    }
}

fn anchor(n: u8) -> Payload {
    Payload::Anchor {
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
        Payload::Revoke {
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
        Payload::Revoke {
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
        Payload::Enrol {
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
        Payload::Revoke {
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
        Payload::Revoke {
            member: bob.public_key(),
        },
    );
    assert_eq!(rejected(&chain.one(tx)), "not_a_member");

    // An anchor is written once; the first stays.
    let tx = chain.tx(&alice, anchor(7));
    assert_eq!(chain.one(tx), Outcome::Committed);
    let tx = chain.tx(
        &org_b,
        Payload::Anchor {
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
        Payload::Enrol {
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
                    payload: Payload::Enrol {
                        member: member.public_key(),
                        role: Role::Device,
                    },
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
    let add = Payload::ProposeValidatorChange {
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
        Payload::ApproveValidatorChange { proposal: id },
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
        Payload::ProposeValidatorChange {
            change: medledger_types::ValidatorChange::Remove { key: newcomer },
            effective_height: 10,
        },
    );
    let remove_id = remove.id();
    assert_eq!(chain.one(remove), Outcome::Committed);
    let approve = chain.tx(
        &chain.org_a.clone(),
        Payload::ApproveValidatorChange {
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
        Payload::ProposeValidatorChange {
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
    let add = |key: u64, org: &str, effective_height: u64| Payload::ProposeValidatorChange {
        change: medledger_types::ValidatorChange::Add(Validator {
            key: SecretKey::from_seed(key).public_key(),
            power: 1,
            org: org.into(),
        }),
        effective_height,
    };
    let before = current_validators(&chain);
    let cases: Vec<(SecretKey, Payload, &str)> = vec![
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
            Payload::ProposeValidatorChange {
                change: medledger_types::ValidatorChange::Add(existing.clone()),
                effective_height: 10,
            },
            "already_validator",
        ),
        (
            chain.org_a.clone(),
            Payload::ProposeValidatorChange {
                change: medledger_types::ValidatorChange::Remove {
                    key: SecretKey::from_seed(51).public_key(),
                },
                effective_height: 10,
            },
            "not_a_validator",
        ),
        (
            chain.org_a.clone(),
            Payload::ApproveValidatorChange {
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
        Payload::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(rejected(&chain.one(again)), "already_approved");
    chain.block(&[]).expect("block");
    chain.block(&[]).expect("block");
    let late = chain.tx(
        &chain.org_b.clone(),
        Payload::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(rejected(&chain.one(late)), "proposal_expired");
    assert_eq!(current_validators(&chain), before);

    let propose = chain.tx(&chain.org_a.clone(), add(61, "a", chain.height + 5));
    let id = propose.id();
    assert_eq!(chain.one(propose), Outcome::Committed);
    let approve = chain.tx(
        &chain.org_b.clone(),
        Payload::ApproveValidatorChange { proposal: id },
    );
    assert_eq!(chain.one(approve), Outcome::Committed);
    let closed = chain.tx(
        &chain.org_b.clone(),
        Payload::ApproveValidatorChange { proposal: id },
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

/// Records, consent and access, on a chain where org `a`'s validator (seed 1) is the custodian.
mod records_module {
    use medledger_types::{
        AccessRequest, AccessRule, ConsentGrant, Grantee, Provision, ProvisionKind, Purpose,
        RecordWrite, Scope,
    };

    use super::*;
    use crate::records as module;

    struct Clinic {
        chain: Chain,
        node: SecretKey,
        patient: SecretKey,
        doctor: SecretKey,
        other_doctor: SecretKey,
        auditor: SecretKey,
        patient_id: Hash,
        lab: Hash,
        condition: Hash,
        requests: u8,
    }

    fn write(
        record: Hash,
        patient: Hash,
        kind: &str,
        category: Option<&str>,
        version: u32,
    ) -> RecordWrite {
        RecordWrite {
            record,
            patient,
            resource_type: kind.into(),
            category: category.map(str::to_string),
            version,
            commitment: Hash([version as u8; 32]),
            author: SecretKey::from_seed(1).public_key(),
        }
    }

    impl Clinic {
        fn new() -> Clinic {
            let mut chain = Chain::new();
            let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
            let patient = SecretKey::from_seed(10);
            let doctor = SecretKey::from_seed(11);
            let other_doctor = SecretKey::from_seed(12);
            let auditor = SecretKey::from_seed(13);
            chain.enrol(&org_a, &patient, Role::Patient);
            chain.enrol(&org_a, &doctor, Role::Practitioner);
            chain.enrol(&org_b, &other_doctor, Role::Practitioner);
            chain.enrol(&org_a, &auditor, Role::Auditor);
            let node = SecretKey::from_seed(1);
            let (patient_id, lab, condition) = (Hash([50; 32]), Hash([51; 32]), Hash([52; 32]));
            let tx = chain.tx(
                &node,
                Payload::PutRecords {
                    records: vec![
                        write(lab, patient_id, "Observation", Some("laboratory"), 1),
                        write(condition, patient_id, "Condition", None, 1),
                    ],
                },
            );
            assert_eq!(chain.one(tx), Outcome::Committed);
            let tx = chain.tx(
                &node,
                Payload::BindPatient {
                    patient: patient_id,
                    key: patient.public_key(),
                },
            );
            assert_eq!(chain.one(tx), Outcome::Committed);
            Clinic {
                chain,
                node,
                patient,
                doctor,
                other_doctor,
                auditor,
                patient_id,
                lab,
                condition,
                requests: 0,
            }
        }

        fn grant(
            &mut self,
            signer: &SecretKey,
            provisions: Vec<Provision>,
            end_ms: Option<u64>,
        ) -> (Outcome, Hash) {
            let tx = self.chain.tx(
                signer,
                Payload::GrantConsent {
                    grant: ConsentGrant {
                        patient: self.patient.public_key(),
                        provisions,
                        start_ms: 0,
                        end_ms,
                    },
                },
            );
            let id = tx.id();
            (self.chain.one(tx), id)
        }

        /// Records an access and returns its decisions (or the refusal code).
        fn access(
            &mut self,
            reader: &SecretKey,
            records: &[Hash],
            purpose: Purpose,
            break_glass: bool,
        ) -> Result<Vec<AccessRule>, String> {
            self.requests += 1;
            let tx = self.chain.tx(
                &self.node.clone(),
                Payload::RecordAccess {
                    access: AccessRequest {
                        request: Hash([self.requests; 32]),
                        reader: reader.public_key(),
                        patient: self.patient_id,
                        records: records.to_vec(),
                        purpose,
                        break_glass,
                    },
                },
            );
            match self.chain.one(tx) {
                Outcome::Committed => {}
                Outcome::Rejected { code, .. } => return Err(code),
            }
            let state = Snapshot {
                reader: &self.chain.tree,
                version: Some(self.chain.height),
            };
            let (patient, seq) = module::access_by_request(&state, &Hash([self.requests; 32]))
                .expect("read")
                .expect("recorded");
            let event = module::access_event(&state, &patient, seq)
                .expect("read")
                .expect("event");
            Ok(event.decisions.into_iter().map(|(_, rule)| rule).collect())
        }
    }

    fn permit(actors: Vec<Grantee>, scope: Vec<Scope>, purposes: Vec<Purpose>) -> Provision {
        Provision {
            kind: ProvisionKind::Permit,
            actors,
            scope,
            purposes,
        }
    }

    /// Consent decides each record by actor, scope and purpose: permits apply only where they
    /// match, deny provisions win over permits, break-glass is for practitioners reading for
    /// ETREAT, and with no grant nothing is allowed.
    #[test]
    fn consent_decides_by_actor_scope_and_purpose_and_deny_wins() {
        let mut clinic = Clinic::new();
        let (doctor, other, auditor, patient) = (
            clinic.doctor.clone(),
            clinic.other_doctor.clone(),
            clinic.auditor.clone(),
            clinic.patient.clone(),
        );
        let (lab, condition) = (clinic.lab, clinic.condition);
        let both = if lab < condition {
            vec![lab, condition]
        } else {
            vec![condition, lab]
        };
        let lab_first = both[0] == lab;
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::NoConsent])
        );
        let (outcome, observations) = clinic.grant(
            &patient,
            vec![permit(
                vec![Grantee::Key(doctor.public_key())],
                vec![Scope::ResourceType("Observation".into())],
                vec![Purpose::Treat],
            )],
            None,
        );
        assert_eq!(outcome, Outcome::Committed);
        let (outcome, org_b) = clinic.grant(
            &patient,
            vec![permit(
                vec![Grantee::Organisation("b".into())],
                vec![Scope::Category("laboratory".into())],
                vec![Purpose::Treat, Purpose::Research],
            )],
            None,
        );
        assert_eq!(outcome, Outcome::Committed);
        let decisions = clinic
            .access(&doctor, &both, Purpose::Treat, false)
            .expect("recorded");
        let (lab_rule, condition_rule) = if lab_first {
            (&decisions[0], &decisions[1])
        } else {
            (&decisions[1], &decisions[0])
        };
        assert_eq!(*lab_rule, AccessRule::Permit(observations));
        assert_eq!(*condition_rule, AccessRule::NoConsent);
        // The wrong purpose.
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Research, false),
            Ok(vec![AccessRule::NoConsent])
        );
        // An organisation grant by category.
        assert_eq!(
            clinic.access(&other, &[lab], Purpose::Research, false),
            Ok(vec![AccessRule::Permit(org_b)])
        );
        assert_eq!(
            clinic.access(&other, &[condition], Purpose::Treat, false),
            Ok(vec![AccessRule::NoConsent])
        );
        // A deny provision wins over both permits.
        let (outcome, deny) = clinic.grant(
            &patient,
            vec![Provision {
                kind: ProvisionKind::Deny,
                actors: vec![],
                scope: vec![Scope::Record(lab)],
                purposes: vec![Purpose::Research],
            }],
            None,
        );
        assert_eq!(outcome, Outcome::Committed);
        assert_eq!(
            clinic.access(&other, &[lab], Purpose::Research, false),
            Ok(vec![AccessRule::Deny(deny)])
        );
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::Permit(observations)])
        );
        // Break-glass: a practitioner for ETREAT, not an auditor, and not for another purpose.
        assert_eq!(
            clinic.access(&other, &[condition], Purpose::EmergencyTreat, true),
            Ok(vec![AccessRule::BreakGlass])
        );
        assert_eq!(
            clinic.access(&auditor, &[condition], Purpose::EmergencyTreat, true),
            Ok(vec![AccessRule::NoConsent])
        );
        assert_eq!(
            clinic.access(&other, &[condition], Purpose::Treat, true),
            Ok(vec![AccessRule::NoConsent])
        );
    }

    /// A revoked grant and an expired one (judged by block time) no longer permit anything, and
    /// a grant cannot be given already expired, revoked twice, or by anyone but the patient or
    /// a delegate they named.
    #[test]
    fn revoked_and_expired_grants_stop_permitting() {
        let mut clinic = Clinic::new();
        let (doctor, patient, other) = (
            clinic.doctor.clone(),
            clinic.patient.clone(),
            clinic.other_doctor.clone(),
        );
        let lab = clinic.lab;
        let everything = || {
            vec![permit(
                vec![Grantee::Role(Role::Practitioner)],
                vec![],
                vec![Purpose::Treat],
            )]
        };
        let (_, grant) = clinic.grant(&patient, everything(), None);
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::Permit(grant)])
        );
        let tx = clinic.chain.tx(&patient, Payload::RevokeConsent { grant });
        assert_eq!(clinic.chain.one(tx), Outcome::Committed);
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::NoConsent])
        );
        let tx = clinic.chain.tx(&patient, Payload::RevokeConsent { grant });
        assert_eq!(rejected(&clinic.chain.one(tx)), "grant_revoked");

        // Block times are 1000 + height: this grant ends two blocks from now.
        let end = 1_000 + clinic.chain.height + 3;
        let (outcome, short) = clinic.grant(&patient, everything(), Some(end));
        assert_eq!(outcome, Outcome::Committed);
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::Permit(short)])
        );
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Ok(vec![AccessRule::NoConsent])
        );
        let past = 1_000 + clinic.chain.height;
        let (outcome, _) = clinic.grant(&patient, everything(), Some(past));
        assert_eq!(rejected(&outcome), "grant_expired");

        let (outcome, _) = clinic.grant(&doctor, everything(), None);
        assert_eq!(rejected(&outcome), "not_the_patient");
        let tx = clinic.chain.tx(
            &patient,
            Payload::SetDelegate {
                delegate: other.public_key(),
                active: true,
            },
        );
        assert_eq!(clinic.chain.one(tx), Outcome::Committed);
        let (outcome, _) = clinic.grant(&other, everything(), None);
        assert_eq!(outcome, Outcome::Committed);
        let (outcome, _) = clinic.grant(&patient, vec![], None);
        assert_eq!(rejected(&outcome), "invalid_grant");
        let (outcome, _) = clinic.grant(
            &patient,
            vec![permit(vec![], vec![], vec![Purpose::Treat])],
            None,
        );
        assert_eq!(rejected(&outcome), "invalid_grant");
    }

    /// Bad access events and record writes are refused with their own codes and change nothing:
    /// a replayed request, an unenrolled reader, a stranger custodian, a version that skips, and
    /// anything after erasure except the audit of it.
    #[test]
    fn bad_writes_and_accesses_are_refused_and_erasure_denies_everything() {
        let mut clinic = Clinic::new();
        let doctor = clinic.doctor.clone();
        let (lab, patient_id) = (clinic.lab, clinic.patient_id);
        let stranger = SecretKey::from_seed(99);
        assert_eq!(
            clinic.access(&stranger, &[lab], Purpose::Treat, false),
            Err("reader_not_enrolled".into())
        );
        clinic
            .access(&doctor, &[lab], Purpose::Treat, false)
            .expect("recorded");
        clinic.requests -= 1;
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::Treat, false),
            Err("request_replayed".into())
        );
        assert_eq!(
            clinic.access(&doctor, &[Hash([77; 32])], Purpose::Treat, false),
            Err("unknown_record".into())
        );
        let org_b = clinic.chain.org_b.clone();
        let tx = clinic.chain.tx(
            &org_b,
            Payload::PutRecords {
                records: vec![write(lab, patient_id, "Observation", None, 2)],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "not_custodian");
        let node = clinic.node.clone();
        let tx = clinic.chain.tx(
            &node,
            Payload::PutRecords {
                records: vec![write(lab, patient_id, "Observation", None, 3)],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "version_conflict");
        let tx = clinic.chain.tx(
            &node,
            Payload::PutRecords {
                records: vec![write(
                    Hash([60; 32]),
                    patient_id,
                    "Observation",
                    Some("secret-diagnosis"),
                    1,
                )],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "invalid_record");
        // A practitioner acts only through the node: it may not sign record versions or access
        // events itself, and a version must name an author who writes for the custodian.
        let tx = clinic.chain.tx(
            &doctor,
            Payload::PutRecords {
                records: vec![write(lab, patient_id, "Observation", None, 2)],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "not_a_custodian");
        let tx = clinic.chain.tx(
            &doctor,
            Payload::RecordAccess {
                access: AccessRequest {
                    request: Hash([200; 32]),
                    reader: clinic.other_doctor.public_key(),
                    patient: patient_id,
                    records: vec![lab],
                    purpose: Purpose::EmergencyTreat,
                    break_glass: true,
                },
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "not_a_custodian");
        let mut forged = write(lab, patient_id, "Observation", None, 2);
        forged.author = clinic.other_doctor.public_key();
        let tx = clinic.chain.tx(
            &node,
            Payload::PutRecords {
                records: vec![forged],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "not_an_author");
        let tx = clinic.chain.tx(
            &doctor,
            Payload::ErasePatient {
                patient: patient_id,
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "not_allowed_to_erase");
        let patient = clinic.patient.clone();
        let tx = clinic.chain.tx(
            &patient,
            Payload::ErasePatient {
                patient: patient_id,
            },
        );
        assert_eq!(clinic.chain.one(tx), Outcome::Committed);
        assert_eq!(
            clinic.access(&doctor, &[lab], Purpose::EmergencyTreat, true),
            Ok(vec![AccessRule::Erased])
        );
        let tx = clinic.chain.tx(
            &node,
            Payload::PutRecords {
                records: vec![write(lab, patient_id, "Observation", None, 2)],
            },
        );
        assert_eq!(rejected(&clinic.chain.one(tx)), "patient_erased");
        // The history survives erasure: version 1 and every access event are still on chain.
        let state = Snapshot {
            reader: &clinic.chain.tree,
            version: Some(clinic.chain.height),
        };
        assert!(
            module::record_version(&state, &lab, 1)
                .expect("read")
                .is_some()
        );
        assert_eq!(module::access_count(&state, &patient_id).expect("read"), 2);
    }
}
