//! Human-readable renderings of the REST API's objects, in the layout of
//! `ipfs-cluster-ctl`'s text output.

use std::fmt::Write as _;

use serde_json::Value;

fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// An `ID`: the peer, its addresses and its IPFS node.
pub(crate) fn id(v: &Value) -> String {
    let others = strings(v, "cluster_peers").len().saturating_sub(1);
    let mut out = format!("{} | {} | Sees {others} other peers", s(v, "id"), s(v, "peername"));
    if !s(v, "role").is_empty() {
        let health = if s(v, "error").is_empty() { "up" } else { "down" };
        let _ = write!(out, "\n  > Role: {}, {health}", s(v, "role"));
    }
    let _ = write!(out, "\n  > Addresses:");
    for a in strings(v, "addresses") {
        let _ = write!(out, "\n    - {a}");
    }
    let ipfs = &v["ipfs"];
    let _ = write!(out, "\n  > IPFS: {}", s(ipfs, "id"));
    for a in strings(ipfs, "addresses") {
        let _ = write!(out, "\n    - {a}");
    }
    if !s(v, "error").is_empty() {
        let _ = write!(out, "\n  > Error: {}", s(v, "error"));
    }
    out
}

/// A `Pin`, one line.
pub(crate) fn pin(v: &Value) -> String {
    let rmin = v["replication_factor_min"].as_i64().unwrap_or(-1);
    let rmax = v["replication_factor_max"].as_i64().unwrap_or(-1);
    let repl = if rmin == -1 { "-1".to_string() } else { format!("{rmin}--{rmax}") };
    let allocations = strings(v, "allocations");
    let allocations =
        if allocations.is_empty() { "[everywhere]".to_string() } else { format!("[{}]", allocations.join(" ")) };
    let mode = if s(v, "mode") == "direct" { "Direct" } else { "Recursive" };
    let metadata = match v["metadata"].as_object() {
        Some(m) if !m.is_empty() => "yes",
        _ => "no",
    };
    let expire = match s(v, "expire_at") {
        "" | "0001-01-01T00:00:00Z" => "∞",
        at => at,
    };
    format!(
        "{} | {} | {} | Repl. Factor: {repl} | Allocations: {allocations} | {mode} | Metadata: {metadata} | Exp: {expire} | Added: {}",
        s(v, "cid"),
        s(v, "name"),
        s(v, "type").to_uppercase(),
        s(v, "timestamp"),
    )
}

/// A `GlobalPinInfo`: the CID and its status on each peer.
pub(crate) fn status(v: &Value) -> String {
    let mut out = format!("{} | {}:", s(v, "cid"), s(v, "name"));
    if let Some(peers) = v["peer_map"].as_object() {
        for (peer, info) in peers {
            let name = if s(info, "peername").is_empty() { peer.as_str() } else { s(info, "peername") };
            let _ = write!(
                out,
                "\n    > {name:<16} : {} | {} | Attempts: {} | Priority: {}",
                s(info, "status").to_uppercase(),
                s(info, "timestamp"),
                info["attempt_count"].as_u64().unwrap_or(0),
                info["priority_pin"].as_bool().unwrap_or(false),
            );
            if !s(info, "error").is_empty() {
                let _ = write!(out, " | Error: {}", s(info, "error"));
            }
        }
    }
    out
}

/// The statuses of every peer of a `GlobalPinInfo`, comma-separated.
pub(crate) fn status_names(v: &Value) -> String {
    v["peer_map"]
        .as_object()
        .map(|peers| peers.values().map(|i| s(i, "status").to_string()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Whether no peer of a `GlobalPinInfo` is still queued or pinning.
pub(crate) fn settled(v: &Value) -> bool {
    v["peer_map"]
        .as_object()
        .is_some_and(|peers| peers.values().all(|i| !matches!(s(i, "status"), "pin_queued" | "pinning")))
}

/// A list of strings, one per line.
pub(crate) fn lines(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

/// A list of metrics.
pub(crate) fn metrics(v: &Value) -> String {
    let items = v.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no metrics".to_string();
    }
    items
        .iter()
        .map(|m| format!("{} | {}: {} | valid: {}", s(m, "peer"), s(m, "name"), s(m, "value"), m["valid"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A list of alerts.
pub(crate) fn alerts(v: &Value) -> String {
    let items = v.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no alerts".to_string();
    }
    items
        .iter()
        .map(|a| format!("{}: {} expired at {}", s(a, "peer"), s(a, "name"), a["expire"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The connection graph, as an adjacency list.
pub(crate) fn graph(v: &Value) -> String {
    let mut out = format!("cluster {}", s(v, "cluster_id"));
    if let Some(links) = v["cluster_links"].as_object() {
        for (peer, to) in links {
            let to: Vec<&str> = to.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let name = v["id_to_peername"][peer].as_str().unwrap_or_default();
            let _ = write!(out, "\n  {peer} ({name}) -> [{}]", to.join(", "));
        }
    }
    out
}

/// Bandwidth per protocol.
pub(crate) fn bandwidth(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(proto, b)| {
                format!(
                    "{proto}: in {} out {} (rate in {} out {})",
                    b["total_in"], b["total_out"], b["rate_in"], b["rate_out"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "no traffic".to_string(),
    }
}
