//! Runs the store contract against every backend available here. The Postgres run needs the
//! test cluster (`HIGUMA_TEST_PG_*`, set by `scripts/test.sh`); without it those tests fail.

mod common;
mod store_contract;

use std::sync::Arc;

use higuma::store::{MemoryStore, SharedStore};

store_contract_suite!(memory, || Arc::new(MemoryStore::new()) as SharedStore);
store_contract_suite!(postgres, || common::pg::migrated_store() as SharedStore);
