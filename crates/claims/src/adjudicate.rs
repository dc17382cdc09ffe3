//! Adjudication: a claim's checks, each item's shares, the review queue, appeals, and settlement
//! through the token ledger. Everything here reads committed state and the block only.

use std::collections::BTreeMap;

use medledger_crypto::{Hash, PublicKey};
use medledger_module::{Authority, Standing, TxContext, View, standing};
use medledger_records::{Purpose, Question, Reader, RecordHead};
use medledger_state::{StateRead, encode_value};
use medledger_tokens::{Amount, EscrowState, Reason, TokenEffect};
use medledger_types::Role;

use crate::{
    Accrual, Adjustment, Appeal, AppealReason, Check, ClaimEntry, ClaimItem, ClaimStatus,
    ClaimSubmission, ClaimUse, ClaimsError, Coverage, DIAGNOSES_MAX, Date, DayLine, Decision,
    Finding, Group, ITEMS_MAX, ItemOutcome, ItemResult, Plan, Policy, PriorAuth, ServiceRule,
    Stamp, UNITS_MAX, acts_for, append, check_code, check_diagnosis, check_payer, invalid,
    key_accrual, key_by_member, key_by_member_count, key_by_provider, key_by_provider_count,
    key_claim, key_day, key_review, key_review_count, sender_org, sum,
};

fn stamp(tx: &TxContext<'_>) -> Stamp {
    Stamp {
        by: tx.sender,
        height: tx.block.height,
        time_ms: tx.block.time_ms,
        tx: tx.id,
    }
}

fn mul(a: u128, b: u128) -> Result<u128, ClaimsError> {
    a.checked_mul(b)
        .ok_or_else(|| invalid("amount", "the product overflows"))
}

fn check_shape(claim: &ClaimSubmission, today: Date) -> Result<(), ClaimsError> {
    if claim.items.is_empty() || claim.items.len() > ITEMS_MAX {
        return Err(invalid("items", format!("1 to {ITEMS_MAX} items")));
    }
    if claim.diagnoses.len() > DIAGNOSES_MAX {
        return Err(invalid("diagnoses", format!("at most {DIAGNOSES_MAX}")));
    }
    for code in &claim.diagnoses {
        check_diagnosis(code)?;
    }
    let mut sequences: Vec<u32> = Vec::with_capacity(claim.items.len());
    for item in &claim.items {
        check_code("item code", &item.code)?;
        if item.units == 0 || item.units > UNITS_MAX {
            return Err(invalid(
                "units",
                format!("item {}: 1 to {UNITS_MAX}", item.sequence),
            ));
        }
        if claim.use_ == ClaimUse::Claim && item.service_date > today {
            return Err(invalid(
                "service_date",
                format!(
                    "item {}: {} is after the block's date {today}",
                    item.sequence, item.service_date
                ),
            ));
        }
        sequences.push(item.sequence);
    }
    sequences.sort_unstable();
    if sequences.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid("items", "two items have the same sequence"));
    }
    Ok(())
}

/// The state one adjudication reads and updates, cached so each entry is read and written once.
struct Books<'c> {
    plan: Plan,
    coverage: &'c Coverage,
    policies: BTreeMap<u32, Policy>,
    accruals: BTreeMap<i64, Accrual>,
    days: BTreeMap<Date, Vec<DayLine>>,
}

impl Books<'_> {
    fn policy(&mut self, state: &dyn StateRead, version: u32) -> Result<Policy, ClaimsError> {
        if let Some(found) = self.policies.get(&version) {
            return Ok(found.clone());
        }
        let found = crate::policy(state, &self.plan.plan, version)?.ok_or_else(|| {
            ClaimsError::State(medledger_state::StateError::Store(format!(
                "plan {} lists version {version}, which is missing",
                self.plan.plan
            )))
        })?;
        self.policies.insert(version, found.clone());
        Ok(found)
    }

    fn accrual(&mut self, state: &dyn StateRead, year: i64) -> Result<&mut Accrual, ClaimsError> {
        if !self.accruals.contains_key(&year) {
            let found = crate::accrual(state, &self.plan.plan, &self.coverage.member, year)?;
            self.accruals.insert(year, found);
        }
        Ok(self.accruals.entry(year).or_default())
    }

    fn day(
        &mut self,
        state: &dyn StateRead,
        provider_org: &str,
        date: Date,
    ) -> Result<&mut Vec<DayLine>, ClaimsError> {
        if !self.days.contains_key(&date) {
            let key = key_day(provider_org, &self.coverage.member, date);
            let found: Vec<DayLine> = medledger_module::read(state, &key)?.unwrap_or_default();
            self.days.insert(date, found);
        }
        Ok(self.days.entry(date).or_default())
    }

    fn save(self, state: &mut View<'_, '_>, provider_org: &str) {
        for (year, entry) in &self.accruals {
            state.put(
                key_accrual(&self.plan.plan, &self.coverage.member, *year),
                encode_value(entry),
            );
        }
        for (date, lines) in &self.days {
            let key = key_day(provider_org, &self.coverage.member, *date);
            if lines.is_empty() {
                state.delete(key);
            } else {
                state.put(key, encode_value(lines));
            }
        }
    }
}

fn denied(item: &ClaimItem, check: Check, version: Option<u32>, carc: &str) -> ItemResult {
    ItemResult {
        sequence: item.sequence,
        outcome: ItemOutcome::Denied,
        units: 0,
        charge: item.charge,
        allowed: Amount(0),
        deductible: Amount(0),
        copay: Amount(0),
        coinsurance: Amount(0),
        payer: Amount(0),
        adjustments: vec![Adjustment {
            group: Group::CO,
            carc: carc.to_string(),
            amount: item.charge,
        }],
        remarks: check.rarc().map(str::to_string).into_iter().collect(),
        version,
    }
}

/// A pre-authorisation a claim may rely on, if it is one.
fn usable_authorisation(
    state: &dyn StateRead,
    claim: &ClaimSubmission,
    provider_org: &str,
) -> Result<Option<ClaimEntry>, ClaimsError> {
    let Some(id) = claim.authorisation else {
        return Ok(None);
    };
    let Some(found) = crate::claim(state, &id)? else {
        return Ok(None);
    };
    let usable = found.claim.use_ == ClaimUse::Preauthorization
        && found.status == ClaimStatus::Authorised
        && found.used_by.is_none()
        && found.claim.coverage == claim.coverage
        && found.claim.patient == claim.patient
        && found.provider_org == provider_org;
    Ok(usable.then_some(found))
}

fn authorises(authorisation: Option<&ClaimEntry>, item: &ClaimItem) -> bool {
    let Some(found) = authorisation else {
        return false;
    };
    let in_time = found
        .valid_until
        .is_some_and(|until| item.service_date <= until);
    in_time
        && found
            .claim
            .items
            .iter()
            .zip(&found.items)
            .any(|(asked, result)| {
                asked.code == item.code
                    && result.outcome != ItemOutcome::Denied
                    && item.units <= result.units
            })
}

/// The patient's consent for `payer` to see the service for payment (HPAYMT), decided by the
/// records module's own rule at this block.
#[allow(clippy::too_many_arguments)]
fn payment_consent(
    state: &dyn StateRead,
    tx: &TxContext<'_>,
    member: &PublicKey,
    payer: &str,
    account: &PublicKey,
    evidence: Option<(&Hash, &RecordHead)>,
    claim: &ClaimSubmission,
    provider_org: &str,
) -> Result<bool, ClaimsError> {
    let grants = medledger_records::grants_of(state, member)?;
    let reader = Reader {
        key: *account,
        org: payer.to_string(),
        role: None,
    };
    let synthetic;
    let (record_id, record) = match evidence {
        Some(found) => found,
        None => {
            synthetic = RecordHead {
                patient: claim.patient,
                custodian: provider_org.to_string(),
                resource_type: "Claim".into(),
                category: None,
                version: 1,
            };
            (&claim.id, &synthetic)
        }
    };
    let rule = medledger_records::evaluate(
        &grants,
        tx.block.time_ms,
        &Question {
            reader: &reader,
            record_id,
            record,
            purpose: Purpose::Payment,
            break_glass: false,
            erased: false,
        },
    );
    Ok(rule.allows())
}

pub(crate) fn submit(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    claim: &ClaimSubmission,
) -> Result<(), ClaimsError> {
    let today = Date::of_time_ms(tx.block.time_ms);
    check_shape(claim, today)?;
    if crate::claim(&*state, &claim.id)?.is_some() {
        return Err(ClaimsError::ClaimExists(claim.id));
    }
    let provider_org = sender_org(tx).to_string();
    if !acts_for(&*state, &claim.payee, &provider_org)? {
        return Err(ClaimsError::NotProviderAccount(claim.payee));
    }
    let cover = crate::coverage(&*state, &claim.coverage)?
        .ok_or(ClaimsError::UnknownCoverage(claim.coverage))?;
    let plan = crate::plan(&*state, &cover.plan)?
        .ok_or_else(|| ClaimsError::UnknownPlan(cover.plan.clone()))?;
    let is_claim = claim.use_ == ClaimUse::Claim;

    // Claim-level checks.
    let mut findings: Vec<Finding> = Vec::new();
    let mut claim_finding = |check| {
        findings.push(Finding {
            check,
            sequence: None,
        })
    };
    let member = medledger_records::patient(&*state, &claim.patient)?
        .filter(|entry| entry.custodian == provider_org && entry.erased_at.is_none())
        .and_then(|entry| entry.key);
    let insured = member == Some(cover.member);
    if !insured {
        claim_finding(Check::NotInsured);
    }
    let eligible = match standing(&*state, &claim.provider)? {
        Standing::Acts(Authority::Organisation { org }) => org == provider_org,
        Standing::Acts(Authority::Member { org, role }) => {
            org == provider_org && matches!(role, Role::Practitioner | Role::Pharmacy)
        }
        _ => false,
    };
    if !eligible {
        claim_finding(Check::ProviderNotEligible);
    }
    let refused = if !insured {
        Some(Check::NotInsured)
    } else if !eligible {
        Some(Check::ProviderNotEligible)
    } else {
        None
    };
    let evidence = match claim.encounter {
        Some(id) => medledger_records::record(&*state, &id)?
            .filter(|head| {
                head.patient == claim.patient
                    && head.custodian == provider_org
                    && claim.kind.evidence().contains(&head.resource_type.as_str())
            })
            .map(|head| (id, head)),
        None => None,
    };
    if is_claim && refused.is_none() && evidence.is_none() {
        claim_finding(Check::NoEncounter);
    }

    let authorisation = if is_claim {
        usable_authorisation(&*state, claim, &provider_org)?
    } else {
        None
    };
    let mut books = Books {
        plan,
        coverage: &cover,
        policies: BTreeMap::new(),
        accruals: BTreeMap::new(),
        days: BTreeMap::new(),
    };
    let mut items = Vec::with_capacity(claim.items.len());
    let mut copay_left: Option<u128> = None;
    let mut review = false;
    let mut authorisation_used = false;
    let verdicts = rule_verdicts(&*state, tx, claim, &books.plan, &provider_org, refused)?;
    if verdicts.values().any(|verdict| *verdict == Verdict::Failed) {
        findings.push(Finding {
            check: Check::RuleContract,
            sequence: None,
        });
    }
    for item in &claim.items {
        let judged = judge(
            &*state,
            &mut books,
            claim,
            item,
            &provider_org,
            refused,
            authorisation.as_ref(),
            verdicts.get(&item.sequence).copied(),
            &mut copay_left,
            &mut findings,
        )?;
        if judged.needs_review {
            review = true;
        }
        authorisation_used |= judged.used_authorisation;
        items.push(judged.result);
    }

    // Consent for payment, where the first policy that judged an item requires it.
    let first_version = items.iter().find_map(|item| item.version);
    if let Some(version) = first_version {
        let policy = books.policy(&*state, version)?;
        if is_claim && refused.is_none() && policy.payment_consent_required {
            let member_key = cover.member;
            let consented = payment_consent(
                &*state,
                tx,
                &member_key,
                &policy.payer,
                &policy.account,
                evidence.as_ref().map(|(id, head)| (id, head)),
                claim,
                &provider_org,
            )?;
            if !consented {
                findings.push(Finding {
                    check: Check::NoPaymentConsent,
                    sequence: None,
                });
            }
        }
    }
    let payable = items.iter().any(|item| item.outcome != ItemOutcome::Denied);
    review |= findings.iter().any(|f| f.check.reviewed());
    let status = match (claim.use_, payable, review) {
        (_, true, true) => ClaimStatus::Pending,
        (ClaimUse::Claim, _, _) => ClaimStatus::Adjudicated,
        (ClaimUse::Preauthorization, true, false) => ClaimStatus::Authorised,
        (ClaimUse::Preauthorization, false, _) => ClaimStatus::Denied,
    };
    findings.sort_by_key(|f| (f.sequence, f.check));
    findings.dedup();
    let mut entry = ClaimEntry {
        claim: claim.clone(),
        provider_org: provider_org.clone(),
        payer: books.plan.payer.clone(),
        plan: books.plan.plan.clone(),
        member,
        status,
        items,
        findings,
        submitted: stamp(tx),
        paid: Amount(0),
        decision: None,
        appeal: None,
        valid_until: None,
        escrow: None,
        used_by: None,
    };
    if is_claim {
        books.save(state, &provider_org);
    }
    append(
        state,
        key_by_provider_count(&provider_org),
        |seq| key_by_provider(&provider_org, seq),
        &claim.id,
    )?;
    if let Some(key) = member {
        append(
            state,
            key_by_member_count(&key),
            |seq| key_by_member(&key, seq),
            &claim.id,
        )?;
    }
    match status {
        ClaimStatus::Pending => {
            let payer = entry.payer.clone();
            append(
                state,
                key_review_count(&payer),
                |seq| key_review(&payer, seq),
                &claim.id,
            )?;
        }
        ClaimStatus::Adjudicated => {
            if authorisation_used && let Some(mut found) = authorisation.clone() {
                found.used_by = Some(claim.id);
                state.put(key_claim(&found.claim.id), encode_value(&found));
            }
            let used = if authorisation_used {
                authorisation.as_ref()
            } else {
                None
            };
            settle(state, &mut entry, used)?;
        }
        ClaimStatus::Authorised => authorise(state, &mut entry)?,
        ClaimStatus::Denied | ClaimStatus::Appealed => {}
    }
    state.put(key_claim(&claim.id), encode_value(&entry));
    Ok(())
}

/// What the plan's rule contract decided of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Approve,
    /// Denied with a built-in check's reason (and its CARC).
    Deny(Check),
    /// Sent to the payer's review, for a built-in check's reason.
    Review(Check),
    /// The contract could not decide: the item waits for review.
    Failed,
}

/// Asks the plan's rule contract, if it names one, to decide the claim's items it covers, once
/// per claim (`medledger_contracts::consult`). Its message and answer are documented in
/// contracts/INTERFACE.md. An answer that fails, does not parse, names an item it was not asked
/// about, or a decision or check this ledger does not know, decides nothing: every covered item
/// waits for the payer's review.
fn rule_verdicts(
    state: &dyn StateRead,
    tx: &TxContext<'_>,
    claim: &ClaimSubmission,
    plan: &Plan,
    provider_org: &str,
    refused: Option<Check>,
) -> Result<BTreeMap<u32, Verdict>, ClaimsError> {
    let mut verdicts = BTreeMap::new();
    if refused.is_some() {
        return Ok(verdicts);
    }
    let Some(rule) = crate::rule_contract(state, &plan.plan)? else {
        return Ok(verdicts);
    };
    let covered: Vec<&ClaimItem> = claim
        .items
        .iter()
        .filter(|item| rule.decides(&item.code))
        .collect();
    if covered.is_empty() {
        return Ok(verdicts);
    }
    let items: Vec<serde_json::Value> = covered
        .iter()
        .map(|item| {
            serde_json::json!({
                "sequence": item.sequence,
                "code": item.code,
                "units": item.units,
                "charge": item.charge.0.to_string(),
                "date": item.service_date.to_string(),
            })
        })
        .collect();
    let message = serde_json::json!({ "adjudicate": {
        "claim": claim.id.to_string(),
        "use": claim.use_,
        "kind": claim.kind,
        "plan": plan.plan,
        "payer": plan.payer,
        "provider": provider_org,
        "diagnoses": claim.diagnoses,
        "items": items,
    }});
    let answer =
        medledger_contracts::consult(state, tx, "claims", &rule.contract, &message.to_string())?;
    let decided = match answer {
        medledger_contracts::Consulted::Answer { result, .. } => parse_verdicts(&result, &covered),
        medledger_contracts::Consulted::Failed { .. } => None,
    };
    match decided {
        Some(decided) => verdicts = decided,
        None => {
            for item in covered {
                verdicts.insert(item.sequence, Verdict::Failed);
            }
        }
    }
    Ok(verdicts)
}

/// `{"items": [{"sequence": n, "decision": "approve" | "deny" | "review", "check": "<code>"}]}`;
/// items it leaves out are approved.
fn parse_verdicts(answer: &[u8], covered: &[&ClaimItem]) -> Option<BTreeMap<u32, Verdict>> {
    let answer: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let mut verdicts: BTreeMap<u32, Verdict> = covered
        .iter()
        .map(|item| (item.sequence, Verdict::Approve))
        .collect();
    for decided in answer.get("items")?.as_array()? {
        let sequence = u32::try_from(decided.get("sequence")?.as_u64()?).ok()?;
        if !verdicts.contains_key(&sequence) {
            return None;
        }
        let check = match decided.get("check") {
            None => None,
            Some(code) => Some(Check::from_code(code.as_str()?)?),
        };
        let verdict = match decided.get("decision")?.as_str()? {
            "approve" => Verdict::Approve,
            "deny" => Verdict::Deny(check?),
            "review" => Verdict::Review(check.unwrap_or(Check::RuleContract)),
            _ => return None,
        };
        verdicts.insert(sequence, verdict);
    }
    Some(verdicts)
}

struct Judged {
    result: ItemResult,
    needs_review: bool,
    used_authorisation: bool,
}

/// Adjudicates one item.
#[allow(clippy::too_many_arguments)]
fn judge(
    state: &dyn StateRead,
    books: &mut Books<'_>,
    claim: &ClaimSubmission,
    item: &ClaimItem,
    provider_org: &str,
    refused: Option<Check>,
    authorisation: Option<&ClaimEntry>,
    verdict: Option<Verdict>,
    copay_left: &mut Option<u128>,
    findings: &mut Vec<Finding>,
) -> Result<Judged, ClaimsError> {
    let is_claim = claim.use_ == ClaimUse::Claim;
    let mut finding = |check| {
        findings.push(Finding {
            check,
            sequence: Some(item.sequence),
        })
    };
    let deny = |check: Check, version, carc: &str| Judged {
        result: denied(item, check, version, carc),
        needs_review: false,
        used_authorisation: false,
    };
    if let Some(check) = refused {
        return Ok(deny(check, None, check.carc()));
    }
    let date = item.service_date;
    if !books.coverage.covers(date) {
        finding(Check::NotCoveredOnDate);
        let carc = if date < books.coverage.start {
            "26"
        } else {
            "27"
        };
        return Ok(deny(Check::NotCoveredOnDate, None, carc));
    }
    let Some(version) = books.plan.version_on(date) else {
        finding(Check::NotCoveredOnDate);
        return Ok(deny(Check::NotCoveredOnDate, None, "26"));
    };
    let policy = books.policy(state, version)?;
    let Some(rule): Option<ServiceRule> =
        crate::rule(state, &books.plan.plan, version, &item.code)?
    else {
        finding(Check::CodeNotCovered);
        return Ok(deny(
            Check::CodeNotCovered,
            Some(version),
            Check::CodeNotCovered.carc(),
        ));
    };
    let (billed_today, units_today) = if is_claim {
        let day = books.day(state, provider_org, date)?;
        let units: u32 = day
            .iter()
            .filter(|line| line.code == item.code)
            .map(|line| line.units)
            .sum();
        (day.iter().map(|line| line.code.clone()).collect(), units)
    } else {
        (Vec::new(), 0)
    };
    if is_claim && billed_today.contains(&item.code) {
        finding(Check::Duplicate);
        return Ok(deny(
            Check::Duplicate,
            Some(version),
            Check::Duplicate.carc(),
        ));
    }
    let mut needs_review = false;
    let mut used_authorisation = false;
    match rule.prior_auth {
        PriorAuth::NotRequired => {}
        _ if is_claim => {
            if authorises(authorisation, item) {
                used_authorisation = true;
            } else {
                finding(Check::NoAuthorisation);
                return Ok(deny(
                    Check::NoAuthorisation,
                    Some(version),
                    Check::NoAuthorisation.carc(),
                ));
            }
        }
        PriorAuth::Automatic => {}
        PriorAuth::Review => needs_review = true,
    }
    let column_ones = crate::bundled_by(state, &books.plan.plan, version, &item.code)?;
    let bundled = column_ones.iter().any(|one| {
        billed_today.contains(one)
            || claim.items.iter().any(|other| {
                other.sequence != item.sequence && other.service_date == date && other.code == *one
            })
    });
    if bundled {
        finding(Check::CodePair);
        return Ok(deny(Check::CodePair, Some(version), Check::CodePair.carc()));
    }
    // The payer's rule contract, after the built-in eligibility checks and before the money.
    match verdict {
        Some(Verdict::Deny(check)) => {
            finding(check);
            return Ok(deny(check, Some(version), check.carc()));
        }
        Some(Verdict::Review(check)) => {
            finding(check);
            needs_review = true;
        }
        Some(Verdict::Failed) => {
            finding(Check::RuleContract);
            needs_review = true;
        }
        Some(Verdict::Approve) | None => {}
    }

    let mut adjustments = Vec::new();
    // Units: the per-day limit (across the provider's claims that day), then the annual units.
    let units_day = item
        .units
        .min(rule.units_per_day_max.saturating_sub(units_today));
    if units_day < item.units {
        finding(Check::ImpossibleQuantity);
        needs_review = true;
        if units_day == 0 {
            let mut judged = deny(
                Check::ImpossibleQuantity,
                Some(version),
                Check::ImpossibleQuantity.carc(),
            );
            judged.needs_review = true;
            return Ok(judged);
        }
    }
    let year = date.year();
    let mut units = units_day;
    if let Some(annual) = rule.annual_units_max {
        let used = books.accrual(state, year)?.units_of(&item.code);
        let room = annual.saturating_sub(used);
        if room == 0 {
            finding(Check::BenefitMaximum);
            return Ok(deny(
                Check::BenefitMaximum,
                Some(version),
                Check::BenefitMaximum.carc(),
            ));
        }
        if room < units {
            finding(Check::BenefitMaximum);
            units = room;
        }
    }
    // The charge for the units allowed (in proportion), and what was billed beyond them: over
    // the day's limit, then over the year's.
    let charge_for = |allowed_units: u32| -> Result<u128, ClaimsError> {
        Ok(mul(item.charge.0, u128::from(allowed_units))? / u128::from(item.units))
    };
    let (charge_day, charge_for_units) = (charge_for(units_day)?, charge_for(units)?);
    for (check, excess) in [
        (Check::ImpossibleQuantity, item.charge.0 - charge_day),
        (Check::BenefitMaximum, charge_day - charge_for_units),
    ] {
        if excess > 0 {
            adjustments.push(Adjustment {
                group: Group::CO,
                carc: check.carc().into(),
                amount: Amount(excess),
            });
        }
    }
    let schedule = mul(rule.allowed.0, u128::from(units))?;
    let allowed = charge_for_units.min(schedule);
    if charge_for_units > schedule {
        adjustments.push(Adjustment {
            group: Group::CO,
            carc: Check::AboveAllowed.carc().into(),
            amount: Amount(charge_for_units - schedule),
        });
    }
    if policy.review_charge_ratio_bp > 0
        && mul(charge_for_units, 10_000)?
            > mul(schedule, u128::from(policy.review_charge_ratio_bp))?
    {
        finding(Check::AboveAllowed);
        needs_review = true;
    }
    // The member's share: deductible, then the claim's copay, then coinsurance on the rest.
    let accrual = books.accrual(state, year)?;
    let deductible = allowed.min(policy.deductible.0.saturating_sub(accrual.deductible_met.0));
    let left = copay_left.get_or_insert(policy.copay.0);
    let copay = (allowed - deductible).min(*left);
    *left -= copay;
    let coinsurance = mul(
        allowed - deductible - copay,
        u128::from(policy.coinsurance_bp),
    )? / 10_000;
    let mut payer = allowed - deductible - copay - coinsurance;
    if let Some(limit) = policy.annual_limit {
        let room = limit.0.saturating_sub(accrual.paid.0);
        if payer > room {
            adjustments.push(Adjustment {
                group: Group::CO,
                carc: Check::BenefitMaximum.carc().into(),
                amount: Amount(payer - room),
            });
            payer = room;
            finding(Check::BenefitMaximum);
        }
    }
    for (carc, value) in [("1", deductible), ("3", copay), ("2", coinsurance)] {
        if value > 0 {
            adjustments.push(Adjustment {
                group: Group::PR,
                carc: carc.into(),
                amount: Amount(value),
            });
        }
    }
    if is_claim {
        accrual.deductible_met.0 = sum(accrual.deductible_met.0, deductible)?;
        accrual.paid.0 = sum(accrual.paid.0, payer)?;
        accrual.add_units(&item.code, i64::from(units));
        books.day(state, provider_org, date)?.push(DayLine {
            code: item.code.clone(),
            units,
            claim: claim.id,
        });
    }
    let outcome = if adjustments.iter().any(|a| a.group == Group::CO) {
        ItemOutcome::Reduced
    } else {
        ItemOutcome::Approved
    };
    Ok(Judged {
        result: ItemResult {
            sequence: item.sequence,
            outcome,
            units,
            charge: item.charge,
            allowed: Amount(allowed),
            deductible: Amount(deductible),
            copay: Amount(copay),
            coinsurance: Amount(coinsurance),
            payer: Amount(payer),
            adjustments,
            remarks: Vec::new(),
            version: Some(version),
        },
        needs_review,
        used_authorisation,
    })
}

/// The policy that pays a claim: the latest version that judged one of its items.
fn paying_policy(state: &dyn StateRead, entry: &ClaimEntry) -> Result<Policy, ClaimsError> {
    let plan = crate::plan(state, &entry.plan)?
        .ok_or_else(|| ClaimsError::UnknownPlan(entry.plan.clone()))?;
    let version = entry
        .items
        .iter()
        .filter_map(|item| item.version)
        .max()
        .or_else(|| plan.versions.last().map(|(v, _)| *v))
        .ok_or_else(|| ClaimsError::UnknownPlan(entry.plan.clone()))?;
    crate::policy(state, &entry.plan, version)?
        .ok_or_else(|| ClaimsError::UnknownPlan(entry.plan.clone()))
}

/// Pays what the plan owes for `entry` and not yet paid: from the authorisation's escrow first if
/// it has one still locked, then from the policy's account.
fn settle(
    state: &mut View<'_, '_>,
    entry: &mut ClaimEntry,
    authorisation: Option<&ClaimEntry>,
) -> Result<(), ClaimsError> {
    let owed = entry.totals().payer;
    let due = owed.saturating_sub(entry.paid.0);
    if due == 0 {
        // An escrow the claim relied on and did not need goes back to the payer.
        if let Some(id) = authorisation.and_then(|a| a.escrow)
            && medledger_tokens::escrow(&*state, &id)?
                .is_some_and(|e| e.state == EscrowState::Locked)
        {
            state.request(TokenEffect::Return { id });
        }
        return Ok(());
    }
    let policy = paying_policy(&*state, entry)?;
    let mut rest = due;
    if let Some(id) = authorisation.and_then(|a| a.escrow)
        && let Some(held) = medledger_tokens::escrow(&*state, &id)?
        && held.state == EscrowState::Locked
    {
        let from_escrow = rest.min(held.amount.0);
        state.request(TokenEffect::Settle {
            id,
            amount: Amount(from_escrow),
        });
        rest -= from_escrow;
    }
    if rest > 0 {
        state.request(TokenEffect::Transfer {
            symbol: policy.symbol.clone(),
            from: policy.account,
            to: entry.claim.payee,
            amount: Amount(rest),
            reason: Reason::Settlement,
            reference: Some(entry.claim.id),
        });
    }
    entry.paid.0 = sum(entry.paid.0, due)?;
    Ok(())
}

/// Grants a pre-authorisation: its validity, and an escrow of the expected payment if the policy
/// locks one.
fn authorise(state: &mut View<'_, '_>, entry: &mut ClaimEntry) -> Result<(), ClaimsError> {
    let policy = paying_policy(&*state, entry)?;
    let last = entry
        .claim
        .items
        .iter()
        .map(|item| item.service_date)
        .max()
        .unwrap_or(Date(0));
    entry.valid_until = Some(last.plus_days(policy.authorisation_days));
    let expected = entry.totals().payer;
    if policy.escrow_authorisations && expected > 0 {
        let id = crate::escrow_of(&entry.claim.id);
        state.request(TokenEffect::Lock {
            id,
            symbol: policy.symbol.clone(),
            from: policy.account,
            payee: entry.claim.payee,
            amount: Amount(expected),
            arbiter: entry.payer.clone(),
            reference: Some(entry.claim.id),
        });
        entry.escrow = Some(id);
    }
    Ok(())
}

fn load(state: &dyn StateRead, id: &Hash) -> Result<ClaimEntry, ClaimsError> {
    crate::claim(state, id)?.ok_or(ClaimsError::UnknownClaim(*id))
}

fn status_name(status: ClaimStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn decide(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    id: &Hash,
    approve: bool,
) -> Result<(), ClaimsError> {
    let mut entry = load(&*state, id)?;
    check_payer(tx, &entry.payer, &entry.plan)?;
    if entry.status != ClaimStatus::Pending {
        return Err(ClaimsError::WrongStatus {
            id: *id,
            status: status_name(entry.status),
            expected: "pending",
        });
    }
    entry.decision = Some(Decision {
        approve,
        stamp: stamp(tx),
    });
    let is_claim = entry.claim.use_ == ClaimUse::Claim;
    if approve {
        if is_claim {
            let authorisation = usable_authorisation(&*state, &entry.claim, &entry.provider_org)?;
            let relied = authorisation.as_ref().is_some_and(|found| {
                entry
                    .claim
                    .items
                    .iter()
                    .any(|item| authorises(Some(found), item))
            });
            if relied && let Some(mut found) = authorisation.clone() {
                found.used_by = Some(entry.claim.id);
                state.put(key_claim(&found.claim.id), encode_value(&found));
            }
            entry.status = ClaimStatus::Adjudicated;
            settle(state, &mut entry, authorisation.as_ref().filter(|_| relied))?;
        } else {
            entry.status = ClaimStatus::Authorised;
            authorise(state, &mut entry)?;
        }
    } else {
        if is_claim {
            release_books(state, &entry)?;
        }
        let carc = entry
            .findings
            .iter()
            .find(|f| f.check.reviewed())
            .map_or("16", |f| f.check.carc())
            .to_string();
        for (item, asked) in entry.items.iter_mut().zip(&entry.claim.items) {
            if item.outcome != ItemOutcome::Denied {
                *item = ItemResult {
                    adjustments: vec![Adjustment {
                        group: Group::CO,
                        carc: carc.clone(),
                        amount: asked.charge,
                    }],
                    ..denied(asked, Check::NoEncounter, item.version, &carc)
                };
                item.remarks.clear();
            }
        }
        entry.status = ClaimStatus::Denied;
    }
    state.put(key_claim(id), encode_value(&entry));
    Ok(())
}

/// Gives back what a claim denied on review had taken of the member's accruals and the day's
/// lines, so it neither counts against the benefit nor makes a later claim a duplicate.
fn release_books(state: &mut View<'_, '_>, entry: &ClaimEntry) -> Result<(), ClaimsError> {
    let Some(member) = entry.member else {
        return Ok(());
    };
    let mut accruals: BTreeMap<i64, Accrual> = BTreeMap::new();
    let mut days: BTreeMap<Date, Vec<DayLine>> = BTreeMap::new();
    for (item, asked) in entry.items.iter().zip(&entry.claim.items) {
        if item.outcome == ItemOutcome::Denied {
            continue;
        }
        let year = asked.service_date.year();
        let accrual = match accruals.entry(year) {
            std::collections::btree_map::Entry::Occupied(found) => found.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(crate::accrual(&*state, &entry.plan, &member, year)?)
            }
        };
        accrual.deductible_met.0 = accrual.deductible_met.0.saturating_sub(item.deductible.0);
        accrual.paid.0 = accrual.paid.0.saturating_sub(item.payer.0);
        accrual.add_units(&asked.code, -i64::from(item.units));
        let date = asked.service_date;
        let lines = match days.entry(date) {
            std::collections::btree_map::Entry::Occupied(found) => found.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let key = key_day(&entry.provider_org, &member, date);
                slot.insert(medledger_module::read(&*state, &key)?.unwrap_or_default())
            }
        };
        lines.retain(|line| line.claim != entry.claim.id);
    }
    for (year, accrual) in accruals {
        state.put(
            key_accrual(&entry.plan, &member, year),
            encode_value(&accrual),
        );
    }
    for (date, lines) in days {
        let key = key_day(&entry.provider_org, &member, date);
        if lines.is_empty() {
            state.delete(key);
        } else {
            state.put(key, encode_value(&lines));
        }
    }
    Ok(())
}

pub(crate) fn appeal(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    id: &Hash,
    reason: AppealReason,
    commitment: Option<Hash>,
) -> Result<(), ClaimsError> {
    let mut entry = load(&*state, id)?;
    if sender_org(tx) != entry.provider_org {
        return Err(ClaimsError::NotProvider(entry.provider_org.clone()));
    }
    if entry.appeal.is_some() {
        return Err(ClaimsError::AlreadyAppealed(*id));
    }
    if entry.claim.use_ != ClaimUse::Claim
        || !matches!(entry.status, ClaimStatus::Adjudicated | ClaimStatus::Denied)
    {
        return Err(ClaimsError::WrongStatus {
            id: *id,
            status: status_name(entry.status),
            expected: "an adjudicated or denied claim",
        });
    }
    if !entry
        .items
        .iter()
        .any(|item| item.outcome == ItemOutcome::Denied)
    {
        return Err(ClaimsError::NothingToAppeal(*id));
    }
    entry.appeal = Some(Appeal {
        reason,
        commitment,
        filed: stamp(tx),
        prior: entry.status,
        decision: None,
    });
    entry.status = ClaimStatus::Appealed;
    let payer = entry.payer.clone();
    append(
        state,
        key_review_count(&payer),
        |seq| key_review(&payer, seq),
        id,
    )?;
    state.put(key_claim(id), encode_value(&entry));
    Ok(())
}

pub(crate) fn decide_appeal(
    tx: &TxContext<'_>,
    state: &mut View<'_, '_>,
    id: &Hash,
    approve: bool,
) -> Result<(), ClaimsError> {
    let mut entry = load(&*state, id)?;
    check_payer(tx, &entry.payer, &entry.plan)?;
    let Some(mut filed) = entry
        .appeal
        .clone()
        .filter(|_| entry.status == ClaimStatus::Appealed)
    else {
        return Err(ClaimsError::WrongStatus {
            id: *id,
            status: status_name(entry.status),
            expected: "appealed",
        });
    };
    filed.decision = Some(Decision {
        approve,
        stamp: stamp(tx),
    });
    if approve {
        // Each denied item is paid as the policy that judged it (or the latest) allows, less
        // coinsurance; the deductible and copay were settled with the claim.
        let policy = paying_policy(&*state, &entry)?;
        let mut paid_more = 0u128;
        for (item, asked) in entry.items.iter_mut().zip(&entry.claim.items) {
            if item.outcome != ItemOutcome::Denied {
                continue;
            }
            let version = item.version.unwrap_or(policy.version);
            let schedule = match crate::rule(&*state, &entry.plan, version, &asked.code)? {
                Some(rule) => mul(rule.allowed.0, u128::from(asked.units))?,
                None => asked.charge.0,
            };
            let allowed = asked.charge.0.min(schedule);
            let coinsurance = mul(allowed, u128::from(policy.coinsurance_bp))? / 10_000;
            let payer = allowed - coinsurance;
            let mut adjustments = Vec::new();
            if asked.charge.0 > allowed {
                adjustments.push(Adjustment {
                    group: Group::CO,
                    carc: Check::AboveAllowed.carc().into(),
                    amount: Amount(asked.charge.0 - allowed),
                });
            }
            if coinsurance > 0 {
                adjustments.push(Adjustment {
                    group: Group::PR,
                    carc: "2".into(),
                    amount: Amount(coinsurance),
                });
            }
            *item = ItemResult {
                sequence: asked.sequence,
                outcome: if adjustments.iter().any(|a| a.group == Group::CO) {
                    ItemOutcome::Reduced
                } else {
                    ItemOutcome::Approved
                },
                units: asked.units,
                charge: asked.charge,
                allowed: Amount(allowed),
                deductible: Amount(0),
                copay: Amount(0),
                coinsurance: Amount(coinsurance),
                payer: Amount(payer),
                adjustments,
                remarks: Vec::new(),
                version: Some(version),
            };
            paid_more = sum(paid_more, payer)?;
        }
        if let Some(member) = entry.member {
            let year = entry
                .claim
                .items
                .iter()
                .map(|item| item.service_date)
                .min()
                .unwrap_or(Date(0))
                .year();
            let mut accrual = crate::accrual(&*state, &entry.plan, &member, year)?;
            accrual.paid.0 = sum(accrual.paid.0, paid_more)?;
            state.put(
                key_accrual(&entry.plan, &member, year),
                encode_value(&accrual),
            );
        }
        entry.status = ClaimStatus::Adjudicated;
        entry.appeal = Some(filed);
        settle(state, &mut entry, None)?;
    } else {
        entry.status = filed.prior;
        entry.appeal = Some(filed);
    }
    state.put(key_claim(id), encode_value(&entry));
    Ok(())
}
