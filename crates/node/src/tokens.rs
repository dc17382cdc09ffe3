//! The token service: every account's statement, indexed from the token movement logs
//! (`data/tokens/statements.redb`).
//!
//! The chain keeps each class's movements as a numbered log in state (so a light client proves
//! any movement) and no per-account list, so a transfer writes its two balances, its movement
//! and its class. The node follows the chain and appends each new movement to the statements of
//! the accounts it names, in the order of the class logs.
//!
//! **Invariant:** the index holds only what the committed state holds and is rebuilt from it: for
//! each class it has indexed a prefix of the movement log (`indexed[class]` entries), and
//! `indexed_through` is a height whose logs it covers entirely. Indexing the same movements again
//! is impossible (each class's prefix only grows), so a crash between commits loses nothing and
//! duplicates nothing: the next run goes on from the last committed prefix.

use std::path::Path;
use std::sync::Arc;

use medledger_crypto::PublicKey;
use medledger_tokens::Movement;
use medledger_types::Height;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::Node;
use crate::service::{COMMIT_WAIT, Service, ServiceError};

/// The most movements one statement page lists.
pub const STATEMENT_PAGE_MAX: u64 = 1_000;
/// The most movements one index transaction adds.
const MOVEMENTS_PER_COMMIT: u64 = 10_000;

// Statements: (account, n) -> (class, movement seq), the n-th movement that touched the account.
const STATEMENTS: TableDefinition<(&[u8; 32], u64), (&str, u64)> =
    TableDefinition::new("statements");
// How many movements touched each account.
const COUNTS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("counts");
// How many movements of each class's log are indexed.
const LOGS: TableDefinition<&str, u64> = TableDefinition::new("logs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_INDEXED_THROUGH: &str = "indexed_through";

fn index_error(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(format!("token statement index: {error}"))
}

/// One page of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    /// The height whose state the page was read at (the index covers it).
    pub height: Height,
    /// How many movements touched the account, in every class.
    pub total: u64,
    /// The movements from the page's offset, oldest first.
    pub movements: Vec<Movement>,
}

/// The token service of one node: statements from its index.
#[derive(Clone)]
pub struct Tokens {
    node: Node,
    db: Arc<redb::Database>,
    indexed_through: Arc<tokio::sync::watch::Sender<Height>>,
    // One indexer at a time: the follower and a reader that needs the head indexed now.
    indexing: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("indexed_through", &*self.indexed_through.borrow())
            .finish_non_exhaustive()
    }
}

impl Service for Tokens {
    const FOLLOWING: Option<&'static str> = Some("indexing token statements");

    fn follow(&self, head: Height) -> Result<(), ServiceError> {
        self.index_through(head)
    }
}

impl Tokens {
    /// Opens (or creates) the index in `dir` and brings it up to the chain's head.
    pub fn open(node: Node, dir: &Path) -> Result<Tokens, ServiceError> {
        std::fs::create_dir_all(dir).map_err(index_error)?;
        let db = redb::Database::create(dir.join("statements.redb")).map_err(index_error)?;
        let write = db.begin_write().map_err(index_error)?;
        let through = {
            write.open_table(STATEMENTS).map_err(index_error)?;
            write.open_table(COUNTS).map_err(index_error)?;
            write.open_table(LOGS).map_err(index_error)?;
            let meta = write.open_table(META).map_err(index_error)?;
            meta.get(META_INDEXED_THROUGH)
                .map_err(index_error)?
                .map_or(0, |value| value.value())
        };
        write.commit().map_err(index_error)?;
        let db = Arc::new(db);
        node.register_database(&dir.join("statements.redb"), &db);
        let tokens = Tokens {
            node,
            db,
            indexed_through: Arc::new(tokio::sync::watch::channel(through).0),
            indexing: Arc::new(std::sync::Mutex::new(())),
        };
        let head = *tokens.node.subscribe_head().borrow();
        tokens.index_through(head)?;
        Ok(tokens)
    }

    /// The height the index covers.
    fn indexed_through(&self) -> Height {
        *self.indexed_through.borrow()
    }

    /// Indexes every movement the state after block `target` holds, at most
    /// `MOVEMENTS_PER_COMMIT` per index transaction. Commits that leave the index short of
    /// `target` are not flushed (`Durability::None`: a crash only makes the index redo them);
    /// the last is.
    pub fn index_through(&self, target: Height) -> Result<(), ServiceError> {
        let _one = self
            .indexing
            .lock()
            .map_err(|_| index_error("an indexer panicked"))?;
        if self.indexed_through() >= target {
            return Ok(());
        }
        // The logs' lengths at `target`; what lies beyond them is indexed by a later call.
        let (at, logs) = self.node.read_at(Some(target), |state| {
            let mut logs = Vec::new();
            for symbol in medledger_tokens::classes(state)? {
                let length = medledger_tokens::class(state, &symbol)?.map_or(0, |c| c.movements);
                logs.push((symbol, length));
            }
            Ok(logs)
        })?;
        let logs = logs.map_err(index_error)?;
        loop {
            let write = self.db.begin_write().map_err(index_error)?;
            let mut added = 0;
            {
                let mut statements = write.open_table(STATEMENTS).map_err(index_error)?;
                let mut counts = write.open_table(COUNTS).map_err(index_error)?;
                let mut indexed = write.open_table(LOGS).map_err(index_error)?;
                for (symbol, length) in &logs {
                    let from = indexed
                        .get(symbol.as_str())
                        .map_err(index_error)?
                        .map_or(0, |value| value.value());
                    let to = (*length).min(from + (MOVEMENTS_PER_COMMIT - added));
                    if from >= to {
                        continue;
                    }
                    let (_, read) = self.node.read_at(Some(at), |state| {
                        let mut found = Vec::new();
                        for seq in from..to {
                            found.push(medledger_tokens::movement(state, symbol, seq)?);
                        }
                        Ok(found)
                    })?;
                    for (seq, entry) in (from..).zip(read.map_err(index_error)?) {
                        let entry = entry.ok_or_else(|| {
                            index_error(format!("movement {seq} of {symbol} is missing"))
                        })?;
                        let mut parties: Vec<PublicKey> =
                            entry.from.into_iter().chain(entry.to).collect();
                        parties.dedup();
                        for party in parties {
                            let account = party.0;
                            let n = counts
                                .get(&account)
                                .map_err(index_error)?
                                .map_or(0, |value| value.value());
                            statements
                                .insert((&account, n), (symbol.as_str(), seq))
                                .map_err(index_error)?;
                            counts.insert(&account, n + 1).map_err(index_error)?;
                        }
                    }
                    indexed.insert(symbol.as_str(), to).map_err(index_error)?;
                    added += to - from;
                    if added >= MOVEMENTS_PER_COMMIT {
                        break;
                    }
                }
                if added < MOVEMENTS_PER_COMMIT {
                    write
                        .open_table(META)
                        .map_err(index_error)?
                        .insert(META_INDEXED_THROUGH, at)
                        .map_err(index_error)?;
                }
            }
            let done = added < MOVEMENTS_PER_COMMIT;
            let mut write = write;
            write
                .set_durability(if done {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                })
                .map_err(index_error)?;
            write.commit().map_err(index_error)?;
            if done {
                self.indexed_through.send_replace(at);
                return Ok(());
            }
        }
    }

    /// An account's statement at the head: how many movements touched it, and those from
    /// `offset` (at most `limit`, itself at most `STATEMENT_PAGE_MAX`), oldest first. Waits
    /// (up to the commit wait) for the index to cover the head.
    pub async fn statement(
        &self,
        account: &PublicKey,
        offset: u64,
        limit: u64,
    ) -> Result<Statement, ServiceError> {
        let head = *self.node.subscribe_head().borrow();
        let mut through = self.indexed_through.subscribe();
        tokio::time::timeout(COMMIT_WAIT, through.wait_for(|through| *through >= head))
            .await
            .map_err(|_| {
                ServiceError::Unavailable("the token statement index is behind the chain".into())
            })?
            .map_err(|_| ServiceError::Unavailable("the token statement index stopped".into()))?;
        let this = self.clone();
        let account = *account;
        let limit = limit.min(STATEMENT_PAGE_MAX);
        tokio::task::spawn_blocking(move || this.page(&account, offset, limit))
            .await
            .map_err(index_error)?
    }

    fn page(
        &self,
        account: &PublicKey,
        offset: u64,
        limit: u64,
    ) -> Result<Statement, ServiceError> {
        let account = account.0;
        let read = self.db.begin_read().map_err(index_error)?;
        let total = read
            .open_table(COUNTS)
            .map_err(index_error)?
            .get(&account)
            .map_err(index_error)?
            .map_or(0, |value| value.value());
        let statements = read.open_table(STATEMENTS).map_err(index_error)?;
        let mut entries = Vec::new();
        for row in statements
            .range((&account, offset)..(&account, offset.saturating_add(limit)))
            .map_err(index_error)?
        {
            let (_, value) = row.map_err(index_error)?;
            let (symbol, seq) = value.value();
            entries.push((symbol.to_string(), seq));
        }
        // The index may have gone on past the head asked for; movements never change, so the
        // page is read at the newest head, which the index covers or the entries name nothing
        // beyond.
        let (height, movements) = self.node.read_head(|state| {
            let mut movements = Vec::with_capacity(entries.len());
            for (symbol, seq) in &entries {
                if let Some(found) = medledger_tokens::movement(state, symbol, *seq)? {
                    movements.push(found);
                }
            }
            Ok(movements)
        })?;
        Ok(Statement {
            height,
            total,
            movements: movements.map_err(index_error)?,
        })
    }
}
