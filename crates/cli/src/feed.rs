//! The commands every alert feed shares (trial alerts, monitoring alert changes): read or
//! follow the feed, and register, list and remove webhooks, against the module's API base
//! (`/v1/trials`, `/v1/monitor`).

use anyhow::Result;
use clap::Subcommand;
use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use serde_json::json;

use crate::client::Client;
use crate::records::{expect_ok, signed};

#[derive(Subcommand, Debug)]
pub enum FeedCommand {
    /// The alerts the signer may receive: one page, or with --follow the live stream (one JSON
    /// line per alert), resuming after --after.
    Alerts {
        #[arg(long)]
        after: Option<u64>,
        #[arg(long)]
        follow: bool,
        /// With --follow: stop after this many alerts.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Have this node POST the signer's alerts to a URL as they commit (signed by the node,
    /// retried until answered 2xx, resumed after a restart). The signer must be a member of the
    /// node's organisation.
    Webhook {
        #[arg(long)]
        url: String,
        /// Start from this alert sequence number (default: every alert).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// The signer's webhooks at this node, with how far delivery has come.
    Webhooks,
    /// Remove one of the signer's webhooks.
    Unhook {
        #[arg(long)]
        id: String,
    },
}

/// Runs a feed command against the feed under `base`.
pub fn run(client: &Client, key: &SecretKey, base: &str, command: FeedCommand) -> Result<i32> {
    let call = |method: &str, path: &str, body: &[u8]| -> Result<serde_json::Value> {
        let (status, bytes) = signed(client, key, method, path, body, &AccessHeaders::default())?;
        expect_ok(status, &bytes)
    };
    match command {
        FeedCommand::Alerts {
            after,
            follow: true,
            count,
        } => crate::client::follow_alerts(client, key, &format!("{base}/alerts"), after, count),
        FeedCommand::Alerts { after, .. } => {
            let path = format!("{base}/alerts?follow=false&after={}", after.unwrap_or(0));
            crate::print(&call("GET", &path, b"")?);
            Ok(0)
        }
        FeedCommand::Webhook { url, after } => {
            let body = serde_json::to_vec(&json!({ "url": url, "after": after }))?;
            crate::print(&call("POST", &format!("{base}/webhooks"), &body)?);
            Ok(0)
        }
        FeedCommand::Webhooks => {
            crate::print(&call("GET", &format!("{base}/webhooks"), b"")?);
            Ok(0)
        }
        FeedCommand::Unhook { id } => {
            call("DELETE", &format!("{base}/webhooks/{id}"), b"")?;
            Ok(0)
        }
    }
}
