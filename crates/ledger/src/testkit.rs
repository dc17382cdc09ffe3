//! An in-memory chain for tests of the ledger and its modules: genesis with two organisations
//! (`a`, with GS1 prefix 0614141 and the validator, and `b`), signed transactions with the next
//! nonce, and blocks executed and committed to a `MemoryTree` exactly as a node does.

use medledger_crypto::{Hash, SecretKey};
use medledger_state::{MemoryTree, Overlay, Snapshot, StateRead, Writes, apply_writes};
use medledger_types::{Genesis, Organisation, Outcome, Role, Validator};

use crate::{
    BlockContext, BlockError, CoreOp, Payload, Tx, TxBody, apply_genesis, execute_block, next_nonce,
};

/// A chain in memory with two organisations, `a` and `b`.
#[derive(Debug)]
pub struct Chain {
    pub tree: MemoryTree,
    pub height: u64,
    /// Added to every block's time, for modules that care about the calendar.
    pub time_base_ms: u64,
    pub org_a: SecretKey,
    pub org_b: SecretKey,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::new()
    }
}

impl Chain {
    pub fn new() -> Chain {
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

    pub fn tx(&self, key: &SecretKey, payload: impl Into<Payload>) -> Tx {
        let state = Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        };
        let nonce = next_nonce(&state, &key.public_key()).expect("nonce");
        TxBody {
            chain_id: "test".into(),
            sender: key.public_key(),
            nonce,
            payload: payload.into(),
        }
        .sign(key)
    }

    /// Executes one block; commits it only if it is valid.
    pub fn block(&mut self, txs: &[Tx]) -> Result<(Vec<Outcome>, Hash), BlockError> {
        self.block_with_writes(txs)
            .map(|(outcomes, root, _)| (outcomes, root))
    }

    /// Executes one block as `block` does, and also answers every state write it made.
    pub fn block_with_writes(
        &mut self,
        txs: &[Tx],
    ) -> Result<(Vec<Outcome>, Hash, Writes), BlockError> {
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
        let writes = overlay.into_writes();
        let (root, batch) = apply_writes(&self.tree, height, &writes)?;
        self.tree.apply(batch);
        self.height = height;
        Ok((
            execution
                .receipts
                .into_iter()
                .map(|receipt| receipt.outcome)
                .collect(),
            root,
            writes,
        ))
    }

    pub fn one(&mut self, tx: Tx) -> Outcome {
        self.block(&[tx]).expect("block is valid").0.remove(0)
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        }
        .get(key)
        .expect("read")
    }

    pub fn enrol(&mut self, org: &SecretKey, member: &SecretKey, role: Role) -> Outcome {
        let tx = self.tx(
            org,
            Payload::Core(CoreOp::Enrol {
                member: member.public_key(),
                role,
            }),
        );
        self.one(tx)
    }
}

impl Chain {
    /// Stores `code` (org a, in parts) unless stored, and deploys it by governance (org a
    /// proposes, org b approves) with instantiate message `msg`; answers the contract's address.
    pub fn deploy_contract(&mut self, code: &[u8], label: &str, msg: &str) -> Hash {
        use medledger_contracts::{ContractsAction, ContractsOp, PART_BYTES_MAX, address_of};

        use crate::governance::{Action, GovernanceOp};
        let (org_a, org_b) = (self.org_a.clone(), self.org_b.clone());
        let code_hash = medledger_crypto::sha256(code);
        let stored = Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        };
        if medledger_contracts::code_info(&stored, &code_hash)
            .expect("read")
            .is_none()
        {
            for (part, bytes) in code.chunks(PART_BYTES_MAX).enumerate() {
                let upload = ContractsOp::UploadCode {
                    code_hash,
                    size: code.len() as u64,
                    part: part as u32,
                    bytes: bytes.to_vec(),
                };
                let tx = self.tx(&org_a, upload);
                assert_eq!(rejected(&self.one(tx)), "committed", "storing the code");
            }
        }
        let expires_at = self.height + 10;
        let propose = self.tx(
            &org_a,
            GovernanceOp::Propose {
                action: Action::Contracts(ContractsAction::DeployContract {
                    code_hash,
                    label: label.into(),
                    msg: msg.into(),
                }),
                expires_at,
            },
        );
        assert_eq!(rejected(&self.one(propose.clone())), "committed");
        let approve = self.tx(
            &org_b,
            GovernanceOp::ApproveProposal {
                proposal: propose.id(),
            },
        );
        assert_eq!(rejected(&self.one(approve)), "committed");
        let address = address_of(&propose.id());
        let deployed = Snapshot {
            reader: &self.tree,
            version: Some(self.height),
        };
        assert!(
            medledger_contracts::contract(&deployed, &address)
                .expect("read")
                .is_some(),
            "the deployment failed"
        );
        address
    }
}

/// The code of a rejected outcome, or `committed`.
pub fn rejected(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Rejected { code, .. } => code,
        Outcome::Committed => "committed",
    }
}
