//! Bitswap's decisions without IO: [`Engine`] takes events (peers coming and going, messages
//! received, blocks stored, our own wants) and returns [`Action`]s for the tasks in `mod.rs` to
//! carry out. No tokio, no libp2p: peers are any `Copy + Eq + Hash` type, time is passed in.
//!
//! Client, per wanted block: `WANT_BLOCK` to one peer (the last one that delivered a block, when
//! connected) and `WANT_HAVE` to the others; on `HAVE` or `DONT_HAVE` move the block request to a
//! peer that has it; on ticks, re-ask wants that got no answer.
//!
//! Server, per peer: a ledger of the blocks it asked for that we have (at most
//! [`Limits::wants_per_peer`]; more and the peer is disconnected and forgotten). A want for a
//! block we lack is answered at once (`DONT_HAVE` if asked for) and never kept. Blocks are served
//! round robin, one block per peer per turn, with a bound on blocks in flight overall and per
//! peer, so one greedy peer cannot starve the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;

use super::message::{Message, Want};

/// A block request with no answer for this long is sent again (or to another peer).
const BLOCK_RETRY: Duration = Duration::from_secs(10);
/// A want nobody has is asked again this often.
const REBROADCAST: Duration = Duration::from_secs(2);

/// Multihash bytes, the key of wants (Kubo keys blocks by multihash too).
pub(crate) type Key = Vec<u8>;

/// What a peer may cost us.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Blocks a peer asked for, that we have and have not sent yet.
    pub(crate) wants_per_peer: usize,
    /// Blocks being read and sent at once, all peers together.
    pub(crate) serving: usize,
    /// Blocks being read and sent at once to one peer.
    pub(crate) serving_per_peer: usize,
}

/// The limits the node runs with.
pub(crate) const LIMITS: Limits = Limits { wants_per_peer: 4096, serving: 32, serving_per_peer: 4 };

/// A peer's want, with whether our store has the block (looked up before the engine sees it).
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    pub(crate) want: Want,
    pub(crate) have: bool,
}

/// A received message, checked: wants looked up, blocks hashed to their CIDs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Received {
    pub(crate) wants: Vec<Asked>,
    /// The full wantlist: earlier wants not in it are withdrawn.
    pub(crate) full: bool,
    pub(crate) blocks: Vec<(Cid, Bytes)>,
    pub(crate) presences: Vec<(Cid, bool)>,
}

#[derive(Debug)]
pub(crate) enum Event<P> {
    /// We want `cid`; `token` identifies this request for a later cancel and the delivery.
    Want {
        cid: Cid,
        token: u64,
    },
    Cancel {
        key: Key,
        token: u64,
    },
    PeerUp(P),
    PeerDown(P),
    Received {
        peer: P,
        message: Received,
    },
    /// The peer broke the protocol or a limit (oversized or malformed message, unread replies).
    Violation {
        peer: P,
        reason: &'static str,
    },
    /// A block we asked `Store` for is on disk.
    Stored {
        cid: Cid,
        data: Bytes,
        from: P,
    },
    StoreFailed {
        cid: Cid,
    },
    /// A block `Serve` asked for was sent (or could not be).
    Served {
        peer: P,
    },
    Tick,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Action<P> {
    Send {
        peer: P,
        message: Message,
    },
    /// Read `cid` from the store and send it to `peer`, then report `Served`.
    Serve {
        peer: P,
        cid: Cid,
    },
    /// Write a received, hash-checked block under `cid`, then report `Stored` or `StoreFailed`.
    Store {
        cid: Cid,
        data: Bytes,
        from: P,
    },
    /// Hand the block to the requests `tokens`.
    Deliver {
        cid: Cid,
        data: Bytes,
        tokens: Vec<u64>,
    },
    /// Close every connection to `peer`; the engine has forgotten it.
    Disconnect {
        peer: P,
        reason: &'static str,
    },
}

/// One block we want.
struct WantState<P> {
    cid: Cid,
    tokens: Vec<u64>,
    /// The peer asked for the block, and when.
    asked: Option<(P, Instant)>,
    /// Peers that said they have it, to ask next.
    haves: VecDeque<P>,
    /// Peers that said they do not have it.
    dont_haves: HashSet<P>,
    /// When the want was last sent to every peer.
    broadcast: Instant,
    /// A copy is being written: later copies are ignored.
    storing: bool,
}

/// What a connected peer asked of us.
#[derive(Default)]
struct Ledger {
    /// Blocks to send, in the order asked; entries no longer in `queued` were cancelled.
    queue: VecDeque<Cid>,
    queued: HashSet<Key>,
    /// Blocks handed to `Serve` and not yet reported `Served`.
    serving: usize,
    in_rotation: bool,
}

pub(crate) struct Engine<P> {
    limits: Limits,
    wants: HashMap<Key, WantState<P>>,
    /// Connected peers (Bitswap or not: a peer without Bitswap drops out on its first write).
    peers: HashMap<P, Ledger>,
    /// The peer that delivered the last block: first asked for the next ones.
    best: Option<P>,
    /// Peers with blocks to serve, in turn.
    rotation: VecDeque<P>,
    serving: usize,
}

impl<P: Copy + Eq + Hash + std::fmt::Debug> Engine<P> {
    pub(crate) fn new(limits: Limits) -> Engine<P> {
        Engine {
            limits,
            wants: HashMap::new(),
            peers: HashMap::new(),
            best: None,
            rotation: VecDeque::new(),
            serving: 0,
        }
    }

    pub(crate) fn handle(&mut self, event: Event<P>, now: Instant) -> Vec<Action<P>> {
        let mut out = Vec::new();
        match event {
            Event::Want { cid, token } => self.want(cid, token, now, &mut out),
            Event::Cancel { key, token } => self.cancel(&key, token, &mut out),
            Event::PeerUp(peer) => self.peer_up(peer, now, &mut out),
            Event::PeerDown(peer) => self.peer_down(peer, now, &mut out),
            Event::Received { peer, message } => self.received(peer, message, now, &mut out),
            Event::Violation { peer, reason } => self.disconnect(peer, reason, now, &mut out),
            Event::Stored { cid, data, from } => self.stored(cid, data, from, &mut out),
            Event::StoreFailed { cid } => {
                if let Some(state) = self.wants.get_mut(&cid.hash().to_bytes()) {
                    state.storing = false;
                }
            }
            Event::Served { peer } => {
                if let Some(ledger) = self.peers.get_mut(&peer) {
                    if ledger.serving > 0 {
                        ledger.serving -= 1;
                        self.serving -= 1;
                    }
                }
            }
            Event::Tick => self.tick(now, &mut out),
        }
        self.schedule(&mut out);
        coalesce(out)
    }

    /// Blocks being served at once, all peers together.
    #[cfg(test)]
    fn serving(&self) -> usize {
        self.serving
    }

    fn send(&self, peer: P, message: Message, out: &mut Vec<Action<P>>) {
        if !message.is_empty() {
            out.push(Action::Send { peer, message });
        }
    }

    fn want(&mut self, cid: Cid, token: u64, now: Instant, out: &mut Vec<Action<P>>) {
        let key = cid.hash().to_bytes();
        if let Some(state) = self.wants.get_mut(&key) {
            state.tokens.push(token);
            return;
        }
        let state = WantState {
            cid,
            tokens: vec![token],
            asked: None,
            haves: VecDeque::new(),
            dont_haves: HashSet::new(),
            broadcast: now,
            storing: false,
        };
        self.wants.insert(key.clone(), state);
        self.broadcast(&key, now, out);
    }

    /// Asks one peer for the block and every other peer whether it has it.
    fn broadcast(&mut self, key: &Key, now: Instant, out: &mut Vec<Action<P>>) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        state.broadcast = now;
        let target = self
            .best
            .filter(|p| self.peers.contains_key(p) && !state.dont_haves.contains(p))
            .or_else(|| self.peers.keys().find(|p| !state.dont_haves.contains(p)).copied());
        let cid = state.cid;
        if let Some(peer) = target {
            state.asked = Some((peer, now));
        }
        for peer in self.peers.keys() {
            let have_only = Some(*peer) != target;
            let want = Want { cid, cancel: false, have_only, send_dont_have: true };
            out.push(Action::Send { peer: *peer, message: Message { wants: vec![want], ..Message::default() } });
        }
    }

    fn ask_block(&mut self, key: &Key, peer: P, now: Instant, out: &mut Vec<Action<P>>) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        state.asked = Some((peer, now));
        let want = Want { cid: state.cid, cancel: false, have_only: false, send_dont_have: true };
        out.push(Action::Send { peer, message: Message { wants: vec![want], ..Message::default() } });
    }

    fn cancel(&mut self, key: &Key, token: u64, out: &mut Vec<Action<P>>) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        state.tokens.retain(|t| *t != token);
        if state.tokens.is_empty() {
            self.drop_want(key, None, out);
        }
    }

    /// Forgets a want and tells every peer but `except` to stop sending it.
    fn drop_want(&mut self, key: &Key, except: Option<P>, out: &mut Vec<Action<P>>) -> Option<WantState<P>> {
        let state = self.wants.remove(key)?;
        for peer in self.peers.keys().filter(|p| Some(**p) != except) {
            let want = Want { cid: state.cid, cancel: true, have_only: false, send_dont_have: false };
            out.push(Action::Send { peer: *peer, message: Message { wants: vec![want], ..Message::default() } });
        }
        Some(state)
    }

    fn stored(&mut self, cid: Cid, data: Bytes, from: P, out: &mut Vec<Action<P>>) {
        self.best = Some(from);
        if let Some(state) = self.drop_want(&cid.hash().to_bytes(), Some(from), out) {
            out.push(Action::Deliver { cid: state.cid, data, tokens: state.tokens });
        }
    }

    fn presence(&mut self, peer: P, key: Key, have: bool, now: Instant, out: &mut Vec<Action<P>>) {
        let Some(state) = self.wants.get_mut(&key) else {
            return;
        };
        let asked_this = state.asked.map(|(p, _)| p) == Some(peer);
        if have {
            state.dont_haves.remove(&peer);
            if state.asked.is_none() {
                self.ask_block(&key, peer, now, out);
            } else if !asked_this && !state.haves.contains(&peer) {
                state.haves.push_back(peer);
            }
        } else {
            state.dont_haves.insert(peer);
            state.haves.retain(|p| *p != peer);
            if asked_this {
                state.asked = None;
                if let Some(next) = state.haves.pop_front() {
                    self.ask_block(&key, next, now, out);
                }
            }
        }
    }

    fn peer_up(&mut self, peer: P, now: Instant, out: &mut Vec<Action<P>>) {
        if self.peers.contains_key(&peer) {
            return;
        }
        self.peers.insert(peer, Ledger::default());
        // Send the whole wantlist: the block itself for wants nobody is asked for.
        let mut wants = Vec::new();
        for state in self.wants.values_mut() {
            let have_only = state.asked.is_some();
            if !have_only {
                state.asked = Some((peer, now));
            }
            wants.push(Want { cid: state.cid, cancel: false, have_only, send_dont_have: true });
        }
        self.send(peer, Message { wants, ..Message::default() }, out);
    }

    fn peer_down(&mut self, peer: P, now: Instant, out: &mut Vec<Action<P>>) {
        let Some(ledger) = self.peers.remove(&peer) else {
            return;
        };
        self.serving -= ledger.serving;
        if ledger.in_rotation {
            self.rotation.retain(|p| *p != peer);
        }
        if self.best == Some(peer) {
            self.best = None;
        }
        let orphaned: Vec<Key> = self
            .wants
            .iter_mut()
            .filter_map(|(key, state)| {
                state.haves.retain(|p| *p != peer);
                state.dont_haves.remove(&peer);
                let lost = state.asked.map(|(p, _)| p) == Some(peer);
                if lost {
                    state.asked = None;
                }
                lost.then(|| key.clone())
            })
            .collect();
        for key in orphaned {
            self.retry(&key, now, out);
        }
    }

    /// Drops everything we know of `peer` and asks for its connections to be closed.
    fn disconnect(&mut self, peer: P, reason: &'static str, now: Instant, out: &mut Vec<Action<P>>) {
        self.peer_down(peer, now, out);
        out.retain(|a| !matches!(a, Action::Send { peer: p, .. } if *p == peer));
        out.push(Action::Disconnect { peer, reason });
    }

    fn received(&mut self, peer: P, message: Received, now: Instant, out: &mut Vec<Action<P>>) {
        // A stream may be read before the connection event arrives.
        self.peer_up(peer, now, out);
        let Some(ledger) = self.peers.get_mut(&peer) else {
            return;
        };
        if message.full {
            ledger.queued.clear();
            ledger.queue.clear();
        }
        let mut presences = Vec::new();
        for Asked { want, have } in message.wants {
            let key = want.cid.hash().to_bytes();
            if want.cancel {
                ledger.queued.remove(&key);
                continue;
            }
            match (have, want.have_only) {
                (true, true) => presences.push((want.cid, true)),
                (true, false) => {
                    if ledger.queued.insert(key) {
                        ledger.queue.push_back(want.cid);
                    }
                }
                // What we lack costs one answer at most, and nothing is kept.
                (false, _) if want.send_dont_have => presences.push((want.cid, false)),
                (false, _) => {}
            }
            if ledger.queued.len() > self.limits.wants_per_peer {
                self.disconnect(peer, "wantlist over budget", now, out);
                return;
            }
        }
        // Cancelled entries stay in the queue until their turn; compact it before it grows.
        if ledger.queue.len() > 2 * self.limits.wants_per_peer {
            let mut seen = HashSet::new();
            let queued = &ledger.queued;
            ledger.queue.retain(|cid| {
                let key = cid.hash().to_bytes();
                queued.contains(&key) && seen.insert(key)
            });
        }
        if !ledger.queued.is_empty() && !ledger.in_rotation {
            ledger.in_rotation = true;
            self.rotation.push_back(peer);
        }
        self.send(peer, Message { presences, ..Message::default() }, out);
        for (cid, data) in message.blocks {
            let Some(state) = self.wants.get_mut(&cid.hash().to_bytes()) else {
                continue;
            };
            if !state.storing {
                state.storing = true;
                // Stored under the wanted CID: the hash matches, the version may differ.
                out.push(Action::Store { cid: state.cid, data, from: peer });
            }
        }
        for (cid, have) in message.presences {
            self.presence(peer, cid.hash().to_bytes(), have, now, out);
        }
    }

    /// Hands out blocks to serve, one per peer per turn, within the limits.
    fn schedule(&mut self, out: &mut Vec<Action<P>>) {
        let mut progressed = true;
        while progressed && self.serving < self.limits.serving {
            progressed = false;
            for _ in 0..self.rotation.len() {
                if self.serving >= self.limits.serving {
                    break;
                }
                let Some(peer) = self.rotation.pop_front() else {
                    break;
                };
                let Some(ledger) = self.peers.get_mut(&peer) else {
                    continue;
                };
                if ledger.serving >= self.limits.serving_per_peer {
                    self.rotation.push_back(peer);
                    continue;
                }
                let next = loop {
                    match ledger.queue.pop_front() {
                        Some(cid) if ledger.queued.remove(&cid.hash().to_bytes()) => break Some(cid),
                        Some(_) => continue,
                        None => break None,
                    }
                };
                if let Some(cid) = next {
                    ledger.serving += 1;
                    self.serving += 1;
                    progressed = true;
                    out.push(Action::Serve { peer, cid });
                }
                if ledger.queued.is_empty() {
                    ledger.in_rotation = false;
                    ledger.queue.clear();
                } else {
                    self.rotation.push_back(peer);
                }
            }
        }
    }

    /// Asks the next peer known to have the block, or everyone again.
    fn retry(&mut self, key: &Key, now: Instant, out: &mut Vec<Action<P>>) {
        let Some(state) = self.wants.get_mut(key) else {
            return;
        };
        match state.haves.pop_front() {
            Some(next) => self.ask_block(key, next, now, out),
            None => self.broadcast(key, now, out),
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action<P>>) {
        let mut due = Vec::new();
        for (key, state) in &mut self.wants {
            match state.asked {
                Some((_, since)) if now.duration_since(since) >= BLOCK_RETRY => {
                    state.asked = None;
                    due.push(key.clone());
                }
                None if now.duration_since(state.broadcast) >= REBROADCAST => {
                    // Peers may have fetched the block since they said they did not have it.
                    state.dont_haves.clear();
                    due.push(key.clone());
                }
                _ => {}
            }
        }
        for key in due {
            self.retry(&key, now, out);
        }
    }
}

/// Merges the messages to each peer into one, placed where the first one was.
fn coalesce<P: Copy + Eq + Hash>(actions: Vec<Action<P>>) -> Vec<Action<P>> {
    let mut out: Vec<Action<P>> = Vec::with_capacity(actions.len());
    let mut at: HashMap<P, usize> = HashMap::new();
    for action in actions {
        match action {
            Action::Send { peer, message } => match at.get(&peer) {
                Some(&i) => {
                    if let Action::Send { message: first, .. } = &mut out[i] {
                        first.merge(message);
                    }
                }
                None => {
                    at.insert(peer, out.len());
                    out.push(Action::Send { peer, message });
                }
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use multihash_codetable::{Code, MultihashDigest};

    type Peer = u32;

    const SMALL: Limits = Limits { wants_per_peer: 8, serving: 4, serving_per_peer: 2 };

    fn cid(n: u64) -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(&n.to_le_bytes()))
    }

    fn want_block(n: u64) -> Asked {
        Asked { want: Want { cid: cid(n), cancel: false, have_only: false, send_dont_have: true }, have: true }
    }

    fn wants(asked: Vec<Asked>) -> Received {
        Received { wants: asked, ..Received::default() }
    }

    fn serves(actions: &[Action<Peer>]) -> Vec<(Peer, Cid)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Serve { peer, cid } => Some((*peer, *cid)),
                _ => None,
            })
            .collect()
    }

    fn engine_with(peers: &[Peer], limits: Limits) -> (Engine<Peer>, Instant) {
        let mut engine = Engine::new(limits);
        let now = Instant::now();
        for peer in peers {
            assert!(engine.handle(Event::PeerUp(*peer), now).is_empty(), "no wants: nothing to send");
        }
        (engine, now)
    }

    #[test]
    fn wants_for_blocks_we_lack_are_answered_and_not_kept() {
        let (mut engine, now) = engine_with(&[1], SMALL);
        // Far more entries than the ledger holds: none is kept, so the budget is never hit.
        let asked: Vec<Asked> = (0..1000)
            .map(|n| Asked {
                want: Want { cid: cid(n), cancel: false, have_only: n % 2 == 0, send_dont_have: n % 4 < 2 },
                have: false,
            })
            .collect();
        let actions = engine.handle(Event::Received { peer: 1, message: wants(asked) }, now);
        assert_eq!(actions.len(), 1, "{actions:?}");
        let Action::Send { peer: 1, message } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(message.presences.len(), 500, "DONT_HAVE only where asked for");
        assert!(message.presences.iter().all(|(_, have)| !have));
        assert!(engine.peers[&1].queued.is_empty() && engine.peers[&1].queue.is_empty());
    }

    #[test]
    fn have_queries_are_answered_with_have() {
        let (mut engine, now) = engine_with(&[1], SMALL);
        let asked =
            Asked { want: Want { cid: cid(1), cancel: false, have_only: true, send_dont_have: true }, have: true };
        let actions = engine.handle(Event::Received { peer: 1, message: wants(vec![asked]) }, now);
        let expected = Message { presences: vec![(cid(1), true)], ..Message::default() };
        assert_eq!(actions, vec![Action::Send { peer: 1, message: expected }]);
    }

    #[test]
    fn a_wantlist_over_budget_disconnects_and_forgets_the_peer() {
        let (mut engine, now) = engine_with(&[1, 2], SMALL);
        // Peer 2 stays within its budget and keeps it.
        let fine =
            engine.handle(Event::Received { peer: 2, message: wants((100..108).map(want_block).collect()) }, now);
        assert!(!fine.iter().any(|a| matches!(a, Action::Disconnect { .. })));
        let actions = engine.handle(Event::Received { peer: 1, message: wants((0..9).map(want_block).collect()) }, now);
        assert!(actions.contains(&Action::Disconnect { peer: 1, reason: "wantlist over budget" }), "{actions:?}");
        assert!(!actions.iter().any(|a| matches!(a, Action::Send { peer: 1, .. } | Action::Serve { peer: 1, .. })));
        assert!(!engine.peers.contains_key(&1), "state dropped");
        assert!(!engine.rotation.contains(&1));
        // Only peer 2's blocks are in flight; its share was untouched.
        assert_eq!(engine.serving(), 2);
        assert_eq!(engine.peers[&2].queued.len(), 6);
    }

    #[test]
    fn violations_disconnect_and_release_what_the_peer_held() {
        let (mut engine, now) = engine_with(&[1], SMALL);
        engine.handle(Event::Received { peer: 1, message: wants((0..4).map(want_block).collect()) }, now);
        assert_eq!(engine.serving(), 2);
        let actions = engine.handle(Event::Violation { peer: 1, reason: "malformed message" }, now);
        assert_eq!(actions, vec![Action::Disconnect { peer: 1, reason: "malformed message" }]);
        assert_eq!(engine.serving(), 0);
        // A late report of a block sent to the forgotten peer changes nothing.
        assert!(engine.handle(Event::Served { peer: 1 }, now).is_empty());
        assert_eq!(engine.serving(), 0);
    }

    #[test]
    fn blocks_are_served_round_robin_within_the_limits() {
        let (mut engine, now) = engine_with(&[1, 2, 3], SMALL);
        // The greedy peer asks first and for the most.
        let first = engine.handle(Event::Received { peer: 1, message: wants((0..8).map(want_block).collect()) }, now);
        assert_eq!(serves(&first), vec![(1, cid(0)), (1, cid(1))], "at most two in flight per peer");
        let second =
            engine.handle(Event::Received { peer: 2, message: wants((10..12).map(want_block).collect()) }, now);
        assert_eq!(serves(&second), vec![(2, cid(10)), (2, cid(11))]);
        let third = engine.handle(Event::Received { peer: 3, message: wants((20..22).map(want_block).collect()) }, now);
        assert!(serves(&third).is_empty(), "four in flight overall");
        // As blocks go out, turns alternate between the peers still waiting.
        let mut order = Vec::new();
        for done in [1, 2, 1, 3, 1, 3, 1, 1] {
            order.extend(serves(&engine.handle(Event::Served { peer: done }, now)).into_iter().map(|(p, _)| p));
        }
        // Peer 2 is done; 1 and 3 alternate while both wait, then 1 has the slots to itself.
        assert_eq!(order, vec![1, 3, 1, 3, 1, 1, 1], "the greedy peer does not starve the others");
        assert!(engine.serving() <= SMALL.serving);
    }

    #[test]
    fn cancels_and_full_wantlists_withdraw_queued_blocks() {
        let limits = Limits { wants_per_peer: 8, serving: 1, serving_per_peer: 1 };
        let (mut engine, now) = engine_with(&[1], limits);
        let first = engine.handle(Event::Received { peer: 1, message: wants((0..4).map(want_block).collect()) }, now);
        assert_eq!(serves(&first), vec![(1, cid(0))]);
        let mut cancel = want_block(1);
        cancel.want.cancel = true;
        engine.handle(Event::Received { peer: 1, message: wants(vec![cancel]) }, now);
        assert_eq!(serves(&engine.handle(Event::Served { peer: 1 }, now)), vec![(1, cid(2))], "cid 1 was cancelled");
        let full = Received { wants: vec![want_block(9)], full: true, ..Received::default() };
        engine.handle(Event::Received { peer: 1, message: full }, now);
        assert_eq!(serves(&engine.handle(Event::Served { peer: 1 }, now)), vec![(1, cid(9))], "cid 3 was replaced");
        assert!(serves(&engine.handle(Event::Served { peer: 1 }, now)).is_empty());
    }

    #[test]
    fn repeated_want_and_cancel_keep_the_queue_bounded() {
        let limits = Limits { wants_per_peer: 4, serving: 0, serving_per_peer: 0 };
        let (mut engine, now) = engine_with(&[1], limits);
        for _ in 0..1000 {
            let mut cancel = want_block(1);
            cancel.want.cancel = true;
            engine.handle(Event::Received { peer: 1, message: wants(vec![want_block(1), cancel]) }, now);
        }
        assert!(engine.peers[&1].queue.len() <= 2 * limits.wants_per_peer + 1, "{}", engine.peers[&1].queue.len());
    }

    #[test]
    fn a_wanted_block_is_asked_of_one_peer_stored_once_and_delivered() {
        let (mut engine, now) = engine_with(&[1, 2], LIMITS);
        let actions = engine.handle(Event::Want { cid: cid(7), token: 42 }, now);
        let asked: Vec<(Peer, bool)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } => Some((*peer, message.wants[0].have_only)),
                _ => None,
            })
            .collect();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked.iter().filter(|(_, have_only)| !have_only).count(), 1, "one WANT_BLOCK: {asked:?}");
        let data = Bytes::from_static(b"block seven");
        let block = Received { blocks: vec![(cid(7), data.clone())], ..Received::default() };
        let stored = engine.handle(Event::Received { peer: 2, message: block.clone() }, now);
        assert_eq!(stored, vec![Action::Store { cid: cid(7), data: data.clone(), from: 2 }]);
        assert!(engine.handle(Event::Received { peer: 1, message: block }, now).is_empty(), "a second copy is ignored");
        let delivered = engine.handle(Event::Stored { cid: cid(7), data: data.clone(), from: 2 }, now);
        assert!(delivered.contains(&Action::Deliver { cid: cid(7), data, tokens: vec![42] }));
        // Peer 1 is told to stop; peer 2, which sent it, is not.
        let cancels: Vec<Peer> = delivered
            .iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } if message.wants.iter().all(|w| w.cancel) => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(cancels, vec![1]);
        // Unwanted blocks are dropped.
        let stray = Received { blocks: vec![(cid(8), Bytes::from_static(b"x"))], ..Received::default() };
        assert!(engine.handle(Event::Received { peer: 1, message: stray }, now).is_empty());
    }

    #[test]
    fn a_dont_have_moves_the_request_to_a_peer_that_has_it() {
        let (mut engine, now) = engine_with(&[1, 2], LIMITS);
        let actions = engine.handle(Event::Want { cid: cid(7), token: 1 }, now);
        let target = actions
            .iter()
            .find_map(|a| match a {
                Action::Send { peer, message } if !message.wants[0].have_only => Some(*peer),
                _ => None,
            })
            .expect("a WANT_BLOCK");
        let other = if target == 1 { 2 } else { 1 };
        let have = Received { presences: vec![(cid(7), true)], ..Received::default() };
        assert!(engine.handle(Event::Received { peer: other, message: have }, now).is_empty(), "remembered");
        let dont = Received { presences: vec![(cid(7), false)], ..Received::default() };
        let moved = engine.handle(Event::Received { peer: target, message: dont }, now);
        let want = Want { cid: cid(7), cancel: false, have_only: false, send_dont_have: true };
        assert_eq!(
            moved,
            vec![Action::Send { peer: other, message: Message { wants: vec![want], ..Message::default() } }]
        );
    }

    #[test]
    fn messages_to_one_peer_are_merged() {
        let (mut engine, now) = engine_with(&[1], LIMITS);
        engine.handle(Event::Want { cid: cid(1), token: 1 }, now);
        // Peer 2 connects: it gets the whole wantlist in one message.
        let actions = engine.handle(Event::PeerUp(2), now);
        assert_eq!(actions.len(), 1);
        let asked = Received {
            wants: vec![
                Asked { want: Want { cid: cid(5), cancel: false, have_only: true, send_dont_have: true }, have: true },
                Asked { want: Want { cid: cid(6), cancel: false, have_only: true, send_dont_have: true }, have: false },
            ],
            presences: vec![(cid(1), false)],
            ..Received::default()
        };
        let actions = engine.handle(Event::Received { peer: 2, message: asked }, now);
        let to_two: Vec<&Action<Peer>> = actions.iter().filter(|a| matches!(a, Action::Send { peer: 2, .. })).collect();
        assert_eq!(to_two.len(), 1, "{actions:?}");
    }
}
