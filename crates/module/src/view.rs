//! The state as one module sees it.

use std::any::Any;

use medledger_state::{Overlay, StateError, StateRead};

use crate::CORE_PREFIXES;

/// A module's window on the block's overlay: writes under the module's own prefixes; reads of
/// those, of the ledger's identity (`CORE_PREFIXES`) and of the prefixes the module declares in
/// `Module::READS`; and requests to other modules (`request`), which the ledger applies after the
/// operation succeeds, within its transaction.
pub struct View<'o, 'b> {
    overlay: &'o mut Overlay<'b>,
    module: &'static str,
    own: &'static [&'static str],
    reads: &'static [&'static str],
    requests: Vec<Box<dyn Any + Send>>,
    kept: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for View<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("module", &self.module)
            .finish()
    }
}

fn under(prefixes: &[&str], key: &[u8]) -> bool {
    prefixes
        .iter()
        .any(|prefix| key.starts_with(prefix.as_bytes()))
}

impl<'o, 'b> View<'o, 'b> {
    /// A view for `module`, which owns `own` and may also read `reads` (another module's
    /// prefixes, as the module declares them).
    pub fn new(
        overlay: &'o mut Overlay<'b>,
        module: &'static str,
        own: &'static [&'static str],
        reads: &'static [&'static str],
    ) -> Self {
        View {
            overlay,
            module,
            own,
            reads,
            requests: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// Asks another module to act (an `EffectTarget`'s `Effect`), in this transaction, after this
    /// operation: the ledger applies requests in order through the target's own code and view,
    /// and refuses the whole transaction if the target refuses one. Only the routes the registry
    /// declares are allowed; any other is a bug in the module and stops the node.
    pub fn request<E: Any + Send>(&mut self, effect: E) {
        self.requests.push(Box::new(effect));
    }

    /// The requests made so far, in order, leaving none.
    pub fn take_requests(&mut self) -> Vec<Box<dyn Any + Send>> {
        std::mem::take(&mut self.requests)
    }

    /// The module this view is of.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// Writes `key`, which must be under one of the module's prefixes.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.check_write(&key);
        self.overlay.put(key, value);
    }

    /// Writes `key` (under the module's prefixes) so that the write stands even if the operation
    /// is then refused: what a refused operation cost, such as the fuel a failed contract call
    /// burnt against the block's budget. The ledger applies these again after discarding the
    /// refused transaction's other writes.
    pub fn put_kept(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.check_write(&key);
        self.overlay.put(key.clone(), value.clone());
        self.kept.push((key, value));
    }

    /// The writes made with `put_kept`, in order, leaving none.
    pub fn take_kept(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.kept)
    }

    /// Deletes `key`, which must be under one of the module's prefixes.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.check_write(&key);
        self.overlay.delete(key);
    }

    fn check_write(&self, key: &[u8]) {
        // A module computes its keys from its own key functions; one outside its prefixes is a
        // bug in the module, never a consequence of input.
        assert!(
            under(self.own, key),
            "module {} wrote {:?}, outside its prefixes {:?}",
            self.module,
            String::from_utf8_lossy(key),
            self.own
        );
    }
}

impl StateRead for View<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if under(self.own, key) || under(CORE_PREFIXES, key) || under(self.reads, key) {
            self.overlay.get(key)
        } else {
            Err(StateError::Store(format!(
                "module {} may not read {:?}: it is another module's state",
                self.module,
                String::from_utf8_lossy(key)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use medledger_state::{MemoryTree, Snapshot};

    use super::*;

    const OWN: &[&str] = &["claim/", "claim-index/"];

    fn check(view: &View<'_, '_>, key: &str, readable: bool) {
        assert_eq!(view.get(key.as_bytes()).is_ok(), readable, "{key}");
    }

    #[test]
    fn a_view_reads_its_own_and_the_ledgers_state_and_writes_only_its_own() {
        let tree = MemoryTree::default();
        let base = Snapshot {
            reader: &tree,
            version: None,
        };
        let mut overlay = Overlay::new(&base);
        overlay.put(b"unit/x".to_vec(), b"another module's".to_vec());
        let mut view = View::new(&mut overlay, "claims", OWN, &["record/"]);
        view.put(b"claim/1".to_vec(), b"v".to_vec());
        view.delete(b"claim-index/2".to_vec());
        assert_eq!(view.get(b"claim/1").expect("own"), Some(b"v".to_vec()));
        check(&view, "member/k", true);
        check(&view, "chain/head", true);
        check(&view, "unit/x", false);
        // A declared read of another module's prefix is allowed; its neighbours are not.
        check(&view, "record/r", true);
        check(&view, "record-version/r", false);
        check(&view, "claims/1", false);
        check(&view, "claim", false);
        let error = view.get(b"unit/x").expect_err("foreign");
        assert!(
            error.to_string().contains("another module's state"),
            "{error}"
        );
        // A write outside the module's prefixes is a bug in the module: it stops the node.
        let outside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            view.put(b"member/k".to_vec(), b"forged".to_vec())
        }));
        assert!(outside.is_err());
        overlay.commit_tx();
        let writes = overlay.into_writes();
        assert!(writes.contains_key(b"claim/1".as_slice()));
        assert!(!writes.contains_key(b"member/k".as_slice()));
    }
}
