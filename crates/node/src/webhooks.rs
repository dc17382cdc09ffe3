//! Alert feeds and their webhooks. A module whose alerts are numbered in order on chain (trial
//! alerts, monitoring alert changes) offers them as an [`AlertFeed`]: a subscriber reads the feed
//! from a cursor, as a server-sent event stream (the API) or through a webhook (here). Beside the
//! stream, a member of this node's organisation (a sponsor's safety desk, a care team's paging
//! system, a regulator's intake) registers a URL, and the node POSTs to it each alert the member
//! may receive, in order, as its block commits.
//!
//! - **Cursor.** Each webhook keeps the sequence number of the next alert to deliver, saved in
//!   `webhooks.json` in the module's directory (written whole, fsync'd and renamed into place)
//!   after every delivery, so a restart resumes where delivery stopped: an alert is delivered at
//!   least once, and twice only if the node stopped between the receiver's answer and saving the
//!   cursor. The receiver tells repeats apart by `X-Medledger-Alert-Seq`.
//! - **Retries.** Anything but a 2xx answer (or no answer within `DELIVERY_TIMEOUT`) is retried
//!   after a pause that doubles from one second to a minute; later alerts wait behind it, so
//!   order is kept.
//! - **Authenticity.** The body is the alert as JSON; `X-Medledger-Signature` is the node's
//!   Ed25519 signature over the feed's signature domain ‖ body, and `X-Medledger-Node` the
//!   node's key, which the receiver checks against the genesis or the validator set it trusts.
//! - **Who receives what.** The member's standing is read at the head before every delivery, as
//!   for the stream: a revoked member's webhook delivers nothing more.
//!
//! Only members of this node's own organisation may register, only `http` or `https` URLs, and
//! at most `WEBHOOKS_PER_SUBSCRIBER_MAX` each per feed: a webhook makes this node send requests,
//! so the organisation that runs it decides where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::Authority;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::Node;
use crate::service::ServiceError;

/// A module's alerts, numbered in order on chain, as each subscriber may see them.
pub trait AlertFeed: Clone + Send + Sync + 'static {
    type Alert: Serialize + Send + Sync + 'static;

    /// What the node's signature over a webhook delivery's body is prefixed with.
    const SIGNATURE_DOMAIN: &'static [u8];

    fn node(&self) -> &Node;

    /// The feed's webhooks at this node.
    fn webhooks(&self) -> &Webhooks;

    /// The alerts from `cursor` that `subscriber` may see at the head (a bounded page), and the
    /// cursor after the last one read (seen or not). Refused when `subscriber` may see none.
    fn page(
        &self,
        subscriber: &PublicKey,
        cursor: u64,
    ) -> Result<(Vec<Self::Alert>, u64), ServiceError>;

    /// An alert's sequence number in the feed.
    fn seq(alert: &Self::Alert) -> u64;

    /// What kind of alert it is, as a server-sent event's name (`adverse_event`, `escalated`).
    fn kind(alert: &Self::Alert) -> &'static str;
}

/// The most webhooks a node keeps.
pub const WEBHOOKS_MAX: usize = 64;
/// The most webhooks one subscriber keeps for a feed, so no one member fills the node's table.
pub const WEBHOOKS_PER_SUBSCRIBER_MAX: usize = 4;
/// The longest URL a webhook may have.
pub const URL_BYTES_MAX: usize = 2_048;
/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between retries.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_secs(60);
pub const HEADER_SIGNATURE: &str = "x-medledger-signature";
pub const HEADER_NODE: &str = "x-medledger-node";
pub const HEADER_SEQ: &str = "x-medledger-alert-seq";

const FILE: &str = "webhooks.json";

/// A registered webhook and how far delivery has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Hash,
    pub subscriber: PublicKey,
    pub url: String,
    /// The sequence number of the next alert to consider.
    pub cursor: u64,
    /// How many alerts were delivered.
    pub delivered: u64,
    /// Why the latest delivery failed, until one succeeds.
    pub last_error: Option<String>,
}

/// One feed's webhooks at a node, kept in `webhooks.json` in the module's directory.
#[derive(Debug)]
pub struct Webhooks {
    path: PathBuf,
    hooks: Mutex<BTreeMap<Hash, Webhook>>,
    /// One delivery task per webhook, stopped when it is removed.
    tasks: Mutex<BTreeMap<Hash, tokio::task::AbortHandle>>,
}

fn storage(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(format!("webhooks: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Webhooks {
    /// Loads the webhooks kept in `dir` (none if there is no file yet).
    pub fn open(dir: &Path) -> Result<Webhooks, ServiceError> {
        let path = dir.join(FILE);
        let hooks = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Webhook> = serde_json::from_slice(&bytes).map_err(storage)?;
                list.into_iter().map(|hook| (hook.id, hook)).collect()
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(storage(error)),
        };
        Ok(Webhooks {
            path,
            hooks: Mutex::new(hooks),
            tasks: Mutex::new(BTreeMap::new()),
        })
    }

    fn save(&self, hooks: &BTreeMap<Hash, Webhook>) -> Result<(), ServiceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let list: Vec<&Webhook> = hooks.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(storage)?;
        let temporary = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(storage)?;
        file.write_all(&bytes).map_err(storage)?;
        file.sync_all().map_err(storage)?;
        std::fs::rename(&temporary, &self.path).map_err(storage)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(storage)?;
        }
        Ok(())
    }

    fn get(&self, id: &Hash) -> Option<Webhook> {
        lock(&self.hooks).get(id).cloned()
    }

    /// Records a delivery's outcome; the cursor moves only forward.
    fn update(&self, id: &Hash, change: impl FnOnce(&mut Webhook)) -> Result<(), ServiceError> {
        let mut hooks = lock(&self.hooks);
        let Some(hook) = hooks.get_mut(id) else {
            return Ok(());
        };
        change(hook);
        self.save(&hooks)
    }

    /// The webhooks of `subscriber`.
    pub fn of(&self, subscriber: &PublicKey) -> Vec<Webhook> {
        lock(&self.hooks)
            .values()
            .filter(|hook| hook.subscriber == *subscriber)
            .cloned()
            .collect()
    }
}

/// Refuses a URL that is not `http(s)://host...`, too long, or holds whitespace or controls.
fn check_url(url: &str) -> Result<(), ServiceError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if url.len() > URL_BYTES_MAX
        || host.is_none_or(str::is_empty)
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ServiceError::Invalid(format!(
            "a webhook URL is http:// or https:// and a host, at most {URL_BYTES_MAX} bytes, without spaces"
        )));
    }
    Ok(())
}

impl Webhooks {
    /// Registers a webhook of `feed` for `subscriber`, a member of this node's organisation,
    /// delivering alerts from sequence number `after` (0: every alert the subscriber may
    /// receive), and starts delivering.
    pub fn add<F: AlertFeed>(
        feed: &F,
        subscriber: PublicKey,
        url: String,
        after: u64,
    ) -> Result<Webhook, ServiceError> {
        check_url(&url)?;
        let org_of = |key: &PublicKey| -> Result<String, ServiceError> {
            match feed.node().authenticate(key)? {
                Authority::Member { org, .. } | Authority::Organisation { org } => Ok(org),
            }
        };
        let own = org_of(&feed.node().key())?;
        if org_of(&subscriber)? != own {
            return Err(ServiceError::Forbidden(format!(
                "only members of {own} register webhooks at its node"
            )));
        }
        let webhooks = feed.webhooks();
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        let hook = Webhook {
            id: Hash(random),
            subscriber,
            url,
            cursor: after,
            delivered: 0,
            last_error: None,
        };
        {
            let mut hooks = lock(&webhooks.hooks);
            if hooks.len() >= WEBHOOKS_MAX {
                return Err(ServiceError::Unavailable(format!(
                    "this node keeps at most {WEBHOOKS_MAX} webhooks for this feed"
                )));
            }
            let own = hooks
                .values()
                .filter(|hook| hook.subscriber == subscriber)
                .count();
            if own >= WEBHOOKS_PER_SUBSCRIBER_MAX {
                return Err(ServiceError::Conflict(format!(
                    "a member keeps at most {WEBHOOKS_PER_SUBSCRIBER_MAX} webhooks for this feed; remove one first"
                )));
            }
            hooks.insert(hook.id, hook.clone());
            if let Err(error) = webhooks.save(&hooks) {
                hooks.remove(&hook.id);
                return Err(error);
            }
        }
        spawn_delivery(feed, hook.id);
        Ok(hook)
    }

    /// Removes one of `subscriber`'s webhooks; its delivery stops.
    pub fn remove(&self, subscriber: &PublicKey, id: &Hash) -> Result<(), ServiceError> {
        {
            let mut hooks = lock(&self.hooks);
            match hooks.get(id) {
                Some(hook) if hook.subscriber == *subscriber => {}
                _ => return Err(ServiceError::NotFound(format!("no webhook {id} of yours"))),
            }
            let removed = hooks.remove(id);
            if let Err(error) = self.save(&hooks) {
                if let Some(removed) = removed {
                    hooks.insert(*id, removed);
                }
                return Err(error);
            }
        }
        if let Some(task) = lock(&self.tasks).remove(id) {
            task.abort();
        }
        Ok(())
    }

    /// Starts delivering every kept webhook of `feed` (at start-up, inside the runtime).
    pub fn spawn_all<F: AlertFeed>(feed: &F) {
        let ids: Vec<Hash> = lock(&feed.webhooks().hooks).keys().copied().collect();
        for id in ids {
            spawn_delivery(feed, id);
        }
    }
}

fn spawn_delivery<F: AlertFeed>(feed: &F, id: Hash) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let task = runtime.spawn(deliver(feed.clone(), id));
    lock(&feed.webhooks().tasks).insert(id, task.abort_handle());
}

/// Delivers webhook `id`'s alerts in order, for as long as it exists.
async fn deliver<F: AlertFeed>(feed: F, id: Hash) {
    let mut head = feed.node().subscribe_head();
    let mut pause = Duration::from_secs(1);
    loop {
        let Some(hook) = feed.webhooks().get(&id) else {
            return;
        };
        let reader = feed.clone();
        let (subscriber, cursor) = (hook.subscriber, hook.cursor);
        let found = tokio::task::spawn_blocking(move || reader.page(&subscriber, cursor)).await;
        let (alerts, next) = match found {
            Ok(Ok(found)) => found,
            // A revoked subscriber, or the node stopping: wait for the next block.
            _ => {
                if head.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        if alerts.is_empty() {
            if next > cursor {
                let _ = feed
                    .webhooks()
                    .update(&id, |hook| hook.cursor = hook.cursor.max(next));
                continue;
            }
            if head.changed().await.is_err() {
                return;
            }
            continue;
        }
        for alert in alerts {
            let seq = F::seq(&alert);
            match post(&feed, &hook.url, seq, &alert).await {
                Ok(()) => {
                    pause = Duration::from_secs(1);
                    let saved = feed.webhooks().update(&id, |hook| {
                        hook.cursor = hook.cursor.max(seq + 1);
                        hook.delivered += 1;
                        hook.last_error = None;
                    });
                    if let Err(error) = saved {
                        tracing::error!(%error, "a webhook's cursor was not saved");
                    }
                }
                Err(error) => {
                    tracing::warn!(webhook = %id, seq, %error, "webhook delivery failed; retrying");
                    let _ = feed
                        .webhooks()
                        .update(&id, |hook| hook.last_error = Some(error));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                    break;
                }
            }
        }
    }
}

/// POSTs one alert, signed by the node; `Ok` on a 2xx answer.
async fn post<F: AlertFeed>(feed: &F, url: &str, seq: u64, alert: &F::Alert) -> Result<(), String> {
    let body = serde_json::to_vec(alert).map_err(|error| error.to_string())?;
    let mut signed = F::SIGNATURE_DOMAIN.to_vec();
    signed.extend_from_slice(&body);
    let signature = feed.node().sign(&signed);
    let node = feed.node().key();
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DELIVERY_TIMEOUT))
            .build()
            .into();
        let response = agent
            .post(&url)
            .header("content-type", "application/json")
            .header(HEADER_SIGNATURE, signature.to_hex())
            .header(HEADER_NODE, node.to_hex())
            .header(HEADER_SEQ, seq.to_string())
            .send(&body[..])
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    })
    .await
    .map_err(|error| error.to_string())?
}
