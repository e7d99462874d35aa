//! The messages a channel is delivering, or holding for a delivery slot, by message id: so that
//! a copy the server hands out again is never delivered a second time by this process.
//!
//! Why copies come: a connection may hold up to `max_in_flight` leases (e.g. 100) while only
//! `max_concurrent_requests` deliveries run at once (e.g. 10), so a message can wait for a slot
//! past the server's `ack_timeout`; the server then leases it again, often to the same
//! connection. The server keys leases by message id (and connection): the newest lease is the
//! one an ack or nack settles. So a second copy is not delivered: it *follows* the first, and
//! the first copy's one verdict is sent on the connection of the newest copy, where it settles
//! the newest lease. An older follower ends silently (its lease was superseded); a follower
//! whose leader stopped before delivering (its session ended) delivers itself.
//!
//! A copy that comes just *after* its delivery ended with an ack (the ack crossed the server's
//! ack timeout, which leased the message again) is not delivered either: the ack is sent again,
//! on the copy's connection, where it settles the newest lease. Acked ids are remembered for
//! [`REMEMBER_ACKED`] (at most [`REMEMBER_ACKED_MAX`] of them); a nack is never replayed, so a
//! retried message is delivered again.
//!
//! Each copy also renews the lease estimate ([`Delivery::lease_ends`]) that decides, once a slot
//! is free, whether a delivery may still start (see `transport::ws::spawn_delivery`).
//! One lock per claim and one per finish: cheap next to a delivery.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::deliver::Verdict;
use crate::protocol::MessageId;

/// How long an acked id is remembered (longer than any ack timeout a resend could cross).
pub const REMEMBER_ACKED: Duration = Duration::from_secs(300);
/// Most acked ids remembered per channel.
pub const REMEMBER_ACKED_MAX: usize = 8192;

/// What a leader passes to its follower.
#[derive(Debug)]
enum Handoff {
    /// The delivery ended: the follower sends this verdict.
    Verdict(Verdict),
    /// The leader stopped before delivering: the follower delivers.
    Abandoned,
}

#[derive(Debug)]
struct Slot {
    /// When the newest known lease on the message ends (estimated).
    lease_ends: Instant,
    /// The newest copy, waiting for the verdict.
    follower: Option<oneshot::Sender<Handoff>>,
}

/// The message ids in progress on one channel (shared by its sessions, so a copy that comes on
/// a new connection after a reconnect follows the delivery still running from the old one).
#[derive(Debug, Default, Clone)]
pub struct InProgress(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    active: HashMap<MessageId, Slot>,
    /// Ids acked lately, with when, oldest first.
    acked: HashMap<MessageId, Instant>,
    acked_order: VecDeque<(MessageId, Instant)>,
}

impl State {
    fn remember_ack(&mut self, id: MessageId) {
        let now = Instant::now();
        while self.acked_order.front().is_some_and(|(_, at)| {
            self.acked_order.len() >= REMEMBER_ACKED_MAX || at.elapsed() >= REMEMBER_ACKED
        }) {
            let (old, at) = self.acked_order.pop_front().expect("front exists");
            if self.acked.get(&old) == Some(&at) {
                self.acked.remove(&old);
            }
        }
        self.acked.insert(id.clone(), now);
        self.acked_order.push_back((id, now));
    }

    fn acked_lately(&self, id: &MessageId) -> bool {
        self.acked
            .get(id)
            .is_some_and(|at| at.elapsed() < REMEMBER_ACKED)
    }
}

/// What a copy of a message does.
#[derive(Debug)]
pub enum Claim {
    /// Nothing is in progress for this id: deliver it, then [`Delivery::finish`].
    Deliver(Delivery),
    /// A delivery of this id is in progress: wait for its verdict with [`Follower::outcome`].
    Follow(Follower),
    /// This id was delivered and acked moments ago: send the ack again, do not deliver.
    AckedAlready,
}

/// The one delivery in progress of a message id; dropping it unfinished hands the message to
/// its follower, if any.
#[derive(Debug)]
pub struct Delivery {
    registry: InProgress,
    id: MessageId,
    finished: bool,
}

/// A copy that follows the delivery in progress.
#[derive(Debug)]
pub struct Follower(oneshot::Receiver<Handoff>);

/// How a follower's wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// The delivery ended with this verdict: send it on the follower's connection.
    Settled(Verdict),
    /// A newer copy follows now and sends the verdict: nothing to do.
    Superseded,
    /// The leader stopped before delivering: claim again (and deliver).
    Abandoned,
}

impl InProgress {
    /// Claims `id` for a copy whose lease ends at `lease_ends`.
    pub fn claim(&self, id: &MessageId, lease_ends: Instant) -> Claim {
        let mut state = self.0.lock().expect("in-progress lock");
        if !state.active.contains_key(id) && state.acked_lately(id) {
            return Claim::AckedAlready;
        }
        match state.active.entry(id.clone()) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                let (tx, rx) = oneshot::channel();
                slot.lease_ends = slot.lease_ends.max(lease_ends);
                // The older follower's sender is dropped: it ends as superseded.
                slot.follower = Some(tx);
                Claim::Follow(Follower(rx))
            }
            Entry::Vacant(slot) => {
                slot.insert(Slot {
                    lease_ends,
                    follower: None,
                });
                Claim::Deliver(Delivery {
                    registry: self.clone(),
                    id: id.clone(),
                    finished: false,
                })
            }
        }
    }

    /// Message ids in progress.
    pub fn len(&self) -> usize {
        self.0.lock().expect("in-progress lock").active.len()
    }

    /// Whether nothing is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, id: &MessageId, acked: bool) -> Option<Slot> {
        let mut state = self.0.lock().expect("in-progress lock");
        if acked {
            state.remember_ack(id.clone());
        }
        state.active.remove(id)
    }
}

impl Delivery {
    /// When the newest lease known on this message ends: a copy that came while this one
    /// waited renewed it.
    pub fn lease_ends(&self) -> Instant {
        self.registry
            .0
            .lock()
            .expect("in-progress lock")
            .active
            .get(&self.id)
            .map_or_else(Instant::now, |s| s.lease_ends)
    }

    /// Ends the delivery. Returns the verdict when this copy sends it itself; `None` when the
    /// newest copy (the follower) got it to send on its connection.
    pub fn finish(mut self, verdict: Verdict) -> Option<Verdict> {
        self.finished = true;
        let acked = verdict == Verdict::Ack;
        match self.registry.take(&self.id, acked).and_then(|s| s.follower) {
            Some(follower) => match follower.send(Handoff::Verdict(verdict)) {
                Ok(()) => None,
                // The follower is gone (its task ended): send it here.
                Err(Handoff::Verdict(verdict)) => Some(verdict),
                Err(Handoff::Abandoned) => unreachable!("a verdict was sent"),
            },
            None => Some(verdict),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.finished
            && let Some(follower) = self.registry.take(&self.id, false).and_then(|s| s.follower)
        {
            let _ = follower.send(Handoff::Abandoned);
        }
    }
}

impl Follower {
    /// Waits until the delivery it follows ends.
    pub async fn outcome(self) -> Followed {
        match self.0.await {
            Ok(Handoff::Verdict(verdict)) => Followed::Settled(verdict),
            Ok(Handoff::Abandoned) => Followed::Abandoned,
            Err(_) => Followed::Superseded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(s: &str) -> MessageId {
        MessageId(s.to_string())
    }

    fn deliver(c: Claim) -> Delivery {
        match c {
            Claim::Deliver(d) => d,
            Claim::Follow(_) | Claim::AckedAlready => panic!("expected to deliver"),
        }
    }

    fn follow(c: Claim) -> Follower {
        match c {
            Claim::Follow(f) => f,
            Claim::Deliver(_) | Claim::AckedAlready => panic!("expected to follow"),
        }
    }

    #[tokio::test]
    async fn a_second_copy_follows_and_sends_the_one_verdict() {
        let registry = InProgress::default();
        let now = Instant::now();
        let first = deliver(registry.claim(&id("m"), now + Duration::from_secs(1)));
        let second = follow(registry.claim(&id("m"), now + Duration::from_secs(5)));
        assert_eq!(first.lease_ends(), now + Duration::from_secs(5), "renewed");
        assert_eq!(first.finish(Verdict::Ack), None, "the follower sends it");
        assert_eq!(second.outcome().await, Followed::Settled(Verdict::Ack));
        assert!(registry.is_empty());
        // Once acked, a later copy (the ack crossed a lease timeout, or was lost with its
        // connection) is acked again without a second delivery.
        assert!(matches!(registry.claim(&id("m"), now), Claim::AckedAlready));
    }

    #[tokio::test]
    async fn only_the_newest_copy_sends_the_verdict() {
        let registry = InProgress::default();
        let now = Instant::now();
        let first = deliver(registry.claim(&id("m"), now));
        let second = follow(registry.claim(&id("m"), now));
        let third = follow(registry.claim(&id("m"), now));
        assert_eq!(second.outcome().await, Followed::Superseded);
        let nack = Verdict::Nack {
            retry: true,
            reason: "503".into(),
        };
        assert_eq!(first.finish(nack.clone()), None);
        assert_eq!(third.outcome().await, Followed::Settled(nack));
    }

    #[tokio::test]
    async fn a_leader_that_stops_before_delivering_hands_over() {
        let registry = InProgress::default();
        let now = Instant::now();
        let first = deliver(registry.claim(&id("m"), now));
        let second = follow(registry.claim(&id("m"), now));
        drop(first);
        assert_eq!(second.outcome().await, Followed::Abandoned);
        let second = deliver(registry.claim(&id("m"), now));
        assert_eq!(second.finish(Verdict::Ack), Some(Verdict::Ack));
    }

    #[tokio::test]
    async fn a_verdict_comes_back_when_the_follower_is_gone() {
        let registry = InProgress::default();
        let now = Instant::now();
        let first = deliver(registry.claim(&id("m"), now));
        drop(follow(registry.claim(&id("m"), now)));
        assert_eq!(first.finish(Verdict::Ack), Some(Verdict::Ack));
        let other = deliver(registry.claim(&id("n"), now));
        drop(other);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_copy_after_an_ack_is_acked_again_and_a_copy_after_a_nack_is_delivered() {
        let registry = InProgress::default();
        let lease = Instant::now() + Duration::from_secs(1);
        let acked = deliver(registry.claim(&id("a"), lease));
        assert_eq!(acked.finish(Verdict::Ack), Some(Verdict::Ack));
        assert!(matches!(
            registry.claim(&id("a"), lease),
            Claim::AckedAlready
        ));
        let nacked = deliver(registry.claim(&id("n"), lease));
        let retry = Verdict::Nack {
            retry: true,
            reason: "503".into(),
        };
        assert_eq!(nacked.finish(retry.clone()), Some(retry));
        let again = deliver(registry.claim(&id("n"), lease));
        drop(again);
        assert!(registry.is_empty());
    }
}
