//! The HTTP face of any module's alert feed ([`AlertFeed`]: trial alerts, monitoring alert
//! changes): `GET .../alerts` as server-sent events or one JSON page, and `.../webhooks` to
//! register, list and remove webhooks. A stream reads the committed state each time the head
//! moves, so an alert is sent once its block is committed, in order, none skipped; the alert's
//! sequence number is the event id, so `Last-Event-ID` resumes without a gap. The subscriber's
//! standing is read again for every page: a revoked member's stream stops delivering.
//!
//! Each module keeps its own documented handlers (for its OpenAPI paths) and calls these.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use medledger_crypto::PublicKey;
use medledger_node::webhooks::{AlertFeed, Webhooks};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsQuery {
    /// The first alert to send (its sequence number); `Last-Event-ID` overrides it.
    after: Option<u64>,
    /// `false` answers one JSON page instead of a stream.
    follow: Option<bool>,
}

/// `GET .../alerts`: the signer's alerts of `feed` as a stream, or one page with `follow=false`.
/// A subscriber who may see none is refused now rather than given an empty stream.
pub(crate) async fn alerts<F: AlertFeed>(
    state: &AppState,
    feed: F,
    request: (&Method, &Uri, &HeaderMap),
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (method, uri, headers) = request;
    let Query(query) = crate::parse_query(query)?;
    let (subscriber, _, _) = crate::signed_member(state, method, uri, headers, b"").await?;
    let cursor = cursor(headers, query.after)?;
    let probe = feed.clone();
    let (alerts, next) = blocking(move || Ok(probe.page(&subscriber, cursor)?)).await?;
    if query.follow == Some(false) {
        return Ok(Json(json!({ "alerts": alerts, "next": next })).into_response());
    }
    Ok(stream(state, feed, subscriber, cursor))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    /// Deliver alerts from this sequence number on (default 0: every alert).
    #[serde(default)]
    after: u64,
}

/// `POST .../webhooks`: registers a webhook of `feed` for the signer (201 with the webhook).
pub(crate) async fn add_webhook<F: AlertFeed>(
    state: &AppState,
    feed: F,
    request: (&Method, &Uri, &HeaderMap),
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (method, uri, headers) = request;
    let (key, parsed): (_, WebhookBody) =
        crate::signed_json_write(state, method, uri, headers, body).await?;
    let hook = blocking(move || Ok(Webhooks::add(&feed, key, parsed.url, parsed.after)?)).await?;
    Ok((StatusCode::CREATED, Json(hook)).into_response())
}

/// `GET .../webhooks`: the signer's webhooks of `feed`, with their cursors and latest failure.
pub(crate) async fn list_webhooks<F: AlertFeed>(
    state: &AppState,
    feed: F,
    request: (&Method, &Uri, &HeaderMap),
) -> ApiResult<Json<Value>> {
    let (method, uri, headers) = request;
    let (key, _, _) = crate::signed_member(state, method, uri, headers, b"").await?;
    Ok(Json(json!({ "webhooks": feed.webhooks().of(&key) })))
}

/// `DELETE .../webhooks/{id}`: removes one of the signer's webhooks of `feed`.
pub(crate) async fn remove_webhook<F: AlertFeed>(
    state: &AppState,
    feed: F,
    request: (&Method, &Uri, &HeaderMap),
    id: &str,
) -> ApiResult<StatusCode> {
    let (method, uri, headers) = request;
    let id = crate::parse_hash(id, "the webhook id")?;
    let (key, _, _) = crate::signed_member(state, method, uri, headers, b"").await?;
    blocking(move || Ok(feed.webhooks().remove(&key, &id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a subscriber starts: after the `Last-Event-ID` it received, or at `after` (default 0).
fn cursor(headers: &HeaderMap, after: Option<u64>) -> ApiResult<u64> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "malformed_cursor",
                        "Last-Event-ID must be an alert's sequence number",
                    )
                })?
                .saturating_add(1),
        ),
        None => None,
    };
    Ok(resume.or(after).unwrap_or(0))
}

/// The stream of `feed`'s alerts for `subscriber` from `cursor`, until the server shuts down.
pub(crate) fn stream<F: AlertFeed>(
    state: &AppState,
    feed: F,
    subscriber: PublicKey,
    cursor: u64,
) -> Response {
    let feed = Feed {
        source: feed,
        subscriber,
        cursor,
        head: state.node.subscribe_head(),
        closing: state.closing.clone(),
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let alert = feed.next().await?;
        let event = Event::default()
            .id(F::seq(&alert).to_string())
            .event(F::kind(&alert))
            .json_data(&alert)
            .unwrap_or_else(|_| Event::default().comment("unencodable alert"));
        Some((Ok::<Event, Infallible>(event), feed))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Resolves when the server starts shutting down; never, if nobody can tell it to.
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One subscriber's position in the alerts.
struct Feed<S: AlertFeed> {
    source: S,
    subscriber: PublicKey,
    cursor: u64,
    head: tokio::sync::watch::Receiver<medledger_types::Height>,
    /// The server is shutting down: the stream ends (the subscriber reconnects elsewhere or
    /// later, from its cursor).
    closing: tokio::sync::watch::Receiver<bool>,
    pending: VecDeque<S::Alert>,
}

impl<S: AlertFeed> Feed<S> {
    /// The next alert, waiting for blocks as needed; `None` when the node stops.
    async fn next(&mut self) -> Option<S::Alert> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(alert) = self.pending.pop_front() {
                return Some(alert);
            }
            // Seen before reading, so a block committed during the read wakes the next wait.
            self.head.borrow_and_update();
            let (source, subscriber, cursor) = (self.source.clone(), self.subscriber, self.cursor);
            let read = tokio::task::spawn_blocking(move || source.page(&subscriber, cursor)).await;
            match read {
                Ok(Ok((alerts, next))) => {
                    let progressed = next > self.cursor;
                    self.cursor = next;
                    self.pending.extend(alerts);
                    if !self.pending.is_empty() || progressed {
                        continue;
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "reading alerts failed; retrying at the next block");
                }
                Err(_) => return None,
            }
            tokio::select! {
                changed = self.head.changed() => if changed.is_err() {
                    return None;
                },
                () = closed(&mut self.closing) => return None,
            }
        }
    }
}
