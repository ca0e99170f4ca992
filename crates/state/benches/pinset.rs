//! The pinset benchmark: a plain binary (`harness = false`) that builds pinsets
//! of 10k, 100k and 1M pins for one user and for 1,000 users and prints one
//! table row per pinset. Read `main` first.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p pincluster-state`.
//! `PINSET_BENCH_SIZES` (default `10000,100000,1000000`) and `PINSET_BENCH_USERS`
//! (default `1,1000`) narrow the grid; `PINSET_BENCH_CACHE_MIB` sets the sled
//! cache (default: the crate default, 16). The pinset is closed with `Pinset::close` (timed: it
//! replays sled's log once, about what an open after a crash costs). Open time and streaming memory are
//! measured in a fresh child process (this binary re-executed), so that the
//! build phase does not inflate the high-water mark.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pincluster_model::{Cid, NameMatch, NewPin, PinOptions, PinStatus, StatusSet, Timestamp, UserName};
use pincluster_state::{Pinset, Query, StateOptions, StatusUpdate};
use tokio::runtime::Runtime;

/// The allocator `pincluster-service` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BULK: usize = 10_000;
const WRITERS: u64 = 32;
const INSERTS_PER_WRITER: u64 = 1_000;

fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    digest[8..16].copy_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&digest);
    Cid::try_from(bytes).unwrap()
}

fn user(i: u64) -> UserName {
    UserName::new(format!("user{i:04}")).unwrap()
}

fn new_pin(n: u64) -> NewPin {
    NewPin {
        cid: cid(n),
        name: Some(format!("pin-{n}")),
        meta: [("app".to_string(), "bench".to_string())].into(),
        origins: Vec::new(),
        options: PinOptions::everywhere(),
    }
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Builds `size` pins round-robin over `users`, one quarter of them `pinned`.
fn build(rt: &Runtime, pinset: &Pinset, size: u64, users: u64) -> Duration {
    let start = Instant::now();
    rt.block_on(async {
        let mut n = 0;
        while n < size {
            let end = (n + BULK as u64).min(size);
            let items = (n..end).map(|i| (user(i % users), new_pin(i))).collect();
            for result in pinset.pin_many(items).await.unwrap() {
                result.unwrap();
            }
            // Status updates go through the same writer; sent together they share group commits.
            let mut tasks = tokio::task::JoinSet::new();
            for i in (n..end).step_by(4) {
                let pinset = pinset.clone();
                tasks.spawn(async move {
                    pinset.update_status(&cid(i), StatusUpdate::status(PinStatus::Pinned)).await.unwrap()
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
            n = end;
        }
    });
    start.elapsed()
}

/// The median time of `f` over enough runs.
fn median(mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut times: Vec<Duration> = (0..31)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn page(pinset: &Pinset, u: &UserName, q: &Query) -> Duration {
    median(|| {
        let page = pinset.list(u, q).unwrap();
        std::hint::black_box(page);
    })
}

fn inserts_per_second(rt: &Runtime, pinset: &Pinset, base: u64, users: u64) -> f64 {
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let pinset = pinset.clone();
            tasks.spawn(async move {
                for i in 0..INSERTS_PER_WRITER {
                    let n = base + w * INSERTS_PER_WRITER + i;
                    pinset.pin(&user(n % users), new_pin(n)).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    (WRITERS * INSERTS_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

/// Child mode: open, then stream every cluster pin; print open µs, idle RSS,
/// high-water mark (KiB), pins streamed and streaming ms.
fn stream_child(path: &Path, cache: u64) {
    let start = Instant::now();
    let pinset =
        Pinset::open(&StateOptions { path: path.to_path_buf(), cache_capacity_bytes: cache, min_free_space: None })
            .unwrap();
    let open = start.elapsed();
    let idle = vm_kib("VmRSS:");
    let start = Instant::now();
    let mut n = 0u64;
    for pin in pinset.cluster_pins(StatusSet::ALL) {
        std::hint::black_box(pin.unwrap());
        n += 1;
    }
    let streamed = start.elapsed();
    let hwm = vm_kib("VmHWM:");
    // Again with a warm cache, as in a daemon that has been serving: reset the
    // high-water mark (Linux `clear_refs` value 5) and stream once more.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let warm = vm_kib("VmRSS:");
    for pin in pinset.cluster_pins(StatusSet::ALL) {
        std::hint::black_box(pin.unwrap());
    }
    let warm_hwm = if reset { vm_kib("VmHWM:") } else { 0 };
    println!("{} {idle} {hwm} {n} {} {warm} {warm_hwm}", open.as_micros(), streamed.as_millis());
}

struct ChildFigures {
    open: Duration,
    idle_mib: f64,
    growth_mib: f64,
    streamed: u64,
    stream_ms: u64,
    warm_growth_mib: f64,
}

fn measure_in_child(path: &Path, cache: u64) -> ChildFigures {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--stream-child", path.to_str().unwrap(), &cache.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(f.len(), 7, "child printed {text:?}; stderr {}", String::from_utf8_lossy(&out.stderr));
    ChildFigures {
        open: Duration::from_micros(f[0]),
        idle_mib: f[1] as f64 / 1024.0,
        growth_mib: f[2].saturating_sub(f[1]) as f64 / 1024.0,
        streamed: f[3],
        stream_ms: f[4],
        warm_growth_mib: f[6].saturating_sub(f[5]) as f64 / 1024.0,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').map(|v| v.trim().parse().unwrap()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--stream-child") {
        stream_child(Path::new(&args[i + 1]), args[i + 2].parse().unwrap());
        return;
    }
    let sizes = env_list("PINSET_BENCH_SIZES", "10000,100000,1000000");
    let user_counts = env_list("PINSET_BENCH_USERS", "1,1000");
    let cache = std::env::var("PINSET_BENCH_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(pincluster_state::DEFAULT_CACHE_CAPACITY_BYTES, |mib| mib * 1024 * 1024);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    println!(
        "sled cache {} MiB. All times in ms (median of 31 runs for queries). Status filter = `pinned` (1/4 of pins).",
        cache / (1024 * 1024)
    );
    println!("count(after) is a count that must scan (a created bound), over the whole matching range.\n");
    println!("| pins | users | build s | p10 default | p1000 default | p10 status | p1000 status | count default | count status | count(after) scan | inserts/s (32 writers) | close | 1st open | 2nd open | stream all: ms | RSS after open MiB | RSS growth cold MiB | RSS growth warm MiB | disk MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &sizes {
        for &users in &user_counts {
            let dir = tempfile::tempdir().unwrap();
            let options =
                StateOptions { path: dir.path().to_path_buf(), cache_capacity_bytes: cache, min_free_space: None };
            let pinset = Pinset::open(&options).unwrap();
            let built = build(&rt, &pinset, size, users);
            // The committer frees the page versions the import retired while the
            // last groups are fsynced (see writer.rs `reclaim`): up to about a
            // second of background work after 10k-pin groups. Let it finish so
            // that the queries below are timed as in a serving daemon at every size.
            std::thread::sleep(Duration::from_secs(2));

            let u = user(0);
            let pinned = StatusSet::only(PinStatus::Pinned);
            let q = |limit: usize, statuses: StatusSet| Query { limit, statuses, ..Query::default() };
            let p10 = page(&pinset, &u, &q(10, StatusSet::ALL));
            let p1000 = page(&pinset, &u, &q(1000, StatusSet::ALL));
            let s10 = page(&pinset, &u, &q(10, pinned));
            let s1000 = page(&pinset, &u, &q(1000, pinned));
            let c_all = page(&pinset, &u, &q(0, StatusSet::ALL));
            let c_status = page(&pinset, &u, &q(0, pinned));
            let c_scan = page(&pinset, &u, &Query { limit: 0, after: Some(Timestamp(1)), ..Query::default() });
            // Sanity: the figures above are for real pages.
            let expected = (size / users).min(1000) as usize;
            assert_eq!(pinset.list(&u, &q(1000, StatusSet::ALL)).unwrap().results.len(), expected);
            let by_name = Query { name: Some(("pin-0".into(), NameMatch::Exact)), ..Query::default() };
            assert_eq!(pinset.list(&u, &by_name).unwrap().count, 1);

            let rate = inserts_per_second(&rt, &pinset, size + 1, users);
            let disk = pinset.size_on_disk().unwrap() as f64 / (1024.0 * 1024.0);
            // Closing replays sled's log once so that the next open reads a fresh
            // snapshot; its time is also about what an open after a crash costs.
            let closing = Instant::now();
            assert!(pinset.close().unwrap());
            let closed = closing.elapsed();
            let child = measure_in_child(dir.path(), cache);
            assert_eq!(child.streamed, size + WRITERS * INSERTS_PER_WRITER);
            let again = measure_in_child(dir.path(), cache);
            println!(
                "| {size} | {users} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
                built.as_secs_f64(),
                ms(p10),
                ms(p1000),
                ms(s10),
                ms(s1000),
                ms(c_all),
                ms(c_status),
                ms(c_scan),
                rate,
                ms(closed),
                ms(child.open),
                ms(again.open),
                child.stream_ms,
                child.idle_mib,
                child.growth_mib,
                child.warm_growth_mib,
                disk,
            );
        }
    }
}
