//! The pool of admitted transactions waiting for a block.
//!
//! Transactions are queued per sender by nonce, so a sender can pipeline many without waiting for
//! each to commit, and a block takes each sender's contiguous run from its next nonce. Senders are
//! served round-robin from a rotating cursor, so one busy sender cannot starve the others.
//!
//! **Invariant:** the pool never holds more than its configured maximum; when full it refuses
//! new transactions with [`MempoolError::Full`] instead of growing.

use std::collections::{BTreeMap, BTreeSet};

use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::Tx;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MempoolError {
    #[error("mempool is full ({0} transactions waiting); retry later")]
    Full(usize),
    #[error(
        "another transaction of {sender} with nonce {nonce} is already pending; only one can commit"
    )]
    NonceTaken { sender: PublicKey, nonce: u64 },
    /// Only this node's own transactions can be built over the limit; the others arrive as bytes
    /// already held to it.
    #[error("the transaction is {0} bytes, over the limit of {max}", max = medledger_types::TX_BYTES_MAX)]
    TooLarge(usize),
}

impl MempoolError {
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::Full(_) => "mempool_full",
            MempoolError::NonceTaken { .. } => "nonce_pending",
            MempoolError::TooLarge(_) => "tx_too_large",
        }
    }
}

/// A transaction with its id computed once.
#[derive(Clone, Debug)]
pub struct PooledTx {
    pub id: Hash,
    pub tx: Tx,
}

#[derive(Debug)]
pub struct Mempool {
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, PooledTx>>,
    ids: BTreeSet<Hash>,
    /// Taken for a block that is not durable yet: still pending to anyone who asks.
    in_flight: BTreeSet<Hash>,
    cursor: Option<PublicKey>,
    capacity: usize,
}

/// What [`Mempool::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    AlreadyPending,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Mempool {
            by_sender: BTreeMap::new(),
            ids: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            cursor: None,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Each sender's lowest pending nonce, for at most `senders_max` senders (in key order).
    pub fn first_nonces(&self, senders_max: usize) -> Vec<(PublicKey, u64)> {
        self.by_sender
            .iter()
            .filter_map(|(sender, queue)| Some((*sender, *queue.keys().next()?)))
            .take(senders_max)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True while the transaction waits or is in a block that is not yet durable.
    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id) || self.in_flight.contains(id)
    }

    /// True when this exact transaction, signature included, waits here: its signature was
    /// verified on admission and need not be verified again.
    pub fn holds_exact(&self, tx: &Tx) -> bool {
        self.by_sender
            .get(&tx.body.sender)
            .and_then(|queue| queue.get(&tx.body.nonce))
            .is_some_and(|pooled| pooled.tx == *tx)
    }

    /// Forgets transactions taken by [`Mempool::take`] once their fate is recorded elsewhere.
    pub fn finish(&mut self, ids: impl IntoIterator<Item = Hash>) {
        for id in ids {
            self.in_flight.remove(&id);
        }
    }

    /// Adds a transaction whose signature and sender were already checked. A second transaction
    /// with the same sender and nonce replaces nothing: the first one stays.
    pub fn insert(&mut self, pooled: PooledTx) -> Result<Inserted, MempoolError> {
        if self.contains(&pooled.id) {
            return Ok(Inserted::AlreadyPending);
        }
        let queue = self.by_sender.entry(pooled.tx.body.sender).or_default();
        if queue.contains_key(&pooled.tx.body.nonce) {
            // Same sender and nonce, different content: only one can ever commit, and the first
            // one stays. The second is refused rather than reported as pending, since it never
            // will be.
            return Err(MempoolError::NonceTaken {
                sender: pooled.tx.body.sender,
                nonce: pooled.tx.body.nonce,
            });
        }
        if self.ids.len() >= self.capacity {
            if queue.is_empty() {
                self.by_sender.remove(&pooled.tx.body.sender);
            }
            return Err(MempoolError::Full(self.ids.len()));
        }
        self.ids.insert(pooled.id);
        queue.insert(pooled.tx.body.nonce, pooled);
        Ok(Inserted::New)
    }

    /// Takes up to `max` transactions for a block. `next_nonce` gives each sender's next nonce in
    /// the committed state. Transactions below it can never commit and are returned separately.
    /// The taken ones stay in flight until [`Mempool::finish`].
    pub fn take<E>(
        &mut self,
        max: usize,
        next_nonce: impl FnMut(&PublicKey) -> Result<u64, E>,
    ) -> Result<(Vec<PooledTx>, Vec<PooledTx>), E> {
        self.collect(max, next_nonce, true)
    }

    /// Like [`Mempool::take`], but leaves the chosen transactions in the pool: a proposal may
    /// lose its round, and then they must still be there for the next proposer.
    pub fn select<E>(
        &mut self,
        max: usize,
        next_nonce: impl FnMut(&PublicKey) -> Result<u64, E>,
    ) -> Result<(Vec<PooledTx>, Vec<PooledTx>), E> {
        self.collect(max, next_nonce, false)
    }

    fn collect<E>(
        &mut self,
        max: usize,
        mut next_nonce: impl FnMut(&PublicKey) -> Result<u64, E>,
        remove: bool,
    ) -> Result<(Vec<PooledTx>, Vec<PooledTx>), E> {
        let mut taken = Vec::new();
        let mut stale = Vec::new();
        let senders: Vec<PublicKey> = match self.cursor {
            Some(cursor) => self
                .by_sender
                .range(cursor..)
                .chain(self.by_sender.range(..cursor))
                .map(|(sender, _)| *sender)
                .collect(),
            None => self.by_sender.keys().copied().collect(),
        };
        for sender in senders {
            if taken.len() >= max {
                self.cursor = Some(sender);
                break;
            }
            let mut expected = next_nonce(&sender)?;
            let Some(queue) = self.by_sender.get_mut(&sender) else {
                continue;
            };
            let newer = queue.split_off(&expected);
            for (_, pooled) in std::mem::replace(queue, newer) {
                self.ids.remove(&pooled.id);
                stale.push(pooled);
            }
            while taken.len() < max {
                if !remove {
                    match queue.get(&expected) {
                        Some(pooled) => taken.push(pooled.clone()),
                        None => break,
                    }
                    expected += 1;
                    continue;
                }
                match queue.remove(&expected) {
                    Some(pooled) => {
                        self.ids.remove(&pooled.id);
                        self.in_flight.insert(pooled.id);
                        taken.push(pooled);
                        expected += 1;
                    }
                    None => break,
                }
            }
            if queue.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        if taken.len() < max {
            self.cursor = None;
        }
        Ok((taken, stale))
    }

    /// Drops what a committed block settles: its own transactions, and every other pooled
    /// transaction of the same senders at or below a committed nonce, which can now never
    /// commit. Returns those others, so their submitters can be told.
    pub fn committed(&mut self, txs: &[Tx]) -> Vec<PooledTx> {
        let mut superseded = Vec::new();
        for tx in txs {
            let Some(queue) = self.by_sender.get_mut(&tx.body.sender) else {
                continue;
            };
            let newer = queue.split_off(&(tx.body.nonce + 1));
            for (_, pooled) in std::mem::replace(queue, newer) {
                self.ids.remove(&pooled.id);
                if pooled.tx != *tx {
                    superseded.push(pooled);
                }
            }
            if queue.is_empty() {
                self.by_sender.remove(&tx.body.sender);
            }
        }
        superseded
    }

    /// Drops transactions that failed when a proposal was built (their sender was revoked).
    pub fn remove(&mut self, pooled: &[PooledTx]) {
        for pooled in pooled {
            if let Some(queue) = self.by_sender.get_mut(&pooled.tx.body.sender) {
                if queue.get(&pooled.tx.body.nonce).map(|p| p.id) == Some(pooled.id) {
                    queue.remove(&pooled.tx.body.nonce);
                    self.ids.remove(&pooled.id);
                }
                if queue.is_empty() {
                    self.by_sender.remove(&pooled.tx.body.sender);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::SecretKey;
    use medledger_ledger::{CoreOp, Payload, TxBody};

    fn tx(key: &SecretKey, nonce: u64) -> PooledTx {
        let tx = TxBody {
            chain_id: "c".into(),
            sender: key.public_key(),
            nonce,
            payload: Payload::Core(CoreOp::Anchor {
                id: Hash([nonce as u8; 32]),
                commitment: Hash::ZERO,
            }),
        }
        .sign(key);
        PooledTx { id: tx.id(), tx }
    }

    #[test]
    fn takes_contiguous_runs_and_returns_stale_ones() {
        let a = SecretKey::from_seed(1);
        let b = SecretKey::from_seed(2);
        let mut pool = Mempool::new(100);
        for nonce in [1, 2, 3, 5] {
            pool.insert(tx(&a, nonce)).expect("room");
        }
        for nonce in [1, 2] {
            pool.insert(tx(&b, nonce)).expect("room");
        }
        // b has already used nonce 1 on chain.
        let next = |sender: &PublicKey| -> Result<u64, ()> {
            Ok(if *sender == b.public_key() { 2 } else { 1 })
        };
        let (taken, stale) = pool.take(100, next).expect("take");
        let mut got: Vec<(bool, u64)> = taken
            .iter()
            .map(|p| (p.tx.body.sender == a.public_key(), p.tx.body.nonce))
            .collect();
        got.sort();
        assert_eq!(got, vec![(false, 2), (true, 1), (true, 2), (true, 3)]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].tx.body.nonce, 1);
        // Nonce 5 of a waits for 4.
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn refuses_when_full_and_deduplicates() {
        let a = SecretKey::from_seed(1);
        let mut pool = Mempool::new(2);
        assert_eq!(pool.insert(tx(&a, 1)), Ok(Inserted::New));
        assert_eq!(pool.insert(tx(&a, 1)), Ok(Inserted::AlreadyPending));
        assert_eq!(pool.insert(tx(&a, 2)), Ok(Inserted::New));
        assert_eq!(pool.insert(tx(&a, 3)), Err(MempoolError::Full(2)));
        assert_eq!(pool.len(), 2);
        // A different transaction reusing a pending nonce is refused, not reported as pending.
        let mut twin = tx(&a, 1);
        twin.tx.body.payload = Payload::Core(CoreOp::Anchor {
            id: Hash([99; 32]),
            commitment: Hash::ZERO,
        });
        twin.tx = twin.tx.body.sign(&a);
        twin.id = twin.tx.id();
        assert_eq!(
            pool.insert(twin.clone()),
            Err(MempoolError::NonceTaken {
                sender: a.public_key(),
                nonce: 1
            })
        );
        assert!(!pool.contains(&twin.id));
    }

    /// Only the exact admitted bytes skip re-verification: the same body under another
    /// signature (which keeps the id) does not.
    #[test]
    fn holds_exact_compares_the_signature_too() {
        let a = SecretKey::from_seed(1);
        let mut pool = Mempool::new(10);
        let admitted = tx(&a, 1);
        pool.insert(admitted.clone()).expect("room");
        assert!(pool.holds_exact(&admitted.tx));
        let mut forged = admitted.tx.clone();
        forged.signature = SecretKey::from_seed(9).sign(b"something else");
        assert_eq!(forged.id(), admitted.id);
        assert!(!pool.holds_exact(&forged));
        assert!(!pool.holds_exact(&tx(&a, 2).tx));
    }

    #[test]
    fn a_block_limit_rotates_between_senders() {
        let keys: Vec<SecretKey> = (0..4).map(SecretKey::from_seed).collect();
        let mut pool = Mempool::new(100);
        for key in &keys {
            for nonce in 1..=3 {
                pool.insert(tx(key, nonce)).expect("room");
            }
        }
        let mut next: BTreeMap<PublicKey, u64> = keys.iter().map(|k| (k.public_key(), 1)).collect();
        let mut served = BTreeSet::new();
        while !pool.is_empty() {
            let (taken, stale) = pool.take(2, |s| Ok::<u64, ()>(next[s])).expect("take");
            assert!(stale.is_empty());
            assert!(!taken.is_empty() && taken.len() <= 2);
            for pooled in taken {
                served.insert(pooled.tx.body.sender);
                *next.get_mut(&pooled.tx.body.sender).expect("known") += 1;
            }
        }
        assert_eq!(served.len(), 4);
        assert!(next.values().all(|nonce| *nonce == 4));
    }
}
