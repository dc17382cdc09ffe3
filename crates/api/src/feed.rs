//! Alert streams as server-sent events, for any module whose alerts are numbered in order on
//! chain (trial alerts, monitoring alerts): each subscriber reads the committed state each time
//! the head moves, so an alert is sent once its block is committed, in order, none skipped; the
//! alert's sequence number is the event id, so `Last-Event-ID` resumes without a gap.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use medledger_node::ServiceError;
use serde::Serialize;

use crate::{ApiError, ApiResult, AppState};

/// Alerts numbered in order, as one subscriber may see them.
pub(crate) trait AlertSource: Clone + Send + Sync + 'static {
    type Alert: Serialize + Send + 'static;

    /// The alerts from `cursor` the subscriber may see (a bounded page), and the cursor after
    /// the last one read (seen or not).
    fn page(&self, cursor: u64) -> Result<(Vec<Self::Alert>, u64), ServiceError>;

    /// An alert's sequence number: its event id.
    fn id(alert: &Self::Alert) -> u64;

    /// The SSE event name.
    fn kind(alert: &Self::Alert) -> &'static str;
}

/// Where a subscriber starts: after the `Last-Event-ID` it received, or at `after` (default 0).
pub(crate) fn cursor(headers: &HeaderMap, after: Option<u64>) -> ApiResult<u64> {
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

/// The stream of `source`'s alerts from `cursor`, until the server shuts down.
pub(crate) fn stream<S: AlertSource>(state: &AppState, source: S, cursor: u64) -> Response {
    let feed = Feed {
        source,
        cursor,
        head: state.node.subscribe_head(),
        closing: state.closing.clone(),
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let alert = feed.next().await?;
        let event = Event::default()
            .id(S::id(&alert).to_string())
            .event(S::kind(&alert))
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
struct Feed<S: AlertSource> {
    source: S,
    cursor: u64,
    head: tokio::sync::watch::Receiver<medledger_types::Height>,
    /// The server is shutting down: the stream ends (the subscriber reconnects elsewhere or
    /// later, from its cursor).
    closing: tokio::sync::watch::Receiver<bool>,
    pending: VecDeque<S::Alert>,
}

impl<S: AlertSource> Feed<S> {
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
            let (source, cursor) = (self.source.clone(), self.cursor);
            let read = tokio::task::spawn_blocking(move || source.page(cursor)).await;
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
