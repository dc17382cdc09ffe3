//! Health records, consent and access: the on-chain side of PRODUCT.md modules 1 to 4.
//!
//! **Invariant:** nothing here can hold personal data. Records and patients are named by opaque
//! random ids, content only by a keyed commitment (HMAC under a per-patient secret that lives off
//! chain and is destroyed on erasure), and the only descriptive fields are the FHIR resource type
//! and a category code from a closed list of coarse HL7 classes (`RECORD_CATEGORIES`).

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use serde::{Deserialize, Serialize};

use medledger_types::{Height, Role};

/// The most record versions one `PutRecords` transaction may carry (about 150 bytes each).
pub const RECORDS_PER_TX_MAX: usize = 384;
/// The most records one access event may name.
pub const ACCESS_RECORDS_MAX: usize = 1_000;
/// The most provisions one consent grant may hold, and the most entries in each of its lists.
/// With `GRANTS_PER_PATIENT_MAX` and `ACCESS_RECORDS_MAX` these bound the work of one access
/// event: at most 1,000 records × 64 grants × 8 provisions × 48 entries compared, about 25
/// million cheap comparisons, so no patient's consent can stall a block.
pub const PROVISIONS_MAX: usize = 8;
pub const PROVISION_ITEMS_MAX: usize = 16;
/// The most grants a patient may have on record at once (revoked and expired ones make room).
pub const GRANTS_PER_PATIENT_MAX: usize = 64;
/// The most delegates a patient may name.
pub const DELEGATES_MAX: usize = 8;
/// The longest FHIR resource type name (the longest R4 name is 33 bytes).
pub const RESOURCE_TYPE_BYTES_MAX: usize = 64;

/// Category codes a record may carry on chain: the coarse classes of HL7's observation-category
/// and condition-category value sets. Anything else is not recorded, because a free-text or fine
/// grained category could say something about the patient.
pub const RECORD_CATEGORIES: &[&str] = &[
    "social-history",
    "vital-signs",
    "imaging",
    "laboratory",
    "procedure",
    "survey",
    "exam",
    "therapy",
    "activity",
    "problem-list-item",
    "encounter-diagnosis",
];

/// HL7 v3 PurposeOfUse codes a request or a grant may name.
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
pub enum Purpose {
    /// Treatment.
    #[serde(rename = "TREAT")]
    Treat = 0,
    /// Emergency treatment: the purpose of a break-glass read.
    #[serde(rename = "ETREAT")]
    EmergencyTreat = 1,
    /// Care management.
    #[serde(rename = "CAREMGT")]
    CareManagement = 2,
    /// Healthcare payment.
    #[serde(rename = "HPAYMT")]
    Payment = 3,
    /// Healthcare operations.
    #[serde(rename = "HOPERAT")]
    Operations = 4,
    /// Healthcare research.
    #[serde(rename = "HRESCH")]
    Research = 5,
    /// Clinical trial research.
    #[serde(rename = "CLINTRCH")]
    ClinicalTrial = 6,
    /// Public health.
    #[serde(rename = "PUBHLTH")]
    PublicHealth = 7,
    /// At the patient's request.
    #[serde(rename = "PATRQT")]
    PatientRequest = 8,
    /// Legal.
    #[serde(rename = "HLEGAL")]
    Legal = 9,
}

impl Purpose {
    pub const ALL: [Purpose; 10] = [
        Purpose::Treat,
        Purpose::EmergencyTreat,
        Purpose::CareManagement,
        Purpose::Payment,
        Purpose::Operations,
        Purpose::Research,
        Purpose::ClinicalTrial,
        Purpose::PublicHealth,
        Purpose::PatientRequest,
        Purpose::Legal,
    ];

    /// The code in the HL7 v3 ActReason system (`http://terminology.hl7.org/CodeSystem/v3-ActReason`).
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::EmergencyTreat => "ETREAT",
            Purpose::CareManagement => "CAREMGT",
            Purpose::Payment => "HPAYMT",
            Purpose::Operations => "HOPERAT",
            Purpose::Research => "HRESCH",
            Purpose::ClinicalTrial => "CLINTRCH",
            Purpose::PublicHealth => "PUBHLTH",
            Purpose::PatientRequest => "PATRQT",
            Purpose::Legal => "HLEGAL",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Purpose::Treat => "treatment",
            Purpose::EmergencyTreat => "emergency treatment",
            Purpose::CareManagement => "care management",
            Purpose::Payment => "healthcare payment",
            Purpose::Operations => "healthcare operations",
            Purpose::Research => "healthcare research",
            Purpose::ClinicalTrial => "clinical trial research",
            Purpose::PublicHealth => "public health",
            Purpose::PatientRequest => "patient requested",
            Purpose::Legal => "legal",
        }
    }
}

impl std::str::FromStr for Purpose {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        medledger_types::parse_name(&Purpose::ALL, Purpose::code, "purpose of use", text)
    }
}

/// One version of one record, as its custodian writes it on chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecordWrite {
    /// Opaque, random; never derived from the content or the FHIR id.
    pub record: Hash,
    /// Opaque, random; the same for every record of one patient at one custodian.
    pub patient: Hash,
    /// The FHIR resource type, e.g. `Observation`.
    pub resource_type: String,
    /// A code from `RECORD_CATEGORIES`, if the resource has one.
    pub category: Option<String>,
    /// 1 for a new record, then one more per version.
    pub version: u32,
    /// HMAC-SHA256 of the exact resource bytes under the patient's commitment key.
    pub commitment: Hash,
    /// The enrolled member who wrote this version (the author of the signed request).
    pub author: PublicKey,
}

/// Who a consent provision is about.
#[derive(
    Clone,
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
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Grantee {
    /// One member key, e.g. a practitioner.
    Key(PublicKey),
    /// Every member of an organisation.
    Organisation(String),
    /// Every member with a role, in any organisation.
    Role(Role),
}

/// Which data a consent provision covers.
#[derive(
    Clone,
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
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Scope {
    /// Every record of a FHIR resource type.
    ResourceType(String),
    /// Every record with a category code.
    Category(String),
    /// One record.
    Record(Hash),
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum ProvisionKind {
    Permit = 0,
    Deny = 1,
}

/// One rule of a grant, modelled on FHIR `Consent.provision`. An empty list means "any": a deny
/// provision with no actors denies everyone. A permit must name at least one actor and purpose.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Provision {
    pub kind: ProvisionKind,
    pub actors: Vec<Grantee>,
    pub scope: Vec<Scope>,
    pub purposes: Vec<Purpose>,
}

/// A patient's consent: who may read what, why, and when. Deny provisions win over permits.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ConsentGrant {
    /// The patient whose data this is about: their enrolled key.
    pub patient: PublicKey,
    pub provisions: Vec<Provision>,
    /// In force from this block time (inclusive) ...
    pub start_ms: u64,
    /// ... until this block time (exclusive), or for ever.
    pub end_ms: Option<u64>,
}

/// A request to read records, as the custodian records it before releasing anything.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The hash of the reader's signed request; each may be used once.
    pub request: Hash,
    pub reader: PublicKey,
    pub patient: Hash,
    /// The records the request would return, sorted, without duplicates.
    pub records: Vec<Hash>,
    pub purpose: Purpose,
    /// The reader invoked emergency access.
    pub break_glass: bool,
}

/// What decided access to one record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "rule", content = "grant", rename_all = "snake_case")]
pub enum AccessRule {
    /// A permit provision of this grant matched.
    Permit(Hash),
    /// A deny provision of this grant matched.
    Deny(Hash),
    /// Emergency access by a practitioner for ETREAT, without a grant.
    BreakGlass,
    /// No grant permits it.
    NoConsent,
    /// The patient's data was erased.
    Erased,
}

impl AccessRule {
    pub fn allows(&self) -> bool {
        matches!(self, AccessRule::Permit(_) | AccessRule::BreakGlass)
    }
}

/// The on-chain record of one access decision: who asked for what, why, and the answer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccessEvent {
    pub request: Hash,
    pub reader: PublicKey,
    pub reader_org: String,
    pub reader_role: Option<Role>,
    /// The organisation whose node recorded the event and holds the data.
    pub custodian: String,
    pub patient: Hash,
    pub purpose: Purpose,
    pub break_glass: bool,
    /// One decision per requested record, in the request's order.
    pub decisions: Vec<(Hash, AccessRule)>,
    pub height: Height,
    pub time_ms: u64,
    pub tx: Hash,
}

impl AccessEvent {
    /// Allowed if every requested record was allowed (an empty request is allowed).
    pub fn allowed(&self) -> bool {
        self.decisions.iter().all(|(_, rule)| rule.allows())
    }
}

/// A patient known to the chain: which custodian created the id, the key bound to it, and
/// whether it was erased.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PatientEntry {
    pub custodian: String,
    pub key: Option<PublicKey>,
    pub created_at: Height,
    pub erased_at: Option<Height>,
}

/// The current head of a record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecordHead {
    pub patient: Hash,
    pub custodian: String,
    pub resource_type: String,
    pub category: Option<String>,
    pub version: u32,
}

/// One version of a record, with where and when it was written: its provenance.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecordVersion {
    pub version: u32,
    pub commitment: Hash,
    pub author: PublicKey,
    /// The key that signed the transaction: the custodian's node.
    pub recorded_by: PublicKey,
    pub height: Height,
    pub time_ms: u64,
    pub tx: Hash,
}

/// A grant on record, with its status.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ConsentEntry {
    pub id: Hash,
    pub grant: ConsentGrant,
    /// The key that signed it: the patient or a delegate.
    pub signed_by: PublicKey,
    pub granted_at: Height,
    pub granted_time_ms: u64,
    pub revoked_at: Option<Height>,
    pub revoked_time_ms: Option<u64>,
}

impl ConsentEntry {
    /// In force at block time `time_ms`: not revoked, and within its period.
    pub fn active_at(&self, time_ms: u64) -> bool {
        self.revoked_at.is_none()
            && self.grant.start_ms <= time_ms
            && self.grant.end_ms.is_none_or(|end| time_ms < end)
    }
}

/// A patient's consent-related settings: the delegates who may sign on their behalf, and the ids
/// of their grants.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ConsentBook {
    pub delegates: Vec<PublicKey>,
    pub grants: Vec<Hash>,
}
