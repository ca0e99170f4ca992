//! Every change to the shared pinset as a command: [`Command`] is what a log
//! entry carries, [`Applied`] what applying it did. Read [`Command`] first.
//!
//! A command carries everything its application needs (the user, the
//! proposer's clock, the pin object), so that applying it is a function of the
//! stored state and the command alone: two pinsets that apply the same
//! commands in the same order hold the same shared records, byte for byte.
//! [`Command::encode`] gives the versioned form a replicated log stores; its
//! types are private mirrors, like the stored records, so the domain types can
//! change without changing the log.

use pincluster_model::{Cid, ClusterPin, Multiaddr, NewPin, PinOptions, PinStatus, Timestamp, UserName, UserPin};
use serde::{Deserialize, Serialize};

use crate::records::{self, options_v1, OptionsV1, PeerRecordV1};
use crate::{ClusterEntry, PinOutcome, ReplaceOutcome, StateError};

/// The format version of [`Command::encode`].
const COMMAND_V1: u8 = 1;

/// One change to the shared pinset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Pins `pin.cid` for `user`, or updates that user's pin object. A new
    /// user pin gets `created = max(at, newest of the user + 1 ms)`.
    ///
    /// With `update_from`, Cluster's pin update: the new pin takes the options
    /// (all but `expire_at`), meta and origins of `user`'s pin of that CID (or
    /// of its first holder's), and its name when `pin` has none. Pinning a CID
    /// held recursively in direct mode is refused.
    Pin { user: UserName, pin: NewPin, at: Timestamp, update_from: Option<Cid> },
    /// Replaces `user`'s pin of `old` by `pin` in one step.
    Replace { user: UserName, old: Cid, pin: NewPin, at: Timestamp },
    /// Removes `user`'s pin of `cid`.
    Unpin { user: UserName, cid: Cid },
    /// Removes `cid` for every user who holds it.
    UnpinAll { cid: Cid },
    /// Sets the peers `cid` is allocated to.
    SetAllocations { cid: Cid, allocations: Vec<String> },
    /// Removes, for every holder, each of `cids` whose `expire_at` is at or
    /// before `at` (the others are left alone).
    Expire { cids: Vec<Cid>, at: Timestamp },
    /// Writes a cluster pin and its holders as exported, keeping every
    /// `created` (an import). A CID already in the pinset gains the holders it
    /// lacks when `merge` is set, and is refused otherwise. The peers'
    /// statuses in `entry.pin.peers` are kept (a snapshot's), and its summary
    /// follows from them.
    Restore { entry: ClusterEntry, merge: bool },
    /// `peer`'s statuses of some CIDs, reported at `at` (its clock): the
    /// shared view of where each pin stands on each peer, and their summary
    /// (the status users list pins by). A report from a peer the CID is not
    /// allocated to, or of a CID no longer in the pinset, is ignored;
    /// `queued` withdraws the peer's status.
    Report { peer: String, at: Timestamp, statuses: Vec<Reported> },
}

/// One CID's status in a [`Command::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub cid: Cid,
    pub status: PinStatus,
    /// Why it failed, with `failed`.
    pub error: Option<String>,
}

/// What applying one [`Command`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Pin(PinOutcome),
    Replace(ReplaceOutcome),
    /// `user`'s pin of `cid` is gone; `orphaned` when nobody holds `cid` any more.
    Unpin {
        cid: Cid,
        orphaned: bool,
    },
    /// The entry as it was before it was removed.
    UnpinAll(ClusterEntry),
    /// The CID whose allocations changed (the tracker checks whether it is still allocated here).
    SetAllocations(Cid),
    /// The CIDs removed.
    Expire(Vec<Cid>),
    /// How many holders were added.
    Restore(usize),
    /// How many CIDs' statuses changed.
    Report(usize),
}

impl Applied {
    /// The CIDs that applying this command added to the pinset (the tracker queues them).
    pub fn added(&self) -> Option<Cid> {
        match self {
            Applied::Pin(PinOutcome { view, new_cluster_pin: true })
            | Applied::Replace(ReplaceOutcome { view, new_cluster_pin: true, .. }) => Some(view.user.cid),
            _ => None,
        }
    }

    /// The CIDs that applying this command removed from the pinset (the tracker releases them).
    pub fn removed(&self) -> Vec<Cid> {
        match self {
            Applied::Replace(ReplaceOutcome { orphaned: Some(cid), .. }) | Applied::Unpin { cid, orphaned: true } => {
                vec![*cid]
            }
            Applied::UnpinAll(entry) => vec![entry.pin.cid],
            Applied::Expire(cids) => cids.clone(),
            _ => Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
enum CommandV1 {
    Pin {
        user: String,
        pin: NewPinV1,
        at: u64,
        update_from: Option<Vec<u8>>,
    },
    Replace {
        user: String,
        old: Vec<u8>,
        pin: NewPinV1,
        at: u64,
    },
    Unpin {
        user: String,
        cid: Vec<u8>,
    },
    UnpinAll {
        cid: Vec<u8>,
    },
    SetAllocations {
        cid: Vec<u8>,
        allocations: Vec<String>,
    },
    Expire {
        cids: Vec<Vec<u8>>,
        at: u64,
    },
    Restore {
        entry: EntryV1,
        merge: bool,
    },
    Report {
        peer: String,
        at: u64,
        statuses: Vec<(Vec<u8>, u8, Option<String>)>,
    },
    /// `Restore` with the peers' statuses (written since schema 5).
    RestoreV2 {
        entry: EntryV1,
        peers: Vec<PeerRecordV1>,
        merge: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct NewPinV1 {
    cid: Vec<u8>,
    name: Option<String>,
    meta: Vec<(String, String)>,
    origins: Vec<Vec<u8>>,
    options: OptionsV1,
}

#[derive(Serialize, Deserialize)]
struct EntryV1 {
    cid: Vec<u8>,
    options: OptionsV1,
    allocations: Vec<String>,
    created: u64,
    holders: Vec<HolderV1>,
}

/// A holder of an [`EntryV1`]: the user and their pin object.
#[derive(Serialize, Deserialize)]
struct HolderV1 {
    user: String,
    name: Option<String>,
    meta: Vec<(String, String)>,
    origins: Vec<Vec<u8>>,
    created: u64,
}

fn bad(reason: impl std::fmt::Display) -> StateError {
    StateError::Corrupt { key: "command".into(), reason: reason.to_string() }
}

fn cid_from(bytes: &[u8]) -> Result<Cid, StateError> {
    Cid::try_from(bytes).map_err(|e| bad(format!("malformed CID: {e}")))
}

fn user_from(name: String) -> Result<UserName, StateError> {
    UserName::new(name).map_err(bad)
}

fn origins_from(origins: Vec<Vec<u8>>) -> Result<Vec<Multiaddr>, StateError> {
    origins.into_iter().map(|o| Multiaddr::try_from(o).map_err(|e| bad(format!("bad origin: {e}")))).collect()
}

fn options_from(options: OptionsV1) -> Result<PinOptions, StateError> {
    records::options_from_v1(b"command", options)
}

fn new_pin_v1(pin: &NewPin) -> NewPinV1 {
    NewPinV1 {
        cid: pin.cid.to_bytes(),
        name: pin.name.clone(),
        meta: pin.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        origins: pin.origins.iter().map(|o| o.to_vec()).collect(),
        options: options_v1(&pin.options),
    }
}

fn new_pin_from(pin: NewPinV1) -> Result<NewPin, StateError> {
    Ok(NewPin {
        cid: cid_from(&pin.cid)?,
        name: pin.name,
        meta: pin.meta.into_iter().collect(),
        origins: origins_from(pin.origins)?,
        options: options_from(pin.options)?,
    })
}

fn entry_v1(entry: &ClusterEntry) -> EntryV1 {
    EntryV1 {
        cid: entry.pin.cid.to_bytes(),
        options: options_v1(&entry.pin.options),
        allocations: entry.pin.allocations.clone(),
        created: entry.pin.created.0,
        holders: entry
            .holders
            .iter()
            .map(|(user, pin)| HolderV1 {
                user: user.as_str().to_owned(),
                name: pin.name.clone(),
                meta: pin.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                origins: pin.origins.iter().map(|o| o.to_vec()).collect(),
                created: pin.created.0,
            })
            .collect(),
    }
}

fn entry_from(entry: EntryV1) -> Result<ClusterEntry, StateError> {
    let cid = cid_from(&entry.cid)?;
    let created = Timestamp(entry.created);
    let holders = entry
        .holders
        .into_iter()
        .map(|h| {
            let pin = UserPin {
                cid,
                name: h.name,
                meta: h.meta.into_iter().collect(),
                origins: origins_from(h.origins)?,
                created: Timestamp(h.created),
            };
            Ok((user_from(h.user)?, pin))
        })
        .collect::<Result<Vec<_>, StateError>>()?;
    Ok(ClusterEntry { pin: ClusterPin::shared(cid, options_from(entry.options)?, entry.allocations, created), holders })
}

impl Command {
    /// Every CID whose shared entry applying this command may change (a
    /// snapshot being written saves their entries first; see `snapshot.rs`).
    pub(crate) fn cids(&self) -> Vec<Cid> {
        match self {
            Command::Pin { pin, .. } => vec![pin.cid],
            Command::Replace { old, pin, .. } => vec![*old, pin.cid],
            Command::Unpin { cid, .. } | Command::UnpinAll { cid } | Command::SetAllocations { cid, .. } => vec![*cid],
            Command::Expire { cids, .. } => cids.clone(),
            Command::Restore { entry, .. } => vec![entry.pin.cid],
            Command::Report { statuses, .. } => statuses.iter().map(|s| s.cid).collect(),
        }
    }

    /// The versioned binary form a replicated log stores.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let cmd = match self {
            Command::Pin { user, pin, at, update_from } => CommandV1::Pin {
                user: user.as_str().to_owned(),
                pin: new_pin_v1(pin),
                at: at.0,
                update_from: update_from.map(|c| c.to_bytes()),
            },
            Command::Replace { user, old, pin, at } => CommandV1::Replace {
                user: user.as_str().to_owned(),
                old: old.to_bytes(),
                pin: new_pin_v1(pin),
                at: at.0,
            },
            Command::Unpin { user, cid } => CommandV1::Unpin { user: user.as_str().to_owned(), cid: cid.to_bytes() },
            Command::UnpinAll { cid } => CommandV1::UnpinAll { cid: cid.to_bytes() },
            Command::SetAllocations { cid, allocations } => {
                CommandV1::SetAllocations { cid: cid.to_bytes(), allocations: allocations.clone() }
            }
            Command::Expire { cids, at } => {
                CommandV1::Expire { cids: cids.iter().map(|c| c.to_bytes()).collect(), at: at.0 }
            }
            Command::Restore { entry, merge } => CommandV1::RestoreV2 {
                entry: entry_v1(entry),
                peers: entry.pin.peers.iter().map(records::peer_v1).collect(),
                merge: *merge,
            },
            Command::Report { peer, at, statuses } => CommandV1::Report {
                peer: peer.clone(),
                at: at.0,
                statuses: statuses.iter().map(|r| (r.cid.to_bytes(), r.status.code(), r.error.clone())).collect(),
            },
        };
        postcard::to_extend(&cmd, vec![COMMAND_V1]).map_err(|e| StateError::Encode(e.to_string()))
    }

    /// Reads what [`Command::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Command, StateError> {
        let (&version, body) = bytes.split_first().ok_or_else(|| bad("empty command"))?;
        if version != COMMAND_V1 {
            return Err(bad(format!("unknown command format {version}")));
        }
        let cmd: CommandV1 = postcard::from_bytes(body).map_err(bad)?;
        Ok(match cmd {
            CommandV1::Pin { user, pin, at, update_from } => Command::Pin {
                user: user_from(user)?,
                pin: new_pin_from(pin)?,
                at: Timestamp(at),
                update_from: update_from.map(|c| cid_from(&c)).transpose()?,
            },
            CommandV1::Replace { user, old, pin, at } => Command::Replace {
                user: user_from(user)?,
                old: cid_from(&old)?,
                pin: new_pin_from(pin)?,
                at: Timestamp(at),
            },
            CommandV1::Unpin { user, cid } => Command::Unpin { user: user_from(user)?, cid: cid_from(&cid)? },
            CommandV1::UnpinAll { cid } => Command::UnpinAll { cid: cid_from(&cid)? },
            CommandV1::SetAllocations { cid, allocations } => {
                Command::SetAllocations { cid: cid_from(&cid)?, allocations }
            }
            CommandV1::Expire { cids, at } => {
                Command::Expire { cids: cids.iter().map(|c| cid_from(c)).collect::<Result<_, _>>()?, at: Timestamp(at) }
            }
            CommandV1::Restore { entry, merge } => Command::Restore { entry: entry_from(entry)?, merge },
            CommandV1::RestoreV2 { entry, peers, merge } => {
                let mut entry = entry_from(entry)?;
                entry.pin.peers =
                    peers.into_iter().map(|p| records::peer_from_v1(b"command", p)).collect::<Result<_, _>>()?;
                Command::Restore { entry, merge }
            }
            CommandV1::Report { peer, at, statuses } => Command::Report {
                peer,
                at: Timestamp(at),
                statuses: statuses
                    .into_iter()
                    .map(|(cid, status, error)| {
                        let status =
                            PinStatus::from_code(status).ok_or_else(|| bad(format!("unknown status {status}")))?;
                        Ok(Reported { cid: cid_from(&cid)?, status, error })
                    })
                    .collect::<Result<_, StateError>>()?,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let cid = Cid::try_from("bafkqaaa").unwrap();
        let user = UserName::new("alice").unwrap();
        let pin = NewPin {
            cid,
            name: Some("n".into()),
            meta: [("k".to_string(), "v".to_string())].into_iter().collect(),
            origins: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            options: PinOptions {
                mode: pincluster_model::PinMode::Direct,
                expire_at: Some(Timestamp(9)),
                ..PinOptions::everywhere()
            },
        };
        let mut shared = ClusterPin::shared(cid, PinOptions::everywhere(), vec!["peer".into()], Timestamp(5));
        shared.peers = vec![pincluster_model::PeerPin {
            peer: "peer".into(),
            status: PinStatus::Pinned,
            error: None,
            updated: Timestamp(7),
        }];
        let entry = ClusterEntry {
            pin: shared,
            holders: vec![(
                user.clone(),
                UserPin { cid, name: None, meta: Default::default(), origins: vec![], created: Timestamp(6) },
            )],
        };
        for command in [
            Command::Pin { user: user.clone(), pin: pin.clone(), at: Timestamp(1), update_from: Some(cid) },
            Command::Replace { user: user.clone(), old: cid, pin, at: Timestamp(2) },
            Command::Unpin { user, cid },
            Command::UnpinAll { cid },
            Command::SetAllocations { cid, allocations: vec!["a".into(), "b".into()] },
            Command::Expire { cids: vec![cid, cid], at: Timestamp(3) },
            Command::Restore { entry, merge: true },
            Command::Report {
                peer: "peer".into(),
                at: Timestamp(4),
                statuses: vec![Reported { cid, status: PinStatus::Failed, error: Some("no".into()) }],
            },
        ] {
            let bytes = command.encode().unwrap();
            assert_eq!(bytes[0], COMMAND_V1);
            assert_eq!(Command::decode(&bytes).unwrap(), command);
        }
        assert!(Command::decode(&[9, 0]).is_err());
        assert!(Command::decode(&[]).is_err());
    }
}
