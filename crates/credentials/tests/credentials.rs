//! Tests of members' client keys through the whole ledger: a member registers and revokes its
//! own keys; bad keys, reused key ids and too many keys are refused and change nothing.

use medledger_credentials::{
    CredentialsOp, KEYS_PER_MEMBER_MAX, KeyAlgorithm, client_key, key_client_key,
};
use medledger_crypto::SecretKey;
use medledger_ledger::testkit::{Chain, rejected};
use medledger_state::{MemoryTree, Snapshot};
use medledger_types::Role;

fn register(kid: &str, public_key: Vec<u8>) -> CredentialsOp {
    CredentialsOp::RegisterClientKey {
        kid: kid.into(),
        algorithm: KeyAlgorithm::Es384,
        public_key,
    }
}

fn point() -> Vec<u8> {
    let mut point = vec![4u8];
    point.extend((1..=96).map(|n| n as u8));
    point
}

fn stored(
    chain: &Chain,
    member: &SecretKey,
    kid: &str,
) -> Option<medledger_credentials::ClientKey> {
    let snapshot = Snapshot::<MemoryTree> {
        reader: &chain.tree,
        version: Some(chain.height),
    };
    client_key(&snapshot, &member.public_key(), kid).expect("read")
}

#[test]
fn a_member_registers_and_revokes_its_own_keys() {
    let mut chain = Chain::new();
    let member = SecretKey::from_seed(40);
    let org = chain.org_a.clone();
    assert_eq!(
        rejected(&chain.enrol(&org, &member, Role::Practitioner)),
        "committed"
    );
    let tx = chain.tx(&member, register("k1", point()));
    assert_eq!(rejected(&chain.one(tx)), "committed");
    let key = stored(&chain, &member, "k1").expect("registered");
    assert_eq!(key.public_key, point());
    assert_eq!(key.revoked_at, None);
    assert!(
        chain
            .get(&key_client_key(&member.public_key(), "k1"))
            .is_some()
    );
    // Another member's key ids are its own.
    let other = SecretKey::from_seed(41);
    assert_eq!(
        rejected(&chain.enrol(&org, &other, Role::Practitioner)),
        "committed"
    );
    assert!(stored(&chain, &other, "k1").is_none());

    let tx = chain.tx(&member, CredentialsOp::RevokeClientKey { kid: "k1".into() });
    assert_eq!(rejected(&chain.one(tx)), "committed");
    assert!(
        stored(&chain, &member, "k1")
            .expect("kept")
            .revoked_at
            .is_some()
    );
    // Revoked twice, or a kid reused after revocation: refused.
    let tx = chain.tx(&member, CredentialsOp::RevokeClientKey { kid: "k1".into() });
    assert_eq!(rejected(&chain.one(tx)), "client_key_revoked");
    let tx = chain.tx(&member, register("k1", point()));
    assert_eq!(rejected(&chain.one(tx)), "kid_taken");
    let tx = chain.tx(
        &member,
        CredentialsOp::RevokeClientKey { kid: "nope".into() },
    );
    assert_eq!(rejected(&chain.one(tx)), "unknown_kid");
}

#[test]
fn bad_keys_and_key_ids_are_refused_whole() {
    let mut chain = Chain::new();
    let member = SecretKey::from_seed(42);
    let org = chain.org_a.clone();
    chain.enrol(&org, &member, Role::Practitioner);
    let mut compressed = point();
    compressed[0] = 2;
    for (op, code) in [
        (register("", point()), "invalid_kid"),
        (register("a/b", point()), "invalid_kid"),
        (register(&"k".repeat(65), point()), "invalid_kid"),
        (register("k", point()[..96].to_vec()), "invalid_client_key"),
        (register("k", compressed), "invalid_client_key"),
        (register("k", Vec::new()), "invalid_client_key"),
    ] {
        let tx = chain.tx(&member, op.clone());
        assert_eq!(rejected(&chain.one(tx)), code, "{op:?}");
        assert!(stored(&chain, &member, "k").is_none());
    }
    // A member holds at most KEYS_PER_MEMBER_MAX keys, revoked ones counted.
    for n in 0..KEYS_PER_MEMBER_MAX {
        let tx = chain.tx(&member, register(&format!("k{n}"), point()));
        assert_eq!(rejected(&chain.one(tx)), "committed");
    }
    let tx = chain.tx(&member, register("one-more", point()));
    assert_eq!(rejected(&chain.one(tx)), "too_many_client_keys");
}
