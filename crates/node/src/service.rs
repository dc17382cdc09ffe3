//! Node services: what a module keeps beside the ledger on this node (the records vault, the
//! EPCIS index) and how it follows committed blocks. Each module's service implements
//! [`Service`]; [`Services`] holds them, opened once by [`open_services`] (the one list), and runs
//! every follower. The API finds a module's service by its type.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use medledger_crypto::Hash;
use medledger_types::{Height, Outcome};
use medledger_vault::VaultError;

use crate::records::Records;
use crate::research::Research;
use crate::supply::Supply;
use crate::trials::Trials;
use crate::{Node, NodeError, SubmitError, TxStatus};

/// How long a request waits for its transactions to commit before it answers 503.
pub const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// Why a request to a node service (records, supply) failed; the API maps each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Invalid(String),
    /// A document refused with every reason found (e.g. an EPCIS schema failure).
    #[error("{message}: {}", reasons.join("; "))]
    InvalidDocument {
        message: String,
        reasons: Vec<String>,
    },
    #[error("{0}")]
    Conflict(String),
    /// A write's precondition (`If-Match`) does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("the ledger refused the transaction: {reason}")]
    Refused { code: String, reason: String },
    #[error("{0}")]
    Unavailable(String),
    /// A body over its bound (a genomic file over `FILE_BYTES_MAX`).
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node's own off-chain storage (the vault, the EPCIS index) failed.
    #[error("{0}")]
    Storage(String),
}

impl From<VaultError> for ServiceError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::Busy(_) => ServiceError::Conflict(error.to_string()),
            VaultError::Invalid(message) => ServiceError::Invalid(message),
            VaultError::TooLarge(message) => ServiceError::TooLarge(message),
            VaultError::Erased(_) => ServiceError::Gone(error.to_string()),
            VaultError::NotFound => ServiceError::NotFound(error.to_string()),
            VaultError::VersionMismatch { .. } => {
                ServiceError::PreconditionFailed(error.to_string())
            }
            VaultError::Io(_) | VaultError::Corrupt(_) => ServiceError::Storage(error.to_string()),
        }
    }
}

impl From<SubmitError> for ServiceError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Mempool(error) => ServiceError::Unavailable(error.to_string()),
            SubmitError::Node(error) => ServiceError::Node(error),
            SubmitError::Tx(error) => ServiceError::Refused {
                code: error.code().into(),
                reason: error.to_string(),
            },
        }
    }
}

/// Waits for a transaction of ours and returns its height if its payload applied.
pub(crate) async fn wait_committed(node: &Node, tx: Hash) -> Result<Height, ServiceError> {
    match node.wait_tx(&tx, COMMIT_WAIT).await? {
        Some(TxStatus::Committed { receipt }) => match receipt.outcome {
            Outcome::Committed => Ok(receipt.height),
            Outcome::Rejected { code, reason } => Err(ServiceError::Refused { code, reason }),
        },
        Some(TxStatus::Rejected { code, reason }) => Err(ServiceError::Refused { code, reason }),
        Some(TxStatus::Pending) => Err(ServiceError::Unavailable(format!(
            "transaction {tx} is not committed yet; it may still commit"
        ))),
        None => Err(ServiceError::Unavailable(format!(
            "transaction {tx} is unknown to this node"
        ))),
    }
}

impl Node {
    /// Who `key` acts as at the head, or why it may not act.
    pub fn authenticate(
        &self,
        key: &medledger_crypto::PublicKey,
    ) -> Result<medledger_ledger::Authority, ServiceError> {
        self.account(key)?.0.map_err(ServiceError::Unauthenticated)
    }
}

/// A module's service on this node.
pub trait Service: Any + Clone + Send + Sync + 'static {
    /// What following committed blocks does, for logs (`applying erasures`); `None` for a service
    /// that reads the committed state when asked and follows nothing, which then gets no
    /// follower at all (no blocking task per block).
    const FOLLOWING: Option<&'static str>;

    /// Brings what the service keeps up to date with the committed blocks through `head` (the
    /// erasures to shred, the EPCIS events to index). Runs on a blocking thread; a failure is
    /// logged and the step retried a second later. Called only when `FOLLOWING` is set.
    fn follow(&self, _head: Height) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Work the service runs beside the node from start to stop, on its own clock rather than
    /// the chain's (anchoring each window of device readings), if any.
    fn background(&self) -> Option<Background> {
        None
    }
}

/// A service's background work (see [`Service::background`]).
pub type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

type Follower = Arc<dyn Fn(Height) -> Result<(), ServiceError> + Send + Sync>;
type Starter = Arc<dyn Fn() -> Option<Background> + Send + Sync>;

/// One registered service: itself (for the API to find by type) and its follower.
#[derive(Clone)]
struct Registered {
    service: Arc<dyn Any + Send + Sync>,
    following: Option<&'static str>,
    follow: Follower,
    background: Starter,
}

/// The services of this node, by type.
#[derive(Clone, Default)]
pub struct Services {
    by_type: BTreeMap<TypeId, Registered>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let following: Vec<&str> = self.by_type.values().filter_map(|r| r.following).collect();
        f.debug_struct("Services")
            .field("following", &following)
            .finish()
    }
}

impl Services {
    /// Adds a service. A second service of the same type replaces the first.
    pub fn register<S: Service>(&mut self, service: S) {
        let (follower, starter) = (service.clone(), service.clone());
        self.by_type.insert(
            TypeId::of::<S>(),
            Registered {
                service: Arc::new(service),
                following: S::FOLLOWING,
                follow: Arc::new(move |head| follower.follow(head)),
                background: Arc::new(move || starter.background()),
            },
        );
    }

    /// The service of type `S`, if this node runs it.
    pub fn get<S: Service>(&self) -> Option<S> {
        self.by_type
            .get(&TypeId::of::<S>())
            .and_then(|registered| registered.service.downcast_ref::<S>())
            .cloned()
    }

    /// Runs every service's follower and background work until the node stops.
    pub fn spawn_followers(&self, node: &Node) {
        for registered in self.by_type.values() {
            if let Some(work) = (registered.background)() {
                tokio::spawn(work);
            }
            let Some(what) = registered.following else {
                continue;
            };
            let (node, follow) = (node.clone(), registered.follow.clone());
            tokio::spawn(async move { follow_head(&node, what, follow).await });
        }
    }
}

/// Opens every module's service of this node, with its state under `data_dir` (the records vault
/// in `vault/`, the EPCIS index in `epcis/`, trial data in `trials/`, research exports in
/// `research/`). Adding a module's service is one line here.
/// What the node's configuration says about its services.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSettings {
    /// How often the monitoring service anchors what devices sent.
    pub monitor_window_ms: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            monitor_window_ms: crate::monitor::WINDOW_MS_DEFAULT,
        }
    }
}

pub fn open_services(
    node: &Node,
    data_dir: &Path,
    settings: &ServiceSettings,
) -> Result<Services, ServiceError> {
    let mut services = Services::default();
    let vault = Arc::new(medledger_vault::Vault::open(&data_dir.join("vault"))?);
    node.register_vault(&data_dir.join("vault"), &vault);
    let records = Records::open(node.clone(), vault.clone())?;
    services.register(records.clone());
    services.register(crate::claims::Claims::open(
        node.clone(),
        records.clone(),
        &data_dir.join("claims"),
    )?);
    services.register(Research::open(
        node.clone(),
        vault,
        &data_dir.join("research"),
    )?);
    services.register(Supply::open(node.clone(), &data_dir.join("epcis"))?);
    services.register(Trials::open(node.clone(), &data_dir.join("trials"))?);
    services.register(crate::tokens::Tokens::open(
        node.clone(),
        &data_dir.join("tokens"),
    )?);
    services.register(crate::contracts::Contracts::open(
        node.clone(),
        &data_dir.join("contracts"),
    )?);
    services.register(crate::monitor::Monitor::open(
        node.clone(),
        records.clone(),
        &data_dir.join("monitor"),
        settings.monitor_window_ms,
    )?);
    Ok(services)
}

/// Runs `step(head)` on a blocking thread each time the committed head moves, until the node
/// stops: the shape of every follower of committed blocks (erasures, the EPCIS index). A failed
/// step is logged and retried a second later; a step that catches up to an older head is run
/// again for the newer one.
async fn follow_head(node: &Node, what: &'static str, step: Follower) {
    let mut head = node.subscribe_head();
    loop {
        let target = *head.borrow_and_update();
        let run = step.clone();
        match tokio::task::spawn_blocking(move || run(target)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, what, "following committed blocks failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        }
        if head.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Index(u32);
    impl Service for Index {
        const FOLLOWING: Option<&'static str> = Some("indexing");
        fn follow(&self, _: Height) -> Result<(), ServiceError> {
            Ok(())
        }
    }

    #[derive(Clone, Debug)]
    struct Shredder;
    impl Service for Shredder {
        const FOLLOWING: Option<&'static str> = Some("shredding");
        fn follow(&self, head: Height) -> Result<(), ServiceError> {
            Err(ServiceError::Storage(format!("disk full at {head}")))
        }
    }

    #[test]
    fn services_are_found_by_type_and_one_of_a_type_replaces_the_other() {
        let mut services = Services::default();
        assert_eq!(services.get::<Index>(), None);
        services.register(Index(1));
        services.register(Shredder);
        services.register(Index(2));
        assert_eq!(services.get::<Index>(), Some(Index(2)));
        assert!(services.get::<Shredder>().is_some());
        // One follower per service type, each running its own service.
        let results: Vec<(Option<&str>, bool)> = services
            .by_type
            .values()
            .map(|r| (r.following, (r.follow)(7).is_ok()))
            .collect();
        assert_eq!(results.len(), 2);
        assert!(results.contains(&(Some("indexing"), true)));
        assert!(results.contains(&(Some("shredding"), false)));
        // A service that follows nothing is found, and listed among no followers.
        services.register(Reader);
        assert!(services.get::<Reader>().is_some());
        let listed = format!("{services:?}");
        assert!(
            listed.contains("indexing") && !listed.contains("None"),
            "{listed}"
        );
        let following = services
            .by_type
            .values()
            .filter(|r| r.following.is_some())
            .count();
        assert_eq!(following, 2);
    }

    #[derive(Clone, Debug)]
    struct Reader;
    impl Service for Reader {
        const FOLLOWING: Option<&'static str> = None;
    }
}
