//! Fungible medical tokens, as a ledger module: the part of `docs/design/payments.md` that
//! settlement, rewards and escrow build on.
//!
//! - **Classes** (a consortium's settlement token, a reward token) exist by governance: an
//!   organisation proposes one (symbol, name, decimals, issuing organisations) and it is created
//!   once two thirds of the organisations approved, the rule validator changes follow.
//! - **Issuers** (the root keys of the class's issuing organisations) mint to any member and burn
//!   from their own balance.
//! - **Transfers** between members, zero included. An account is a key that acts on the chain
//!   (an enrolled, unrevoked member, an organisation's root key or a validator): paying any other
//!   key is refused, so a mistyped key never swallows funds.
//! - **Allowances** without ERC-20's approve race: `Approve` is compare-and-set (the allowance
//!   the owner expects to replace must be the current one), and `IncreaseAllowance` /
//!   `DecreaseAllowance` change it by a difference (below zero is refused, not clamped).
//! - **Movements.** Every mint, burn and transfer is one entry of its class's movement log, with
//!   a reason code from a closed list and an optional 32-byte reference (a claim, a request).
//!   Balances and movements are state entries, so a light client proves them against genesis
//!   like any other. An account's statement is not state: a node indexes it from the movement
//!   logs (`classes` lists every class; each class counts its movements), so a transfer writes
//!   its two balances, its movement and its class, nothing per party.
//!
//! Amounts are integers in minor units (u128), written as decimal strings in JSON so no client
//! rounds them. Every sum is checked: an overflow is a refusal.
//!
//! - **Escrow.** Funds locked against a claim or an authorisation (`Lock`) leave the payer's
//!   balance for the escrow; the arbiter organisation releases them to the payee or returns them.
//! - **Rewards.** An issuer's reward program mints to patients (research sharing, adherence), at
//!   most its cap per patient and period, the period taken from block time: by the issuer's
//!   `Reward`, or by the program's rule, a fixed amount per event (`per_event`) paid without the
//!   issuer: to each patient a research release names (the research module asks, by an effect),
//!   and to a care plan's patient when a provider of the plan's custodian attests its goals met
//!   (`AttestAdherence`, once per plan and period). A rule pays what is left under the cap.
//!
//! **Invariant (conservation):** for every class, the balances and the locked escrows sum to
//! `minted - burned`; no operation, accepted or refused, changes that.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, Module, ModuleError, Standing, TxContext, View, is_approved, org_exists,
    organisations, read, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::Height;
use serde::{Deserialize, Serialize};

/// The most organisations that may issue one class.
pub const ISSUERS_MAX: usize = 8;
/// The longest class name.
pub const NAME_BYTES_MAX: usize = 64;
/// The longest symbol.
pub const SYMBOL_BYTES_MAX: usize = 12;
/// The most decimals a class may have (as ERC-20 tokens usually do).
pub const DECIMALS_MAX: u8 = 18;
/// The longest reward program id.
pub const PROGRAM_ID_BYTES_MAX: usize = 48;

/// An amount in a class's minor units. JSON carries it as a decimal string.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Amount(pub u128);

impl From<Amount> for String {
    fn from(amount: Amount) -> String {
        amount.0.to_string()
    }
}

impl TryFrom<String> for Amount {
    type Error = String;

    fn try_from(text: String) -> Result<Amount, String> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "an amount is a decimal string of minor units, not {text:?}"
            ));
        }
        text.parse()
            .map(Amount)
            .map_err(|_| format!("{text} is more than a token amount can hold"))
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why value moved. A closed list, so statements and reconciliations can be summed by reason.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// New value issued.
    Issuance = 0,
    /// Value withdrawn by its issuer.
    Redemption = 1,
    /// A payer settles a provider's claim.
    Settlement = 2,
    /// The patient's part of a claim (copay, coinsurance, deductible).
    PatientShare = 3,
    /// Money returned.
    Refund = 4,
    /// A reward to a patient (research data sharing, adherence).
    Reward = 5,
    /// A correction.
    Adjustment = 6,
    /// A fee.
    Fee = 7,
    /// Anything else between members.
    Transfer = 8,
    /// Funds locked in escrow against a claim or an authorisation.
    Escrow = 9,
}

/// A token class.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TokenClass {
    pub symbol: String,
    pub name: String,
    pub decimals: u8,
    /// The organisations whose root keys mint and burn it.
    pub issuers: Vec<String>,
    pub minted: Amount,
    pub burned: Amount,
    /// What escrows hold now (part of the supply, in no balance).
    pub escrowed: Amount,
    /// How many movements its log holds.
    pub movements: u64,
    pub created_at: Height,
}

impl TokenClass {
    /// What is in circulation: minted less burned, in balances or escrow.
    pub fn supply(&self) -> u128 {
        self.minted.0 - self.burned.0
    }
}

/// Funds locked against a claim or a prior authorisation, released to the payee or returned to
/// the payer by the arbiter organisation (the payer's, as adjudication decides).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Escrow {
    pub id: Hash,
    pub symbol: String,
    pub payer: PublicKey,
    pub payee: PublicKey,
    pub amount: Amount,
    pub arbiter: String,
    pub reference: Option<Hash>,
    pub state: EscrowState,
    pub locked_at: Height,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EscrowState {
    Locked,
    Released { height: Height },
    Returned { height: Height },
}

/// What a reward program pays patients for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum RewardPurpose {
    /// Sharing data for research (a release naming the patient is the reference).
    ResearchSharing = 0,
    /// Adherence to a treatment plan: a care plan's goals met, as the provider attests.
    Adherence = 1,
}

/// An issuer's reward program: it mints rewards to patients, at most `cap_per_period` to one
/// patient in each period of `period_ms` (periods are counted from the epoch in block time).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RewardProgram {
    pub id: String,
    pub symbol: String,
    pub issuer: String,
    pub purpose: RewardPurpose,
    pub cap_per_period: Amount,
    pub period_ms: u64,
    /// The program's rule, when it has one: what each event of its purpose pays, without the
    /// issuer (a research release naming the patient; an attestation that the patient's care
    /// plan met its goals), never more than what the cap leaves in the period.
    #[serde(default)]
    pub per_event: Option<Amount>,
}

/// An attestation that a care plan met its goals in one period of an adherence program.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Attestation {
    pub program: String,
    /// The CarePlan record.
    pub care_plan: Hash,
    pub patient: PublicKey,
    /// Who attested: a practitioner of the plan's custodian, or its root key.
    pub by: PublicKey,
    pub period: u64,
    /// What the rule paid (less than `per_event` when the cap left less).
    pub paid: Amount,
    pub tx: Hash,
    pub height: Height,
}

/// What a class is to be, as proposed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClassSpec {
    pub symbol: String,
    pub name: String,
    pub decimals: u8,
    pub issuers: Vec<String>,
}

/// A class awaiting the organisations' approval.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClassProposal {
    pub spec: ClassSpec,
    /// Approving organisations, sorted; the proposer's counts.
    pub approvals: Vec<String>,
    pub proposed_at: Height,
}

/// One movement of value: a mint (no `from`), a burn (no `to`) or a transfer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Movement {
    pub symbol: String,
    pub seq: u64,
    pub from: Option<PublicKey>,
    pub to: Option<PublicKey>,
    /// The escrow the value went into (no `to`) or came out of (no `from`).
    pub escrow: Option<Hash>,
    pub amount: Amount,
    pub reason: Reason,
    pub reference: Option<Hash>,
    /// Who sent the transaction (the owner, a spender under an allowance, or an issuer).
    pub by: PublicKey,
    pub tx: Hash,
    pub height: Height,
    pub time_ms: u64,
}

/// The tokens module's operations. Their order is their payload tag (from the registry's base):
/// only ever append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokensOp {
    /// An organisation's root key proposes a class (its own approval counts).
    ProposeClass { spec: ClassSpec },
    /// An organisation's root key approves a proposed class.
    ApproveClass { symbol: String },
    /// An issuer's root key issues `amount` to `to`.
    Mint {
        symbol: String,
        to: PublicKey,
        amount: Amount,
        reference: Option<Hash>,
    },
    /// An issuer's root key withdraws `amount` from its own balance.
    Burn {
        symbol: String,
        amount: Amount,
        reference: Option<Hash>,
    },
    /// The sender pays `to`.
    Transfer {
        symbol: String,
        to: PublicKey,
        amount: Amount,
        reason: Reason,
        reference: Option<Hash>,
    },
    /// Sets the allowance of `spender` to `amount` if it is `expected` now (compare-and-set).
    Approve {
        symbol: String,
        spender: PublicKey,
        expected: Amount,
        amount: Amount,
    },
    IncreaseAllowance {
        symbol: String,
        spender: PublicKey,
        by: Amount,
    },
    DecreaseAllowance {
        symbol: String,
        spender: PublicKey,
        by: Amount,
    },
    /// The sender, a spender of `from`, pays `to` from `from`'s balance, within its allowance.
    TransferFrom {
        symbol: String,
        from: PublicKey,
        to: PublicKey,
        amount: Amount,
        reason: Reason,
        reference: Option<Hash>,
    },
    /// The sender locks `amount` in a new escrow `id` for `payee`, decided by `arbiter`.
    Lock {
        id: Hash,
        symbol: String,
        payee: PublicKey,
        amount: Amount,
        arbiter: String,
        reference: Option<Hash>,
    },
    /// The arbiter releases an escrow to its payee.
    Release { id: Hash },
    /// The arbiter returns an escrow to its payer.
    Return { id: Hash },
    /// An issuer's root key starts a reward program.
    CreateRewardProgram { program: RewardProgram },
    /// The program's issuer rewards a patient, within the program's cap for the period.
    Reward {
        program: String,
        patient: PublicKey,
        amount: Amount,
        reference: Option<Hash>,
    },
    /// A practitioner of a CarePlan record's custodian (or its root key) attests that the plan
    /// met its goals: an adherence program's rule pays the plan's patient, once per plan and
    /// period.
    AttestAdherence { program: String, care_plan: Hash },
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("only an organisation's root key governs token classes")]
    NotAnOrganisation,
    #[error("token class {0} exists")]
    ClassExists(String),
    #[error("token class {0} is already proposed")]
    AlreadyProposed(String),
    #[error("no token class {0}")]
    UnknownClass(String),
    #[error("no proposal of token class {0}")]
    NoProposal(String),
    #[error("organisation {0} already approved")]
    AlreadyApproved(String),
    #[error("unknown organisation {0}")]
    UnknownOrganisation(String),
    #[error("only the root key of an issuer of {0} mints or burns it")]
    NotIssuer(String),
    #[error("{account} holds {available} of {symbol}, not {needed}")]
    InsufficientBalance {
        symbol: String,
        account: PublicKey,
        needed: Amount,
        available: Amount,
    },
    #[error("the allowance is {available}, not {needed}")]
    InsufficientAllowance { needed: Amount, available: Amount },
    #[error("the allowance is {current}, not the {expected} the owner expected to replace")]
    AllowanceChanged { expected: Amount, current: Amount },
    #[error(
        "{0} is not an account: only enrolled, unrevoked members and organisations hold tokens"
    )]
    UnknownAccount(PublicKey),
    #[error("the amount would overflow")]
    Overflow,
    #[error("escrow {0} exists")]
    EscrowExists(Hash),
    #[error("no escrow {0}")]
    UnknownEscrow(Hash),
    #[error("escrow {0} was settled already")]
    EscrowSettled(Hash),
    #[error("only organisation {0} (its root key or an insurer of it) decides this escrow")]
    NotArbiter(String),
    #[error("reward program {0} exists")]
    ProgramExists(String),
    #[error("no reward program {0}")]
    UnknownProgram(String),
    #[error("{0} is not a patient")]
    NotAPatient(PublicKey),
    #[error("the reward would pay {paid} in this period, over the cap of {cap}")]
    OverCap { paid: Amount, cap: Amount },
    #[error("reward program {0} pays by no rule")]
    NoRule(String),
    #[error("reward program {program} is for {purpose:?}")]
    WrongPurpose {
        program: String,
        purpose: RewardPurpose,
    },
    #[error("no CarePlan record {0}")]
    UnknownCarePlan(Hash),
    #[error("only a practitioner of {0}, the care plan's custodian, or its root key attests it")]
    NotCustodian(String),
    #[error("the care plan's patient holds no key on the chain")]
    PatientUnlinked,
    #[error("care plan {0} was attested in this period already")]
    AlreadyAttested(Hash),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for TokensError {
    fn code(&self) -> &'static str {
        match self {
            TokensError::Invalid { .. } => "invalid",
            TokensError::NotAnOrganisation => "not_an_organisation",
            TokensError::ClassExists(_) => "class_exists",
            TokensError::AlreadyProposed(_) => "already_proposed",
            TokensError::UnknownClass(_) => "unknown_class",
            TokensError::NoProposal(_) => "no_proposal",
            TokensError::AlreadyApproved(_) => "already_approved",
            TokensError::UnknownOrganisation(_) => "unknown_organisation",
            TokensError::NotIssuer(_) => "not_issuer",
            TokensError::InsufficientBalance { .. } => "insufficient_balance",
            TokensError::InsufficientAllowance { .. } => "insufficient_allowance",
            TokensError::AllowanceChanged { .. } => "allowance_changed",
            TokensError::UnknownAccount(_) => "unknown_account",
            TokensError::Overflow => "overflow",
            TokensError::EscrowExists(_) => "escrow_exists",
            TokensError::UnknownEscrow(_) => "unknown_escrow",
            TokensError::EscrowSettled(_) => "escrow_settled",
            TokensError::NotArbiter(_) => "not_arbiter",
            TokensError::ProgramExists(_) => "program_exists",
            TokensError::UnknownProgram(_) => "unknown_program",
            TokensError::NotAPatient(_) => "not_a_patient",
            TokensError::OverCap { .. } => "over_cap",
            TokensError::NoRule(_) => "no_rule",
            TokensError::WrongPurpose { .. } => "wrong_purpose",
            TokensError::UnknownCarePlan(_) => "unknown_care_plan",
            TokensError::NotCustodian(_) => "not_custodian",
            TokensError::PatientUnlinked => "patient_unlinked",
            TokensError::AlreadyAttested(_) => "already_attested",
            TokensError::State(_) => "state_error",
        }
    }
}

// Keys.

pub fn key_class(symbol: &str) -> Vec<u8> {
    format!("token-class/{symbol}").into_bytes()
}

pub fn key_proposal(symbol: &str) -> Vec<u8> {
    format!("token-proposal/{symbol}").into_bytes()
}

pub fn key_balance(symbol: &str, account: &PublicKey) -> Vec<u8> {
    format!("token-balance/{symbol}/{account}").into_bytes()
}

pub fn key_allowance(symbol: &str, owner: &PublicKey, spender: &PublicKey) -> Vec<u8> {
    format!("token-allowance/{symbol}/{owner}/{spender}").into_bytes()
}

pub fn key_movement(symbol: &str, seq: u64) -> Vec<u8> {
    format!("token-movement/{symbol}/{seq:020}").into_bytes()
}

/// The symbols of every class, in the order they were created.
pub const KEY_CLASSES: &[u8] = b"token-classes/list";

pub fn key_escrow(id: &Hash) -> Vec<u8> {
    format!("token-escrow/{id}").into_bytes()
}

pub fn key_program(id: &str) -> Vec<u8> {
    format!("token-reward-program/{id}").into_bytes()
}

/// The programs of one purpose that pay by a rule, in creation order.
pub fn key_rules(purpose: RewardPurpose) -> Vec<u8> {
    let name = match purpose {
        RewardPurpose::ResearchSharing => "research_sharing",
        RewardPurpose::Adherence => "adherence",
    };
    format!("token-reward-rules/{name}").into_bytes()
}

pub fn key_attestation(program: &str, care_plan: &Hash, period: u64) -> Vec<u8> {
    format!("token-adherence/{program}/{care_plan}/{period:020}").into_bytes()
}

pub fn key_reward_paid(program: &str, patient: &PublicKey, period: u64) -> Vec<u8> {
    format!("token-reward-paid/{program}/{patient}/{period:020}").into_bytes()
}

// Queries.

pub fn class(state: &dyn StateRead, symbol: &str) -> Result<Option<TokenClass>, StateError> {
    read(state, &key_class(symbol))
}

/// Every class's symbol, in the order the classes were created.
pub fn classes(state: &dyn StateRead) -> Result<Vec<String>, StateError> {
    Ok(read(state, KEY_CLASSES)?.unwrap_or_default())
}

pub fn proposal(state: &dyn StateRead, symbol: &str) -> Result<Option<ClassProposal>, StateError> {
    read(state, &key_proposal(symbol))
}

pub fn balance(
    state: &dyn StateRead,
    symbol: &str,
    account: &PublicKey,
) -> Result<u128, StateError> {
    Ok(read::<Amount>(state, &key_balance(symbol, account))?.map_or(0, |amount| amount.0))
}

pub fn allowance(
    state: &dyn StateRead,
    symbol: &str,
    owner: &PublicKey,
    spender: &PublicKey,
) -> Result<u128, StateError> {
    Ok(read::<Amount>(state, &key_allowance(symbol, owner, spender))?.map_or(0, |amount| amount.0))
}

pub fn escrow(state: &dyn StateRead, id: &Hash) -> Result<Option<Escrow>, StateError> {
    read(state, &key_escrow(id))
}

pub fn reward_program(
    state: &dyn StateRead,
    id: &str,
) -> Result<Option<RewardProgram>, StateError> {
    read(state, &key_program(id))
}

/// What `program` paid `patient` in the period `time_ms` falls in.
pub fn reward_paid(
    state: &dyn StateRead,
    program: &RewardProgram,
    patient: &PublicKey,
    time_ms: u64,
) -> Result<u128, StateError> {
    let period = time_ms / program.period_ms.max(1);
    Ok(
        read::<Amount>(state, &key_reward_paid(&program.id, patient, period))?
            .map_or(0, |amount| amount.0),
    )
}

/// The programs of `purpose` that pay by a rule.
pub fn rules(state: &dyn StateRead, purpose: RewardPurpose) -> Result<Vec<String>, StateError> {
    Ok(read(state, &key_rules(purpose))?.unwrap_or_default())
}

pub fn attestation(
    state: &dyn StateRead,
    program: &str,
    care_plan: &Hash,
    period: u64,
) -> Result<Option<Attestation>, StateError> {
    read(state, &key_attestation(program, care_plan, period))
}

pub fn movement(
    state: &dyn StateRead,
    symbol: &str,
    seq: u64,
) -> Result<Option<Movement>, StateError> {
    read(state, &key_movement(symbol, seq))
}

// Checks.

fn invalid(field: &'static str, reason: impl Into<String>) -> TokensError {
    TokensError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub fn check_symbol(symbol: &str) -> Result<(), TokensError> {
    if symbol.is_empty()
        || symbol.len() > SYMBOL_BYTES_MAX
        || !symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(invalid(
            "symbol",
            format!("1 to {SYMBOL_BYTES_MAX} capital letters or digits"),
        ));
    }
    Ok(())
}

fn check_spec(state: &dyn StateRead, spec: &ClassSpec) -> Result<(), TokensError> {
    check_symbol(&spec.symbol)?;
    if spec.name.is_empty()
        || spec.name.len() > NAME_BYTES_MAX
        || spec.name.chars().any(char::is_control)
    {
        return Err(invalid(
            "name",
            format!("1 to {NAME_BYTES_MAX} bytes of text"),
        ));
    }
    if spec.decimals > DECIMALS_MAX {
        return Err(invalid("decimals", format!("at most {DECIMALS_MAX}")));
    }
    if spec.issuers.is_empty() || spec.issuers.len() > ISSUERS_MAX {
        return Err(invalid(
            "issuers",
            format!("1 to {ISSUERS_MAX} organisations"),
        ));
    }
    let mut sorted = spec.issuers.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != spec.issuers.len() {
        return Err(invalid("issuers", "an organisation is named twice"));
    }
    for org in &spec.issuers {
        if !org_exists(state, org)? {
            return Err(TokensError::UnknownOrganisation(org.clone()));
        }
    }
    Ok(())
}

fn existing(state: &dyn StateRead, symbol: &str) -> Result<TokenClass, TokensError> {
    class(state, symbol)?.ok_or_else(|| TokensError::UnknownClass(symbol.to_string()))
}

/// Refuses a key that does not act on the chain and is no contract's account.
fn check_account(state: &dyn StateRead, account: &PublicKey) -> Result<(), TokensError> {
    match standing(state, account)? {
        Standing::Acts(_) => Ok(()),
        _ if medledger_module::is_contract_account(state, account)? => Ok(()),
        _ => Err(TokensError::UnknownAccount(*account)),
    }
}

fn sender_org(tx: &TxContext<'_>) -> Result<String, TokensError> {
    match tx.authority {
        Authority::Organisation { org } => Ok(org.clone()),
        Authority::Member { .. } => Err(TokensError::NotAnOrganisation),
    }
}

fn check_issuer(tx: &TxContext<'_>, record: &TokenClass) -> Result<(), TokensError> {
    match tx.authority {
        Authority::Organisation { org } if record.issuers.contains(org) => Ok(()),
        _ => Err(TokensError::NotIssuer(record.symbol.clone())),
    }
}

/// Adds `amount` to a running total, refusing an overflow.
fn add_to(total: &mut Amount, amount: u128) -> Result<(), TokensError> {
    total.0 = total.0.checked_add(amount).ok_or(TokensError::Overflow)?;
    Ok(())
}

/// The moves of one operation, applied to a class: balances, the log and statements.
struct Ledger<'v, 'o, 'b> {
    state: &'v mut View<'o, 'b>,
    record: TokenClass,
}

impl Ledger<'_, '_, '_> {
    fn credit(&mut self, account: &PublicKey, amount: u128) -> Result<(), TokensError> {
        // A zero movement is logged but changes no balance, so it writes none.
        if amount == 0 {
            return Ok(());
        }
        let held = balance(&*self.state, &self.record.symbol, account)?;
        let after = held.checked_add(amount).ok_or(TokensError::Overflow)?;
        self.state.put(
            key_balance(&self.record.symbol, account),
            encode_value(&Amount(after)),
        );
        Ok(())
    }

    fn debit(&mut self, account: &PublicKey, amount: u128) -> Result<(), TokensError> {
        if amount == 0 {
            return Ok(());
        }
        let held = balance(&*self.state, &self.record.symbol, account)?;
        let after = held
            .checked_sub(amount)
            .ok_or_else(|| TokensError::InsufficientBalance {
                symbol: self.record.symbol.clone(),
                account: *account,
                needed: Amount(amount),
                available: Amount(held),
            })?;
        self.state.put(
            key_balance(&self.record.symbol, account),
            encode_value(&Amount(after)),
        );
        Ok(())
    }

    /// Logs a movement in its class's log.
    #[allow(clippy::too_many_arguments)]
    fn log(
        &mut self,
        tx: &TxContext<'_>,
        from: Option<PublicKey>,
        to: Option<PublicKey>,
        escrow: Option<Hash>,
        amount: u128,
        reason: Reason,
        reference: Option<Hash>,
    ) -> Result<(), TokensError> {
        let seq = self.record.movements;
        let entry = Movement {
            symbol: self.record.symbol.clone(),
            seq,
            from,
            to,
            escrow,
            amount: Amount(amount),
            reason,
            reference,
            by: tx.sender,
            tx: tx.id,
            height: tx.block.height,
            time_ms: tx.block.time_ms,
        };
        self.state
            .put(key_movement(&self.record.symbol, seq), encode_value(&entry));
        self.record.movements += 1;
        Ok(())
    }

    fn transfer(
        &mut self,
        tx: &TxContext<'_>,
        from: &PublicKey,
        to: &PublicKey,
        amount: u128,
        reason: Reason,
        reference: Option<Hash>,
    ) -> Result<(), TokensError> {
        check_account(&*self.state, to)?;
        self.debit(from, amount)?;
        self.credit(to, amount)?;
        self.log(tx, Some(*from), Some(*to), None, amount, reason, reference)
    }

    fn save(self) {
        let key = key_class(&self.record.symbol);
        self.state.put(key, encode_value(&self.record));
    }
}

fn set_allowance(
    state: &mut View<'_, '_>,
    symbol: &str,
    owner: &PublicKey,
    spender: &PublicKey,
    amount: u128,
) {
    let key = key_allowance(symbol, owner, spender);
    if amount == 0 {
        state.delete(key);
    } else {
        state.put(key, encode_value(&Amount(amount)));
    }
}

#[derive(Debug)]
pub struct Tokens;

impl Module for Tokens {
    const NAME: &'static str = "tokens";
    const PREFIXES: &'static [&'static str] = &[
        "token-class/",
        "token-proposal/",
        "token-balance/",
        "token-allowance/",
        "token-movement/",
        "token-classes/",
        "token-escrow/",
        "token-reward-program/",
        "token-reward-paid/",
        "token-reward-rules/",
        "token-adherence/",
    ];
    // An adherence attestation names a CarePlan record and pays the key of its patient.
    // A deployed contract's address is an account (`contract/`).
    const READS: &'static [&'static str] = &["record/", "patient/", "contract/"];
    const KINDS: &'static [&'static str] = &[
        "propose_class",
        "approve_class",
        "mint",
        "burn",
        "transfer",
        "approve",
        "increase_allowance",
        "decrease_allowance",
        "transfer_from",
        "lock",
        "release",
        "return",
        "create_reward_program",
        "reward",
        "attest_adherence",
    ];
    type Op = TokensOp;
    type Error = TokensError;

    fn kind(op: &TokensOp) -> &'static str {
        match op {
            TokensOp::ProposeClass { .. } => "propose_class",
            TokensOp::ApproveClass { .. } => "approve_class",
            TokensOp::Mint { .. } => "mint",
            TokensOp::Burn { .. } => "burn",
            TokensOp::Transfer { .. } => "transfer",
            TokensOp::Approve { .. } => "approve",
            TokensOp::IncreaseAllowance { .. } => "increase_allowance",
            TokensOp::DecreaseAllowance { .. } => "decrease_allowance",
            TokensOp::TransferFrom { .. } => "transfer_from",
            TokensOp::Lock { .. } => "lock",
            TokensOp::Release { .. } => "release",
            TokensOp::Return { .. } => "return",
            TokensOp::CreateRewardProgram { .. } => "create_reward_program",
            TokensOp::Reward { .. } => "reward",
            TokensOp::AttestAdherence { .. } => "attest_adherence",
        }
    }

    fn apply(
        op: &TokensOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), TokensError> {
        match op {
            TokensOp::ProposeClass { spec } => {
                let org = sender_org(tx)?;
                check_spec(&*state, spec)?;
                if class(&*state, &spec.symbol)?.is_some() {
                    return Err(TokensError::ClassExists(spec.symbol.clone()));
                }
                if proposal(&*state, &spec.symbol)?.is_some() {
                    return Err(TokensError::AlreadyProposed(spec.symbol.clone()));
                }
                let pending = ClassProposal {
                    spec: spec.clone(),
                    approvals: vec![org],
                    proposed_at: tx.block.height,
                };
                settle_proposal(tx, state, pending)
            }
            TokensOp::ApproveClass { symbol } => {
                let org = sender_org(tx)?;
                check_symbol(symbol)?;
                let mut pending = proposal(&*state, symbol)?
                    .ok_or_else(|| TokensError::NoProposal(symbol.clone()))?;
                if pending.approvals.contains(&org) {
                    return Err(TokensError::AlreadyApproved(org));
                }
                pending.approvals.push(org);
                pending.approvals.sort();
                settle_proposal(tx, state, pending)
            }
            TokensOp::Mint {
                symbol,
                to,
                amount,
                reference,
            } => {
                let record = existing(&*state, symbol)?;
                check_issuer(tx, &record)?;
                check_account(&*state, to)?;
                let mut ledger = Ledger { state, record };
                add_to(&mut ledger.record.minted, amount.0)?;
                ledger.credit(to, amount.0)?;
                ledger.log(
                    tx,
                    None,
                    Some(*to),
                    None,
                    amount.0,
                    Reason::Issuance,
                    *reference,
                )?;
                ledger.save();
                Ok(())
            }
            TokensOp::Burn {
                symbol,
                amount,
                reference,
            } => {
                let record = existing(&*state, symbol)?;
                check_issuer(tx, &record)?;
                let mut ledger = Ledger { state, record };
                ledger.debit(&tx.sender, amount.0)?;
                // Never more than was minted (the balances sum to minted - burned), so never an
                // overflow either; checked all the same.
                add_to(&mut ledger.record.burned, amount.0)?;
                ledger.log(
                    tx,
                    Some(tx.sender),
                    None,
                    None,
                    amount.0,
                    Reason::Redemption,
                    *reference,
                )?;
                ledger.save();
                Ok(())
            }
            TokensOp::Transfer {
                symbol,
                to,
                amount,
                reason,
                reference,
            } => {
                let record = existing(&*state, symbol)?;
                let mut ledger = Ledger { state, record };
                ledger.transfer(tx, &tx.sender, to, amount.0, *reason, *reference)?;
                ledger.save();
                Ok(())
            }
            TokensOp::Approve {
                symbol,
                spender,
                expected,
                amount,
            } => {
                existing(&*state, symbol)?;
                check_account(&*state, spender)?;
                let current = allowance(&*state, symbol, &tx.sender, spender)?;
                if current != expected.0 {
                    return Err(TokensError::AllowanceChanged {
                        expected: *expected,
                        current: Amount(current),
                    });
                }
                set_allowance(state, symbol, &tx.sender, spender, amount.0);
                Ok(())
            }
            TokensOp::IncreaseAllowance {
                symbol,
                spender,
                by,
            } => {
                existing(&*state, symbol)?;
                check_account(&*state, spender)?;
                let current = allowance(&*state, symbol, &tx.sender, spender)?;
                let after = current.checked_add(by.0).ok_or(TokensError::Overflow)?;
                set_allowance(state, symbol, &tx.sender, spender, after);
                Ok(())
            }
            TokensOp::DecreaseAllowance {
                symbol,
                spender,
                by,
            } => {
                existing(&*state, symbol)?;
                let current = allowance(&*state, symbol, &tx.sender, spender)?;
                let after =
                    current
                        .checked_sub(by.0)
                        .ok_or(TokensError::InsufficientAllowance {
                            needed: *by,
                            available: Amount(current),
                        })?;
                set_allowance(state, symbol, &tx.sender, spender, after);
                Ok(())
            }
            TokensOp::TransferFrom {
                symbol,
                from,
                to,
                amount,
                reason,
                reference,
            } => {
                let record = existing(&*state, symbol)?;
                let current = allowance(&*state, symbol, from, &tx.sender)?;
                let after =
                    current
                        .checked_sub(amount.0)
                        .ok_or(TokensError::InsufficientAllowance {
                            needed: *amount,
                            available: Amount(current),
                        })?;
                set_allowance(state, symbol, from, &tx.sender, after);
                let mut ledger = Ledger { state, record };
                ledger.transfer(tx, from, to, amount.0, *reason, *reference)?;
                ledger.save();
                Ok(())
            }
            TokensOp::Lock {
                id,
                symbol,
                payee,
                amount,
                arbiter,
                reference,
            } => lock(
                tx,
                state,
                &Escrow {
                    id: *id,
                    symbol: symbol.clone(),
                    payer: tx.sender,
                    payee: *payee,
                    amount: *amount,
                    arbiter: arbiter.clone(),
                    reference: *reference,
                    state: EscrowState::Locked,
                    locked_at: tx.block.height,
                },
            ),
            TokensOp::Release { id } | TokensOp::Return { id } => {
                let held = escrow(&*state, id)?.ok_or(TokensError::UnknownEscrow(*id))?;
                let arbiter = match tx.authority {
                    Authority::Organisation { org } => *org == held.arbiter,
                    Authority::Member { org, role } => {
                        *org == held.arbiter && *role == medledger_types::Role::Insurer
                    }
                };
                if !arbiter {
                    return Err(TokensError::NotArbiter(held.arbiter.clone()));
                }
                if matches!(op, TokensOp::Release { .. }) {
                    let all = held.amount.0;
                    close_escrow(tx, state, held, all, true)
                } else {
                    close_escrow(tx, state, held, 0, false)
                }
            }
            TokensOp::CreateRewardProgram { program } => {
                let record = existing(&*state, &program.symbol)?;
                check_issuer(tx, &record)?;
                let issuer = sender_org(tx)?;
                if program.id.is_empty()
                    || program.id.len() > PROGRAM_ID_BYTES_MAX
                    || !program
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(invalid(
                        "program id",
                        format!("1 to {PROGRAM_ID_BYTES_MAX} letters, digits or hyphens"),
                    ));
                }
                if program.period_ms == 0 {
                    return Err(invalid("period_ms", "a positive number of milliseconds"));
                }
                if program.issuer != issuer {
                    return Err(invalid(
                        "issuer",
                        format!("the sender's organisation, {issuer}"),
                    ));
                }
                if reward_program(&*state, &program.id)?.is_some() {
                    return Err(TokensError::ProgramExists(program.id.clone()));
                }
                if let Some(per_event) = program.per_event {
                    if per_event.0 == 0 || per_event > program.cap_per_period {
                        return Err(invalid(
                            "per_event",
                            "more than zero and at most the cap per period",
                        ));
                    }
                    let mut listed = rules(&*state, program.purpose)?;
                    listed.push(program.id.clone());
                    state.put(key_rules(program.purpose), encode_value(&listed));
                }
                state.put(key_program(&program.id), encode_value(program));
                Ok(())
            }
            TokensOp::Reward {
                program,
                patient,
                amount,
                reference,
            } => {
                let found = reward_program(&*state, program)?
                    .ok_or_else(|| TokensError::UnknownProgram(program.clone()))?;
                match tx.authority {
                    Authority::Organisation { org } if *org == found.issuer => {}
                    _ => return Err(TokensError::NotIssuer(found.symbol.clone())),
                }
                if !is_patient(&*state, patient)? {
                    return Err(TokensError::NotAPatient(*patient));
                }
                let paid = reward_paid(&*state, &found, patient, tx.block.time_ms)?;
                let after = paid.checked_add(amount.0).ok_or(TokensError::Overflow)?;
                if after > found.cap_per_period.0 {
                    return Err(TokensError::OverCap {
                        paid: Amount(after),
                        cap: found.cap_per_period,
                    });
                }
                pay_reward(tx, state, &found, patient, amount.0, *reference)?;
                Ok(())
            }
            TokensOp::AttestAdherence { program, care_plan } => {
                let found = rule_program(&*state, program, RewardPurpose::Adherence)?;
                let plan = medledger_records::record(&*state, care_plan)?
                    .filter(|head| head.resource_type == "CarePlan")
                    .ok_or(TokensError::UnknownCarePlan(*care_plan))?;
                let attests = match tx.authority {
                    Authority::Organisation { org } => *org == plan.custodian,
                    Authority::Member {
                        org,
                        role: medledger_types::Role::Practitioner,
                    } => *org == plan.custodian,
                    Authority::Member { .. } => false,
                };
                if !attests {
                    return Err(TokensError::NotCustodian(plan.custodian));
                }
                let patient = medledger_records::patient(&*state, &plan.patient)?
                    .filter(|entry| entry.erased_at.is_none())
                    .and_then(|entry| entry.key)
                    .ok_or(TokensError::PatientUnlinked)?;
                if !is_patient(&*state, &patient)? {
                    return Err(TokensError::NotAPatient(patient));
                }
                let period = tx.block.time_ms / found.period_ms;
                if attestation(&*state, &found.id, care_plan, period)?.is_some() {
                    return Err(TokensError::AlreadyAttested(*care_plan));
                }
                let paid = pay_by_rule(tx, state, &found, &patient, Some(*care_plan))?;
                state.put(
                    key_attestation(&found.id, care_plan, period),
                    encode_value(&Attestation {
                        program: found.id.clone(),
                        care_plan: *care_plan,
                        patient,
                        by: tx.sender,
                        period,
                        paid: Amount(paid),
                        tx: tx.id,
                        height: tx.block.height,
                    }),
                );
                Ok(())
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: BorshDeserialize + Serialize>(value: &[u8]) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        if key.starts_with("token-class/") {
            json::<TokenClass>(value)
        } else if key.starts_with("token-proposal/") {
            json::<ClassProposal>(value)
        } else if key.starts_with("token-balance/") || key.starts_with("token-allowance/") {
            json::<Amount>(value)
        } else if key.starts_with("token-movement/") {
            json::<Movement>(value)
        } else if key == "token-classes/list" {
            json::<Vec<String>>(value)
        } else if key.starts_with("token-escrow/") {
            json::<Escrow>(value)
        } else if key.starts_with("token-reward-program/") {
            json::<RewardProgram>(value)
        } else if key.starts_with("token-reward-paid/") {
            json::<Amount>(value)
        } else if key.starts_with("token-reward-rules/") {
            json::<Vec<String>>(value)
        } else if key.starts_with("token-adherence/") {
            json::<Attestation>(value)
        } else {
            None
        }
    }
}

fn is_patient(state: &dyn StateRead, key: &PublicKey) -> Result<bool, StateError> {
    Ok(matches!(
        standing(state, key)?,
        Standing::Acts(Authority::Member {
            role: medledger_types::Role::Patient,
            ..
        })
    ))
}

/// A program of `purpose` that pays by a rule.
fn rule_program(
    state: &dyn StateRead,
    id: &str,
    purpose: RewardPurpose,
) -> Result<RewardProgram, TokensError> {
    let found = reward_program(state, id)?.ok_or_else(|| TokensError::UnknownProgram(id.into()))?;
    if found.purpose != purpose {
        return Err(TokensError::WrongPurpose {
            program: found.id,
            purpose: found.purpose,
        });
    }
    if found.per_event.is_none() {
        return Err(TokensError::NoRule(found.id));
    }
    Ok(found)
}

/// Mints `amount` of a program's class to `patient` as a reward and counts it against the cap
/// of the period the block falls in (the caller checked the cap).
fn pay_reward(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    program: &RewardProgram,
    patient: &PublicKey,
    amount: u128,
    reference: Option<Hash>,
) -> Result<(), TokensError> {
    let paid = reward_paid(&*state, program, patient, tx.block.time_ms)?;
    let after = paid.checked_add(amount).ok_or(TokensError::Overflow)?;
    let record = existing(&*state, &program.symbol)?;
    let mut ledger = Ledger { state, record };
    add_to(&mut ledger.record.minted, amount)?;
    ledger.credit(patient, amount)?;
    ledger.log(
        tx,
        None,
        Some(*patient),
        None,
        amount,
        Reason::Reward,
        reference,
    )?;
    let period = tx.block.time_ms / program.period_ms;
    ledger.state.put(
        key_reward_paid(&program.id, patient, period),
        encode_value(&Amount(after)),
    );
    ledger.save();
    Ok(())
}

/// Pays a rule's `per_event` to `patient`, or what the period's cap leaves of it (nothing once
/// the cap is reached: the event still happened, it just earns no more). Returns what it paid.
fn pay_by_rule(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    program: &RewardProgram,
    patient: &PublicKey,
    reference: Option<Hash>,
) -> Result<u128, TokensError> {
    let per_event = program.per_event.map_or(0, |amount| amount.0);
    let paid = reward_paid(&*state, program, patient, tx.block.time_ms)?;
    let amount = per_event.min(program.cap_per_period.0.saturating_sub(paid));
    if amount > 0 {
        pay_reward(tx, state, program, patient, amount, reference)?;
    }
    Ok(amount)
}

/// Moves `escrow.amount` of its payer's balance into a new escrow.
fn lock(tx: &TxContext<'_>, state: &mut View<'_, '_>, locked: &Escrow) -> Result<(), TokensError> {
    let record = existing(&*state, &locked.symbol)?;
    check_account(&*state, &locked.payee)?;
    if !org_exists(&*state, &locked.arbiter)? {
        return Err(TokensError::UnknownOrganisation(locked.arbiter.clone()));
    }
    if escrow(&*state, &locked.id)?.is_some() {
        return Err(TokensError::EscrowExists(locked.id));
    }
    let mut ledger = Ledger { state, record };
    ledger.debit(&locked.payer, locked.amount.0)?;
    add_to(&mut ledger.record.escrowed, locked.amount.0)?;
    ledger.log(
        tx,
        Some(locked.payer),
        None,
        Some(locked.id),
        locked.amount.0,
        Reason::Escrow,
        locked.reference,
    )?;
    ledger
        .state
        .put(key_escrow(&locked.id), encode_value(locked));
    ledger.save();
    Ok(())
}

/// Closes a locked escrow: `paid` to its payee (a settlement), the rest back to its payer (a
/// refund). It ends released if `released`, else returned.
fn close_escrow(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    mut held: Escrow,
    paid: u128,
    released: bool,
) -> Result<(), TokensError> {
    if held.state != EscrowState::Locked {
        return Err(TokensError::EscrowSettled(held.id));
    }
    let rest = held
        .amount
        .0
        .checked_sub(paid)
        .ok_or_else(|| invalid("amount", format!("at most the escrow's {}", held.amount)))?;
    let record = existing(&*state, &held.symbol)?;
    let mut ledger = Ledger { state, record };
    // What was locked is in `escrowed`, so this never underflows; checked all the same.
    ledger.record.escrowed.0 = ledger
        .record
        .escrowed
        .0
        .checked_sub(held.amount.0)
        .ok_or(TokensError::Overflow)?;
    if released {
        ledger.credit(&held.payee, paid)?;
        let (payee, id, reference) = (held.payee, held.id, held.reference);
        ledger.log(
            tx,
            None,
            Some(payee),
            Some(id),
            paid,
            Reason::Settlement,
            reference,
        )?;
    }
    if rest > 0 || !released {
        ledger.credit(&held.payer, rest)?;
        let (payer, id, reference) = (held.payer, held.id, held.reference);
        ledger.log(
            tx,
            None,
            Some(payer),
            Some(id),
            rest,
            Reason::Refund,
            reference,
        )?;
    }
    let height = tx.block.height;
    held.state = if released {
        EscrowState::Released { height }
    } else {
        EscrowState::Returned { height }
    };
    ledger.state.put(key_escrow(&held.id), encode_value(&held));
    ledger.save();
    Ok(())
}

/// What another module may ask of the token ledger (the registry declares who may): each is
/// checked as the same operation from the account owner would be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEffect {
    /// `from` pays `to`.
    Transfer {
        symbol: String,
        from: PublicKey,
        to: PublicKey,
        amount: Amount,
        reason: Reason,
        reference: Option<Hash>,
    },
    /// Locks `amount` of `from` in a new escrow `id` for `payee`, decided by `arbiter`.
    Lock {
        id: Hash,
        symbol: String,
        from: PublicKey,
        payee: PublicKey,
        amount: Amount,
        arbiter: String,
        reference: Option<Hash>,
    },
    /// Pays `amount` of escrow `id` to its payee and returns the rest to its payer.
    Settle { id: Hash, amount: Amount },
    /// Returns escrow `id` whole to its payer.
    Return { id: Hash },
    /// Research records were released for these patients under request `request`: every
    /// research-sharing program with a rule pays each of them (patients no longer enrolled as
    /// patients are skipped, and nobody is paid past a cap).
    ResearchShared {
        request: Hash,
        patients: Vec<PublicKey>,
    },
}

impl medledger_module::EffectTarget for Tokens {
    type Effect = TokenEffect;

    fn apply_effect(
        effect: &TokenEffect,
        tx: &TxContext<'_>,
        _from: &'static str,
        state: &mut View<'_, '_>,
    ) -> Result<(), TokensError> {
        match effect {
            TokenEffect::Transfer {
                symbol,
                from,
                to,
                amount,
                reason,
                reference,
            } => {
                let record = existing(&*state, symbol)?;
                let mut ledger = Ledger { state, record };
                ledger.transfer(tx, from, to, amount.0, *reason, *reference)?;
                ledger.save();
                Ok(())
            }
            TokenEffect::Lock {
                id,
                symbol,
                from,
                payee,
                amount,
                arbiter,
                reference,
            } => lock(
                tx,
                state,
                &Escrow {
                    id: *id,
                    symbol: symbol.clone(),
                    payer: *from,
                    payee: *payee,
                    amount: *amount,
                    arbiter: arbiter.clone(),
                    reference: *reference,
                    state: EscrowState::Locked,
                    locked_at: tx.block.height,
                },
            ),
            TokenEffect::Settle { id, amount } => {
                let held = escrow(&*state, id)?.ok_or(TokensError::UnknownEscrow(*id))?;
                close_escrow(tx, state, held, amount.0, true)
            }
            TokenEffect::Return { id } => {
                let held = escrow(&*state, id)?.ok_or(TokensError::UnknownEscrow(*id))?;
                close_escrow(tx, state, held, 0, false)
            }
            TokenEffect::ResearchShared { request, patients } => {
                for id in rules(&*state, RewardPurpose::ResearchSharing)? {
                    let Some(program) = reward_program(&*state, &id)? else {
                        continue;
                    };
                    for patient in patients {
                        if is_patient(&*state, patient)? {
                            pay_by_rule(tx, state, &program, patient, Some(*request))?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Keeps a proposal, or creates its class once two thirds of the organisations approved it.
fn settle_proposal(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    pending: ClassProposal,
) -> Result<(), TokensError> {
    let organisations = organisations(&*state)?.len();
    let symbol = pending.spec.symbol.clone();
    if is_approved(pending.approvals.len(), organisations) {
        let created = TokenClass {
            symbol: symbol.clone(),
            name: pending.spec.name,
            decimals: pending.spec.decimals,
            issuers: pending.spec.issuers,
            minted: Amount(0),
            burned: Amount(0),
            escrowed: Amount(0),
            movements: 0,
            created_at: tx.block.height,
        };
        let mut symbols = classes(&*state)?;
        symbols.push(symbol.clone());
        state.delete(key_proposal(&symbol));
        state.put(key_class(&symbol), encode_value(&created));
        state.put(KEY_CLASSES.to_vec(), encode_value(&symbols));
    } else {
        state.put(key_proposal(&symbol), encode_value(&pending));
    }
    Ok(())
}
