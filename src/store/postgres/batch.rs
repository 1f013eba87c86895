//! Batched reads and writes: a few statements over `unnest`ed arrays instead of one round
//! trip (and one commit) per resource. The status writer flushes thousands of
//! DataplaneInsights this way; each batch is grouped by resource type and operation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::errors::store_error;
use super::{now_micros, PostgresStore};
use crate::model::{Resource, ResourceKey, ResourceType};
use crate::store::{owner_of, BatchWrite, Result, StoreError};

/// Rows a name/mesh pair identifies within one type.
type NameMesh = (String, String);

impl PostgresStore {
    pub(super) fn get_batch_rows(&self, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        self.read_rows(&mut *self.conn()?, keys)
    }

    /// The batch read on a connection the caller holds: a write batch that must look again
    /// reuses its own instead of waiting for a second one (with `maxOpenConnections: 1` that
    /// wait could only end in the checkout time-out).
    fn read_rows(&self, conn: &mut postgres::Client, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        let mut found: HashMap<&ResourceKey, Arc<Resource>> = HashMap::with_capacity(keys.len());
        let mut by_type: HashMap<ResourceType, Vec<&ResourceKey>> = HashMap::new();
        for k in keys {
            by_type.entry(k.rtype).or_default().push(k);
        }
        for (rtype, group) in by_type {
            let names: Vec<&str> = group.iter().map(|k| k.name.as_str()).collect();
            let meshes: Vec<&str> = group.iter().map(|k| k.mesh.as_str()).collect();
            self.count(1);
            let rows = conn
                .query(
                    "SELECT r.name, r.mesh, r.spec, r.version, r.creation_time, r.modification_time \
                     FROM resources r JOIN unnest($2::text[], $3::text[]) AS k(name, mesh) \
                     ON r.name = k.name AND r.mesh = k.mesh WHERE r.type = $1",
                    &[&rtype.name(), &names, &meshes],
                )
                .map_err(|e| store_error(&self.addr, &e))?;
            let index: HashMap<(&str, &str), &ResourceKey> =
                group.iter().map(|k| ((k.name.as_str(), k.mesh.as_str()), *k)).collect();
            for row in &rows {
                let name: String = row.try_get(0).map_err(|e| self.internal(format!("a {rtype} row: {e}")))?;
                let mesh: String = row.try_get(1).map_err(|e| self.internal(format!("a {rtype} row: {e}")))?;
                if let Some(key) = index.get(&(name.as_str(), mesh.as_str())) {
                    found.insert(key, self.decode(key, row, 2)?);
                }
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    pub(super) fn write_batch_rows(&self, writes: Vec<BatchWrite>) -> Result<Vec<Result<()>>> {
        let mut outcomes: Vec<Result<()>> = Vec::with_capacity(writes.len());
        // (type, is create) → indexes into `writes`
        let mut groups: HashMap<(ResourceType, bool), Vec<usize>> = HashMap::new();
        for (i, w) in writes.iter().enumerate() {
            let (key, spec, create) = match w {
                BatchWrite::Create { key, spec } => (key, spec, true),
                BatchWrite::Update { key, spec, .. } => (key, spec, false),
            };
            if spec.resource_type() != key.rtype {
                outcomes.push(Err(StoreError::Internal(format!(
                    "cannot store a {} spec under {key}",
                    spec.resource_type()
                ))));
                continue;
            }
            outcomes.push(Ok(()));
            groups.entry((key.rtype, create)).or_default().push(i);
        }
        let mut conn = self.conn()?;
        let now = now_micros();
        for ((rtype, create), indexes) in groups {
            let mut names = Vec::with_capacity(indexes.len());
            let mut meshes = Vec::with_capacity(indexes.len());
            let mut specs = Vec::with_capacity(indexes.len());
            let mut versions: Vec<i32> = Vec::with_capacity(indexes.len());
            let mut owners: Vec<Option<ResourceKey>> = Vec::with_capacity(indexes.len());
            let mut pending: Vec<usize> = Vec::with_capacity(indexes.len());
            for &i in &indexes {
                let (key, spec, expected) = match &writes[i] {
                    BatchWrite::Create { key, spec } => (key, spec, 0),
                    BatchWrite::Update { key, spec, expected_version } => (key, spec, *expected_version),
                };
                // The column is an integer: a version beyond it cannot be the stored one.
                let Ok(expected) = i32::try_from(expected) else {
                    outcomes[i] = Err(StoreError::Conflict(key.clone()));
                    continue;
                };
                names.push(key.name.as_str());
                meshes.push(key.mesh.as_str());
                specs.push(self.encode(spec)?);
                versions.push(expected);
                owners.push(owner_of(key));
                pending.push(i);
            }
            self.count(1);
            let rows = if create {
                let owner_names: Vec<Option<&str>> =
                    owners.iter().map(|o| o.as_ref().map(|o| o.name.as_str())).collect();
                let owner_meshes: Vec<Option<&str>> =
                    owners.iter().map(|o| o.as_ref().map(|o| o.mesh.as_str())).collect();
                let owner_types: Vec<Option<&str>> =
                    owners.iter().map(|o| o.as_ref().map(|o| o.rtype.name())).collect();
                // The owner check keeps a missing owner from failing the whole statement on
                // the foreign key; ON CONFLICT does the same for rows created meanwhile.
                conn.query(
                    "INSERT INTO resources (name, mesh, type, version, spec, creation_time, modification_time, \
                     owner_name, owner_mesh, owner_type) \
                     SELECT v.name, v.mesh, $1, 0, v.spec, $2, $2, v.oname, v.omesh, v.otype \
                     FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                       AS v(name, mesh, spec, oname, omesh, otype) \
                     WHERE v.otype IS NULL OR EXISTS (SELECT 1 FROM resources o \
                       WHERE o.name = v.oname AND o.mesh = v.omesh AND o.type = v.otype) \
                     ON CONFLICT DO NOTHING RETURNING name, mesh",
                    &[&rtype.name(), &now, &names, &meshes, &specs, &owner_names, &owner_meshes, &owner_types],
                )
            } else {
                // GREATEST keeps modification >= creation should the clock step back.
                conn.query(
                    "UPDATE resources r SET spec = v.spec, version = r.version + 1, \
                     modification_time = GREATEST($2, r.creation_time) \
                     FROM unnest($3::text[], $4::text[], $5::text[], $6::int[]) AS v(name, mesh, spec, version) \
                     WHERE r.type = $1 AND r.name = v.name AND r.mesh = v.mesh AND r.version = v.version \
                     RETURNING r.name, r.mesh",
                    &[&rtype.name(), &now, &names, &meshes, &specs, &versions],
                )
            }
            .map_err(|e| store_error(&self.addr, &e))?;
            let mut written: HashSet<NameMesh> = HashSet::with_capacity(rows.len());
            for row in &rows {
                let name: String = row.try_get(0).map_err(|e| self.internal(format!("a written {rtype} row: {e}")))?;
                let mesh: String = row.try_get(1).map_err(|e| self.internal(format!("a written {rtype} row: {e}")))?;
                written.insert((name, mesh));
            }
            let missed: Vec<usize> = pending
                .into_iter()
                .filter(|&i| !written.contains(&(writes[i].key().name.clone(), writes[i].key().mesh.clone())))
                .collect();
            if missed.is_empty() {
                continue;
            }
            // Tell apart, for the writes that matched no row, a row that exists (created or
            // moved meanwhile) from one that does not (or whose owner does not).
            let keys: Vec<ResourceKey> = missed.iter().map(|&i| writes[i].key().clone()).collect();
            let existing = self.read_rows(&mut conn, &keys)?;
            for (&i, current) in missed.iter().zip(existing) {
                let key = writes[i].key().clone();
                outcomes[i] = Err(match (create, current) {
                    (true, Some(_)) => StoreError::AlreadyExists(key),
                    (false, Some(_)) => StoreError::Conflict(key),
                    (false, None) => StoreError::NotFound(key),
                    (true, None) => match owner_of(&key) {
                        Some(owner) if owner.rtype == ResourceType::Mesh => StoreError::MeshNotFound(owner.name),
                        Some(owner) => StoreError::OwnerNotFound { key, owner },
                        None => StoreError::Internal(format!("{key} could not be created")),
                    },
                });
            }
        }
        Ok(outcomes)
    }
}
