//! The claims module's data: dates of service, payer policies, coverage, submitted claims and
//! their adjudication.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_tokens::Amount;
use medledger_types::Height;
use serde::{Deserialize, Serialize};

/// A calendar date (proleptic Gregorian), as days since 1970-01-01. JSON carries `YYYY-MM-DD`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Date(pub u32);

/// The first year a date may fall in.
pub const YEAR_MIN: i64 = 1970;
/// The last.
pub const YEAR_MAX: i64 = 9999;
const MS_PER_DAY: u64 = 86_400_000;

impl Date {
    /// The date of a calendar day, if it is one between `YEAR_MIN` and `YEAR_MAX`.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Date> {
        if !(YEAR_MIN..=YEAR_MAX).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if day > days_in_month[month as usize - 1] {
            return None;
        }
        // Days from the civil date (H. Hinnant's algorithm), in integers only.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        u32::try_from(era * 146_097 + doe - 719_468).ok().map(Date)
    }

    /// The (year, month, day) of the date.
    pub fn ymd(self) -> (i64, u32, u32) {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    pub fn year(self) -> i64 {
        self.ymd().0
    }

    /// The date a block time (ms since the epoch, UTC) falls on.
    pub fn of_time_ms(time_ms: u64) -> Date {
        Date(u32::try_from(time_ms / MS_PER_DAY).unwrap_or(u32::MAX))
    }

    /// The date `days` later, saturating.
    pub fn plus_days(self, days: u32) -> Date {
        Date(self.0.saturating_add(days))
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl std::str::FromStr for Date {
    type Err = String;
    fn from_str(text: &str) -> Result<Date, String> {
        let bad = || format!("{text:?} is not a date YYYY-MM-DD between {YEAR_MIN} and {YEAR_MAX}");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        Date::from_ymd(i64::from(number(0..4)?), number(5..7)?, number(8..10)?).ok_or_else(bad)
    }
}

impl From<Date> for String {
    fn from(date: Date) -> String {
        date.to_string()
    }
}

impl TryFrom<String> for Date {
    type Error = String;
    fn try_from(text: String) -> Result<Date, String> {
        text.parse()
    }
}

/// Whether a service needs the payer's authorisation before it is given.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum PriorAuth {
    NotRequired = 0,
    /// Required, and decided by the policy as the request commits.
    Automatic = 1,
    /// Required, and queued for the payer to decide.
    Review = 2,
}

/// What a plan pays for one service code (CPT, HCPCS, NDC or a local code).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRule {
    pub code: String,
    /// The allowed amount per unit, in minor units of the policy's token class.
    pub allowed: Amount,
    /// The most units of the code one patient may receive from one provider on one day (a
    /// medically unlikely edit, as CMS's MUEs).
    pub units_per_day_max: u32,
    /// The most units one member may receive in a benefit year, if limited.
    #[serde(default)]
    pub annual_units_max: Option<u32>,
    #[serde(default = "not_required")]
    pub prior_auth: PriorAuth,
}

fn not_required() -> PriorAuth {
    PriorAuth::NotRequired
}

/// A code pair that must not be billed together for one patient by one provider on one day (as
/// CMS's NCCI procedure-to-procedure edits): with `column_one` billed, `column_two` is denied.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodePairEdit {
    pub column_one: String,
    pub column_two: String,
}

/// A version of a plan's policy, as the payer publishes it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub plan: String,
    /// Claims with a date of service from this day on are judged by this version.
    pub effective: Date,
    /// The token class claims are paid in.
    pub symbol: String,
    /// The account that pays: the payer's root key or one of its members.
    pub account: PublicKey,
    /// What a member pays first in each benefit year (calendar year of service).
    pub deductible: Amount,
    /// What a member pays per claim, after the deductible.
    pub copay: Amount,
    /// The member's share of the rest, in basis points (2000 is 20%).
    pub coinsurance_bp: u16,
    /// The most the plan pays for one member in a benefit year, if limited.
    #[serde(default)]
    pub annual_limit: Option<Amount>,
    /// Claims need the patient's consent for payment (HPAYMT) to the payer.
    #[serde(default)]
    pub payment_consent_required: bool,
    /// A charge above this many basis points of the allowed amount goes to review (0: never).
    #[serde(default)]
    pub review_charge_ratio_bp: u32,
    /// How long an authorisation stays valid after its last date of service.
    pub authorisation_days: u32,
    /// An authorisation locks the payer's expected payment in escrow.
    #[serde(default)]
    pub escrow_authorisations: bool,
    pub services: Vec<ServiceRule>,
    #[serde(default)]
    pub edits: Vec<CodePairEdit>,
}

/// A published policy version, without its service rules and edits (each its own entry).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Policy {
    pub plan: String,
    pub version: u32,
    pub payer: String,
    pub effective: Date,
    pub symbol: String,
    pub account: PublicKey,
    pub deductible: Amount,
    pub copay: Amount,
    pub coinsurance_bp: u16,
    pub annual_limit: Option<Amount>,
    pub payment_consent_required: bool,
    pub review_charge_ratio_bp: u32,
    pub authorisation_days: u32,
    pub escrow_authorisations: bool,
    pub services: u32,
    pub edits: u32,
    pub published_at: Height,
}

/// A plan: its payer and the effective dates of its versions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Plan {
    pub plan: String,
    pub payer: String,
    pub versions: Vec<(u32, Date)>,
}

impl Plan {
    /// The version in force on `date`: the latest effective on or before it.
    pub fn version_on(&self, date: Date) -> Option<u32> {
        self.versions
            .iter()
            .rev()
            .find(|(_, effective)| *effective <= date)
            .map(|(version, _)| *version)
    }
}

/// A member's coverage under a plan, as FHIR Coverage describes it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageInput {
    /// Opaque, chosen by the payer.
    pub id: Hash,
    pub plan: String,
    /// The patient's enrolled key.
    pub member: PublicKey,
    pub start: Date,
    #[serde(default)]
    pub end: Option<Date>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Coverage {
    pub id: Hash,
    pub plan: String,
    pub payer: String,
    pub member: PublicKey,
    pub start: Date,
    /// The last day covered, if it ends.
    pub end: Option<Date>,
    pub created_at: Height,
}

impl Coverage {
    pub fn covers(&self, date: Date) -> bool {
        self.start <= date && self.end.is_none_or(|end| date <= end)
    }
}

/// FHIR Claim.use.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum ClaimUse {
    Claim = 0,
    Preauthorization = 1,
}

/// FHIR Claim.type (http://terminology.hl7.org/CodeSystem/claim-type).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    Professional = 0,
    Institutional = 1,
    Pharmacy = 2,
}

impl ClaimKind {
    pub fn code(self) -> &'static str {
        match self {
            ClaimKind::Professional => "professional",
            ClaimKind::Institutional => "institutional",
            ClaimKind::Pharmacy => "pharmacy",
        }
    }

    /// The record type a service of this kind leaves at the provider.
    pub fn evidence(self) -> &'static [&'static str] {
        match self {
            ClaimKind::Professional | ClaimKind::Institutional => &["Encounter"],
            ClaimKind::Pharmacy => &["MedicationDispense", "MedicationRequest"],
        }
    }
}

/// One service line of a claim.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimItem {
    pub sequence: u32,
    pub code: String,
    pub service_date: Date,
    pub units: u32,
    /// The provider's charge for the line (all its units).
    pub charge: Amount,
}

/// A claim as the provider's node commits it: the facts adjudication needs, opaque ids and a
/// keyed commitment to the FHIR Claim the node keeps. No PHI.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSubmission {
    /// Opaque, chosen by the provider's node.
    pub id: Hash,
    #[serde(rename = "use")]
    pub use_: ClaimUse,
    pub kind: ClaimKind,
    pub coverage: Hash,
    /// The patient's opaque id at the provider (the records module's).
    pub patient: Hash,
    /// The rendering provider: a member of the provider organisation.
    pub provider: PublicKey,
    /// Who is paid: the provider organisation's root key or one of its members.
    pub payee: PublicKey,
    /// The record the service left at the provider (an Encounter, or a dispense).
    #[serde(default)]
    pub encounter: Option<Hash>,
    /// The authorisation (an earlier pre-authorisation's id) the claim relies on.
    #[serde(default)]
    pub authorisation: Option<Hash>,
    /// ICD-10-CM codes.
    pub diagnoses: Vec<String>,
    pub items: Vec<ClaimItem>,
    /// HMAC-SHA256 of the FHIR Claim's exact bytes under the provider node's claim key.
    pub commitment: Hash,
}

/// A check adjudication makes, each with its own reason (and its X12 CARC and RARC).
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
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The same provider billed the same code for the same patient and day before.
    Duplicate = 0,
    /// The patient is not the coverage's member, or not known to the chain.
    NotInsured = 1,
    /// The date of service is outside the coverage, or before the plan's first version.
    NotCoveredOnDate = 2,
    /// No record of the service (an Encounter, or a dispense) by the provider for the patient.
    NoEncounter = 3,
    /// The policy requires the patient's consent for payment, and there is none.
    NoPaymentConsent = 4,
    /// The rendering provider is not an enrolled, unrevoked member of the provider.
    ProviderNotEligible = 5,
    /// The charge is far above the allowed amount (the policy's review ratio).
    AboveAllowed = 6,
    /// More units in a day than the policy's per-day limit.
    ImpossibleQuantity = 7,
    /// A code billed with another that includes it.
    CodePair = 8,
    /// The plan does not cover the code.
    CodeNotCovered = 9,
    /// The code needs an authorisation, and none applies.
    NoAuthorisation = 10,
    /// The member's annual limit, or the code's annual units, are used up.
    BenefitMaximum = 11,
    /// The payer's rule contract could not decide the item (it failed, refused or ran out of
    /// fuel): the claim waits for the payer's review rather than being paid.
    RuleContract = 12,
}

impl Check {
    pub const ALL: [Check; 13] = [
        Check::Duplicate,
        Check::NotInsured,
        Check::NotCoveredOnDate,
        Check::NoEncounter,
        Check::NoPaymentConsent,
        Check::ProviderNotEligible,
        Check::AboveAllowed,
        Check::ImpossibleQuantity,
        Check::CodePair,
        Check::CodeNotCovered,
        Check::NoAuthorisation,
        Check::BenefitMaximum,
        Check::RuleContract,
    ];

    /// Its own code (`https://medledger.dev/fhir/CodeSystem/claim-check`).
    pub fn code(self) -> &'static str {
        match self {
            Check::Duplicate => "duplicate",
            Check::NotInsured => "not-insured",
            Check::NotCoveredOnDate => "not-covered-on-date",
            Check::NoEncounter => "no-encounter",
            Check::NoPaymentConsent => "no-payment-consent",
            Check::ProviderNotEligible => "provider-not-eligible",
            Check::AboveAllowed => "above-allowed",
            Check::ImpossibleQuantity => "impossible-quantity",
            Check::CodePair => "code-pair",
            Check::CodeNotCovered => "code-not-covered",
            Check::NoAuthorisation => "no-authorisation",
            Check::BenefitMaximum => "benefit-maximum",
            Check::RuleContract => "rule-contract",
        }
    }

    /// The check named by its own code.
    pub fn from_code(code: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|check| check.code() == code)
    }

    /// The X12 Claim Adjustment Reason Code it is reported with.
    pub fn carc(self) -> &'static str {
        match self {
            Check::Duplicate => "18",
            Check::NotInsured => "31",
            Check::NotCoveredOnDate => "27",
            Check::NoEncounter | Check::NoPaymentConsent | Check::RuleContract => "16",
            Check::ProviderNotEligible => "B7",
            Check::AboveAllowed => "45",
            Check::ImpossibleQuantity => "151",
            Check::CodePair => "97",
            Check::CodeNotCovered => "96",
            Check::NoAuthorisation => "197",
            Check::BenefitMaximum => "119",
        }
    }

    /// The X12 Remittance Advice Remark Code, where one says more.
    pub fn rarc(self) -> Option<&'static str> {
        match self {
            Check::NoEncounter => Some("N29"),
            Check::CodePair => Some("M80"),
            Check::NotInsured => Some("MA61"),
            _ => None,
        }
    }

    /// Whether a finding sends the claim to the payer's review queue (a suspicion a person
    /// judges) rather than denying or reducing by rule.
    pub fn reviewed(self) -> bool {
        matches!(
            self,
            Check::NoEncounter
                | Check::NoPaymentConsent
                | Check::AboveAllowed
                | Check::ImpossibleQuantity
                | Check::RuleContract
        )
    }
}

/// One finding of a check: on the whole claim, or on one item.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Finding {
    pub check: Check,
    pub sequence: Option<u32>,
}

/// X12 claim adjustment group: contractual obligation or patient responsibility.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
pub enum Group {
    CO = 0,
    PR = 1,
}

/// One adjustment of an item: the group, the CARC, the amount.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Adjustment {
    pub group: Group,
    pub carc: String,
    pub amount: Amount,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Paid as allowed, less the member's share.
    Approved = 0,
    /// Paid, less than allowed for what was billed (fewer units, a benefit maximum, the fee
    /// schedule).
    Reduced = 1,
    Denied = 2,
}

/// How one item was adjudicated.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ItemResult {
    pub sequence: u32,
    pub outcome: ItemOutcome,
    pub units: u32,
    pub charge: Amount,
    /// The eligible amount (the fee schedule's, for the units allowed).
    pub allowed: Amount,
    pub deductible: Amount,
    pub copay: Amount,
    pub coinsurance: Amount,
    /// What the plan pays.
    pub payer: Amount,
    pub adjustments: Vec<Adjustment>,
    pub remarks: Vec<String>,
    /// The policy version that judged it, if one was in force.
    pub version: Option<u32>,
}

impl ItemResult {
    /// What the member owes the provider for the item.
    pub fn patient(&self) -> u128 {
        self.deductible.0 + self.copay.0 + self.coinsurance.0
    }
}

/// Where a claim stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// In the payer's review queue; nothing paid.
    Pending = 0,
    /// Adjudicated and its payable items paid (possibly nothing, if every item was denied).
    Adjudicated = 1,
    /// A pre-authorisation granted for its approved items.
    Authorised = 2,
    /// A pre-authorisation with nothing approved, or a claim the payer denied on review.
    Denied = 3,
    /// Denials under appeal, awaiting the payer's decision.
    Appealed = 4,
}

/// FHIR's RemittanceOutcome, as a claim response reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Queued,
    Complete,
    Partial,
    Error,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Complete => "complete",
            Outcome::Partial => "partial",
            Outcome::Error => "error",
        }
    }
}

/// When and by whom something was recorded.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Stamp {
    pub by: PublicKey,
    pub height: Height,
    pub time_ms: u64,
    pub tx: Hash,
}

/// A payer's decision on a reviewed claim or an appeal.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Decision {
    pub approve: bool,
    pub stamp: Stamp,
}

/// Why a provider appeals.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum AppealReason {
    MedicalNecessity = 0,
    CodingCorrected = 1,
    AuthorisationObtained = 2,
    CoverageInForce = 3,
    NotADuplicate = 4,
    Other = 5,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Appeal {
    pub reason: AppealReason,
    /// A keyed commitment to the appeal letter the provider keeps, if any.
    pub commitment: Option<Hash>,
    pub filed: Stamp,
    /// The claim's status before the appeal.
    pub prior: ClaimStatus,
    pub decision: Option<Decision>,
}

/// A claim (or pre-authorisation) on chain, with its adjudication.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClaimEntry {
    pub claim: ClaimSubmission,
    pub provider_org: String,
    pub payer: String,
    pub plan: String,
    /// The patient's enrolled key, if the chain knows it.
    pub member: Option<PublicKey>,
    pub status: ClaimStatus,
    pub items: Vec<ItemResult>,
    pub findings: Vec<Finding>,
    pub submitted: Stamp,
    /// What the plan has paid the payee for it, in total.
    pub paid: Amount,
    pub decision: Option<Decision>,
    pub appeal: Option<Appeal>,
    /// A pre-authorisation's last valid date of service.
    pub valid_until: Option<Date>,
    /// A pre-authorisation's escrow, if the policy locks one.
    pub escrow: Option<Hash>,
    /// The claim that used a pre-authorisation.
    pub used_by: Option<Hash>,
}

impl ClaimEntry {
    /// FHIR ClaimResponse.outcome.
    pub fn outcome(&self) -> Outcome {
        let denied = self
            .items
            .iter()
            .filter(|item| item.outcome == ItemOutcome::Denied)
            .count();
        match self.status {
            ClaimStatus::Pending | ClaimStatus::Appealed => Outcome::Queued,
            _ if self.findings.iter().any(|f| {
                f.sequence.is_none()
                    && matches!(f.check, Check::NotInsured | Check::ProviderNotEligible)
            }) =>
            {
                Outcome::Error
            }
            _ if denied == 0 => Outcome::Complete,
            _ if denied == self.items.len() && self.decision.is_none() => Outcome::Error,
            _ => Outcome::Partial,
        }
    }

    /// The totals: charged, allowed, the plan's share, the member's share.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for item in &self.items {
            totals.charged += item.charge.0;
            totals.allowed += item.allowed.0;
            totals.payer += item.payer.0;
            totals.patient += item.patient();
        }
        totals
    }
}

/// A claim's sums, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub charged: u128,
    pub allowed: u128,
    pub payer: u128,
    pub patient: u128,
}

/// What one member has used of a plan in one benefit year.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Accrual {
    pub deductible_met: Amount,
    pub paid: Amount,
    /// Units per code, sorted by code.
    pub units: Vec<(String, u32)>,
}

impl Accrual {
    pub fn units_of(&self, code: &str) -> u32 {
        self.units
            .binary_search_by(|(c, _)| c.as_str().cmp(code))
            .map_or(0, |i| self.units[i].1)
    }

    pub fn add_units(&mut self, code: &str, units: i64) {
        match self.units.binary_search_by(|(c, _)| c.as_str().cmp(code)) {
            Ok(i) => {
                let after = i64::from(self.units[i].1) + units;
                self.units[i].1 = u32::try_from(after.max(0)).unwrap_or(u32::MAX);
            }
            Err(i) => {
                let after = u32::try_from(units.max(0)).unwrap_or(u32::MAX);
                self.units.insert(i, (code.to_string(), after));
            }
        }
    }
}

/// One line a provider billed for a patient on a day, by claim.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DayLine {
    pub code: String,
    pub units: u32,
    pub claim: Hash,
}
