//! The payload codec: every tag pinned to the value it had before modules were crates, every
//! codec round trip, and the registry's own checks.

use medledger_claims::{
    AppealReason, ClaimItem, ClaimKind, ClaimSubmission, ClaimUse, ClaimsOp, CodePairEdit,
    CoverageInput, Date, PolicyInput, PriorAuth, ServiceRule,
};
use medledger_contracts::{ContractsAction, ContractsOp};
use medledger_credentials::CredentialsOp;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_records::RecordsOp;
use medledger_research::ResearchOp;
use medledger_supply::SupplyPayload;
use medledger_tokens::{Amount, ClassSpec, Reason, RewardProgram, RewardPurpose, TokensOp};
use medledger_trials::TrialsOp;
use medledger_types::{Role, TX_BYTES_MAX, TypesError, ValidatorChange};
use proptest::prelude::*;

use crate::governance::{Action, CoreAction, GOVERNANCE_BASE, GovernanceOp};
use crate::registry::{MODULES, check_prefixes, check_tags};
use crate::{Block, CoreOp, Payload, Tx, TxBody};

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<[u8; 32]>(), 0usize..Role::ALL.len()).prop_map(|(key, role)| Payload::Core(
            CoreOp::Enrol {
                member: PublicKey(key),
                role: Role::ALL[role]
            }
        )),
        any::<[u8; 32]>().prop_map(|key| Payload::Core(CoreOp::Revoke {
            member: PublicKey(key)
        })),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(id, c)| Payload::Core(CoreOp::Anchor {
            id: Hash(id),
            commitment: Hash(c)
        })),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(patient, key)| Payload::Records(
            RecordsOp::BindPatient {
                patient: Hash(patient),
                key: PublicKey(key)
            }
        )),
        any::<[u8; 32]>()
            .prop_map(|grant| Payload::Records(RecordsOp::RevokeConsent { grant: Hash(grant) })),
        (any::<[u8; 32]>(), any::<bool>()).prop_map(|(key, active)| Payload::Records(
            RecordsOp::SetDelegate {
                delegate: PublicKey(key),
                active
            }
        )),
        any::<[u8; 32]>().prop_map(|key| Payload::Supply(SupplyPayload::CaptureEpcis {
            capturer: PublicKey(key),
            events: Vec::new()
        })),
        (
            "[a-zA-Z0-9._-]{1,64}",
            proptest::collection::vec(any::<u8>(), 0..120)
        )
            .prop_map(|(kid, public_key)| Payload::Credentials(
                CredentialsOp::RegisterClientKey {
                    kid,
                    algorithm: medledger_credentials::KeyAlgorithm::Es384,
                    public_key,
                }
            )),
    ]
}

proptest! {
    /// Every transaction round-trips through its encoding, and its id and leaf follow it.
    #[test]
    fn transactions_round_trip(chain in "[a-z0-9-]{1,20}", seed in any::<u64>(), nonce in any::<u64>(), payload in payload()) {
        let key = SecretKey::from_seed(seed);
        let tx = TxBody { chain_id: chain, sender: key.public_key(), nonce, payload }.sign(&key);
        let bytes = tx.to_bytes();
        let back = Tx::from_bytes(&bytes).expect("decodes");
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.id(), tx.id());
        prop_assert!(back.verify_signature().is_ok());
        let json = serde_json::to_string(&tx).expect("json");
        prop_assert_eq!(serde_json::from_str::<Tx>(&json).expect("json back"), tx);
    }

    /// Arbitrary bytes never panic the decoder, and whatever decodes re-encodes to the same
    /// bytes: the encoding is canonical.
    #[test]
    fn decoding_untrusted_bytes_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(tx) = Tx::from_bytes(&bytes) {
            prop_assert_eq!(tx.to_bytes(), bytes.clone());
        }
        if let Ok(block) = Block::from_bytes(&bytes) {
            prop_assert_eq!(block.to_bytes(), bytes);
        }
    }
}

#[test]
fn oversized_and_trailing_input_is_refused() {
    let key = SecretKey::from_seed(1);
    let tx = TxBody {
        chain_id: "c".into(),
        sender: key.public_key(),
        nonce: 1,
        payload: Payload::Core(CoreOp::Revoke {
            member: key.public_key(),
        }),
    }
    .sign(&key);
    let mut bytes = tx.to_bytes();
    bytes.push(0);
    assert!(matches!(
        Tx::from_bytes(&bytes),
        Err(TypesError::Malformed { .. })
    ));
    assert!(matches!(
        Tx::from_bytes(&vec![0; TX_BYTES_MAX + 1]),
        Err(TypesError::TooLarge { .. })
    ));
    let mut flipped = tx.clone();
    flipped.body.nonce = 2;
    assert!(flipped.verify_signature().is_err());
}

/// One payload of every kind, with the borsh tag it has always had.
fn one_of_each() -> Vec<(Payload, u8)> {
    let key = PublicKey([7; 32]);
    let hash = Hash([9; 32]);
    let mut all: Vec<(Payload, u8)> = vec![
        (
            CoreOp::Enrol {
                member: key,
                role: Role::Patient,
            }
            .into(),
            0,
        ),
        (CoreOp::Revoke { member: key }.into(), 1),
        (
            CoreOp::Anchor {
                id: hash,
                commitment: hash,
            }
            .into(),
            2,
        ),
        (
            CoreOp::ProposeValidatorChange {
                change: medledger_types::ValidatorChange::Remove { key },
                effective_height: 9,
            }
            .into(),
            3,
        ),
        (CoreOp::ApproveValidatorChange { proposal: hash }.into(), 4),
        (
            RecordsOp::PutRecords {
                records: Vec::new(),
            }
            .into(),
            5,
        ),
        (RecordsOp::BindPatient { patient: hash, key }.into(), 6),
        (
            RecordsOp::SetDelegate {
                delegate: key,
                active: true,
            }
            .into(),
            7,
        ),
        (
            RecordsOp::GrantConsent {
                grant: medledger_records::ConsentGrant {
                    patient: key,
                    provisions: Vec::new(),
                    start_ms: 0,
                    end_ms: None,
                },
            }
            .into(),
            8,
        ),
        (RecordsOp::RevokeConsent { grant: hash }.into(), 9),
        (
            RecordsOp::RecordAccess {
                access: medledger_records::AccessRequest {
                    request: hash,
                    reader: key,
                    patient: hash,
                    purpose: medledger_records::Purpose::Treat,
                    break_glass: false,
                    records: Vec::new(),
                },
            }
            .into(),
            10,
        ),
        (RecordsOp::ErasePatient { patient: hash }.into(), 11),
        (SupplyPayload::Supply { ops: Vec::new() }.into(), 12),
        (
            SupplyPayload::CaptureEpcis {
                capturer: key,
                events: Vec::new(),
            }
            .into(),
            13,
        ),
        (
            CredentialsOp::RegisterClientKey {
                kid: "k1".into(),
                algorithm: medledger_credentials::KeyAlgorithm::Es384,
                public_key: vec![4; 97],
            }
            .into(),
            14,
        ),
        (
            CredentialsOp::RevokeClientKey { kid: "k1".into() }.into(),
            15,
        ),
    ];
    let study = || "s1".to_string();
    let trials: Vec<TrialsOp> = vec![
        TrialsOp::RegisterStudy {
            study: study(),
            title: "t".into(),
            registry_id: None,
            protocol_hash: hash,
            sap_hash: hash,
            outcomes: Vec::new(),
            sites: Vec::new(),
        },
        TrialsOp::AmendProtocol {
            study: study(),
            protocol_hash: hash,
            sap_hash: hash,
            outcomes: Vec::new(),
            reason: "r".into(),
            reconsent: true,
        },
        TrialsOp::EnrolSubject {
            study: study(),
            subject: "x".into(),
            patient: key,
        },
        TrialsOp::Consent {
            study: study(),
            version: 1,
        },
        TrialsOp::Withdraw {
            study: study(),
            subject: "x".into(),
        },
        TrialsOp::Capture {
            study: study(),
            captures: Vec::new(),
        },
        TrialsOp::ReportAdverseEvent {
            study: study(),
            event: hash,
            reporter: key,
            subject: "x".into(),
            seriousness: medledger_trials::Seriousness::Fatal,
            expected: false,
            related: true,
            commitment: hash,
        },
        TrialsOp::AcknowledgeAdverseEvent {
            study: study(),
            event: hash,
        },
        TrialsOp::ReportToRegulator {
            study: study(),
            event: hash,
            reference: None,
        },
        TrialsOp::Sign {
            study: study(),
            on: medledger_trials::Signed::ProtocolVersion { version: 1 },
            meaning: medledger_trials::Meaning::Review,
        },
        TrialsOp::SetMonitoredThresholds {
            study: study(),
            thresholds: vec![medledger_trials::MonitoredThreshold {
                loinc: "59408-5".into(),
                below: Some(900),
                above: None,
                for_ms: 60_000,
            }],
        },
    ];
    // Trials starts a block of 16 tags at 16, as every module after it does.
    all.extend(
        trials
            .into_iter()
            .zip(16u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    let terms = || medledger_research::duo::DuoTerms {
        codes: vec!["DUO:0000042".into()],
        disease: None,
        institutions: Vec::new(),
    };
    let research: Vec<ResearchOp> = vec![
        ResearchOp::GrantResearchConsent {
            terms: terms(),
            resource_types: Vec::new(),
            end_ms: None,
        },
        ResearchOp::RevokeResearchConsent,
        ResearchOp::FileRequest {
            title: "t".into(),
            terms: terms(),
            resource_types: vec!["Observation".into()],
            recipient: [3; 32],
        },
        ResearchOp::RecordMatches {
            request: hash,
            patients: vec![key],
        },
        ResearchOp::RecordRelease {
            request: hash,
            patients: vec![key],
            resources: 1,
            sealed: hash,
        },
        ResearchOp::CloseRequest { request: hash },
        ResearchOp::SetReleaseCondition {
            contract: Some(hash),
        },
    ];
    all.extend(
        research
            .into_iter()
            .zip(32u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    let amount = Amount(5);
    let tokens: Vec<TokensOp> = vec![
        TokensOp::ProposeClass {
            spec: ClassSpec {
                symbol: "USDC".into(),
                name: "settlement".into(),
                decimals: 2,
                issuers: vec!["a".into()],
            },
        },
        TokensOp::ApproveClass {
            symbol: "USDC".into(),
        },
        TokensOp::Mint {
            symbol: "USDC".into(),
            to: key,
            amount,
            reference: None,
        },
        TokensOp::Burn {
            symbol: "USDC".into(),
            amount,
            reference: Some(hash),
        },
        TokensOp::Transfer {
            symbol: "USDC".into(),
            to: key,
            amount,
            reason: Reason::Settlement,
            reference: None,
        },
        TokensOp::Approve {
            symbol: "USDC".into(),
            spender: key,
            expected: Amount(0),
            amount,
        },
        TokensOp::IncreaseAllowance {
            symbol: "USDC".into(),
            spender: key,
            by: amount,
        },
        TokensOp::DecreaseAllowance {
            symbol: "USDC".into(),
            spender: key,
            by: amount,
        },
        TokensOp::TransferFrom {
            symbol: "USDC".into(),
            from: key,
            to: key,
            amount,
            reason: Reason::Transfer,
            reference: None,
        },
        TokensOp::Lock {
            id: hash,
            symbol: "USDC".into(),
            payee: key,
            amount,
            arbiter: "a".into(),
            reference: Some(hash),
        },
        TokensOp::Release { id: hash },
        TokensOp::Return { id: hash },
        TokensOp::CreateRewardProgram {
            program: RewardProgram {
                id: "sharing".into(),
                symbol: "RWD".into(),
                issuer: "a".into(),
                purpose: RewardPurpose::ResearchSharing,
                cap_per_period: amount,
                period_ms: 1,
                per_event: Some(amount),
            },
        },
        TokensOp::Reward {
            program: "sharing".into(),
            patient: key,
            amount,
            reference: None,
        },
        TokensOp::AttestAdherence {
            program: "adhere".into(),
            care_plan: hash,
        },
    ];
    all.extend(
        tokens
            .into_iter()
            .zip(48u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    let date = Date(20_000);
    let claims: Vec<ClaimsOp> = vec![
        ClaimsOp::PublishPolicy {
            policy: PolicyInput {
                plan: "gold".into(),
                effective: date,
                symbol: "USDC".into(),
                account: key,
                deductible: amount,
                copay: amount,
                coinsurance_bp: 2_000,
                annual_limit: Some(amount),
                payment_consent_required: true,
                review_charge_ratio_bp: 30_000,
                authorisation_days: 90,
                escrow_authorisations: true,
                services: vec![ServiceRule {
                    code: "99213".into(),
                    allowed: amount,
                    units_per_day_max: 1,
                    annual_units_max: Some(12),
                    prior_auth: PriorAuth::Review,
                }],
                edits: vec![CodePairEdit {
                    column_one: "99213".into(),
                    column_two: "36415".into(),
                }],
            },
        },
        ClaimsOp::Cover {
            coverage: CoverageInput {
                id: hash,
                plan: "gold".into(),
                member: key,
                start: date,
                end: None,
            },
        },
        ClaimsOp::EndCoverage {
            id: hash,
            end: date,
        },
        ClaimsOp::Submit {
            claim: ClaimSubmission {
                id: hash,
                use_: ClaimUse::Claim,
                kind: ClaimKind::Professional,
                coverage: hash,
                patient: hash,
                provider: key,
                payee: key,
                encounter: Some(hash),
                authorisation: None,
                diagnoses: vec!["E11.9".into()],
                items: vec![ClaimItem {
                    sequence: 1,
                    code: "99213".into(),
                    service_date: date,
                    units: 1,
                    charge: amount,
                }],
                commitment: hash,
            },
        },
        ClaimsOp::Decide {
            claim: hash,
            approve: true,
        },
        ClaimsOp::Appeal {
            claim: hash,
            reason: AppealReason::MedicalNecessity,
            commitment: None,
        },
        ClaimsOp::DecideAppeal {
            claim: hash,
            approve: false,
        },
        ClaimsOp::SetRuleContract {
            plan: "gold".into(),
            contract: Some(hash),
            codes: vec!["99213".into()],
        },
    ];
    all.extend(
        claims
            .into_iter()
            .zip(64u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    use medledger_monitor::{AlertRule, Code, Condition, MonitorOp, Span};
    let monitor: Vec<MonitorOp> = vec![
        MonitorOp::PairDevice {
            device: key,
            patient: hash,
        },
        MonitorOp::UnpairDevice { device: key },
        MonitorOp::AnchorWindow {
            window_start_ms: 1,
            window_ms: 60_000,
            root: hash,
            spans: vec![Span {
                device: key,
                first_seq: 0,
                last_seq: 5,
                readings: 60,
            }],
        },
        MonitorOp::SetAlertRule {
            patient: hash,
            rule: AlertRule {
                id: "low-spo2".into(),
                code: Code::OxygenSaturation,
                condition: Condition::Below {
                    limit: 90,
                    for_ms: 300_000,
                },
                escalate_after_ms: Some(600_000),
            },
        },
        MonitorOp::RemoveAlertRule {
            patient: hash,
            rule: "low-spo2".into(),
        },
        MonitorOp::RaiseAlert {
            patient: hash,
            rule: "low-spo2".into(),
            device: key,
            at_ms: 1,
        },
        MonitorOp::AcknowledgeAlert {
            org: "a".into(),
            seq: 0,
        },
        MonitorOp::EscalateAlert {
            org: "a".into(),
            seq: 0,
        },
        MonitorOp::RaiseTrialAlert {
            patient: Hash([3; 32]),
            study: "s".into(),
            threshold: 0,
            device: PublicKey([4; 32]),
            at_ms: 0,
        },
    ];
    all.extend(
        monitor
            .into_iter()
            .zip(80u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    let governance = [
        GovernanceOp::Propose {
            action: Action::Contracts(ContractsAction::DeployContract {
                code_hash: hash,
                label: "escrow".into(),
                msg: "{}".into(),
            }),
            expires_at: 10,
        },
        GovernanceOp::ApproveProposal { proposal: hash },
    ];
    all.extend(
        governance
            .into_iter()
            .zip(96u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    let contracts = [
        ContractsOp::UploadCode {
            code_hash: hash,
            size: 3,
            part: 0,
            bytes: vec![1, 2, 3],
        },
        ContractsOp::ExecuteContract {
            contract: hash,
            msg: r#"{"release":{}}"#.into(),
        },
    ];
    all.extend(
        contracts
            .into_iter()
            .zip(112u8..)
            .map(|(op, tag)| (op.into(), tag)),
    );
    all
}

#[test]
fn every_governance_action_round_trips_in_borsh_and_json() {
    let key = PublicKey([7; 32]);
    let hash = Hash([9; 32]);
    for action in [
        Action::Core(CoreAction::ChangeValidators {
            change: ValidatorChange::Remove { key },
            effective_height: 5,
        }),
        Action::Core(CoreAction::AdmitOrganisation {
            id: "c".into(),
            name: "C".into(),
            root_key: key,
        }),
        Action::Core(CoreAction::SetParameter {
            name: "contracts.call_fuel_max".into(),
            value: 1,
        }),
        Action::Contracts(ContractsAction::DeployContract {
            code_hash: hash,
            label: "x".into(),
            msg: "{}".into(),
        }),
        Action::Contracts(ContractsAction::UpgradeContract {
            contract: hash,
            code_hash: hash,
            msg: "{}".into(),
        }),
        Action::Contracts(ContractsAction::FreezeContract { contract: hash }),
        Action::Contracts(ContractsAction::UnfreezeContract { contract: hash }),
    ] {
        let bytes = borsh::to_vec(&action).expect("encodes");
        assert_eq!(
            borsh::from_slice::<Action>(&bytes).expect("decodes"),
            action
        );
        let json = serde_json::to_value(&action).expect("json");
        assert_eq!(json["type"], action.kind());
        assert_eq!(
            serde_json::from_value::<Action>(json).expect("back"),
            action
        );
    }
}

#[test]
fn every_payload_keeps_its_tag_and_round_trips() {
    let all = one_of_each();
    let kinds: usize = CoreOp::KINDS.len()
        + GovernanceOp::KINDS.len()
        + MODULES.iter().map(|m| m.kinds.len()).sum::<usize>();
    assert_eq!(all.len(), kinds, "one_of_each names every operation");
    for (payload, tag) in all {
        let bytes = borsh::to_vec(&payload).expect("encodes");
        assert_eq!(bytes[0], tag, "{}", payload.kind());
        // The tag's place in its owner's KINDS names the same operation.
        let owner_kinds = MODULES
            .iter()
            .find(|m| (m.base..m.base + m.kinds.len() as u8).contains(&tag))
            .map_or_else(
                || {
                    if tag >= GOVERNANCE_BASE {
                        &GovernanceOp::KINDS[usize::from(tag - GOVERNANCE_BASE)..]
                    } else {
                        &CoreOp::KINDS[usize::from(tag)..]
                    }
                },
                |m| &m.kinds[usize::from(tag - m.base)..],
            );
        assert_eq!(owner_kinds[0], payload.kind(), "tag {tag}");
        let back: Payload = borsh::from_slice(&bytes).expect("decodes");
        assert_eq!(back, payload);
        let json = serde_json::to_value(&payload).expect("json");
        assert_eq!(json["type"], payload.kind(), "JSON names the kind");
        let from_json: Payload = serde_json::from_value(json).expect("json back");
        assert_eq!(from_json, payload);
    }
}

#[test]
fn an_unknown_payload_tag_is_refused() {
    // Past the last module's range, and the unused tags of a module's block (trials 27 to 31).
    let end = MODULES
        .iter()
        .map(|m| usize::from(m.base) + m.kinds.len())
        .max()
        .unwrap_or(CoreOp::KINDS.len());
    for tag in [end as u8, 27, 31, 98, 111, 200, 255] {
        let error = borsh::from_slice::<Payload>(&[tag]).expect_err("no such tag");
        assert!(error.to_string().contains("unknown payload tag"), "{error}");
    }
}

#[test]
fn registry_prefixes_and_tags_are_disjoint() {
    check_prefixes().expect("prefixes are prefix-free");
    check_tags().expect("tag ranges are disjoint");
}
