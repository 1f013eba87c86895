//! Encoded resources and responses.
//!
//! Every Envoy resource is encoded once, as the `google.protobuf.Any` that goes into
//! `DiscoveryResponse.resources`, and shared (`Arc`) by every dataplane that uses it: a
//! service's cluster and endpoints are the same bytes for all its consumers. A response is
//! then assembled by concatenating those bytes, never by re-encoding messages.
//!
//! Versions are content hashes (xxh3 of the deterministic encoding), so identical inputs give
//! identical versions on every run and every instance.

use std::borrow::Cow;
use std::sync::Arc;

use protobuf::rt::WireType;
use protobuf::{CodedOutputStream, MessageFull};

use super::resource_kind::ResourceKind;

/// One Envoy resource, encoded as an `Any`.
#[derive(Debug, PartialEq, Eq)]
pub struct EncodedResource {
    pub name: String,
    pub kind: ResourceKind,
    /// The encoded `google.protobuf.Any` (type URL + message bytes).
    pub any: Vec<u8>,
    /// xxh3 of `any`; the resource's version.
    pub hash: u64,
}

impl EncodedResource {
    /// Encodes `message` (whose type must be `kind`'s) under `name`.
    pub fn encode<M: MessageFull>(kind: ResourceKind, name: impl Into<String>, message: &M) -> Arc<EncodedResource> {
        let type_url = crate::envoy::type_url::<M>();
        debug_assert_eq!(type_url, kind.type_url());
        // rust-protobuf writes fields in field-number order and our generators only use
        // ordered collections, so the bytes are deterministic for a given message.
        let value = message.write_to_bytes().unwrap_or_default();
        let mut any = Vec::with_capacity(value.len() + type_url.len() + 8);
        {
            let mut out = CodedOutputStream::vec(&mut any);
            // Writing into a Vec cannot fail.
            let _ = out.write_string(1, &type_url);
            let _ = out.write_bytes(2, &value);
            let _ = out.flush();
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&any);
        Arc::new(EncodedResource { name: name.into(), kind, any, hash })
    }
}

/// The resources of one type for one dataplane, sorted by name, with their version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceSet {
    pub resources: Vec<Arc<EncodedResource>>,
    /// Computed once: every request of every stream compares against it.
    version: String,
}

impl ResourceSet {
    pub fn new(mut resources: Vec<Arc<EncodedResource>>) -> Self {
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        resources.dedup_by(|a, b| a.name == b.name);
        Self::from_sorted(resources)
    }

    fn from_sorted(resources: Vec<Arc<EncodedResource>>) -> Self {
        let version = if resources.is_empty() {
            String::new()
        } else {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for r in &resources {
                h.update(r.name.as_bytes());
                h.update(&[0]);
                h.update(&r.hash.to_le_bytes());
            }
            format!("{:016x}", h.digest())
        };
        ResourceSet { resources, version }
    }

    /// The subset Envoy asked for; everything when `names` is empty. Borrowed (no copy, no
    /// hashing) when the request covers the whole set, as it does in the common case.
    pub fn filtered(&self, names: &[String]) -> Cow<'_, ResourceSet> {
        let wanted = |r: &Arc<EncodedResource>| names.iter().any(|n| *n == r.name);
        if names.is_empty() || self.resources.iter().all(wanted) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(Self::from_sorted(self.resources.iter().filter(|r| wanted(r)).cloned().collect()))
    }

    /// Hash over names and content: the type's version (hex), "" for an empty set.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|r| r.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

/// A `DiscoveryResponse`, already encoded; what the gRPC layer writes to the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedResponse(pub Vec<u8>);

impl EncodedResponse {
    /// Encodes a DiscoveryResponse: `version_info` = 1, `resources` = 2, `type_url` = 4,
    /// `nonce` = 5, `control_plane` = 6 (`identifier` = 1), as in
    /// envoy/service/discovery/v3/discovery.proto.
    pub fn encode(version: &str, kind: ResourceKind, set: &ResourceSet, nonce: &str, control_plane_id: &str) -> Self {
        let payload: usize = set.resources.iter().map(|r| r.any.len() + 6).sum();
        let mut buf = Vec::with_capacity(payload + version.len() + nonce.len() + control_plane_id.len() + 96);
        {
            let mut out = CodedOutputStream::vec(&mut buf);
            // Writing into a Vec cannot fail.
            let _ = out.write_string(1, version);
            for r in &set.resources {
                let _ = out.write_tag(2, WireType::LengthDelimited);
                let _ = out.write_raw_varint32(r.any.len() as u32);
                let _ = out.write_raw_bytes(&r.any);
            }
            let _ = out.write_string(4, kind.type_url());
            let _ = out.write_string(5, nonce);
            let _ = out.write_tag(6, WireType::LengthDelimited);
            let id_len = control_plane_id.len();
            let _ = out.write_raw_varint32((1 + varint_len(id_len as u64) + id_len) as u32);
            let _ = out.write_string(1, control_plane_id);
            let _ = out.flush();
        }
        EncodedResponse(buf)
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// grpcio serializer for pre-encoded responses: the bytes are copied into gRPC's slice.
pub fn serialize_response(resp: &EncodedResponse, buf: &mut grpcio::GrpcSlice) -> grpcio::Result<()> {
    *buf = grpcio::GrpcSlice::from(resp.0.as_slice());
    Ok(())
}

/// grpcio deserializer for pre-encoded responses (clients decode the real message instead).
pub fn deserialize_response(mut reader: grpcio::MessageReader) -> grpcio::Result<EncodedResponse> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(EncodedResponse(bytes))
}
