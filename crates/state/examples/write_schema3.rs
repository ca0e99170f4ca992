//! Writes the schema-3 fixture of the migration test: a pinset made by the
//! schema-3 code, and the listing every user saw in it, one line per pin.
//! Kept only until the schema-4 change; run it with
//! `cargo run -p pincluster-state --example write_schema3 -- DIR`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use pincluster_model::{Cid, NewPin, PinMode, PinOptions, PinStatus, PinView, Progress, StatusSet, Timestamp, UserName};
use pincluster_state::{Pinset, Query, StateOptions, StatusUpdate};

fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    digest[8..16].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    bytes.extend_from_slice(&digest);
    Cid::try_from(bytes).unwrap()
}

fn line(user: &UserName, v: &PinView) -> String {
    format!(
        "{user}|{}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}",
        v.user.cid,
        v.user.name,
        v.user.meta,
        v.user.origins.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        v.user.created.0,
        v.cluster.status,
        v.cluster.error,
        v.cluster.attempts,
        v.cluster.progress.blocks,
        v.cluster.progress.bytes,
        v.cluster.dag_size,
        v.cluster.options.mode.as_str(),
        v.cluster.options.replication_min,
        v.cluster.options.replication_max,
        v.cluster.options.user_allocations,
        v.cluster.options.expire_at.map(|t| t.0),
    )
}

fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let set = Pinset::open(&StateOptions::new(std::path::Path::new(&dir).join("pinset"))).unwrap();
    let users: Vec<UserName> = ["alice", "bob", "carol"].iter().map(|u| UserName::new(*u).unwrap()).collect();
    rt.block_on(async {
        for i in 0..240u64 {
            let user = &users[(i % 3) as usize];
            // Every seventh CID is shared with the previous user.
            let n = if i % 7 == 0 && i > 0 { i - 1 } else { i };
            let mut meta = std::collections::BTreeMap::new();
            if i % 4 == 0 {
                meta.insert("app".to_string(), format!("a{}", i % 3));
            }
            let pin = NewPin {
                cid: cid(n),
                name: (i % 5 != 0).then(|| format!("Pin-{i:03}")),
                meta,
                origins: if i % 9 == 0 { vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()] } else { Vec::new() },
                options: PinOptions {
                    mode: if i % 11 == 0 { PinMode::Direct } else { PinMode::Recursive },
                    replication_min: -1,
                    replication_max: -1,
                    user_allocations: Vec::new(),
                    expire_at: (i % 13 == 0).then_some(Timestamp(4_000_000_000_000 + i)),
                },
            };
            set.pin(user, pin).await.unwrap();
        }
        for n in 0..240u64 {
            let c = cid(n);
            let update = match n % 4 {
                0 => continue,
                1 => StatusUpdate {
                    progress: Some(Progress { blocks: n, bytes: n * 1000 }),
                    attempts: Some(1),
                    ..StatusUpdate::status(PinStatus::Pinning)
                },
                2 => StatusUpdate {
                    progress: Some(Progress { blocks: n, bytes: n * 1000 }),
                    dag_size: Some(n * 1000),
                    attempts: Some(1),
                    ..StatusUpdate::status(PinStatus::Pinned)
                },
                _ => StatusUpdate {
                    error: Some(format!("stalled {n}")),
                    attempts: Some(2),
                    ..StatusUpdate::status(PinStatus::Failed)
                },
            };
            match set.update_status(&c, update).await {
                Ok(()) | Err(pincluster_state::StateError::NotFound) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let mut out = std::fs::File::create(std::path::Path::new(&dir).join("expected.txt")).unwrap();
    for user in &users {
        let page =
            set.list(user, &Query { statuses: StatusSet::ALL, limit: 1000, ..Query::default() }).unwrap();
        for v in &page.results {
            writeln!(out, "{}", line(user, v)).unwrap();
        }
    }
    assert!(set.check_integrity().unwrap().is_ok());
    set.close().unwrap();
}
