//! Query strings of the REST API: pin options (§2.4 of the Cluster notes) and
//! the `filter`/`cids`/`local` listing options. Read [`PinRequest::parse`] first.
//!
//! The Go client sends every option even when empty (`name=`, `shard-size=0`,
//! `user-allocations=`…), so an empty value always means "not given". Unknown
//! keys are ignored, as Cluster does; a value that does not parse is a 400.

use std::collections::BTreeMap;
use std::time::Duration;

use pincluster_model::{Cid, Multiaddr, PinMode, PinStatus, StatusSet, Timestamp};
use pincluster_tracker::{ImportOptions, MAX_CHUNK_SIZE};

use crate::error::ApiError;

/// The shortest `expire-in` Cluster accepts.
const MIN_EXPIRE_IN: Duration = Duration::from_secs(1);

/// Pin options as given in the query string, before defaults are applied.
#[derive(Debug, Default)]
pub(crate) struct PinRequest {
    pub(crate) name: Option<String>,
    pub(crate) mode: Option<PinMode>,
    /// `(min, max)` after `replication`, `replication-min` and
    /// `replication-max`; 0 means "the default" (everywhere, -1).
    pub(crate) replication: (i32, i32),
    pub(crate) user_allocations: Vec<String>,
    pub(crate) expire_at: Option<Timestamp>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) pin_update: Option<Cid>,
    pub(crate) origins: Vec<Multiaddr>,
}

impl PinRequest {
    /// Parses the pin options of `POST /pins/{cid}`; `now` checks expiry times.
    pub(crate) fn parse(query: &str, now: Timestamp) -> Result<PinRequest, ApiError> {
        let mut request = PinRequest::default();
        let mut replication: Option<i32> = None;
        let mut min: Option<i32> = None;
        let mut max: Option<i32> = None;
        let mut expire_at: Option<Timestamp> = None;
        let mut expire_in: Option<Duration> = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            if let Some(meta_key) = key.strip_prefix("meta-") {
                if meta_key.is_empty() {
                    return Err(ApiError::bad("meta-: the metadata key is empty"));
                }
                request.meta.insert(meta_key.to_string(), value.to_string());
                continue;
            }
            if value.is_empty() {
                continue;
            }
            match key.as_ref() {
                "name" => request.name = Some(value.to_string()),
                "mode" => request.mode = Some(parse_mode(value)?),
                "replication" => replication = Some(parse_int("replication", value)?),
                "replication-min" => min = Some(parse_int("replication-min", value)?),
                "replication-max" => max = Some(parse_int("replication-max", value)?),
                "shard-size" => {
                    // Sharding applies to /add only; a pin accepts and ignores the size.
                    value
                        .parse::<u64>()
                        .map_err(|_| ApiError::bad(format!("shard-size: {value:?} is not a non-negative integer")))?;
                }
                "user-allocations" => request.user_allocations = parse_peers("user-allocations", value)?,
                "expire-at" => expire_at = parse_expire_at(value, now)?,
                "expire-in" => expire_in = Some(parse_expire_in(value)?),
                "pin-update" => {
                    request.pin_update = Some(parse_cid(value).map_err(|e| ApiError::bad(format!("pin-update: {e}")))?)
                }
                "origins" => request.origins = parse_origins(value)?,
                "local" => {
                    parse_bool("local", value)?;
                }
                _ => {}
            }
        }
        let (mut rmin, mut rmax) = (0, 0);
        if let Some(both) = replication {
            (rmin, rmax) = (both, both);
        }
        if let Some(m) = min {
            rmin = m;
        }
        if let Some(m) = max {
            rmax = m;
        }
        request.replication = (rmin, rmax);
        request.expire_at = match (expire_at, expire_in) {
            (Some(at), _) => Some(at),
            (None, Some(after)) => {
                let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                Some(Timestamp(now.0.saturating_add(ms)))
            }
            (None, None) => None,
        };
        Ok(request)
    }
}

/// Replication factors with `defaults` for those not given (0), checked for a cluster of `peers`.
pub(crate) fn replication_factors(
    (min, max): (i32, i32),
    defaults: (i32, i32),
    peers: usize,
) -> Result<(i32, i32), ApiError> {
    let min = if min == 0 { defaults.0 } else { min };
    let max = if max == 0 { defaults.1 } else { max };
    if min < -1 || max < -1 {
        return Err(ApiError::bad("replication factors must be -1 (every peer) or positive"));
    }
    if (min == -1) != (max == -1) {
        return Err(ApiError::bad(format!(
            "replication-min ({min}) and replication-max ({max}) must both be -1 (every peer) or both positive"
        )));
    }
    if min > max {
        return Err(ApiError::bad(format!("replication-min ({min}) is larger than replication-max ({max})")));
    }
    let peers_i32 = i32::try_from(peers).unwrap_or(i32::MAX);
    if min > peers_i32 {
        return Err(ApiError::bad(format!(
            "not enough peers to allocate the pin: needed at least {min}, wanted at most {max}, this cluster has {peers}"
        )));
    }
    Ok((min, max))
}

fn parse_mode(value: &str) -> Result<PinMode, ApiError> {
    match value {
        "recursive" => Ok(PinMode::Recursive),
        "direct" => Ok(PinMode::Direct),
        other => Err(ApiError::bad(format!("mode: {other:?} is not one of recursive, direct"))),
    }
}

fn parse_int(key: &str, value: &str) -> Result<i32, ApiError> {
    value.parse().map_err(|_| ApiError::bad(format!("{key}: {value:?} is not an integer")))
}

/// `true`/`false` in the spellings Go's `strconv.ParseBool` accepts.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ApiError::bad(format!("{key}: {other:?} is not a boolean"))),
    }
}

/// Parses a CID as it appears in paths and query strings.
pub(crate) fn parse_cid(text: &str) -> Result<Cid, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("error decoding Cid: empty CID".into());
    }
    Cid::try_from(text).map_err(|e| format!("error decoding Cid: {text:?}: {e}"))
}

/// Checks that `text` is a libp2p peer ID and returns it in canonical form.
pub(crate) fn parse_peer_id(text: &str) -> Result<String, String> {
    let addr: Multiaddr = format!("/p2p/{text}").parse().map_err(|_| format!("{text:?} is not a valid peer ID"))?;
    match addr.iter().next() {
        Some(multiaddr::Protocol::P2p(id)) => Ok(id.to_string()),
        _ => Err(format!("{text:?} is not a valid peer ID")),
    }
}

fn parse_peers(key: &str, value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_peer_id(p).map_err(|e| ApiError::bad(format!("{key}: {e}"))))
        .collect()
}

fn parse_origins(value: &str) -> Result<Vec<Multiaddr>, ApiError> {
    let mut origins: Vec<Multiaddr> = Vec::new();
    for text in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addr: Multiaddr =
            text.parse().map_err(|e| ApiError::bad(format!("origins: {text:?} is not a multiaddress: {e}")))?;
        if !addr.iter().any(|p| matches!(p, multiaddr::Protocol::P2p(_))) {
            return Err(ApiError::bad(format!("origins: {text:?} has no /p2p/<peer id> part")));
        }
        if !origins.contains(&addr) {
            origins.push(addr);
        }
    }
    if origins.len() > pincluster_model::MAX_ORIGINS {
        return Err(ApiError::bad(format!("origins: more than {} entries", pincluster_model::MAX_ORIGINS)));
    }
    Ok(origins)
}

/// The zero `time.Time` Go clients may send for "no expiry".
const GO_ZERO_TIME_NANOS: i128 = -62_135_596_800 * 1_000_000_000;

fn parse_expire_at(value: &str, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    let nanos = Timestamp::parse_rfc3339_nanos(value)
        .ok_or_else(|| ApiError::bad(format!("expire-at: {value:?} is not an RFC 3339 time")))?;
    if nanos <= GO_ZERO_TIME_NANOS {
        return Ok(None);
    }
    let at = Timestamp::ceil_nanos(nanos);
    if at <= now {
        return Err(ApiError::bad(format!("expire-at: {value} is not in the future")));
    }
    Ok(Some(at))
}

fn parse_expire_in(value: &str) -> Result<Duration, ApiError> {
    let duration = parse_go_duration(value)
        .ok_or_else(|| ApiError::bad(format!("expire-in: {value:?} is not a duration like 90s, 1h30m or 2.5h")))?;
    if duration < MIN_EXPIRE_IN {
        return Err(ApiError::bad(format!("expire-in: {value} is shorter than 1s")));
    }
    Ok(duration)
}

/// Parses a Go duration string (`300ms`, `1.5h`, `2h45m10s`). Negative and
/// unit-less values (other than `0`) are refused.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    if !total.is_finite() || total > 1e11 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// The `filter` of `GET /pins`: a CSV of Cluster tracker status names.
///
/// Our four statuses are `pin_queued`, `pinning`, `pinned` and `pin_error`;
/// the other names are known but match nothing here. Unknown names are
/// ignored; a filter made only of unknown names is refused.
pub(crate) fn parse_status_filter(value: &str) -> Result<StatusSet, ApiError> {
    let mut set = StatusSet::EMPTY;
    let mut known = 0usize;
    let mut given = 0usize;
    for name in value.split(',').map(|n| n.trim()).filter(|n| !n.is_empty()) {
        given += 1;
        let matches: &[PinStatus] = match name {
            "undefined" => &PinStatus::ALL,
            "pin_error" | "error" => &[PinStatus::Failed],
            "pin_queued" | "queued" => &[PinStatus::Queued],
            "pinning" => &[PinStatus::Pinning],
            "pinned" => &[PinStatus::Pinned],
            "cluster_error"
            | "unpin_error"
            | "unpinning"
            | "unpinned"
            | "remote"
            | "unpin_queued"
            | "sharded"
            | "unexpectedly_unpinned" => &[],
            _ => continue,
        };
        known += 1;
        for status in matches {
            set.insert(*status);
        }
    }
    if given == 0 {
        return Ok(StatusSet::ALL);
    }
    if known == 0 {
        return Err(ApiError::bad(format!("invalid filter value: {value:?}")));
    }
    Ok(set)
}

/// The options of `GET /pins`.
#[derive(Debug)]
pub(crate) struct StatusQuery {
    pub(crate) filter: StatusSet,
    /// Per-CID mode: these CIDs in this order; `filter` is ignored.
    pub(crate) cids: Option<Vec<Cid>>,
}

impl StatusQuery {
    pub(crate) fn parse(query: &str) -> Result<StatusQuery, ApiError> {
        let mut filter = StatusSet::ALL;
        let mut cids = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "filter" => filter = parse_status_filter(value)?,
                "cids" if !value.is_empty() => {
                    let list = value
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| parse_cid(c).map_err(ApiError::bad))
                        .collect::<Result<Vec<_>, _>>()?;
                    cids = Some(list);
                }
                "local" if !value.is_empty() => {
                    parse_bool("local", value)?;
                }
                _ => {}
            }
        }
        Ok(StatusQuery { filter, cids })
    }
}

/// What `POST /add` does with the upload, from its query string (§2.5 of the
/// Cluster notes). Pin options come from the same query.
#[derive(Debug)]
pub(crate) struct AddRequest {
    pub(crate) pin: PinRequest,
    pub(crate) import: ImportOptions,
    /// `format=car`: the upload is one CAR file whose root is pinned.
    pub(crate) car: bool,
    /// `stream-channels` (default true): NDJSON as produced, else one JSON array.
    pub(crate) stream: bool,
    pub(crate) no_pin: bool,
    /// Keep entries below the top level whose name starts with a dot.
    pub(crate) hidden: bool,
    /// Also send `{"name","bytes"}` progress objects while a file is read.
    pub(crate) progress: bool,
}

impl AddRequest {
    /// Parses the options of `POST /add`. Unknown keys are ignored; the
    /// aliases the Cluster JS client sends (`wrap`, `no-copy`) are accepted.
    pub(crate) fn parse(query: &str, now: Timestamp) -> Result<AddRequest, ApiError> {
        let pin = PinRequest::parse(query, now)?;
        let defaults = ImportOptions::default();
        let (mut chunk_size, mut cid_version, mut wrap) =
            (defaults.chunk_size, defaults.cid_version, defaults.wrap_with_directory);
        let mut raw_leaves = None;
        let mut request = AddRequest {
            pin,
            import: defaults,
            car: false,
            stream: true,
            no_pin: false,
            hidden: false,
            progress: false,
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let key = key.as_ref();
            match key {
                "chunker" => chunk_size = parse_chunker(value)?,
                "raw-leaves" => raw_leaves = Some(parse_bool(key, value)?),
                "cid-version" => {
                    cid_version = match value {
                        "0" => 0,
                        "1" => 1,
                        other => return Err(ApiError::bad(format!("cid-version: {other:?} is not 0 or 1"))),
                    }
                }
                "wrap-with-directory" | "wrap" => wrap = parse_bool(key, value)?,
                "hidden" => request.hidden = parse_bool(key, value)?,
                "stream-channels" => request.stream = parse_bool(key, value)?,
                "no-pin" => request.no_pin = parse_bool(key, value)?,
                "progress" => request.progress = parse_bool(key, value)?,
                "format" => {
                    request.car = match value {
                        "unixfs" => false,
                        "car" => true,
                        other => return Err(ApiError::bad(format!("format: {other:?} is not one of unixfs, car"))),
                    }
                }
                "layout" => match value {
                    "balanced" => {}
                    "trickle" => return Err(ApiError::bad("layout: trickle is not supported; use balanced")),
                    other => return Err(ApiError::bad(format!("layout: {other:?} is not one of balanced, trickle"))),
                },
                "hash" if value != "sha2-256" => {
                    return Err(ApiError::bad(format!("hash: {value:?} is not supported; use sha2-256")))
                }
                "shard" if parse_bool(key, value)? => {
                    return Err(ApiError::bad("shard: sharded DAGs need several cluster peers; this cluster has one"))
                }
                "nocopy" | "no-copy" if parse_bool(key, value)? => {
                    return Err(ApiError::bad(format!(
                        "{key}: the filestore is not supported; blocks are always copied"
                    )))
                }
                "recursive" | "local" | "quiet" | "quieter" | "silent" => {
                    parse_bool(key, value)?;
                }
                _ => {}
            }
        }
        // Kubo's reading: CIDv1 implies raw leaves unless they are turned off.
        request.import =
            ImportOptions { chunk_size, wrap_with_directory: wrap, ..ImportOptions::kubo(cid_version, raw_leaves) };
        Ok(request)
    }
}

/// `size-N` with 1 <= N <= 1 MiB; Kubo's other chunkers are refused.
fn parse_chunker(value: &str) -> Result<usize, ApiError> {
    let Some(size) = value.strip_prefix("size-") else {
        let name = value.split('-').next().unwrap_or(value);
        return Err(ApiError::bad(format!("chunker: {name:?} is not supported; use size-N (bytes)")));
    };
    match size.parse::<usize>() {
        Ok(n) if (1..=MAX_CHUNK_SIZE).contains(&n) => Ok(n),
        _ => Err(ApiError::bad(format!("chunker: {value:?}: the size must be between 1 and {MAX_CHUNK_SIZE} bytes"))),
    }
}

/// Checks `local` where it is the only option (`GET /pins/{cid}`, recover, gc).
pub(crate) fn check_local_only(query: &str) -> Result<(), ApiError> {
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "local" && !value.trim().is_empty() {
            parse_bool("local", value.trim())?;
        }
    }
    Ok(())
}

/// The `filter` of `GET /allocations`: whether plain pins are included.
/// Every pin here has type `pin`; the other types exist only with sharding.
pub(crate) fn parse_allocation_filter(query: &str) -> Result<bool, ApiError> {
    let mut include_pins = true;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "filter" {
            continue;
        }
        let names: Vec<&str> = value.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            include_pins = true;
            continue;
        }
        include_pins = false;
        for name in names {
            match name {
                "pin" | "all" => include_pins = true,
                "meta-pin" | "clusterdag-pin" | "shard-pin" => {}
                _ => return Err(ApiError::bad(format!("invalid filter value: {name:?}"))),
            }
        }
    }
    Ok(include_pins)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "-1s", "1x", "h", "1h30", "."] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_values_are_not_given() {
        let now = Timestamp(1_000_000);
        let q = "name=&mode=&replication-min=0&replication-max=0&shard-size=0&user-allocations=&expire-at=&pin-update=&origins=";
        let r = PinRequest::parse(q, now).unwrap();
        assert_eq!(r.name, None);
        assert_eq!(r.replication, (0, 0));
        assert!(r.expire_at.is_none() && r.pin_update.is_none() && r.origins.is_empty());
        assert_eq!(replication_factors(r.replication, (-1, -1), 1).unwrap(), (-1, -1));
    }

    #[test]
    fn status_filters() {
        assert_eq!(parse_status_filter("").unwrap(), StatusSet::ALL);
        assert_eq!(parse_status_filter("pinned, bogus").unwrap(), StatusSet::only(PinStatus::Pinned));
        assert!(parse_status_filter("bogus").is_err());
        assert!(parse_status_filter("unpinned").unwrap().is_empty());
        assert!(parse_status_filter("error").unwrap().contains(PinStatus::Failed));
    }

    #[test]
    fn add_options() {
        let now = Timestamp(1_000_000);
        let r = AddRequest::parse("", now).unwrap();
        assert!(r.stream && !r.car && !r.no_pin && !r.import.raw_leaves);
        assert_eq!((r.import.cid_version, r.import.chunk_size), (0, 262_144));
        let r = AddRequest::parse("cid-version=1&wrap=true&stream-channels=false&chunker=size-1024", now).unwrap();
        assert!(r.import.raw_leaves && r.import.wrap_with_directory && !r.stream);
        assert_eq!(r.import.chunk_size, 1024);
        let r = AddRequest::parse("cid-version=1&raw-leaves=false&format=car&no-copy=false", now).unwrap();
        assert!(!r.import.raw_leaves && r.car);
        for bad in [
            "chunker=rabin-1-2-3",
            "chunker=size-0",
            "chunker=size-2000000",
            "cid-version=2",
            "layout=trickle",
            "hash=blake3",
            "format=tar",
            "nocopy=true",
            "shard=true",
            "raw-leaves=maybe",
        ] {
            assert!(AddRequest::parse(bad, now).is_err(), "{bad}");
        }
    }
}
