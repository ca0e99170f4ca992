//! Which peers hold a new pin: IPFS Cluster's balanced allocation over the
//! metrics each peer reports. Read [`allocate`] first.
//!
//! The user's allocations come first (when those peers are up), then the
//! other peers in the order `allocate_by` gives: each `tag:<name>` spreads
//! the pin over the tag's values (one peer per value before a second), and
//! `freespace` prefers the peers with the most room, `pinqueue` the least
//! busy. A pin goes to at most `replication_factor_max` peers and is refused
//! when fewer than `replication_factor_min` are available.

use std::collections::BTreeMap;

use pincluster_model::PinOptions;

/// A peer that may take pins: up, with fresh metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Its peer ID, as allocations name it.
    pub peer_id: String,
    /// Bytes free for blocks.
    pub freespace: u64,
    /// Pins waiting or being fetched there.
    pub pinqueue: u64,
    /// Its tags (`cluster.tags`).
    pub tags: BTreeMap<String, String>,
}

/// The peers that should hold a new pin with `options`, in preference order;
/// empty means every peer (replication factor -1). The error says why the
/// pin cannot be placed.
pub fn allocate(options: &PinOptions, candidates: &[Candidate], allocate_by: &[String]) -> Result<Vec<String>, String> {
    let (min, max) = (options.replication_min, options.replication_max);
    if min == -1 {
        return Ok(Vec::new());
    }
    let min = usize::try_from(min).unwrap_or(0).max(1);
    let max = if max == -1 { candidates.len() } else { usize::try_from(max).unwrap_or(0).max(min) };
    if candidates.len() < min {
        return Err(format!(
            "not enough peers to allocate the pin: it needs at least {min}, and {} can take it",
            candidates.len()
        ));
    }
    let mut chosen: Vec<&Candidate> = Vec::new();
    for wanted in &options.user_allocations {
        if let Some(c) = candidates.iter().find(|c| &c.peer_id == wanted) {
            if chosen.len() < max && !chosen.iter().any(|p| p.peer_id == c.peer_id) {
                chosen.push(c);
            }
        }
    }
    let mut rest: Vec<&Candidate> =
        candidates.iter().filter(|c| !chosen.iter().any(|p| p.peer_id == c.peer_id)).collect();
    rest.sort_by(|a, b| compare(a, b, allocate_by));
    let tags: Vec<&str> = allocate_by.iter().filter_map(|k| k.strip_prefix("tag:")).collect();
    while chosen.len() < max && !rest.is_empty() {
        // The first candidate whose tag values are the least used so far.
        let used = |c: &Candidate| -> Vec<usize> {
            tags.iter()
                .map(|t| {
                    let value = c.tags.get(*t);
                    chosen.iter().filter(|p| p.tags.get(*t) == value).count()
                })
                .collect()
        };
        let best = (0..rest.len()).min_by_key(|&i| (used(rest[i]), i)).unwrap_or(0);
        chosen.push(rest.remove(best));
    }
    Ok(chosen.into_iter().map(|c| c.peer_id.clone()).collect())
}

/// Orders two candidates by the metrics of `allocate_by` (tags are handled
/// when choosing), then by peer ID so that the order is total.
fn compare(a: &Candidate, b: &Candidate, allocate_by: &[String]) -> std::cmp::Ordering {
    for key in allocate_by {
        let order = match key.as_str() {
            "freespace" => b.freespace.cmp(&a.freespace),
            "pinqueue" => a.pinqueue.cmp(&b.pinqueue),
            _ => std::cmp::Ordering::Equal,
        };
        if order.is_ne() {
            return order;
        }
    }
    a.peer_id.cmp(&b.peer_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn peer(id: &str, free: u64, group: &str) -> Candidate {
        Candidate {
            peer_id: id.into(),
            freespace: free,
            pinqueue: 0,
            tags: BTreeMap::from([("group".into(), group.into())]),
        }
    }

    fn rf(min: i32, max: i32) -> PinOptions {
        PinOptions { replication_min: min, replication_max: max, ..PinOptions::default() }
    }

    const BY: &[&str] = &["tag:group", "freespace"];

    fn by() -> Vec<String> {
        BY.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn everywhere_is_an_empty_allocation() {
        assert_eq!(allocate(&rf(-1, -1), &[peer("a", 1, "x")], &by()), Ok(Vec::new()));
    }

    #[test]
    fn most_free_space_first_spread_over_groups() {
        let peers = [peer("a", 10, "x"), peer("b", 30, "x"), peer("c", 20, "y"), peer("d", 5, "y")];
        assert_eq!(allocate(&rf(2, 2), &peers, &by()).unwrap(), ["b", "c"]);
        assert_eq!(allocate(&rf(1, 3), &peers, &by()).unwrap(), ["b", "c", "a"]);
        assert_eq!(allocate(&rf(2, -1), &peers, &by()).unwrap().len(), 4);
    }

    #[test]
    fn user_allocations_come_first_when_available() {
        let peers = [peer("a", 10, "x"), peer("b", 30, "x"), peer("c", 20, "y")];
        let mut options = rf(2, 2);
        options.user_allocations = vec!["a".into(), "gone".into()];
        assert_eq!(allocate(&options, &peers, &by()).unwrap(), ["a", "c"]);
    }

    #[test]
    fn too_few_peers_is_refused_with_the_numbers() {
        let error = allocate(&rf(3, 3), &[peer("a", 1, "x"), peer("b", 1, "x")], &by()).unwrap_err();
        assert!(error.contains("at least 3") && error.contains("2 can take it"), "{error}");
    }
}
