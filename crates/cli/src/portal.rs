//! `medledger portal`: an organisation invites its members to the portal. The first invitation
//! hands this node custody of the member's key (the portal signs their transactions for their
//! passkey sessions); a later one re-binds a lost passkey.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use crate::client::Client;
use medledger_api::auth::AccessHeaders;

use crate::records::{expect_ok, signed};

#[derive(Subcommand)]
pub enum PortalCommand {
    /// Make a one-time link (valid a week) with which a member of the signer's organisation
    /// binds a passkey. Give `--member-key` the first time (the node then holds the member's
    /// key for them), or `--member` to re-bind a member the node already holds: their old
    /// passkey stops working and their sessions end. The signer is the organisation's root key.
    Invite {
        /// The member's key file, whose custody passes to the node.
        #[arg(long, conflicts_with = "member")]
        member_key: Option<PathBuf>,
        /// The member's public key (hex), to re-bind.
        #[arg(long)]
        member: Option<String>,
    },
}

/// Whether the node is reached over TLS or on this machine: the only ways a member's secret key
/// may travel to it.
fn private_channel(node: &str) -> bool {
    if node.starts_with("https://") {
        return true;
    }
    let host = node
        .strip_prefix("http://")
        .unwrap_or(node)
        .split('/')
        .next()
        .unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn run(node: &str, key: &std::path::Path, command: PortalCommand) -> Result<i32> {
    let client = &Client::new(node);
    let signer = crate::home::read_key(key)?;
    match command {
        PortalCommand::Invite { member_key, member } => {
            let body = match (member_key, member) {
                (Some(path), None) => {
                    if !private_channel(node) {
                        bail!(
                            "{node} is neither https nor this machine: a member's key must not \
                             cross a network in clear; hand it over on the node's own machine \
                             or over https"
                        );
                    }
                    let secret = crate::home::read_key(&path)?;
                    json!({"secret_key": hex::encode(secret.to_bytes())})
                }
                (None, Some(member)) => json!({"member": member}),
                _ => bail!("give --member-key (first invitation) or --member (re-binding)"),
            };
            let body = serde_json::to_vec(&body)?;
            let (status, answer) = signed(
                client,
                &signer,
                "POST",
                "/v1/portal/invitations",
                &body,
                &AccessHeaders::default(),
            )?;
            let answer = expect_ok(status, &answer)?;
            crate::print(&answer);
            if let Some(link) = answer["link"].as_str() {
                eprintln!("send the member this link; it works once, within a week: {link}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_only_over_tls_or_loopback() {
        for (node, private) in [
            ("https://node.hospital.example", true),
            ("http://127.0.0.1:8640", true),
            ("http://localhost:8640", true),
            ("http://[::1]:8640", true),
            ("http://10.0.0.5:8640", false),
            ("http://node.hospital.example", false),
            ("http://127.0.0.1.evil.example:80", false),
        ] {
            assert_eq!(private_channel(node), private, "{node}");
        }
    }
}
