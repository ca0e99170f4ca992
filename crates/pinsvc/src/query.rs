//! `GET /pins` parameters: parsed from the raw query string (comma lists that
//! may arrive percent-encoded, `meta` as JSON or as `meta[key]=value`), checked
//! against the spec's limits, and turned into a pinset query.

use std::collections::BTreeMap;

use pincluster_model::{Cid, NameMatch, PinStatus, StatusSet, Timestamp, MAX_NAME_CHARS};
use pincluster_state::Query;

use crate::error::ApiError;
use crate::wire::parse_cid;

const MAX_CIDS: usize = 10;
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 10;
/// Most query parameters read from one request.
const MAX_PARAMS: usize = 1100;

/// Parses the query string of `GET /pins`.
pub(crate) fn parse(raw: &str) -> Result<Query, ApiError> {
    let mut cids: Option<Vec<Cid>> = None;
    let mut name: Option<String> = None;
    let mut name_match: Option<NameMatch> = None;
    let mut statuses: Option<StatusSet> = None;
    let mut before: Option<Timestamp> = None;
    let mut after: Option<Timestamp> = None;
    let mut limit = DEFAULT_LIMIT;
    let mut meta: Option<BTreeMap<String, String>> = None;

    for (count, (key, value)) in form_urlencoded::parse(raw.as_bytes()).enumerate() {
        if count >= MAX_PARAMS {
            return Err(ApiError::bad(format!("more than {MAX_PARAMS} query parameters")));
        }
        match key.as_ref() {
            "cid" => {
                let list = cids.get_or_insert_with(Vec::new);
                for item in split_list("cid", &value)? {
                    let cid = parse_cid(item).map_err(|e| ApiError::bad(format!("cid: {e}")))?;
                    if list.contains(&cid) {
                        return Err(ApiError::bad(format!("cid: {item} is listed twice")));
                    }
                    list.push(cid);
                }
                if list.len() > MAX_CIDS {
                    return Err(ApiError::bad(format!("cid: more than {MAX_CIDS} CIDs")));
                }
            }
            "name" => {
                if value.chars().count() > MAX_NAME_CHARS {
                    return Err(ApiError::bad(format!("name: longer than {MAX_NAME_CHARS} characters")));
                }
                name = Some(value.into_owned());
            }
            "match" => name_match = Some(parse_match(&value)?),
            "status" => {
                let set = statuses.get_or_insert(StatusSet::EMPTY);
                for item in split_list("status", &value)? {
                    let status: PinStatus = item.parse().map_err(|()| {
                        ApiError::bad(format!(
                            "status: unknown status {item:?} (expected queued, pinning, pinned or failed)"
                        ))
                    })?;
                    if set.contains(status) {
                        return Err(ApiError::bad(format!("status: {item} is listed twice")));
                    }
                    set.insert(status);
                }
            }
            "before" => before = Some(Timestamp::ceil_nanos(parse_time("before", &value)?)),
            "after" => after = Some(Timestamp::first_after_nanos(parse_time("after", &value)?)),
            "limit" => limit = parse_limit(&value)?,
            "meta" => {
                let parsed: BTreeMap<String, String> = serde_json::from_str(&value)
                    .map_err(|e| ApiError::bad(format!("meta: must be a JSON object of strings to strings ({e})")))?;
                meta.get_or_insert_with(BTreeMap::new).extend(parsed);
            }
            other => {
                // The official JS client sends a meta object as `meta[key]=value`.
                if let Some(meta_key) = other.strip_prefix("meta[").and_then(|k| k.strip_suffix(']')) {
                    meta.get_or_insert_with(BTreeMap::new).insert(meta_key.to_string(), value.into_owned());
                }
            }
        }
    }

    let filtered = cids.is_some() || name.is_some() || meta.is_some() || before.is_some() || after.is_some();
    // The spec's default: pinned only, but only when no other filter is given.
    let statuses = match statuses {
        Some(set) => set,
        None if filtered => StatusSet::ALL,
        None => StatusSet::only(PinStatus::Pinned),
    };
    Ok(Query {
        cids,
        name: name.map(|n| (n, name_match.unwrap_or_default())),
        statuses,
        // `before` is exclusive: ceil keeps "created < before" exact at ms precision.
        before,
        // `after` is exclusive too: the first ms strictly after the instant, minus one.
        after: after.map(|t| Timestamp(t.0.saturating_sub(1))),
        meta: meta.unwrap_or_default(),
        limit,
    })
}

/// Whether answering `query` costs about one small page: counts come from
/// counters and no filter makes the pinset be scanned. Such queries are
/// answered on the HTTP worker; the others on the blocking pool.
pub(crate) fn bounded_by_page(query: &Query) -> bool {
    query.limit <= 100
        && query.name.is_none()
        && query.meta.is_empty()
        && query.before.is_none()
        && query.after.is_none()
}

/// Splits a comma list (already percent-decoded once by the form parser; a
/// client that encoded twice sends `%2C`, decoded here too).
fn split_list<'a>(param: &str, value: &'a str) -> Result<Vec<&'a str>, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad(format!("{param}: empty list")));
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(ApiError::bad(format!("{param}: empty item in list {value:?}")));
    }
    Ok(items)
}

fn parse_match(value: &str) -> Result<NameMatch, ApiError> {
    match value {
        "exact" => Ok(NameMatch::Exact),
        "iexact" => Ok(NameMatch::IExact),
        "partial" => Ok(NameMatch::Partial),
        "ipartial" => Ok(NameMatch::IPartial),
        other => Err(ApiError::bad(format!(
            "match: unknown strategy {other:?} (expected exact, iexact, partial or ipartial)"
        ))),
    }
}

fn parse_time(param: &str, value: &str) -> Result<i128, ApiError> {
    Timestamp::parse_rfc3339_nanos(value)
        .ok_or_else(|| ApiError::bad(format!("{param}: {value:?} is not an RFC 3339 date-time")))
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        _ => Err(ApiError::bad(format!("limit: {value:?} is not an integer from 1 to {MAX_LIMIT}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_status_only_without_filters() {
        assert_eq!(parse("").map(|q| q.statuses).ok(), Some(StatusSet::only(PinStatus::Pinned)));
        assert_eq!(parse("limit=5").map(|q| q.statuses).ok(), Some(StatusSet::only(PinStatus::Pinned)));
        assert_eq!(parse("name=x").map(|q| q.statuses).ok(), Some(StatusSet::ALL));
    }

    #[test]
    fn percent_encoded_commas_and_meta_forms() {
        let q = parse("status=failed%2Cpinned&meta%5Bapp%5D=1&meta=%7B%22b%22%3A%222%22%7D").ok();
        let q = q.expect("parses");
        assert!(q.statuses.contains(PinStatus::Failed) && q.statuses.contains(PinStatus::Pinned));
        assert_eq!(q.meta.len(), 2);
    }

    #[test]
    fn time_bounds_are_strict_at_ms() {
        let q = parse("before=2020-07-27T17:32:28.276Z&after=2020-07-27T17:32:28.100000001Z").ok();
        let q = q.expect("parses");
        assert_eq!(q.before, Some(Timestamp(1_595_871_148_276)));
        // created > after  <=>  created >= 28.101  <=>  created > 28.100
        assert_eq!(q.after, Some(Timestamp(1_595_871_148_100)));
    }

    #[test]
    fn rejects_bad_values() {
        for raw in [
            "limit=0",
            "limit=1001",
            "status=done",
            "match=fuzzy",
            "before=yesterday",
            "meta=%5B%5D",
            "cid=xyz",
            "status=",
        ] {
            assert!(parse(raw).is_err(), "{raw}");
        }
    }
}
