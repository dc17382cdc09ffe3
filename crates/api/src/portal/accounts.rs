//! Who may use the portal, and as whom: the members whose signing keys this node holds for them
//! (custody), the passkeys (WebAuthn credentials) bound to each, the one-time invitations through
//! which an organisation binds a passkey, and the sessions a passkey opened.
//!
//! **Where a member's key lives.** The member's organisation hands this node custody of the
//! member's Ed25519 key (an invitation carries it, signed by the organisation's root key). The
//! node keeps it sealed (AES-256-GCM under a key derived from the node's own, the member's public
//! key as associated data) in `portal.redb` beside its data, and opens it only to sign a
//! transaction the member asked for in a session their passkey opened. Why on the node and not in
//! the browser: the organisation can re-bind a lost passkey without the member losing their
//! on-chain identity (a key kept in a browser dies with the browser, and the identity with it);
//! the portal stays script-free except for the passkey ceremony; and a patient's key never
//! depends on one device's storage. What it costs: the organisation's node can sign as its
//! members, so it is trusted as their custodian, as it already is as the custodian of their
//! records; every transaction it signs for them is on chain, attributable and audited.
//!
//! Keys, session tokens and invitation tokens are never logged; session and invitation tokens
//! are stored only as their SHA-256.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use medledger_crypto::envelope::{DataKey, NONCE_BYTES};
use medledger_crypto::{PublicKey, SecretKey, sha256};
use rand_core::RngCore;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::AuthenticationVerificationOptions;
use webauthn_rp::request::register::{
    CredProtect, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
    USER_HANDLE_MAX_LEN, UserHandle64,
};
use webauthn_rp::request::{AsciiDomain, ExtensionInfo, FixedCapHashSet, InsertResult, RpId};
use webauthn_rp::response::register::{DynamicState, StaticState};
use webauthn_rp::response::{CredentialId, SentChallenge};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication64, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration,
    RegistrationServerState,
};

/// A session ends after this long without a request.
pub const SESSION_IDLE_S: u64 = 15 * 60;
/// And after this long in any case.
pub const SESSION_LIFETIME_S: u64 = 12 * 3_600;
/// How long an invitation may wait to be used.
pub const INVITATION_TTL_S: u64 = 7 * 86_400;
/// Sessions held at once.
pub const SESSIONS_MAX: usize = 100_000;
/// Passkey ceremonies (registrations or sign-ins) in flight at once.
pub const CEREMONIES_MAX: usize = 10_000;
/// The largest WebAuthn answer read.
pub const CEREMONY_BYTES_MAX: usize = 64 * 1024;

/// Members in custody, by public key: [`Account`] as JSON.
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
/// WebAuthn user handle to member key, for sign-in with a discoverable passkey.
const HANDLES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("handles");
/// SHA-256 of an invitation token to [`Invitation`] as JSON.
const INVITATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invitations");

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("this invitation is unknown, already used or expired")]
    Invitation,
    #[error("no passkey is bound here for this member; ask your organisation for an invitation")]
    NotBound,
    #[error("this passkey is not registered on this node")]
    UnknownPasskey,
    #[error("the passkey's answer does not check: {0}")]
    Ceremony(String),
    #[error("this passkey request expired or was already used; start again")]
    NoCeremony,
    #[error("the node is busy with other sign-ins; try again in a moment")]
    Busy,
    #[error("the key given does not belong to member {0}")]
    WrongKey(PublicKey),
    #[error("the held key of member {0} does not open")]
    Custody(PublicKey),
    #[error("the portal's account store failed: {0}")]
    Store(String),
}

fn store_error(error: impl std::fmt::Display) -> AccountError {
    AccountError::Store(error.to_string())
}

/// A member in this node's custody.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    member: PublicKey,
    /// The organisation that handed over the key.
    org: String,
    /// The WebAuthn user handle (64 random bytes, hex): no personal data.
    user_handle: String,
    /// Nonce then ciphertext of the member's secret key, hex.
    sealed_key: String,
    passkeys: Vec<Passkey>,
    /// Bumped by every re-binding and by "sign out everywhere": older sessions end.
    generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Passkey {
    /// Credential id, hex.
    id: String,
    /// The credential's public key and extensions (webauthn_rp's encoding), hex.
    static_state: String,
    /// Signature counter and flags (7 bytes), hex.
    dynamic_state: String,
    created_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invitation {
    member: PublicKey,
    expires_s: u64,
}

/// A signed-in member.
#[derive(Debug, Clone)]
pub struct Session {
    pub member: PublicKey,
    /// The token every form of the session carries (the synchroniser pattern).
    pub csrf: String,
    created_s: u64,
    last_seen_s: u64,
    generation: u64,
}

/// What a registration ceremony needs beyond the library's state: whose invitation it is for.
struct PendingRegistration {
    token_hash: [u8; 32],
    member: PublicKey,
}

/// Accounts, passkeys, invitations and sessions.
pub struct Accounts {
    db: std::sync::Arc<Database>,
    seal_key: DataKey,
    rp_id: RpId,
    origin: String,
    sessions: Mutex<BTreeMap<[u8; 32], Session>>,
    registrations: Mutex<(
        FixedCapHashSet<RegistrationServerState<USER_HANDLE_MAX_LEN>>,
        BTreeMap<u128, PendingRegistration>,
    )>,
    sign_ins: Mutex<FixedCapHashSet<DiscoverableAuthenticationServerState>>,
    submissions: Mutex<BTreeMap<PublicKey, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The host of an origin (`https://portal.example:8443` → `portal.example`).
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let host = rest.split(':').next()?;
    // WebAuthn refuses IP addresses as relying party ids.
    let ip = host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[');
    (!host.is_empty() && !ip && !rest.contains('/')).then_some(host)
}

impl Accounts {
    /// Opens (or creates) the store at `path`. Passkeys are bound to `origin`'s host: the portal
    /// must be opened at exactly that origin (`http://localhost:PORT` for a local network: a
    /// browser accepts passkeys on `localhost` without TLS, and never on a bare IP address).
    pub fn open(path: &Path, seal_key: DataKey, origin: &str) -> Result<Accounts, AccountError> {
        let host = origin_host(origin).ok_or_else(|| {
            AccountError::Store(format!(
                "the portal origin {origin:?} is not scheme://host[:port]"
            ))
        })?;
        let rp_id = RpId::Domain(AsciiDomain::try_from(host.to_string()).map_err(|_| {
            AccountError::Store(format!(
                "passkeys need a domain name, and {host:?} is not one (open the portal at \
                 http://localhost:PORT, not an IP address)"
            ))
        })?);
        let db = Database::create(path).map_err(store_error)?;
        {
            // The file holds sealed keys: only the node's user reads it.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(store_error)?;
        }
        let txn = db.begin_write().map_err(store_error)?;
        for table in [ACCOUNTS, HANDLES, INVITATIONS] {
            txn.open_table(table).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)?;
        Ok(Accounts {
            db: std::sync::Arc::new(db),
            seal_key,
            rp_id,
            origin: origin.to_string(),
            sessions: Mutex::new(BTreeMap::new()),
            registrations: Mutex::new((FixedCapHashSet::new(CEREMONIES_MAX), BTreeMap::new())),
            sign_ins: Mutex::new(FixedCapHashSet::new(CEREMONIES_MAX)),
            submissions: Mutex::new(BTreeMap::new()),
        })
    }

    /// The store, for the node's consistent backups.
    pub fn database(&self) -> &std::sync::Arc<Database> {
        &self.db
    }

    /// The origin passkeys are bound to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn account(&self, member: &PublicKey) -> Result<Option<Account>, AccountError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(ACCOUNTS).map_err(store_error)?;
        let Some(bytes) = table.get(member.0.as_slice()).map_err(store_error)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(store_error)
    }

    /// The account as a write transaction sees it: what a change must start from, so that a
    /// change committed meanwhile (a re-binding, "sign out everywhere") is never written over.
    fn account_in(
        txn: &redb::WriteTransaction,
        member: &PublicKey,
    ) -> Result<Option<Account>, AccountError> {
        let table = txn.open_table(ACCOUNTS).map_err(store_error)?;
        let Some(bytes) = table.get(member.0.as_slice()).map_err(store_error)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(store_error)
    }

    /// Removes the member's invitations (and any expired one): a new invitation, or a passkey
    /// bound through one, leaves no older link that could bind another.
    fn drop_invitations(
        txn: &redb::WriteTransaction,
        member: &PublicKey,
        now_s: u64,
    ) -> Result<(), AccountError> {
        let mut invitations = txn.open_table(INVITATIONS).map_err(store_error)?;
        let stale: Vec<Vec<u8>> = invitations
            .iter()
            .map_err(store_error)?
            .filter_map(Result::ok)
            .filter(|(_, value)| {
                serde_json::from_slice::<Invitation>(value.value()).map_or(true, |invitation| {
                    invitation.expires_s <= now_s || invitation.member == *member
                })
            })
            .map(|(key, _)| key.value().to_vec())
            .collect();
        for key in stale {
            invitations.remove(key.as_slice()).map_err(store_error)?;
        }
        Ok(())
    }

    fn put_account(txn: &redb::WriteTransaction, account: &Account) -> Result<(), AccountError> {
        let bytes = serde_json::to_vec(account).map_err(store_error)?;
        txn.open_table(ACCOUNTS)
            .map_err(store_error)?
            .insert(account.member.0.as_slice(), bytes.as_slice())
            .map_err(store_error)?;
        Ok(())
    }

    /// Takes custody of `secret` (when given) for its member of `org`, or re-binds a member
    /// already held, and makes a one-time invitation to bind a passkey. Returns the token; the
    /// link is `/portal/welcome?invitation=<token>`. Using it replaces the member's passkeys and
    /// ends their sessions, which is how an organisation re-binds a lost passkey.
    pub fn invite(
        &self,
        member: PublicKey,
        org: &str,
        secret: Option<&SecretKey>,
        now_s: u64,
    ) -> Result<String, AccountError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        let account = match (Self::account_in(&txn, &member)?, secret) {
            (_, Some(secret)) if secret.public_key() != member => {
                return Err(AccountError::WrongKey(member));
            }
            (held, Some(secret)) => {
                let nonce: [u8; NONCE_BYTES] = random();
                let sealed = self.seal_key.seal(nonce, &member.0, &secret.to_bytes());
                let mut account = held.unwrap_or_else(|| Account {
                    member,
                    org: org.to_string(),
                    user_handle: hex::encode(random::<USER_HANDLE_MAX_LEN>()),
                    sealed_key: String::new(),
                    passkeys: Vec::new(),
                    generation: 0,
                });
                account.org = org.to_string();
                account.sealed_key = format!("{}{}", hex::encode(nonce), hex::encode(sealed));
                account
            }
            (Some(held), None) => held,
            (None, None) => return Err(AccountError::NotBound),
        };
        let token: [u8; 32] = random();
        let invitation = Invitation {
            member,
            expires_s: now_s + INVITATION_TTL_S,
        };
        Self::put_account(&txn, &account)?;
        {
            let handle = hex::decode(&account.user_handle).map_err(store_error)?;
            txn.open_table(HANDLES)
                .map_err(store_error)?
                .insert(handle.as_slice(), member.0.as_slice())
                .map_err(store_error)?;
            // The member's earlier links stop working, and expired ones go, so the table stays
            // bounded by the invitations of a week.
            Self::drop_invitations(&txn, &member, now_s)?;
            let mut invitations = txn.open_table(INVITATIONS).map_err(store_error)?;
            let bytes = serde_json::to_vec(&invitation).map_err(store_error)?;
            invitations
                .insert(sha256(&token).as_bytes().as_slice(), bytes.as_slice())
                .map_err(store_error)?;
        }
        txn.commit().map_err(store_error)?;
        Ok(hex::encode(token))
    }

    fn invitation(&self, token: &str, now_s: u64) -> Result<([u8; 32], Invitation), AccountError> {
        let token = hex::decode(token.trim()).map_err(|_| AccountError::Invitation)?;
        let hash = *sha256(&token).as_bytes();
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(INVITATIONS).map_err(store_error)?;
        let invitation: Invitation = match table.get(hash.as_slice()).map_err(store_error)? {
            Some(bytes) => serde_json::from_slice(bytes.value()).map_err(store_error)?,
            None => return Err(AccountError::Invitation),
        };
        if invitation.expires_s <= now_s {
            return Err(AccountError::Invitation);
        }
        Ok((hash, invitation))
    }

    /// The member an invitation is for, if it can still be used.
    pub fn invited(&self, token: &str, now_s: u64) -> Result<PublicKey, AccountError> {
        Ok(self.invitation(token, now_s)?.1.member)
    }

    /// Starts binding a passkey under an invitation: the options for
    /// `navigator.credentials.create` (as `PublicKeyCredentialCreationOptionsJSON`). `label` is
    /// the name the passkey is listed under on the person's device (no personal data).
    pub fn registration_options(
        &self,
        token: &str,
        label: &str,
        now_s: u64,
    ) -> Result<Vec<u8>, AccountError> {
        let (token_hash, invitation) = self.invitation(token, now_s)?;
        let account = self
            .account(&invitation.member)?
            .ok_or(AccountError::Invitation)?;
        let handle: [u8; USER_HANDLE_MAX_LEN] = hex::decode(&account.user_handle)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| AccountError::Store("a user handle is damaged".into()))?;
        let handle = UserHandle64::decode(handle).map_err(store_error)?;
        let user = PublicKeyCredentialUserEntity {
            name: label
                .try_into()
                .map_err(|_| AccountError::Store("the passkey label is not a user name".into()))?,
            id: &handle,
            display_name: None,
        };
        let mut options =
            PublicKeyCredentialCreationOptions::passkey(&self.rp_id, user, Vec::new());
        // Ask for credential protection (user verification required), but do not refuse the
        // many authenticators that cannot say: user verification is required of every
        // ceremony anyway.
        options.extensions.cred_protect =
            CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
        let (server, client) = options
            .start_ceremony()
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        let json = serde_json::to_vec(&client).map_err(store_error)?;
        let challenge = Borrow::<SentChallenge>::borrow(&server).0;
        let mut registrations = lock(&self.registrations);
        let (ceremonies, pending) = &mut *registrations;
        if !matches!(
            ceremonies.insert_or_replace_all_expired(server),
            InsertResult::Success
        ) {
            return Err(AccountError::Busy);
        }
        pending.retain(|challenge, _| ceremonies.contains(&SentChallenge(*challenge)));
        pending.insert(
            challenge,
            PendingRegistration {
                token_hash,
                member: invitation.member,
            },
        );
        Ok(json)
    }

    /// Finishes binding a passkey: checks the browser's answer (`RegistrationResponseJSON`)
    /// against the ceremony, then, in one write, stores the passkey as the member's only one,
    /// uses up the invitation and ends the member's other sessions. Binding the passkey proves
    /// the person holds it, so it opens a session: the token and the session are returned.
    pub fn register(&self, answer: &[u8], now_s: u64) -> Result<(String, Session), AccountError> {
        let registration: Registration = serde_json::from_slice(answer)
            .map_err(|error| AccountError::Ceremony(format!("not a registration: {error}")))?;
        let challenge = registration
            .challenge()
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        let (server, pending) = {
            let mut registrations = lock(&self.registrations);
            let (ceremonies, pending) = &mut *registrations;
            let server = ceremonies
                .take(&challenge)
                .ok_or(AccountError::NoCeremony)?;
            let pending = pending
                .remove(&challenge.0)
                .ok_or(AccountError::NoCeremony)?;
            (server, pending)
        };
        let origins = [self.origin.as_str()];
        let options = RegistrationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            ..RegistrationVerificationOptions::default()
        };
        let credential = server
            .verify(&self.rp_id, &registration, &options)
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut invitations = txn.open_table(INVITATIONS).map_err(store_error)?;
            // The invitation is used once: a second ceremony started under it finds it gone.
            if invitations
                .remove(pending.token_hash.as_slice())
                .map_err(store_error)?
                .is_none()
            {
                return Err(AccountError::Invitation);
            }
        }
        let mut account = {
            let table = txn.open_table(ACCOUNTS).map_err(store_error)?;
            let bytes = table
                .get(pending.member.0.as_slice())
                .map_err(store_error)?
                .ok_or(AccountError::Invitation)?;
            serde_json::from_slice::<Account>(bytes.value()).map_err(store_error)?
        };
        if hex::encode(credential.user_id().encode().map_err(store_error)?) != account.user_handle {
            return Err(AccountError::Ceremony(
                "the passkey was made for another member".into(),
            ));
        }
        let (id, _, _, static_state, dynamic_state, _) = credential.into_parts();
        account.passkeys = vec![Passkey {
            id: hex::encode(id.as_ref()),
            static_state: hex::encode(static_state.encode().map_err(store_error)?),
            dynamic_state: hex::encode(dynamic_state.encode().map_err(store_error)?),
            created_s: now_s,
        }];
        account.generation += 1;
        Self::put_account(&txn, &account)?;
        Self::drop_invitations(&txn, &account.member, now_s)?;
        txn.commit().map_err(store_error)?;
        self.end_sessions(&account.member);
        self.open_session(&account, now_s)
    }

    /// Starts a sign-in: the options for `navigator.credentials.get` (a discoverable passkey, so
    /// the person picks theirs and types no name).
    pub fn sign_in_options(&self) -> Result<Vec<u8>, AccountError> {
        let (server, client) = DiscoverableCredentialRequestOptions::passkey(&self.rp_id)
            .start_ceremony()
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        let json = serde_json::to_vec(&client).map_err(store_error)?;
        if !matches!(
            lock(&self.sign_ins).insert_or_replace_all_expired(server),
            InsertResult::Success
        ) {
            return Err(AccountError::Busy);
        }
        Ok(json)
    }

    /// Finishes a sign-in: checks the passkey's assertion (`AuthenticationResponseJSON`),
    /// records its signature counter, and opens a session. Returns the session token (for the
    /// cookie) and the session.
    pub fn sign_in(&self, answer: &[u8], now_s: u64) -> Result<(String, Session), AccountError> {
        let authentication: DiscoverableAuthentication64 = serde_json::from_slice(answer)
            .map_err(|error| AccountError::Ceremony(format!("not an assertion: {error}")))?;
        let challenge = authentication
            .challenge()
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        let server = lock(&self.sign_ins)
            .take(&challenge)
            .ok_or(AccountError::NoCeremony)?;
        let handle = authentication.response().user_handle();
        let handle_bytes = handle.encode().map_err(store_error)?;
        let member = {
            let txn = self.db.begin_read().map_err(store_error)?;
            let table = txn.open_table(HANDLES).map_err(store_error)?;
            let bytes = table
                .get(handle_bytes.as_slice())
                .map_err(store_error)?
                .ok_or(AccountError::UnknownPasskey)?;
            let key = PublicKey(
                bytes
                    .value()
                    .try_into()
                    .map_err(|_| AccountError::UnknownPasskey)?,
            );
            key.check().map_err(|_| AccountError::UnknownPasskey)?;
            key
        };
        let mut account = self.account(&member)?.ok_or(AccountError::UnknownPasskey)?;
        let id_hex = hex::encode(authentication.raw_id().as_ref());
        let index = account
            .passkeys
            .iter()
            .position(|passkey| passkey.id == id_hex)
            .ok_or(AccountError::UnknownPasskey)?;
        let stored = &account.passkeys[index];
        let id_bytes = hex::decode(&stored.id).map_err(store_error)?;
        let static_bytes = hex::decode(&stored.static_state).map_err(store_error)?;
        let dynamic_bytes: [u8; 7] = hex::decode(&stored.dynamic_state)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| AccountError::Store("a passkey's state is damaged".into()))?;
        let mut credential = AuthenticatedCredential::new(
            CredentialId::decode(id_bytes.as_slice()).map_err(store_error)?,
            handle,
            StaticState::decode(static_bytes.as_slice()).map_err(store_error)?,
            DynamicState::decode(dynamic_bytes).map_err(store_error)?,
        )
        .map_err(store_error)?;
        let origins = [self.origin.as_str()];
        let options = AuthenticationVerificationOptions::<&str, &str> {
            allowed_origins: &origins,
            ..AuthenticationVerificationOptions::default()
        };
        let changed = server
            .verify(&self.rp_id, &authentication, &mut credential, &options)
            .map_err(|error| AccountError::Ceremony(error.to_string()))?;
        // Written from the account as it stands now: a re-binding or "sign out everywhere"
        // committed since the read above wins, and this sign-in fails.
        let txn = self.db.begin_write().map_err(store_error)?;
        let mut current = Self::account_in(&txn, &member)?.ok_or(AccountError::UnknownPasskey)?;
        if current.generation != account.generation {
            return Err(AccountError::UnknownPasskey);
        }
        let index = current
            .passkeys
            .iter()
            .position(|passkey| passkey.id == id_hex)
            .ok_or(AccountError::UnknownPasskey)?;
        if changed {
            current.passkeys[index].dynamic_state =
                hex::encode(credential.dynamic_state().encode().map_err(store_error)?);
            Self::put_account(&txn, &current)?;
        }
        txn.commit().map_err(store_error)?;
        account = current;
        self.open_session(&account, now_s)
    }

    fn open_session(
        &self,
        account: &Account,
        now_s: u64,
    ) -> Result<(String, Session), AccountError> {
        let token: [u8; 32] = random();
        let session = Session {
            member: account.member,
            csrf: hex::encode(random::<32>()),
            created_s: now_s,
            last_seen_s: now_s,
            generation: account.generation,
        };
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= SESSIONS_MAX {
            sessions.retain(|_, session| Self::live(session, now_s));
            if sessions.len() >= SESSIONS_MAX {
                return Err(AccountError::Busy);
            }
        }
        sessions.insert(*sha256(&token).as_bytes(), session.clone());
        Ok((hex::encode(token), session))
    }

    fn live(session: &Session, now_s: u64) -> bool {
        now_s < session.last_seen_s + SESSION_IDLE_S
            && now_s < session.created_s + SESSION_LIFETIME_S
    }

    /// The session a cookie's token names, if it is still live; a request keeps it alive
    /// (`touch`). A session opened before the member's last re-binding or "sign out
    /// everywhere" is over.
    pub fn session(&self, token: &str, now_s: u64, touch: bool) -> Option<Session> {
        let token = hex::decode(token.trim()).ok()?;
        let key = *sha256(&token).as_bytes();
        let found = lock(&self.sessions).get(&key).cloned()?;
        let current = self
            .account(&found.member)
            .ok()
            .flatten()
            .is_some_and(|account| account.generation == found.generation);
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(&key)?;
        if !current || !Self::live(session, now_s) {
            sessions.remove(&key);
            return None;
        }
        if touch {
            session.last_seen_s = now_s;
        }
        Some(session.clone())
    }

    /// The lock a member's transactions are signed and submitted under, one at a time, so
    /// that each takes the next nonce.
    pub fn submission_lock(&self, member: &PublicKey) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        lock(&self.submissions).entry(*member).or_default().clone()
    }

    /// Ends the session a cookie's token names.
    pub fn sign_out(&self, token: &str) {
        if let Ok(token) = hex::decode(token.trim()) {
            lock(&self.sessions).remove(sha256(&token).as_bytes());
        }
    }

    /// Ends every session of `member`, on this node.
    pub fn end_sessions(&self, member: &PublicKey) {
        lock(&self.sessions).retain(|_, session| session.member != *member);
    }

    /// Ends every session of `member` and makes sure none opened before comes back.
    pub fn sign_out_everywhere(&self, member: &PublicKey) -> Result<(), AccountError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        if let Some(mut account) = self.account(member)? {
            account.generation += 1;
            Self::put_account(&txn, &account)?;
        }
        txn.commit().map_err(store_error)?;
        self.end_sessions(member);
        Ok(())
    }

    /// Whether a member has a passkey bound here.
    pub fn is_bound(&self, member: &PublicKey) -> Result<bool, AccountError> {
        Ok(self
            .account(member)?
            .is_some_and(|account| !account.passkeys.is_empty()))
    }

    /// The member's key, opened to sign what they asked for in `session`. A session older than
    /// the member's last re-binding or "sign out everywhere" opens nothing.
    pub fn signing_key(&self, session: &Session) -> Result<SecretKey, AccountError> {
        let account = self
            .account(&session.member)?
            .ok_or(AccountError::NotBound)?;
        if account.generation != session.generation {
            return Err(AccountError::NotBound);
        }
        let sealed =
            hex::decode(&account.sealed_key).map_err(|_| AccountError::Custody(session.member))?;
        if sealed.len() < NONCE_BYTES {
            return Err(AccountError::Custody(session.member));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce
            .try_into()
            .map_err(|_| AccountError::Custody(session.member))?;
        let plain = self
            .seal_key
            .open(nonce, &session.member.0, ciphertext)
            .map_err(|_| AccountError::Custody(session.member))?;
        let bytes: [u8; 32] = plain
            .try_into()
            .map_err(|_| AccountError::Custody(session.member))?;
        let secret = SecretKey::from_bytes(bytes);
        if secret.public_key() != session.member {
            return Err(AccountError::Custody(session.member));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(dir: &Path) -> Accounts {
        Accounts::open(
            &dir.join("portal.redb"),
            DataKey([7; 32]),
            "http://localhost:8640",
        )
        .expect("opens")
    }

    /// An invitation carries the member's key into custody, sealed; it starts a passkey
    /// ceremony for that member on this origin's host; the key opens only for the member.
    #[test]
    fn an_invitation_holds_the_key_and_starts_a_ceremony() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = accounts(dir.path());
        let secret = SecretKey::from_seed(3);
        let member = secret.public_key();
        let token = accounts
            .invite(member, "hospital", Some(&secret), 1_000)
            .expect("invited");
        assert_eq!(accounts.invited(&token, 1_000).expect("usable"), member);
        assert!(matches!(
            accounts.invited(&token, 1_000 + INVITATION_TTL_S),
            Err(AccountError::Invitation)
        ));
        assert!(matches!(
            accounts.invited("00", 1_000),
            Err(AccountError::Invitation)
        ));
        let options: serde_json::Value = serde_json::from_slice(
            &accounts
                .registration_options(&token, "hospital-patient", 1_000)
                .expect("options"),
        )
        .expect("json");
        println!("{options:#}");
        assert_eq!(options["rp"]["id"], "localhost");
        assert_eq!(options["user"]["name"], "hospital-patient");
        // The file holds the key only sealed.
        let bytes = std::fs::read(dir.path().join("portal.redb")).expect("store");
        assert!(!bytes.windows(32).any(|w| w == secret.to_bytes()));
        // Someone else's key is refused; so is re-binding a member never held.
        let other = SecretKey::from_seed(4);
        assert!(matches!(
            accounts.invite(member, "hospital", Some(&other), 1_000),
            Err(AccountError::WrongKey(_))
        ));
        assert!(matches!(
            accounts.invite(other.public_key(), "hospital", None, 1_000),
            Err(AccountError::NotBound)
        ));
    }

    #[test]
    fn passkeys_need_a_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        for origin in ["http://127.0.0.1:8640", "localhost", "http://", "ftp://x"] {
            assert!(
                Accounts::open(&dir.path().join("p.redb"), DataKey([7; 32]), origin).is_err(),
                "{origin}"
            );
        }
    }
}
