//! Transactions written by the code before modules were crates (commit 2f20e00): one or more of
//! every payload kind, as stored in a real chain (`crates/cli/tests/data/pre-seam`). Each must
//! decode to the same kind, re-encode to exactly the same bytes, keep its id and its signature.

use medledger_ledger::Tx;

#[test]
fn transactions_written_before_the_module_seam_decode_unchanged() {
    let text = include_str!("data/pre-seam-txs.txt");
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [height, index, id, kind, hex] = fields[..] else {
            panic!("line {line:?} is not `height index id kind hex`");
        };
        let bytes = hex::decode(hex).expect("hex");
        let tx = Tx::from_bytes(&bytes).unwrap_or_else(|error| {
            panic!("transaction {height}/{index} ({kind}) no longer decodes: {error}")
        });
        assert_eq!(tx.body.payload.kind(), kind, "{height}/{index}");
        assert_eq!(
            tx.to_bytes(),
            bytes,
            "{height}/{index} ({kind}) re-encodes differently"
        );
        assert_eq!(
            tx.id().to_string(),
            id,
            "{height}/{index} ({kind}) has another id"
        );
        assert!(tx.verify_signature().is_ok(), "{height}/{index} ({kind})");
        kinds.insert(kind);
    }
    // Every kind the ledger had then: its own five, records' seven and supply's two.
    assert_eq!(kinds.len(), 14, "{kinds:?}");
}
