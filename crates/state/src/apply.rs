//! The pinset as a state machine: what each [`Command`] and each local update
//! writes. Read [`command`] first.
//!
//! Applying a command reads only the stored state (through the writer's
//! overlay) and the command: no clock, no randomness, no cache. Two pinsets
//! applying the same commands in the same order write the same shared keys
//! (`c`, `n`, `t`) with the same bytes. So are the positions of the listing
//! records and their counters (`s`, `m`), filed under each CID's *summary*
//! of the peers' reported statuses ([`Command::Report`]); their copies of
//! this peer's progress are not. The cluster status index and its counters
//! (`q`, `k`) follow this peer's local status: local updates move them,
//! rewrite the copies, and never touch a shared key.

use pincluster_model::{
    Cid, ClusterPin, NewPin, PeerPin, PinMode, PinOptions, PinStatus, PinView, Timestamp, UserName, UserPin,
};

use crate::keys;
use crate::records::{self, ClusterRecord, LocalRecord};
use crate::writer::Staged;
use crate::{
    Applied, ClusterEntry, Command, PinOutcome, ReplaceOutcome, Reported, StateError, StatusUpdate, UnpinOutcome,
};

/// Applies one command to the overlay.
pub(crate) fn command(st: &mut Staged<'_>, command: Command) -> Result<Applied, StateError> {
    match command {
        Command::Pin { user, pin, at, update_from } => {
            let pin = match update_from {
                Some(from) => updated_from(st, &user, &from, pin)?,
                None => pin,
            };
            pin_one(st, &user, pin, at).map(Applied::Pin)
        }
        Command::Replace { user, old, pin, at } => replace(st, &user, &old, pin, at).map(Applied::Replace),
        Command::Unpin { user, cid } => {
            unpin(st, &user, &cid).map(|out| Applied::Unpin { cid, orphaned: out.orphaned })
        }
        Command::UnpinAll { cid } => unpin_all(st, &cid).map(Applied::UnpinAll),
        Command::SetAllocations { cid, allocations } => {
            set_allocations(st, &cid, allocations).map(|()| Applied::SetAllocations(cid))
        }
        Command::Expire { cids, at } => expire(st, &cids, at).map(Applied::Expire),
        Command::Restore { entry, merge } => restore(st, entry, merge).map(Applied::Restore),
        Command::Report { peer, at, statuses } => report(st, &peer, at, statuses).map(Applied::Report),
    }
}

/// Changes this peer's local record of `cid`, moves its cluster status index
/// entry and counters with the status and rewrites the holders' copies;
/// `at` is this peer's clock.
pub(crate) fn local(st: &mut Staged<'_>, cid: &Cid, update: StatusUpdate, at: Timestamp) -> Result<(), StateError> {
    let rec = cluster(st, cid)?.ok_or(StateError::NotFound)?;
    let mut local = local_of(st, &rec)?;
    let from = local.status;
    let to = update.status;
    if from != to {
        st.del(keys::cluster_status(from, rec.created, cid));
        st.put(keys::cluster_status(to, rec.created, cid), Vec::new());
        bump(st, keys::cluster_count(from), -1)?;
        bump(st, keys::cluster_count(to), 1)?;
    }
    local.status = to;
    if to == PinStatus::Failed {
        if let Some(error) = update.error {
            local.error = Some(error);
        }
    } else {
        local.error = update.error;
    }
    if let Some(attempts) = update.attempts {
        local.attempts = attempts;
    }
    if let Some(progress) = update.progress {
        local.progress = progress;
    }
    if let Some(dag_size) = update.dag_size {
        local.dag_size = Some(dag_size);
    }
    local.updated = at;
    st.put(keys::local(cid), records::encode_local(&local)?);
    refresh_holders(st, &rec, &local, rec.summary)
}

fn cluster(st: &Staged<'_>, cid: &Cid) -> Result<Option<ClusterRecord>, StateError> {
    let key = keys::cluster(cid);
    st.get(&key)?.map(|bytes| records::decode_cluster(&key, *cid, &bytes)).transpose()
}

/// This peer's record of a CID; a fresh one (`queued`) when it has none yet.
fn local_of(st: &Staged<'_>, rec: &ClusterRecord) -> Result<LocalRecord, StateError> {
    let key = keys::local(&rec.cid);
    match st.get(&key)? {
        Some(bytes) => records::decode_local(&key, &bytes),
        None => Ok(LocalRecord::fresh(rec.created)),
    }
}

/// The user's pin created at `created`, from its listing record in `status`.
fn listing_at(st: &Staged<'_>, user: &UserName, status: PinStatus, created: Timestamp) -> Result<PinView, StateError> {
    let key = keys::by_status(user, status, created)?;
    match st.get(&key)? {
        Some(bytes) => records::decode_listing(&key, &bytes),
        None => Err(StateError::Corrupt { key: keys::display(&key), reason: "a holder has no listing record".into() }),
    }
}

/// Writes the listing record of a user's pin, with a copy of the joined
/// cluster pin, in the `s` range of its summary.
fn put_listing(st: &mut Staged<'_>, user: &UserName, pin: &UserPin, cluster: &ClusterPin) -> Result<(), StateError> {
    st.put(keys::by_status(user, cluster.summary, pin.created)?, records::encode_listing(pin, cluster)?);
    Ok(())
}

/// Writes the shared record. When its copy of the first holder's pin is not
/// that holder's (the holders changed), it is read from their listing record
/// first; callers that change the first holder's pin object set the copy themselves.
fn put_cluster(st: &mut Staged<'_>, rec: &mut ClusterRecord) -> Result<(), StateError> {
    if !rec.first_is_current() {
        rec.first = match rec.holders.first() {
            Some((user, created)) => Some((user.clone(), listing_at(st, user, rec.summary, *created)?.user)),
            None => None,
        };
    }
    st.put(keys::cluster(&rec.cid), records::encode_cluster(rec)?);
    Ok(())
}

/// Adds `delta` to a counter; a counter at zero is removed.
fn bump(st: &mut Staged<'_>, key: Vec<u8>, delta: i64) -> Result<(), StateError> {
    let current = match st.get(&key)? {
        Some(bytes) => keys::decode_u64(&bytes)
            .ok_or_else(|| StateError::Corrupt { key: keys::display(&key), reason: "counter is not 8 bytes".into() })?,
        None => 0,
    };
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        st.del(key);
    } else {
        st.put(key, keys::encode_u64(next).to_vec());
    }
    Ok(())
}

/// The newest `created` the user's pins were ever given (0 for none).
fn newest(st: &Staged<'_>, user: &UserName) -> Result<u64, StateError> {
    let key = keys::newest(user)?;
    match st.get(&key)? {
        Some(bytes) => keys::decode_u64(&bytes)
            .ok_or_else(|| StateError::Corrupt { key: keys::display(&key), reason: "not 8 bytes".into() }),
        None => Ok(0),
    }
}

/// Records that the user has a pin created at `created`.
fn note_created(st: &mut Staged<'_>, user: &UserName, created: Timestamp) -> Result<(), StateError> {
    if created.0 > newest(st, user)? {
        st.put(keys::newest(user)?, keys::encode_u64(created.0).to_vec());
    }
    Ok(())
}

/// Writes the name index entry and the counter of a new user pin in
/// `status`; the listing record is written by [`put_listing`] and the holder
/// entry by the caller, in the cluster record.
fn index_user_pin(st: &mut Staged<'_>, user: &UserName, pin: &UserPin, status: PinStatus) -> Result<(), StateError> {
    if let Some(name) = &pin.name {
        st.put(keys::by_name(user, name, pin.created)?, pin.cid.to_bytes());
    }
    note_created(st, user, pin.created)?;
    bump(st, keys::user_count(user, status)?, 1)
}

/// Removes the user pin: its listing record, name entry and count.
fn unindex_user_pin(st: &mut Staged<'_>, user: &UserName, pin: &UserPin, status: PinStatus) -> Result<(), StateError> {
    st.del(keys::by_status(user, status, pin.created)?);
    if let Some(name) = &pin.name {
        st.del(keys::by_name(user, name, pin.created)?);
    }
    bump(st, keys::user_count(user, status)?, -1)
}

/// Rewrites the listing records of every holder with the joined cluster pin
/// and, when the summary changed from `from`, moves them and the counters.
fn refresh_holders(
    st: &mut Staged<'_>,
    rec: &ClusterRecord,
    local: &LocalRecord,
    from: PinStatus,
) -> Result<(), StateError> {
    let joined = rec.joined(local);
    let to = joined.summary;
    for (user, created) in &rec.holders {
        let view = listing_at(st, user, from, *created)?;
        if from != to {
            st.del(keys::by_status(user, from, *created)?);
            bump(st, keys::user_count(user, from)?, -1)?;
            bump(st, keys::user_count(user, to)?, 1)?;
        }
        put_listing(st, user, &view.user, &joined)?;
    }
    Ok(())
}

/// A new shared record of `cid`, indexed as `queued`.
fn new_cluster(
    st: &mut Staged<'_>,
    cid: Cid,
    options: PinOptions,
    allocations: Vec<String>,
    created: Timestamp,
) -> Result<ClusterRecord, StateError> {
    st.put(keys::cluster_status(PinStatus::Queued, created, &cid), Vec::new());
    bump(st, keys::cluster_count(PinStatus::Queued), 1)?;
    Ok(ClusterRecord {
        cid,
        options,
        allocations,
        created,
        holders: Vec::new(),
        first: None,
        peers: Vec::new(),
        summary: PinStatus::Queued,
    })
}

/// Sums the peers' statuses up again after they or the allocations changed,
/// moves the holders' listing records when the summary did (rewriting them
/// all when `rewrite` or when the summary's error changed), and writes the
/// shared record. `before` is the summary's error before the change.
fn resummarize(
    st: &mut Staged<'_>,
    rec: &mut ClusterRecord,
    before: Option<String>,
    rewrite: bool,
) -> Result<(), StateError> {
    let from = rec.summary;
    let (to, error) = rec.summarize();
    rec.summary = to;
    if rewrite || from != to || before != error {
        let local = local_of(st, rec)?;
        refresh_holders(st, rec, &local, from)?;
    }
    put_cluster(st, rec)
}

/// Cluster's pin update: the pin object of `user`'s pin of `from` (or of its
/// first holder's) with the name and expiry of `pin`.
fn updated_from(st: &Staged<'_>, user: &UserName, from: &Cid, pin: NewPin) -> Result<NewPin, StateError> {
    let old = cluster(st, from)?
        .ok_or_else(|| StateError::Refused(format!("pin-update: {from} is not part of the pinset")))?;
    let holder = match old.holder(user) {
        Some(created) => Some(listing_at(st, user, old.summary, created)?.user),
        None => old.first.map(|(_, pin)| pin),
    };
    let (meta, origins, name) = holder.map(|h| (h.meta, h.origins, h.name)).unwrap_or_default();
    Ok(NewPin {
        cid: pin.cid,
        name: pin.name.or(name),
        meta,
        origins,
        options: PinOptions { expire_at: pin.options.expire_at, ..old.options },
    })
}

fn pin_one(st: &mut Staged<'_>, user: &UserName, new: NewPin, at: Timestamp) -> Result<PinOutcome, StateError> {
    new.validate()?;
    let cid = new.cid;
    let (mut rec, new_cluster_pin, options_changed) = match cluster(st, &cid)? {
        Some(mut rec) => {
            if rec.options.mode == PinMode::Recursive && new.options.mode == PinMode::Direct {
                return Err(StateError::Refused(format!(
                    "{cid} is already pinned recursively: unpin it before pinning it in direct mode"
                )));
            }
            let changed = rec.options != new.options;
            rec.options = new.options;
            (rec, false, changed)
        }
        None => (new_cluster(st, cid, new.options, Vec::new(), at)?, true, false),
    };
    // A local record never outlives its cluster record, so a new CID has none:
    // skipping the lookup spares a random leaf read per new pin.
    let local = if new_cluster_pin { LocalRecord::fresh(rec.created) } else { local_of(st, &rec)? };
    let status = rec.summary;
    let user_pin = match rec.holder(user) {
        Some(created) => {
            let old = listing_at(st, user, status, created)?.user;
            let updated = UserPin { cid, name: new.name, meta: new.meta, origins: new.origins, created };
            if old.name != updated.name {
                if let Some(name) = &old.name {
                    st.del(keys::by_name(user, name, created)?);
                }
                if let Some(name) = &updated.name {
                    st.put(keys::by_name(user, name, created)?, cid.to_bytes());
                }
            }
            updated
        }
        None => {
            // Unique per user at ms precision, from the stored state alone.
            let created = Timestamp(at.0.max(newest(st, user)?.saturating_add(1)));
            let pin = UserPin { cid, name: new.name, meta: new.meta, origins: new.origins, created };
            index_user_pin(st, user, &pin, status)?;
            rec.add_holder(user, created);
            pin
        }
    };
    put_listing(st, user, &user_pin, &rec.joined(&local))?;
    if rec.holders.first().is_some_and(|(first, _)| first == user) {
        // The cluster record's copy of the first holder's pin.
        rec.first = Some((user.clone(), user_pin.clone()));
    }
    if options_changed {
        // The summary may follow the replication factor, and the copies of
        // the other holders are stale too.
        rec.summary = rec.summarize().0;
        refresh_holders(st, &rec, &local, status)?;
    }
    put_cluster(st, &mut rec)?;
    let joined = rec.joined(&local);
    Ok(PinOutcome { view: PinView { user: user_pin, cluster: joined }, new_cluster_pin })
}

fn replace(
    st: &mut Staged<'_>,
    user: &UserName,
    old: &Cid,
    new: NewPin,
    at: Timestamp,
) -> Result<ReplaceOutcome, StateError> {
    if cluster(st, old)?.and_then(|rec| rec.holder(user)).is_none() {
        return Err(StateError::NotFound);
    }
    let same = *old == new.cid;
    let out = pin_one(st, user, new, at)?;
    let orphaned = if same { None } else { unpin(st, user, old)?.orphaned.then_some(*old) };
    Ok(ReplaceOutcome { view: out.view, new_cluster_pin: out.new_cluster_pin, orphaned })
}

fn unpin(st: &mut Staged<'_>, user: &UserName, cid: &Cid) -> Result<UnpinOutcome, StateError> {
    let mut rec = cluster(st, cid)?.ok_or(StateError::NotFound)?;
    let created = rec.holder(user).ok_or(StateError::NotFound)?;
    let old = listing_at(st, user, rec.summary, created)?.user;
    unindex_user_pin(st, user, &old, rec.summary)?;
    rec.remove_holder(user);
    if !rec.holders.is_empty() {
        // When `user` was the first holder, this reads the next one's pin.
        put_cluster(st, &mut rec)?;
        return Ok(UnpinOutcome { orphaned: false });
    }
    let status = local_of(st, &rec)?.status;
    st.del(keys::cluster(cid));
    st.del(keys::local(cid));
    st.del(keys::cluster_status(status, rec.created, cid));
    bump(st, keys::cluster_count(status), -1)?;
    Ok(UnpinOutcome { orphaned: true })
}

fn unpin_all(st: &mut Staged<'_>, cid: &Cid) -> Result<ClusterEntry, StateError> {
    let rec = cluster(st, cid)?.ok_or(StateError::NotFound)?;
    let local = local_of(st, &rec)?;
    let mut holders = Vec::with_capacity(rec.holders.len());
    for (user, created) in &rec.holders {
        holders.push((user.clone(), listing_at(st, user, rec.summary, *created)?.user));
    }
    for (user, _) in &holders {
        unpin(st, user, cid)?;
    }
    Ok(ClusterEntry { pin: rec.joined(&local), holders })
}

fn set_allocations(st: &mut Staged<'_>, cid: &Cid, allocations: Vec<String>) -> Result<(), StateError> {
    let mut rec = cluster(st, cid)?.ok_or(StateError::NotFound)?;
    if rec.allocations == allocations {
        return Ok(());
    }
    let before = rec.summarize().1;
    rec.allocations = allocations;
    // Only allocated peers' statuses count.
    if !rec.allocations.is_empty() {
        let allocations = &rec.allocations;
        rec.peers.retain(|p| allocations.contains(&p.peer));
    }
    resummarize(st, &mut rec, before, true)
}

fn report(st: &mut Staged<'_>, peer: &str, at: Timestamp, statuses: Vec<Reported>) -> Result<usize, StateError> {
    let mut changed = 0;
    for Reported { cid, status, error } in statuses {
        let Some(mut rec) = cluster(st, &cid)? else { continue };
        let before = rec.summarize().1;
        let error = error.filter(|_| status == PinStatus::Failed);
        let allocated = rec.allocations.is_empty() || rec.allocations.iter().any(|a| a == peer);
        match (rec.peers.binary_search_by(|p| p.peer.as_str().cmp(peer)), status) {
            (Ok(i), PinStatus::Queued) => {
                rec.peers.remove(i);
            }
            (Err(_), PinStatus::Queued) => continue,
            _ if !allocated => continue,
            (Ok(i), _) => match rec.peers.get_mut(i) {
                Some(known) if known.status != status || known.error != error => {
                    *known = PeerPin { peer: peer.to_owned(), status, error, updated: at };
                }
                _ => continue,
            },
            (Err(i), _) => rec.peers.insert(i, PeerPin { peer: peer.to_owned(), status, error, updated: at }),
        }
        resummarize(st, &mut rec, before, false)?;
        changed += 1;
    }
    Ok(changed)
}

fn expire(st: &mut Staged<'_>, cids: &[Cid], at: Timestamp) -> Result<Vec<Cid>, StateError> {
    let mut removed = Vec::new();
    for cid in cids {
        let due = cluster(st, cid)?.is_some_and(|rec| rec.options.expire_at.is_some_and(|t| t <= at));
        if due && !removed.contains(cid) {
            unpin_all(st, cid)?;
            removed.push(*cid);
        }
    }
    Ok(removed)
}

/// Writes an exported entry, keeping every `created`; see [`Command::Restore`].
fn restore(st: &mut Staged<'_>, entry: ClusterEntry, merge: bool) -> Result<usize, StateError> {
    let cid = entry.pin.cid;
    let mut rec = match cluster(st, &cid)? {
        Some(_) if !merge => {
            return Err(StateError::Refused(format!("{cid} is already in the pinset (import with merge to add to it)")))
        }
        Some(rec) => rec,
        None => {
            let mut rec =
                new_cluster(st, cid, entry.pin.options.clone(), entry.pin.allocations.clone(), entry.pin.created)?;
            rec.peers = entry.pin.peers;
            rec.peers.sort_by(|a, b| a.peer.cmp(&b.peer));
            rec.peers.dedup_by(|a, b| a.peer == b.peer);
            rec.summary = rec.summarize().0;
            rec
        }
    };
    let local = local_of(st, &rec)?;
    let status = rec.summary;
    let mut added = 0;
    for (user, mut pin) in entry.holders {
        if rec.holder(&user).is_some() {
            continue;
        }
        pin.cid = cid;
        for taken in PinStatus::ALL {
            if st.get(&keys::by_status(&user, taken, pin.created)?)?.is_some() {
                return Err(StateError::Refused(format!(
                    "{user} already has another pin created at {} ms",
                    pin.created.0
                )));
            }
        }
        index_user_pin(st, &user, &pin, status)?;
        rec.add_holder(&user, pin.created);
        put_listing(st, &user, &pin, &rec.joined(&local))?;
        added += 1;
    }
    if rec.holders.is_empty() {
        return Err(StateError::Refused(format!("{cid} has no holder")));
    }
    put_cluster(st, &mut rec)?;
    Ok(added)
}
