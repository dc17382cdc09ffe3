//! Insurance claims, as a ledger module (`docs/design/payments.md`).
//!
//! - **Policies as data.** A payer publishes each plan's policy in versions: the token class and
//!   account it pays from, deductible, copay, coinsurance (basis points), an annual limit, and per
//!   service code the allowed amount, a units-per-day limit, annual units and whether it needs
//!   prior authorisation; and NCCI-style code-pair edits. A claim line is judged by the version in
//!   force on its date of service.
//! - **Coverage.** The payer enrols a member (the patient's enrolled key) in a plan for a period.
//! - **Adjudication** happens in the block that commits the claim, on every validator alike: each
//!   item approved, reduced or denied with X12 CARC/RARC reasons, the member's share (deductible,
//!   copay, coinsurance) and the plan's share. Every check (`Check`) is its own reason.
//! - **Fraud and abuse checks.** Duplicates, patients not insured or not covered on the day,
//!   ineligible providers, code pairs, non-covered codes and missing authorisations deny by rule;
//!   a missing record of the service (a declared read of the records module), missing payment
//!   consent (the records module's consent rule), a charge far above the allowed amount and
//!   impossible quantities send the claim to the payer's review queue, where a signed decision
//!   resolves it.
//! - **Settlement** is an effect on the token ledger in the same transaction: the plan's share
//!   moves from the policy's account (or an authorisation's escrow) to the payee, with reason
//!   `settlement` and the claim as reference. If the token ledger refuses, the claim is refused.
//! - **Prior authorisation** (`use = preauthorization`) is decided by the policy or queued; a later
//!   claim names it and uses it once. **Appeals**: one per claim with denials, decided by the payer.
//!
//! **Invariant:** adjudication reads only committed state and the block; the same chain gives the
//! same adjudication on every node and on replay. **Invariant:** no PHI: a claim on chain holds
//! opaque ids, codes, quantities, amounts, dates and a keyed commitment.

mod adjudicate;
mod types;

use adjudicate::{appeal, decide, decide_appeal, submit};
pub use types::*;

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey, sha256};
use medledger_module::{Authority, Module, ModuleError, TxContext, View, read};
use medledger_state::{StateError, StateRead, encode_value};
use serde::{Deserialize, Serialize};

/// The longest plan id.
pub const PLAN_BYTES_MAX: usize = 48;
/// The longest service code (CPT and HCPCS are 5, NDC 11, local codes a little more).
pub const CODE_BYTES_MAX: usize = 16;
/// The most service rules one policy version holds (a transaction is at most 64 KiB).
pub const SERVICES_MAX: usize = 800;
/// The most code-pair edits one policy version holds.
pub const EDITS_MAX: usize = 500;
/// The most items one claim holds.
pub const ITEMS_MAX: usize = 50;
/// The most diagnoses one claim holds (the 837P's twelve).
pub const DIAGNOSES_MAX: usize = 12;
/// The most units one item may bill.
pub const UNITS_MAX: u32 = 10_000;

/// The claims module's operations. Their order is their payload tag (from the registry's base):
/// only ever append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum ClaimsOp {
    /// The payer (its root key or an insurer member) publishes the next version of a plan.
    PublishPolicy { policy: PolicyInput },
    /// The payer enrols a member in a plan.
    Cover { coverage: CoverageInput },
    /// The payer ends a coverage on a day (the last day covered).
    EndCoverage { id: Hash, end: Date },
    /// The provider's node submits a claim or a pre-authorisation; it is adjudicated at once.
    #[serde(rename = "submit_claim")]
    Submit { claim: ClaimSubmission },
    /// The payer decides a claim or pre-authorisation in its review queue.
    #[serde(rename = "decide_claim")]
    Decide { claim: Hash, approve: bool },
    /// The provider appeals a claim's denials, once.
    #[serde(rename = "appeal_claim")]
    Appeal {
        claim: Hash,
        reason: AppealReason,
        commitment: Option<Hash>,
    },
    /// The payer decides an appeal.
    DecideAppeal { claim: Hash, approve: bool },
    /// The payer names the contract that adjudicates a plan's items (those with `codes`, or all
    /// if none are listed), after the built-in checks; `None` stops consulting one.
    SetRuleContract {
        plan: String,
        contract: Option<Hash>,
        codes: Vec<String>,
    },
}

/// The contract a payer named to adjudicate a plan's items.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RuleContract {
    pub contract: Hash,
    /// The codes it decides, sorted; empty: every code.
    pub codes: Vec<String>,
    pub set_at: medledger_types::Height,
}

impl RuleContract {
    pub fn decides(&self, code: &str) -> bool {
        self.codes.is_empty()
            || self
                .codes
                .binary_search_by(|c| c.as_str().cmp(code))
                .is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("only a payer's root key or insurer member may do this for plan {0}")]
    NotPayer(String),
    #[error("the sender does not act for the provider organisation {0}")]
    NotProvider(String),
    #[error("unknown plan {0}")]
    UnknownPlan(String),
    #[error("unknown token class {0}")]
    UnknownClass(String),
    #[error("unknown coverage {0}")]
    UnknownCoverage(Hash),
    #[error("coverage {0} already exists")]
    CoverageExists(Hash),
    #[error("unknown claim {0}")]
    UnknownClaim(Hash),
    #[error("claim {0} was already submitted")]
    ClaimExists(Hash),
    #[error("claim {id} is {status}, not {expected}")]
    WrongStatus {
        id: Hash,
        status: String,
        expected: &'static str,
    },
    #[error("claim {0} was already appealed; a claim may be appealed once")]
    AlreadyAppealed(Hash),
    #[error("claim {0} has no denied item to appeal")]
    NothingToAppeal(Hash),
    #[error("a version of plan {plan} takes effect on {last}; a new one must take effect later")]
    VersionOrder { plan: String, last: Date },
    #[error("the payer account {0} is not the payer's root key or a member of the payer")]
    NotPayerAccount(PublicKey),
    #[error("the payee {0} is not the provider's root key or a member of the provider")]
    NotProviderAccount(PublicKey),
    #[error("no contract {0}")]
    UnknownContract(Hash),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for ClaimsError {
    fn code(&self) -> &'static str {
        match self {
            ClaimsError::Invalid { .. } => "invalid",
            ClaimsError::NotPayer(_) => "not_payer",
            ClaimsError::NotProvider(_) => "not_provider",
            ClaimsError::UnknownPlan(_) => "unknown_plan",
            ClaimsError::UnknownClass(_) => "unknown_class",
            ClaimsError::UnknownCoverage(_) => "unknown_coverage",
            ClaimsError::CoverageExists(_) => "coverage_exists",
            ClaimsError::UnknownClaim(_) => "unknown_claim",
            ClaimsError::ClaimExists(_) => "claim_exists",
            ClaimsError::WrongStatus { .. } => "wrong_status",
            ClaimsError::AlreadyAppealed(_) => "already_appealed",
            ClaimsError::NothingToAppeal(_) => "nothing_to_appeal",
            ClaimsError::VersionOrder { .. } => "version_order",
            ClaimsError::NotPayerAccount(_) => "not_payer_account",
            ClaimsError::NotProviderAccount(_) => "not_provider_account",
            ClaimsError::UnknownContract(_) => "unknown_contract",
            ClaimsError::State(_) => "state_error",
        }
    }
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ClaimsError {
    ClaimsError::Invalid {
        field,
        reason: reason.into(),
    }
}

// Keys.

pub fn key_plan(plan: &str) -> Vec<u8> {
    format!("claim-plan/{plan}").into_bytes()
}

pub fn key_policy(plan: &str, version: u32) -> Vec<u8> {
    format!("claim-policy/{plan}/{version}").into_bytes()
}

pub fn key_rule(plan: &str, version: u32, code: &str) -> Vec<u8> {
    format!("claim-rule/{plan}/{version}/{code}").into_bytes()
}

/// The column-one codes that bundle `column_two`.
pub fn key_edit(plan: &str, version: u32, column_two: &str) -> Vec<u8> {
    format!("claim-edit/{plan}/{version}/{column_two}").into_bytes()
}

pub fn key_rule_contract(plan: &str) -> Vec<u8> {
    format!("claim-rule-contract/{plan}").into_bytes()
}

pub fn rule_contract(
    state: &dyn StateRead,
    plan: &str,
) -> Result<Option<RuleContract>, StateError> {
    read(state, &key_rule_contract(plan))
}

pub fn key_coverage(id: &Hash) -> Vec<u8> {
    format!("claim-coverage/{id}").into_bytes()
}

pub fn key_claim(id: &Hash) -> Vec<u8> {
    format!("claim/{id}").into_bytes()
}

/// What one provider billed for one patient on one day. The key hashes the three so a day's
/// entry is one read; the claim itself carries them in the clear, linked only to opaque ids.
pub fn key_day(provider_org: &str, member: &PublicKey, date: Date) -> Vec<u8> {
    let id = sha256(format!("{provider_org}/{member}/{}", date.0).as_bytes());
    format!("claim-day/{id}").into_bytes()
}

pub fn key_accrual(plan: &str, member: &PublicKey, year: i64) -> Vec<u8> {
    format!("claim-accrual/{plan}/{member}/{year}").into_bytes()
}

pub fn key_by_provider(org: &str, seq: u64) -> Vec<u8> {
    format!("claim-by-provider/{org}/{seq:020}").into_bytes()
}

pub fn key_by_provider_count(org: &str) -> Vec<u8> {
    format!("claim-by-provider-count/{org}").into_bytes()
}

pub fn key_by_member(member: &PublicKey, seq: u64) -> Vec<u8> {
    format!("claim-by-member/{member}/{seq:020}").into_bytes()
}

pub fn key_by_member_count(member: &PublicKey) -> Vec<u8> {
    format!("claim-by-member-count/{member}").into_bytes()
}

pub fn key_review(payer: &str, seq: u64) -> Vec<u8> {
    format!("claim-review/{payer}/{seq:020}").into_bytes()
}

pub fn key_review_count(payer: &str) -> Vec<u8> {
    format!("claim-review-count/{payer}").into_bytes()
}

/// The escrow an authorisation locks.
pub fn escrow_of(authorisation: &Hash) -> Hash {
    medledger_crypto::hash_tagged(b"medledger/claim-escrow/v1", &[authorisation.as_bytes()])
}

// Queries.

pub fn plan(state: &dyn StateRead, id: &str) -> Result<Option<Plan>, StateError> {
    read(state, &key_plan(id))
}

pub fn policy(state: &dyn StateRead, id: &str, version: u32) -> Result<Option<Policy>, StateError> {
    read(state, &key_policy(id, version))
}

pub fn rule(
    state: &dyn StateRead,
    id: &str,
    version: u32,
    code: &str,
) -> Result<Option<ServiceRule>, StateError> {
    read(state, &key_rule(id, version, code))
}

pub fn bundled_by(
    state: &dyn StateRead,
    id: &str,
    version: u32,
    column_two: &str,
) -> Result<Vec<String>, StateError> {
    Ok(read(state, &key_edit(id, version, column_two))?.unwrap_or_default())
}

pub fn coverage(state: &dyn StateRead, id: &Hash) -> Result<Option<Coverage>, StateError> {
    read(state, &key_coverage(id))
}

pub fn claim(state: &dyn StateRead, id: &Hash) -> Result<Option<ClaimEntry>, StateError> {
    read(state, &key_claim(id))
}

pub fn accrual(
    state: &dyn StateRead,
    id: &str,
    member: &PublicKey,
    year: i64,
) -> Result<Accrual, StateError> {
    Ok(read(state, &key_accrual(id, member, year))?.unwrap_or_default())
}

/// Which index a listing reads.
#[derive(Clone, Debug)]
pub enum Listing {
    /// Claims a provider organisation submitted.
    Provider(String),
    /// Claims for a member (a patient's key).
    Member(PublicKey),
    /// Claims that entered a payer's review queue (decided ones included; check their status).
    Review(String),
}

/// A page of a listing: its total and the claim ids from `offset`, oldest first.
pub fn list(
    state: &dyn StateRead,
    listing: &Listing,
    offset: u64,
    limit: u64,
) -> Result<(u64, Vec<Hash>), StateError> {
    let count_key = match listing {
        Listing::Provider(org) => key_by_provider_count(org),
        Listing::Member(key) => key_by_member_count(key),
        Listing::Review(payer) => key_review_count(payer),
    };
    let total: u64 = read(state, &count_key)?.unwrap_or(0);
    let mut out = Vec::new();
    for seq in offset..total.min(offset.saturating_add(limit)) {
        let key = match listing {
            Listing::Provider(org) => key_by_provider(org, seq),
            Listing::Member(member) => key_by_member(member, seq),
            Listing::Review(payer) => key_review(payer, seq),
        };
        if let Some(id) = read::<Hash>(state, &key)? {
            out.push(id);
        }
    }
    Ok((total, out))
}

/// Appends `id` to a counted index.
pub(crate) fn append(
    state: &mut View<'_, '_>,
    count_key: Vec<u8>,
    entry_key: impl Fn(u64) -> Vec<u8>,
    id: &Hash,
) -> Result<(), ClaimsError> {
    let count: u64 = read(&*state, &count_key)?.unwrap_or(0);
    state.put(entry_key(count), encode_value(id));
    state.put(count_key, encode_value(&(count + 1)));
    Ok(())
}

/// The organisation a sender acts for as payer of `payer`: its root key, or an insurer member.
pub(crate) fn check_payer(tx: &TxContext<'_>, payer: &str, plan: &str) -> Result<(), ClaimsError> {
    match tx.authority {
        Authority::Organisation { org } if org == payer => Ok(()),
        Authority::Member {
            org,
            role: medledger_types::Role::Insurer,
        } if org == payer => Ok(()),
        _ => Err(ClaimsError::NotPayer(plan.to_string())),
    }
}

pub(crate) fn sender_org<'a>(tx: &TxContext<'a>) -> &'a str {
    match tx.authority {
        Authority::Organisation { org } | Authority::Member { org, .. } => org,
    }
}

/// Whether `key` is `org`'s root key or an enrolled, unrevoked member of `org`.
pub(crate) fn acts_for(
    state: &dyn StateRead,
    key: &PublicKey,
    org: &str,
) -> Result<bool, StateError> {
    Ok(match medledger_module::standing(state, key)? {
        medledger_module::Standing::Acts(
            Authority::Organisation { org: of } | Authority::Member { org: of, .. },
        ) => of == org,
        _ => false,
    })
}

pub(crate) fn check_code(field: &'static str, code: &str) -> Result<(), ClaimsError> {
    if code.is_empty()
        || code.len() > CODE_BYTES_MAX
        || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(
            field,
            format!("{code:?} is not 1 to {CODE_BYTES_MAX} letters, digits or hyphens"),
        ));
    }
    Ok(())
}

/// An ICD-10-CM code: a letter, two characters, then up to four more after an optional dot.
pub fn check_diagnosis(code: &str) -> Result<(), ClaimsError> {
    let bare: Vec<u8> = code.bytes().filter(|b| *b != b'.').collect();
    let dot_ok = match code.find('.') {
        None => true,
        Some(at) => at == 3 && code.matches('.').count() == 1,
    };
    let ok = dot_ok
        && (3..=7).contains(&bare.len())
        && bare[0].is_ascii_uppercase()
        && bare[1].is_ascii_digit()
        && bare[2..]
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "diagnosis",
            format!("{code:?} is not an ICD-10-CM code (e.g. E11.9)"),
        ))
    }
}

pub(crate) fn check_plan_id(id: &str) -> Result<(), ClaimsError> {
    if id.is_empty()
        || id.len() > PLAN_BYTES_MAX
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "plan",
            format!("1 to {PLAN_BYTES_MAX} letters, digits, hyphens or underscores"),
        ));
    }
    Ok(())
}

#[derive(Debug)]
pub struct Claims;

impl Module for Claims {
    const NAME: &'static str = "claims";
    const PREFIXES: &'static [&'static str] = &[
        "claim/",
        "claim-plan/",
        "claim-policy/",
        "claim-rule/",
        "claim-edit/",
        "claim-coverage/",
        "claim-day/",
        "claim-accrual/",
        "claim-by-provider/",
        "claim-by-provider-count/",
        "claim-by-member/",
        "claim-by-member-count/",
        "claim-review/",
        "claim-review-count/",
        "claim-rule-contract/",
    ];
    // Records: the patient behind an opaque id, the record of the service, the patient's consent
    // grants. Tokens: that a policy's class exists, and whether an authorisation's escrow is locked.
    const READS: &'static [&'static str] = &[
        "patient/",
        "record/",
        "consent/",
        "grant/",
        "token-class/",
        "token-escrow/",
        // A plan's rule contract is consulted (`medledger_contracts::CONSULT_READS`).
        "contract/",
        "contract-code/",
        "contract-kv/",
        "contract-dir/",
        "contract-bucket/",
        "token-balance/",
        "unit/",
    ];
    const KINDS: &'static [&'static str] = &[
        "publish_policy",
        "cover",
        "end_coverage",
        "submit_claim",
        "decide_claim",
        "appeal_claim",
        "decide_appeal",
        "set_rule_contract",
    ];
    type Op = ClaimsOp;
    type Error = ClaimsError;

    fn kind(op: &ClaimsOp) -> &'static str {
        match op {
            ClaimsOp::PublishPolicy { .. } => "publish_policy",
            ClaimsOp::Cover { .. } => "cover",
            ClaimsOp::EndCoverage { .. } => "end_coverage",
            ClaimsOp::Submit { .. } => "submit_claim",
            ClaimsOp::Decide { .. } => "decide_claim",
            ClaimsOp::Appeal { .. } => "appeal_claim",
            ClaimsOp::DecideAppeal { .. } => "decide_appeal",
            ClaimsOp::SetRuleContract { .. } => "set_rule_contract",
        }
    }

    fn apply(
        op: &ClaimsOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), ClaimsError> {
        match op {
            ClaimsOp::PublishPolicy { policy } => publish(tx, state, policy),
            ClaimsOp::Cover { coverage } => cover(tx, state, coverage),
            ClaimsOp::EndCoverage { id, end } => {
                let mut found = coverage(&*state, id)?.ok_or(ClaimsError::UnknownCoverage(*id))?;
                check_payer(tx, &found.payer, &found.plan)?;
                if *end < found.start {
                    return Err(invalid("end", "before the coverage starts"));
                }
                if found.end.is_some_and(|current| current < *end) {
                    return Err(invalid("end", "a coverage can be shortened, not extended"));
                }
                found.end = Some(*end);
                state.put(key_coverage(id), encode_value(&found));
                Ok(())
            }
            ClaimsOp::Submit { claim } => submit(tx, state, claim),
            ClaimsOp::Decide { claim, approve } => decide(tx, state, claim, *approve),
            ClaimsOp::Appeal {
                claim,
                reason,
                commitment,
            } => appeal(tx, state, claim, *reason, *commitment),
            ClaimsOp::DecideAppeal { claim, approve } => decide_appeal(tx, state, claim, *approve),
            ClaimsOp::SetRuleContract {
                plan: id,
                contract,
                codes,
            } => {
                let found =
                    plan(&*state, id)?.ok_or_else(|| ClaimsError::UnknownPlan(id.clone()))?;
                check_payer(tx, &found.payer, id)?;
                let Some(contract) = contract else {
                    state.delete(key_rule_contract(id));
                    return Ok(());
                };
                if medledger_contracts::contract(&*state, contract)?.is_none() {
                    return Err(ClaimsError::UnknownContract(*contract));
                }
                if codes.len() > SERVICES_MAX {
                    return Err(invalid("codes", format!("at most {SERVICES_MAX}")));
                }
                let mut codes = codes.clone();
                for code in &codes {
                    check_code("codes", code)?;
                }
                codes.sort();
                codes.dedup();
                let rule = RuleContract {
                    contract: *contract,
                    codes,
                    set_at: tx.block.height,
                };
                state.put(key_rule_contract(id), encode_value(&rule));
                Ok(())
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: BorshDeserialize + Serialize>(value: &[u8]) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        let prefix = &key[..key.find('/')? + 1];
        match prefix {
            "claim/" => json::<ClaimEntry>(value),
            "claim-plan/" => json::<Plan>(value),
            "claim-policy/" => json::<Policy>(value),
            "claim-rule/" => json::<ServiceRule>(value),
            "claim-edit/" => json::<Vec<String>>(value),
            "claim-coverage/" => json::<Coverage>(value),
            "claim-day/" => json::<Vec<DayLine>>(value),
            "claim-accrual/" => json::<Accrual>(value),
            "claim-rule-contract/" => json::<RuleContract>(value),
            "claim-by-provider/" | "claim-by-member/" | "claim-review/" => json::<Hash>(value),
            "claim-by-provider-count/" | "claim-by-member-count/" | "claim-review-count/" => {
                json::<u64>(value)
            }
            _ => None,
        }
    }
}

fn publish(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    input: &PolicyInput,
) -> Result<(), ClaimsError> {
    check_plan_id(&input.plan)?;
    let payer = sender_org(tx).to_string();
    check_payer(tx, &payer, &input.plan)?;
    let mut found = plan(&*state, &input.plan)?.unwrap_or_else(|| Plan {
        plan: input.plan.clone(),
        payer: payer.clone(),
        versions: Vec::new(),
    });
    if found.payer != payer {
        return Err(ClaimsError::NotPayer(input.plan.clone()));
    }
    if let Some((_, last)) = found.versions.last()
        && input.effective <= *last
    {
        return Err(ClaimsError::VersionOrder {
            plan: input.plan.clone(),
            last: *last,
        });
    }
    medledger_tokens::check_symbol(&input.symbol).map_err(|e| invalid("symbol", e.to_string()))?;
    if medledger_tokens::class(&*state, &input.symbol)?.is_none() {
        return Err(ClaimsError::UnknownClass(input.symbol.clone()));
    }
    if !acts_for(&*state, &input.account, &payer)? {
        return Err(ClaimsError::NotPayerAccount(input.account));
    }
    if input.coinsurance_bp > 10_000 {
        return Err(invalid("coinsurance_bp", "at most 10000 (100%)"));
    }
    if input.services.is_empty() || input.services.len() > SERVICES_MAX {
        return Err(invalid(
            "services",
            format!("1 to {SERVICES_MAX} service rules"),
        ));
    }
    if input.edits.len() > EDITS_MAX {
        return Err(invalid("edits", format!("at most {EDITS_MAX}")));
    }
    let mut codes: Vec<&str> = Vec::with_capacity(input.services.len());
    for service in &input.services {
        check_code("service code", &service.code)?;
        if service.units_per_day_max == 0 || service.units_per_day_max > UNITS_MAX {
            return Err(invalid(
                "units_per_day_max",
                format!("{}: 1 to {UNITS_MAX}", service.code),
            ));
        }
        codes.push(&service.code);
    }
    codes.sort_unstable();
    if codes.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid("services", "a code appears twice"));
    }
    let version = found.versions.last().map_or(1, |(v, _)| v + 1);
    // Column-one codes per column-two code, each list sorted and without repeats.
    let mut bundles: std::collections::BTreeMap<&str, Vec<String>> =
        std::collections::BTreeMap::new();
    for edit in &input.edits {
        check_code("edit code", &edit.column_one)?;
        check_code("edit code", &edit.column_two)?;
        if edit.column_one == edit.column_two {
            return Err(invalid("edits", "a code cannot bundle itself"));
        }
        let list = bundles.entry(&edit.column_two).or_default();
        if let Err(at) = list.binary_search(&edit.column_one) {
            list.insert(at, edit.column_one.clone());
        }
    }
    for service in &input.services {
        state.put(
            key_rule(&input.plan, version, &service.code),
            encode_value(service),
        );
    }
    for (column_two, list) in &bundles {
        state.put(
            key_edit(&input.plan, version, column_two),
            encode_value(list),
        );
    }
    let record = Policy {
        plan: input.plan.clone(),
        version,
        payer,
        effective: input.effective,
        symbol: input.symbol.clone(),
        account: input.account,
        deductible: input.deductible,
        copay: input.copay,
        coinsurance_bp: input.coinsurance_bp,
        annual_limit: input.annual_limit,
        payment_consent_required: input.payment_consent_required,
        review_charge_ratio_bp: input.review_charge_ratio_bp,
        authorisation_days: input.authorisation_days,
        escrow_authorisations: input.escrow_authorisations,
        services: input.services.len() as u32,
        edits: input.edits.len() as u32,
        published_at: tx.block.height,
    };
    state.put(key_policy(&input.plan, version), encode_value(&record));
    found.versions.push((version, input.effective));
    state.put(key_plan(&input.plan), encode_value(&found));
    Ok(())
}

fn cover(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    input: &CoverageInput,
) -> Result<(), ClaimsError> {
    let found =
        plan(&*state, &input.plan)?.ok_or_else(|| ClaimsError::UnknownPlan(input.plan.clone()))?;
    check_payer(tx, &found.payer, &input.plan)?;
    if coverage(&*state, &input.id)?.is_some() {
        return Err(ClaimsError::CoverageExists(input.id));
    }
    match medledger_module::standing(&*state, &input.member)? {
        medledger_module::Standing::Acts(Authority::Member {
            role: medledger_types::Role::Patient,
            ..
        }) => {}
        _ => {
            return Err(invalid(
                "member",
                format!("{} is not an enrolled patient", input.member),
            ));
        }
    }
    if input.end.is_some_and(|end| end < input.start) {
        return Err(invalid("end", "before the coverage starts"));
    }
    let entry = Coverage {
        id: input.id,
        plan: input.plan.clone(),
        payer: found.payer,
        member: input.member,
        start: input.start,
        end: input.end,
        created_at: tx.block.height,
    };
    state.put(key_coverage(&input.id), encode_value(&entry));
    Ok(())
}

/// Converts a sum that cannot overflow in practice (it is bounded by amounts that passed checked
/// arithmetic) into a refusal if it ever does.
pub(crate) fn sum(a: u128, b: u128) -> Result<u128, ClaimsError> {
    a.checked_add(b)
        .ok_or_else(|| invalid("amount", "the sum overflows"))
}
