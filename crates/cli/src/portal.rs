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

pub fn run(client: &Client, key: &std::path::Path, command: PortalCommand) -> Result<i32> {
    let signer = crate::home::read_key(key)?;
    match command {
        PortalCommand::Invite { member_key, member } => {
            let body = match (member_key, member) {
                (Some(path), None) => {
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
