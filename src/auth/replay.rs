//! A bounded map with per-entry expiry, for the state some methods keep: OAuth 1.0a nonces,
//! Digest nonce counts, OAuth 2.0 introspection results.
//!
//! It owns the memory bound and nothing else: it never grows past its capacity. Callers choose
//! what a full map means: a cache evicts its oldest entry ([`ExpiringMap::insert_evicting`]),
//! replay protection refuses new entries instead ([`ExpiringMap::try_insert`]), because
//! forgetting a used nonce would let it be replayed.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Keys are SHA-256 digests, so that no token or nonce is kept in memory as it was sent.
pub(crate) type Key = [u8; 32];

/// Hashes the parts of a key, each prefixed by its length so `("ab","c")` ≠ `("a","bc")`.
pub(crate) fn key(parts: &[&[u8]]) -> Key {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The map is full of live entries and refuses a new one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct ExpiringMap<V> {
    entries: HashMap<Key, (V, Instant, u64)>,
    // Insertion order, for pruning and eviction; a stale item (its key was removed or
    // re-inserted since) is recognised by its sequence number and skipped.
    order: VecDeque<(u64, Key)>,
    next_seq: u64,
    capacity: usize,
}

// Only the size: a webhook's config is printed with `{:?}`, and must not dump nonces or tokens.
impl<V> std::fmt::Debug for ExpiringMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiringMap")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<V> ExpiringMap<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            capacity: capacity.max(1),
        }
    }

    /// The live value of `key`.
    pub(crate) fn get_mut(&mut self, key: &Key, now: Instant) -> Option<&mut V> {
        match self.entries.get_mut(key) {
            Some((v, expires, _)) if *expires > now => Some(v),
            _ => None,
        }
    }

    /// Inserts (or replaces) `key`, failing when the map is full of live entries.
    pub(crate) fn try_insert(
        &mut self,
        key: Key,
        value: V,
        expires: Instant,
        now: Instant,
    ) -> Result<(), Full> {
        self.prune(now);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            return Err(Full);
        }
        self.put(key, value, expires);
        Ok(())
    }

    /// Inserts (or replaces) `key`, evicting the oldest entries when the map is full.
    pub(crate) fn insert_evicting(&mut self, key: Key, value: V, expires: Instant, now: Instant) {
        self.prune(now);
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let Some((seq, k)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&k).is_some_and(|e| e.2 == seq) {
                self.entries.remove(&k);
            }
        }
        self.put(key, value, expires);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn put(&mut self, key: Key, value: V, expires: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(key, (value, expires, seq));
        self.order.push_back((seq, key));
        // Replaced keys leave stale order items behind; keep the queue from outgrowing the map.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(seq, k)| entries.get(k).is_some_and(|e| e.2 == *seq));
        }
    }

    /// Drops expired entries: every one at the front of the queue, and, when the map is full,
    /// a full sweep (entries may expire out of insertion order).
    fn prune(&mut self, now: Instant) {
        while let Some(&(seq, k)) = self.order.front() {
            match self.entries.get(&k) {
                Some(e) if e.2 == seq && e.1 > now => break,
                Some(e) if e.2 == seq => {
                    self.entries.remove(&k);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.1 > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn k(n: u8) -> Key {
        key(&[&[n]])
    }

    #[test]
    fn debug_shows_the_size_only() {
        let now = Instant::now();
        let mut m = ExpiringMap::new(4);
        m.try_insert(k(1), "secret-ish", now + Duration::from_secs(5), now)
            .unwrap();
        assert_eq!(format!("{m:?}"), "ExpiringMap { len: 1, capacity: 4 }");
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"ab", b"c"]), key(&[b"ab", b"c"]));
    }

    #[test]
    fn a_full_replay_map_refuses_until_entries_expire() {
        let now = Instant::now();
        let mut m = ExpiringMap::new(2);
        let exp = now + Duration::from_secs(10);
        m.try_insert(k(1), (), exp, now).unwrap();
        m.try_insert(k(2), (), exp, now).unwrap();
        assert_eq!(m.try_insert(k(3), (), exp, now), Err(Full));
        assert!(
            m.get_mut(&k(1), now).is_some(),
            "a refused insert must not forget a used nonce"
        );
        let later = now + Duration::from_secs(11);
        assert!(m.get_mut(&k(1), later).is_none());
        m.try_insert(k(3), (), later + Duration::from_secs(10), later)
            .unwrap();
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_cache_evicts_the_oldest_and_stays_bounded() {
        let now = Instant::now();
        let mut m = ExpiringMap::new(3);
        let exp = now + Duration::from_secs(60);
        for i in 0..100u8 {
            m.insert_evicting(k(i % 5), i, exp, now);
            assert!(m.len() <= 3);
            assert!(m.order.len() <= 7);
        }
        assert_eq!(m.get_mut(&k(99 % 5), now), Some(&mut 99));
    }

    #[test]
    fn entries_expiring_out_of_order_are_swept_when_full() {
        let now = Instant::now();
        let mut m = ExpiringMap::new(2);
        m.try_insert(k(1), (), now + Duration::from_secs(100), now)
            .unwrap();
        m.try_insert(k(2), (), now + Duration::from_secs(1), now)
            .unwrap();
        let later = now + Duration::from_secs(2);
        m.try_insert(k(3), (), later + Duration::from_secs(1), later)
            .unwrap();
        assert!(m.get_mut(&k(1), later).is_some());
        assert!(m.get_mut(&k(2), later).is_none());
    }
}
