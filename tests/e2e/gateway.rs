//! Issue 16 end to end: the trustless gateway. Content a real Kubo peer added is pinned, then a
//! verifying JS client (`tests/js/gateway-client.mjs`: @ipld/car and
//! @web3-storage/car-block-validator) checks every block, the CARs' roots and depth-first order,
//! and the bytes; the spec's refusals, the per-client limit and the metrics are checked here.

use std::path::Path;
use std::time::{Duration, Instant};

use pincluster_tests::*;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
const CAR: &str = "application/vnd.ipld.car";

fn gateway_config(gateway: Value, extra: Value) -> Value {
    let mut config = test_config(json!({
        "api": { "gateway": gateway },
        "ipfs": { "pin_timeout": "30s" },
        "pin_tracker": { "max_retries": 0, "gc_interval": "0s" },
    }));
    merge(&mut config, extra);
    config
}

/// Pins `cid` as alice through the PSA (fetching from `origins`) and waits until it is pinned.
fn pin(daemon: &Daemon, cid: &str, origins: &[String]) {
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let body = json!({ "cid": cid, "origins": origins });
    let (status, reply) =
        json_of(client().post(format!("{}/pins", daemon.pinsvc)).bearer_auth(&token).json(&body).send().unwrap());
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, pin) =
            json_of(client().get(format!("{}/pins/{cid}", daemon.pinsvc)).bearer_auth(&token).send().unwrap());
        if pin["status"] == "pinned" {
            return;
        }
        assert!(pin["status"] != "failed", "pin of {cid} failed: {pin}");
        assert!(Instant::now() < deadline, "{cid} not pinned: {pin}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A file tree: `count` small files in `dir`; returns name → path.
fn small_files(dir: &Path, count: usize, prefix: &str) -> serde_json::Map<String, Value> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let name = format!("{prefix}{i:05}.txt");
            let path = dir.join(&name);
            std::fs::write(&path, format!("file {i} of {count}\n").repeat(1 + i % 7)).unwrap();
            (name, json!(path))
        })
        .collect()
}

#[test]
fn a_verifying_client_gets_what_kubo_added_from_the_gateway() {
    let files = tempfile::tempdir().unwrap();
    let root = files.path();
    let mut kubo = Kubo::start();
    random_file(&root.join("big.bin"), 6 * MIB + 123, 16);
    let big = kubo.add(&root.join("big.bin"));
    let dir_files = small_files(&root.join("dir"), 3, "f");
    let dir = kubo.add(&root.join("dir"));
    // Kubo shards a directory whose links (name and CID) take more than 256 KiB: 4000 of
    // these names (83 bytes each) do.
    let hamt_files = small_files(&root.join("hamt"), 4000, "a-file-with-a-long-enough-name-to-shard-");
    let hamt = kubo.add(&root.join("hamt"));
    std::fs::write(root.join("small.txt"), "a small file, one block\n").unwrap();
    let small = kubo.add(&root.join("small.txt"));

    let daemon =
        Daemon::start(gateway_config(json!({ "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0" }), json!({})));
    assert!(daemon.gateway.starts_with("http://127.0.0.1:"), "gateway line: {:?}", daemon.gateway);
    for cid in [&big, &dir, &hamt, &small] {
        pin(&daemon, cid, &kubo.addrs);
    }
    let (entry, entry_file) = hamt_files.iter().nth(1234).map(|(k, v)| (k.clone(), v.clone())).unwrap();
    let cases = json!({
        "file": { "cid": big, "file": root.join("big.bin") },
        // Across two 256 KiB leaves.
        "range": [1_000_000, 1_100_000],
        "dir": { "cid": dir, "files": dir_files },
        "hamt": { "cid": hamt, "count": 4000, "entry": entry, "entryFile": entry_file },
        "small": { "cid": small, "file": root.join("small.txt") },
    });
    let cases_file = root.join("cases.json");
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    run_js_client("gateway-client.mjs", &[&daemon.gateway, &cases_file.to_string_lossy()]);
}

/// The sampled metric `name` (no labels) from the metrics listener.
fn metric(daemon: &Daemon, name: &str) -> f64 {
    let text = client().get(&daemon.metrics).send().unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn get(url: &str, accept: Option<&str>) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let mut request = client().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.text().unwrap(), headers)
}

#[test]
fn the_gateway_refuses_as_the_spec_says_and_never_fetches() {
    let files = tempfile::tempdir().unwrap();
    let mut kubo = Kubo::start();
    std::fs::write(files.path().join("pinned.txt"), "pinned here\n").unwrap();
    let pinned = kubo.add(&files.path().join("pinned.txt"));
    std::fs::write(files.path().join("kubo-only.txt"), "only Kubo has this\n").unwrap();
    let kubo_only = kubo.add(&files.path().join("kubo-only.txt"));

    let daemon = Daemon::start(gateway_config(
        json!({
            "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0",
            "max_concurrent_per_client": 1,
            "max_bytes_per_second": 200_000,
        }),
        json!({ "observations": {
            "enable_metrics": true,
            "metrics_listen_multiaddress": "/ip4/127.0.0.1/tcp/0",
            "reporting_interval": "1s",
        } }),
    ));
    let gw = &daemon.gateway;
    // Pinning from Kubo leaves the two nodes connected: a want for anything Kubo holds would be
    // answered at once.
    pin(&daemon, &pinned, &kubo.addrs);
    let raw = Some("application/vnd.ipld.raw");
    assert_eq!(get(&format!("{gw}/ipfs/{pinned}"), raw).0, StatusCode::OK);

    // Unknown here (Kubo, connected, has it): 404, and nothing is fetched.
    std::thread::sleep(Duration::from_millis(1500));
    let received = metric(&daemon, "pincluster_bitswap_received_blocks_total");
    assert!(received >= 1.0, "the pin's fetch is counted, so a fetch for the gateway would be too");
    let (status, body, _) = get(&format!("{gw}/ipfs/{kubo_only}"), raw);
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("not pinned"), "{body}");
    let (status, _, _) = get(&format!("{gw}/ipfs/{kubo_only}?format=car"), None);
    assert_eq!(status, StatusCode::NOT_FOUND);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        metric(&daemon, "pincluster_bitswap_received_blocks_total"),
        received,
        "the gateway made the node fetch over Bitswap"
    );
    assert_eq!(get(&format!("{gw}/ipfs/{}", fake_cid(1)), raw).0, StatusCode::NOT_FOUND);

    // In the store but not pinned: 404; pinned (from the local blocks alone), served.
    let added = add_files(&daemon, "no-pin=true", &[("cached.txt", b"imported, not pinned\n")]);
    let cached_cid = added[0]["cid"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("{gw}/ipfs/{cached_cid}"), raw).0, StatusCode::NOT_FOUND);
    pin(&daemon, &cached_cid, &[]);
    assert_eq!(get(&format!("{gw}/ipfs/{cached_cid}"), raw).0, StatusCode::OK, "its blocks were there");

    // Bad requests.
    for (path, accept, wanted) in [
        ("/ipfs/not-a-cid".to_string(), raw, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=dag-json"), None, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=tar"), raw, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=car&car-version=2"), None, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=car&dag-scope=most"), None, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=car&entity-bytes=9:2"), None, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}?format=car&entity-bytes=500:*"), None, StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}/a/path"), raw, StatusCode::BAD_REQUEST),
        // Deserialized responses are off: a browser's */* is not served.
        (format!("/ipfs/{pinned}"), Some("text/html,*/*;q=0.8"), StatusCode::NOT_ACCEPTABLE),
        (format!("/ipfs/{pinned}"), Some("application/vnd.ipld.dag-json"), StatusCode::NOT_ACCEPTABLE),
        (format!("/ipfs/{pinned}"), Some("application/vnd.ipld.car; version=2"), StatusCode::NOT_ACCEPTABLE),
        (format!("/ipfs/{pinned}"), Some("no media type"), StatusCode::BAD_REQUEST),
        (format!("/ipfs/{pinned}/missing.txt"), Some(CAR), StatusCode::NOT_FOUND),
    ] {
        let (status, body, headers) = get(&format!("{gw}{path}"), accept);
        assert_eq!(status, wanted, "{path} (Accept {accept:?}): {body}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"), "{path}");
        assert!(!body.is_empty() && body.len() < 300, "{path}: a short body: {body}");
    }
    // The probe of the spec: the empty identity CID, served without any store.
    assert_eq!(get(&format!("{gw}/ipfs/bafkqaaa"), raw).0, StatusCode::OK);

    // One request in progress per client: a second gets 429 until the first is done. A CAR of
    // 1 MiB at 200 kB/s takes five seconds.
    let big = random_file(&files.path().join("big.bin"), MIB, 3);
    let big_cid = add_files(&daemon, "", &[("big.bin", &big)])[0]["cid"].as_str().unwrap().to_string();
    pin(&daemon, &big_cid, &[]);
    let first = client().get(format!("{gw}/ipfs/{big_cid}?format=car")).send().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let (status, body, headers) = get(&format!("{gw}/ipfs/{pinned}"), raw);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let started = Instant::now();
    let car = first.bytes().unwrap();
    assert!(car.len() > MIB, "the whole CAR: {} bytes", car.len());
    assert!(started.elapsed() > Duration::from_secs(3), "paced at 200 kB/s: {:?}", started.elapsed());
    eventually(Duration::from_secs(10), "the slot to come back", || {
        (get(&format!("{gw}/ipfs/{pinned}"), raw).0 == StatusCode::OK).then_some(())
    });

    // Requests and bytes served are in the metrics.
    let text = client().get(&daemon.metrics).send().unwrap().text().unwrap();
    for wanted in [
        "pincluster_gateway_sent_bytes_total{format=\"car\"}",
        "pincluster_gateway_sent_bytes_total{format=\"raw\"}",
        "pincluster_gateway_refused_total{reason=\"not_pinned\"}",
        "pincluster_gateway_refused_total{reason=\"client_limit\"}",
        "pincluster_http_requests_total{api=\"gateway\",method=\"GET\",route=\"/ipfs/{path}\",status=\"200\"}",
    ] {
        assert!(text.contains(wanted), "{wanted} missing from the metrics");
    }
}

#[test]
fn plain_responses_when_enabled_serve_a_files_bytes_with_ranges() {
    let gateway = json!({ "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0", "deserialized_responses": true });
    let daemon = Daemon::start(gateway_config(gateway, json!({})));
    let gw = &daemon.gateway;
    let text = b"0123456789 plain bytes for people\n";
    let added = add_files(&daemon, "wrap-with-directory=true", &[("hello.txt", text)]);
    let dir = added.last().unwrap()["cid"].as_str().unwrap().to_string();
    pin(&daemon, &dir, &[]);

    let (status, body, headers) = get(&format!("{gw}/ipfs/{dir}/hello.txt"), None);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_bytes(), text);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(headers["cache-control"], "public, max-age=29030400, immutable");

    let ranged = client().get(format!("{gw}/ipfs/{dir}/hello.txt")).header("Range", "bytes=2-5").send().unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.headers()["content-range"], format!("bytes 2-5/{}", text.len()));
    assert_eq!(ranged.bytes().unwrap().as_ref(), &text[2..=5]);
    let outside = client().get(format!("{gw}/ipfs/{dir}/hello.txt")).header("Range", "bytes=900-").send().unwrap();
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Still only what is pinned, and the verifiable formats still answer as before.
    assert_eq!(get(&format!("{gw}/ipfs/{}/a.txt", fake_cid(5)), None).0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{gw}/ipfs/{dir}/nope.txt"), None).0, StatusCode::NOT_FOUND);
    let (status, _, headers) = get(&format!("{gw}/ipfs/{dir}?format=car"), None);
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with(CAR));
}

#[test]
fn the_gateway_limits_requests_per_address() {
    let gateway = json!({
        "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0",
        "rate_limit_per_address": { "per_second": 0.01, "burst": 3 },
    });
    let daemon = Daemon::start(gateway_config(gateway, json!({})));
    let probe = format!("{}/ipfs/bafkqaaa", daemon.gateway);
    let raw = Some("application/vnd.ipld.raw");
    for _ in 0..3 {
        assert_eq!(get(&probe, raw).0, StatusCode::OK);
    }
    let (status, body, headers) = get(&probe, raw);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After: {wait}");
}
