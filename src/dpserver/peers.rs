//! The connections the front end has open to the internal gRPC server, by the local port of
//! each: the internal server only sees `127.0.0.1:<port>`, and this table says which sidecar
//! that is, how many streams it holds, and that the connection came through the front end
//! at all (a local process dialling the internal port directly is refused).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Peers {
    conns: Mutex<HashMap<u16, Entry>>,
}

struct Entry {
    peer: SocketAddr,
    /// The front end's connection id: a port reused by a later connection is another entry.
    conn: u64,
    streams: u32,
}

/// Why a stream cannot open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a connection the front end made: someone dialled the internal port.
    Unknown,
    /// `dpServer.limits.maxStreamsPerConnection` reached.
    Limit,
}

/// One open stream on a connection; dropping it frees the slot.
pub struct StreamSlot {
    peers: Arc<Peers>,
    port: u16,
    conn: u64,
    /// The sidecar's address as the front end saw it.
    pub peer: SocketAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(e) = self.peers.lock().get_mut(&self.port).filter(|e| e.conn == self.conn) {
            e.streams = e.streams.saturating_sub(1);
        }
    }
}

/// The local port in a gRPC peer string (`ipv4:127.0.0.1:40000`, `ipv6:[::1]:40000`).
fn port_of(grpc_peer: &str) -> Option<u16> {
    grpc_peer.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Entry>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, local_port: u16, peer: SocketAddr, conn: u64) {
        self.lock().insert(local_port, Entry { peer, conn, streams: 0 });
    }

    pub fn unregister(&self, local_port: u16, conn: u64) {
        let mut conns = self.lock();
        if conns.get(&local_port).is_some_and(|e| e.conn == conn) {
            conns.remove(&local_port);
        }
    }

    /// Takes a stream slot on the connection gRPC reports as `grpc_peer`.
    pub fn open_stream(self: &Arc<Self>, grpc_peer: &str, limit: u32) -> Result<StreamSlot, Refusal> {
        let port = port_of(grpc_peer).ok_or(Refusal::Unknown)?;
        let mut conns = self.lock();
        let e = conns.get_mut(&port).ok_or(Refusal::Unknown)?;
        if e.streams >= limit {
            return Err(Refusal::Limit);
        }
        e.streams += 1;
        Ok(StreamSlot { peers: self.clone(), port, conn: e.conn, peer: e.peer })
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_connection_and_unknown_ones_refused() {
        let peers = Arc::new(Peers::default());
        let sidecar: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        peers.register(40000, sidecar, 1);
        let a = peers.open_stream("ipv4:127.0.0.1:40000", 2).unwrap();
        assert_eq!(a.peer, sidecar);
        let _b = peers.open_stream("ipv4:127.0.0.1:40000", 2).unwrap();
        assert_eq!(peers.open_stream("ipv4:127.0.0.1:40000", 2).err(), Some(Refusal::Limit));
        drop(a);
        assert!(peers.open_stream("ipv4:127.0.0.1:40000", 2).is_ok());
        assert_eq!(peers.open_stream("ipv4:127.0.0.1:40001", 2).err(), Some(Refusal::Unknown));
        assert_eq!(peers.open_stream("garbage", 2).err(), Some(Refusal::Unknown));
        peers.unregister(40000, 2);
        assert!(!peers.is_empty(), "another connection's entry stays");
        peers.unregister(40000, 1);
        assert!(peers.is_empty());
    }
}
