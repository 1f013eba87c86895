//! Runs the store contract against every backend available here.

mod store_contract;

use std::sync::Arc;

use higuma::store::{MemoryStore, SharedStore};

store_contract_suite!(memory, || Arc::new(MemoryStore::new()) as SharedStore);
