//! openraft's storage conformance suite, run against our log storage and
//! state machine on a real pinset in a temporary folder.

use openraft::testing::{StoreBuilder, Suite};
use pincluster_consensus::{LogStorage, StateMachine, StorageError, TypeConfig};
use pincluster_state::{Pinset, StateOptions};

struct Builder;

impl StoreBuilder<TypeConfig, LogStorage, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStorage, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let pinset = Pinset::open(&StateOptions::new(dir.path().join("pinset"))).expect("open pinset");
        let log = LogStorage::new(pinset.log_store().expect("log store"));
        let sm = StateMachine::open(pinset, 1, dir.path().join("snapshots"), None)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(error) = Suite::test_all(Builder) {
        panic!("our storage fails openraft's suite: {error}");
    }
}
