//! The claims service: a provider's node turns a FHIR Claim into a claim on chain, and any node
//! answers the parties' reads of claims, coverage and payments.
//!
//! A submitted Claim is read for the facts adjudication needs (`medledger_fhir::claim`), its
//! references resolved against this node's records (the Patient and the Encounter become their
//! opaque ids), kept sealed here (`claims/claims.redb`, the trials service's sealed store), and
//! committed as `submit_claim` with a keyed commitment to the kept bytes. Adjudication happens in
//! that block; the answer is the committed entry. If the ledger refuses the claim, what was kept
//! is deleted.
//!
//! Reads are for the parties: the provider organisation, the payer, the patient for their own
//! claims, and auditors.
//!
//! **Invariant:** nothing of a Claim's content reaches the chain or the logs.

use std::path::Path;
use std::sync::Arc;

use medledger_claims::{self as ledger, ClaimEntry, ClaimSubmission, Coverage, Date, Listing};
use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::{Authority, Payload};
use medledger_state::StateRead;
use medledger_types::{Height, Organisation, Role};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::Value;

use crate::Node;
use crate::records::Records;
use crate::sealed::SealedStore;
use crate::service::{Service, ServiceError, wait_committed};

const CLAIM_TAG: &[u8] = b"medledger/fhir-claim/v1";
/// The most claims one listing page holds.
pub const LIST_PAGE_MAX: u64 = 1_000;
/// The most claims a payment reconciliation scans.
pub const RECONCILIATION_SCANNED_MAX: u64 = 100_000;

/// The claims service of one node.
#[derive(Clone)]
pub struct Claims {
    node: Node,
    records: Records,
    blobs: Arc<SealedStore>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").finish_non_exhaustive()
    }
}

impl Service for Claims {
    /// Reads come from the committed state when asked; nothing follows blocks.
    const FOLLOWING: Option<&'static str> = None;
}

/// A claim with what its FHIR rendering needs.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimView {
    pub height: Height,
    pub entry: ClaimEntry,
    pub outcome: &'static str,
    pub totals: ledger::Totals,
    /// The token class it is paid in, and its decimals.
    pub symbol: String,
    pub decimals: u8,
    /// `Patient/{id}` where this node holds the patient.
    pub patient: Option<String>,
    /// Whether the Claim kept here matches the chain's commitment (`None`: not kept here).
    pub matches_commitment: Option<bool>,
    #[serde(skip)]
    pub resource: Value,
}

impl ClaimView {
    pub fn parties(&self) -> medledger_fhir::claim::ClaimParties {
        medledger_fhir::claim::ClaimParties {
            patient: self.patient.clone(),
            currency: self.symbol.clone(),
            decimals: self.decimals,
        }
    }
}

/// What a submission did.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub tx: Hash,
    pub view: ClaimView,
}

fn invalid(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(error.to_string())
}

fn refused(error: medledger_ledger::TxError) -> ServiceError {
    match error {
        medledger_ledger::TxError::State(error) => ServiceError::Node(error.into()),
        other => ServiceError::Invalid(other.to_string()),
    }
}

fn blob_key(id: &Hash) -> String {
    format!("claim/{id}")
}

/// The class a plan pays in: (symbol, decimals), from its latest version.
fn class_of(state: &dyn StateRead, plan: &str) -> Result<(String, u8), ServiceError> {
    let found = ledger::plan(state, plan)
        .map_err(invalid)?
        .ok_or_else(|| ServiceError::NotFound(format!("no plan {plan}")))?;
    let version = found.versions.last().map_or(1, |(v, _)| *v);
    let policy = ledger::policy(state, plan, version)
        .map_err(invalid)?
        .ok_or_else(|| ServiceError::NotFound(format!("no policy {plan} v{version}")))?;
    let class = medledger_tokens::class(state, &policy.symbol)
        .map_err(invalid)?
        .ok_or_else(|| ServiceError::NotFound(format!("no token class {}", policy.symbol)))?;
    Ok((policy.symbol, class.decimals))
}

impl Claims {
    pub fn open(node: Node, records: Records, dir: &Path) -> Result<Claims, ServiceError> {
        let blobs = SealedStore::open(
            &node,
            dir,
            "claims.redb",
            "fhir_claims",
            "claims",
            "claim store",
        )?;
        Ok(Claims {
            node,
            records,
            blobs: Arc::new(blobs),
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The token class plan `plan` pays in, at the head: (symbol, decimals).
    fn class(&self, plan: &str) -> Result<(String, u8), ServiceError> {
        let (_, class) = self.node.read_head(|state| Ok(class_of(state, plan)))?;
        class.map_err(refused)?
    }

    /// Who `key` acts as at the head.
    pub fn authenticate(&self, key: &PublicKey) -> Result<Authority, ServiceError> {
        self.node.authenticate(key)
    }

    fn provider_org(&self) -> Result<String, ServiceError> {
        match self.authenticate(&self.node.key())? {
            Authority::Member { org, .. } | Authority::Organisation { org } => Ok(org),
        }
    }

    /// Submits a FHIR Claim (or pre-authorisation request) written by `author`, a member of this
    /// node's organisation, and answers the committed adjudication.
    pub async fn submit(&self, author: PublicKey, body: &[u8]) -> Result<Submitted, ServiceError> {
        let provider_org = self.provider_org()?;
        match self.authenticate(&author)? {
            Authority::Organisation { org } | Authority::Member { org, .. }
                if org == provider_org => {}
            _ => {
                return Err(ServiceError::Forbidden(format!(
                    "claims are submitted at the provider's node by its members; the signer is not a member of {provider_org}"
                )));
            }
        }
        // The money's decimals are the plan's class's: read the coverage first.
        let (_, facts) = medledger_fhir::claim::parse_claim(body, medledger_tokens::DECIMALS_MAX)
            .map_err(issues_error)?;
        let coverage = Hash::from_hex(&facts.coverage)
            .map_err(|_| invalid(format!("Coverage/{} is not a coverage id", facts.coverage)))?;
        let (_, read) = self.node.read_head(|state| {
            let found = ledger::coverage(state, &coverage)?;
            let payee = medledger_module::read::<Organisation>(
                state,
                &medledger_ledger::key_org(&provider_org),
            )?;
            Ok((found, payee))
        })?;
        let (found, organisation) = read.map_err(refused)?;
        let found =
            found.ok_or_else(|| ServiceError::NotFound(format!("no Coverage/{coverage}")))?;
        let organisation = organisation
            .ok_or_else(|| ServiceError::NotFound(format!("no organisation {provider_org}")))?;
        let (symbol, decimals) = self.class(&found.plan)?;
        let (mut resource, facts) =
            medledger_fhir::claim::parse_claim(body, decimals).map_err(issues_error)?;
        if let Some(currency) = &facts.currency
            && *currency != symbol
        {
            return Err(invalid(format!(
                "the claim's amounts are in {currency}; plan {} pays in {symbol}",
                found.plan
            )));
        }
        let patient = self
            .records
            .patient_by_fhir(&facts.patient)?
            .ok_or_else(|| {
                invalid(format!(
                    "Patient/{} is not a patient of this node",
                    facts.patient
                ))
            })?;
        let encounter = match &facts.encounter {
            Some(id) => Some(
                self.records
                    .record_by_fhir("Encounter", id)?
                    .map(|(record, _)| record)
                    .ok_or_else(|| invalid(format!("Encounter/{id} is not held by this node")))?,
            ),
            None => None,
        };
        let authorisation = match &facts.authorisation {
            Some(text) => Some(Hash::from_hex(text).map_err(|_| {
                invalid(format!("preAuthRef {text:?} is not a pre-authorisation id"))
            })?),
            None => None,
        };
        let mut items = Vec::with_capacity(facts.items.len());
        for line in &facts.items {
            let service_date: Date = line
                .service_date
                .get(..10)
                .unwrap_or_default()
                .parse()
                .map_err(invalid)?;
            items.push(ledger::ClaimItem {
                sequence: line.sequence,
                code: line.code.clone(),
                service_date,
                units: line.units,
                charge: medledger_tokens::Amount(line.charge),
            });
        }
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let id = Hash(id);
        resource["id"] = Value::String(id.to_string());
        let kept = serde_json::to_vec(&resource).map_err(invalid)?;
        let commitment = self.blobs.commitment(CLAIM_TAG, &[id.as_bytes(), &kept]);
        let claim = ClaimSubmission {
            id,
            use_: facts.use_,
            kind: facts.kind,
            coverage,
            patient,
            provider: author,
            payee: organisation.root_key,
            encounter,
            authorisation,
            diagnoses: facts.diagnoses,
            items,
            commitment,
        };
        let key = blob_key(&id);
        self.blobs.keep(&[(key.clone(), kept)])?;
        let payload: Payload = ledger::ClaimsOp::Submit { claim }.into();
        let committed = match self
            .node
            .submit_own_checked(payload, |_| Ok::<(), ServiceError>(()))
        {
            Ok(tx) => wait_committed(&self.node, tx).await.map(|_| tx),
            Err(error) => Err(error),
        };
        let tx = match committed {
            Ok(tx) => tx,
            Err(error) => {
                self.blobs.forget(&[key]);
                return Err(error);
            }
        };
        let view = self.view(&id)?;
        Ok(Submitted { tx, view })
    }

    /// A claim at the head, unchecked: for the service's own answers.
    fn view(&self, id: &Hash) -> Result<ClaimView, ServiceError> {
        let (height, read) = self.node.read_head(|state| {
            let entry = ledger::claim(state, id)?;
            Ok(entry)
        })?;
        let entry = read
            .map_err(refused)?
            .ok_or_else(|| ServiceError::NotFound(format!("no claim {id}")))?;
        let (symbol, decimals) = self.class(&entry.plan)?;
        let patient = self
            .records
            .patient_fhir_id(&entry.claim.patient)?
            .filter(|_| entry.member.is_some())
            .map(|fhir| format!("Patient/{fhir}"));
        let kept = self.blobs.kept(&blob_key(id))?;
        let (resource, matches_commitment) = kept.check(
            |content| self.blobs.commitment(CLAIM_TAG, &[id.as_bytes(), content]),
            &entry.claim.commitment,
        );
        Ok(ClaimView {
            height,
            outcome: entry.outcome().code(),
            totals: entry.totals(),
            entry,
            symbol,
            decimals,
            patient,
            matches_commitment,
            resource,
        })
    }

    /// May `viewer` (with `authority`) see a claim? The provider organisation, the payer, the
    /// patient for their own, and auditors.
    fn may_see(viewer: &PublicKey, authority: &Authority, entry: &ClaimEntry) -> bool {
        match authority {
            Authority::Organisation { org } => *org == entry.provider_org || *org == entry.payer,
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Member {
                role: Role::Patient,
                ..
            } => entry.member == Some(*viewer),
            Authority::Member { org, .. } => *org == entry.provider_org || *org == entry.payer,
        }
    }

    /// A claim for a party to it.
    pub fn claim_for(&self, viewer: &PublicKey, id: &Hash) -> Result<ClaimView, ServiceError> {
        let authority = self.authenticate(viewer)?;
        let mut view = self.view(id)?;
        if !Self::may_see(viewer, &authority, &view.entry) {
            return Err(ServiceError::Forbidden(
                "a claim is seen by its provider, its payer, its patient and auditors".into(),
            ));
        }
        // The FHIR Claim itself (clinical detail) only at the provider, for the provider.
        let provider_side = match &authority {
            Authority::Organisation { org } | Authority::Member { org, .. } => {
                *org == view.entry.provider_org
            }
        };
        if !provider_side {
            view.resource = Value::Null;
        }
        Ok(view)
    }

    /// A coverage for its payer, its member, a provider organisation, or an auditor (not for
    /// other patients).
    pub fn coverage_for(
        &self,
        viewer: &PublicKey,
        id: &Hash,
    ) -> Result<(Coverage, Date, Option<String>), ServiceError> {
        let authority = self.authenticate(viewer)?;
        let (_, read) = self.node.read_head(|state| {
            let time = medledger_module::chain_head(state)?.time_ms;
            Ok((ledger::coverage(state, id)?, time))
        })?;
        let (found, time_ms) = read.map_err(refused)?;
        let found = found.ok_or_else(|| ServiceError::NotFound(format!("no Coverage/{id}")))?;
        let patient_other = matches!(
            authority,
            Authority::Member {
                role: Role::Patient,
                ..
            }
        ) && found.member != *viewer;
        if patient_other {
            return Err(ServiceError::Forbidden(
                "a patient sees only their own coverage".into(),
            ));
        }
        Ok((found, Date::of_time_ms(time_ms), None))
    }

    /// A page of a listing, for who may see it: a provider's claims for its organisation, a
    /// member's for the member, a review queue for the payer (and auditors throughout).
    pub fn list_for(
        &self,
        viewer: &PublicKey,
        listing: &Listing,
        offset: u64,
        limit: u64,
    ) -> Result<(Height, u64, Vec<ClaimEntry>), ServiceError> {
        let authority = self.authenticate(viewer)?;
        let allowed = match (&authority, listing) {
            (
                Authority::Member {
                    role: Role::Auditor,
                    ..
                },
                _,
            ) => true,
            (
                Authority::Member {
                    role: Role::Patient,
                    ..
                },
                Listing::Member(key),
            ) => key == viewer,
            (
                Authority::Member {
                    role: Role::Patient,
                    ..
                },
                _,
            ) => false,
            (
                Authority::Organisation { org } | Authority::Member { org, .. },
                Listing::Provider(of) | Listing::Review(of),
            ) => org == of,
            (_, Listing::Member(key)) => key == viewer,
        };
        if !allowed {
            return Err(ServiceError::Forbidden(
                "a provider lists its own claims, a payer its review queue, a patient their own"
                    .into(),
            ));
        }
        let limit = limit.min(LIST_PAGE_MAX);
        let (height, read) = self.node.read_head(|state| {
            let (total, ids) = ledger::list(state, listing, offset, limit)?;
            let mut entries = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(entry) = ledger::claim(state, id)? {
                    entries.push(entry);
                }
            }
            Ok((total, entries))
        })?;
        let (total, entries) = read.map_err(refused)?;
        Ok((height, total, entries))
    }

    /// What payer `payer` paid provider `provider` for claims submitted in `[from_ms, to_ms)`,
    /// for either party: the provider's index scanned, at most `RECONCILIATION_SCANNED_MAX`.
    pub fn payments_for(
        &self,
        viewer: &PublicKey,
        provider: &str,
        payer: &str,
        period: (u64, u64),
    ) -> Result<(u64, String, u8, Vec<medledger_fhir::claim::Payment>), ServiceError> {
        let authority = self.authenticate(viewer)?;
        let party = match &authority {
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Organisation { org } | Authority::Member { org, .. } => {
                org == provider || org == payer
            }
        };
        if !party {
            return Err(ServiceError::Forbidden(
                "a payment reconciliation is for its provider, its payer and auditors".into(),
            ));
        }
        let listing = Listing::Provider(provider.to_string());
        let (_, read) = self.node.read_head(|state| {
            let time = medledger_module::chain_head(state)?.time_ms;
            let (_, ids) = ledger::list(state, &listing, 0, RECONCILIATION_SCANNED_MAX)?;
            let mut payments = Vec::new();
            let mut plan = None;
            for id in &ids {
                let Some(entry) = ledger::claim(state, id)? else {
                    continue;
                };
                let paid_ms = [
                    Some(entry.submitted.time_ms),
                    entry.decision.as_ref().map(|d| d.stamp.time_ms),
                    entry
                        .appeal
                        .as_ref()
                        .and_then(|a| a.decision.as_ref())
                        .map(|d| d.stamp.time_ms),
                ]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(0);
                if entry.payer == payer
                    && entry.paid.0 > 0
                    && (period.0..period.1).contains(&paid_ms)
                {
                    plan.get_or_insert_with(|| entry.plan.clone());
                    payments.push(medledger_fhir::claim::Payment {
                        claim: *id,
                        time_ms: paid_ms,
                        amount: entry.paid.0,
                    });
                }
            }
            Ok((time, plan, payments))
        })?;
        let (time, plan, payments) = read.map_err(refused)?;
        let (symbol, decimals) = match plan {
            Some(plan) => self.class(&plan)?,
            None => (String::new(), 0),
        };
        Ok((time, symbol, decimals, payments))
    }
}

fn issues_error(issues: Vec<medledger_fhir::Issue>) -> ServiceError {
    ServiceError::InvalidDocument {
        message: "the Claim is not valid".into(),
        reasons: issues
            .into_iter()
            .map(|issue| match issue.expression {
                Some(at) => format!("{at}: {}", issue.diagnostics),
                None => issue.diagnostics,
            })
            .collect(),
    }
}

/// A claim id from its FHIR logical id (the hex of its opaque id).
pub fn claim_id(text: &str) -> Result<Hash, ServiceError> {
    Hash::from_hex(text).map_err(|_| ServiceError::NotFound(format!("no claim {text}")))
}
