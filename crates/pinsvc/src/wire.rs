//! The spec's JSON objects (`Pin`, `PinStatus`, `PinResults`) and their
//! explicit conversion to and from domain values. Optional fields without a
//! value are omitted, never `null` or `""`.

use std::collections::BTreeMap;

use pincluster_model::{Cid, Multiaddr, NewPin, PinOptions, PinStatus, PinView, MAX_ORIGINS};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The body of `POST /pins` and `POST /pins/{requestid}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinBody {
    cid: String,
    name: Option<String>,
    origins: Option<Vec<String>>,
    meta: Option<BTreeMap<String, String>>,
}

impl PinBody {
    /// Reads a `Pin` from JSON, naming the offending field on error.
    pub(crate) fn from_value(value: serde_json::Value) -> Result<PinBody, ApiError> {
        let Some(object) = value.as_object() else {
            return Err(ApiError::bad("the body must be a JSON Pin object"));
        };
        // Optional fields are omitted when absent; the spec has no `null` for them.
        for key in ["cid", "name", "origins", "meta"] {
            if object.get(key).is_some_and(serde_json::Value::is_null) {
                return Err(ApiError::bad(format!("{key}: must not be null (omit it instead)")));
            }
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::bad(format!("invalid Pin object: {inner}"))
            } else {
                ApiError::bad(format!("{path}: {inner}"))
            }
        })
    }

    /// The pin the body asks for, with these replication factors (min, max).
    pub(crate) fn into_domain(self, (replication_min, replication_max): (i32, i32)) -> Result<NewPin, ApiError> {
        let cid = parse_cid(&self.cid).map_err(|e| ApiError::bad(format!("cid: {e}")))?;
        let origins = self.origins.unwrap_or_default();
        if origins.len() > MAX_ORIGINS {
            return Err(ApiError::bad(format!("origins: more than {MAX_ORIGINS} entries")));
        }
        let mut parsed: Vec<Multiaddr> = Vec::with_capacity(origins.len());
        for (i, text) in origins.iter().enumerate() {
            let addr: Multiaddr =
                text.parse().map_err(|e| ApiError::bad(format!("origins[{i}]: invalid multiaddr {text:?}: {e}")))?;
            if parsed.contains(&addr) {
                return Err(ApiError::bad(format!("origins[{i}]: {text:?} is listed twice")));
            }
            parsed.push(addr);
        }
        let pin = NewPin {
            cid,
            name: self.name,
            meta: self.meta.unwrap_or_default(),
            origins: parsed,
            options: PinOptions { replication_min, replication_max, ..PinOptions::everywhere() },
        };
        pin.validate().map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(pin)
    }
}

/// Parses a CID as it appears in bodies, filters and request IDs.
pub(crate) fn parse_cid(text: &str) -> Result<Cid, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty CID".into());
    }
    Cid::try_from(text).map_err(|e| format!("invalid CID {text:?}: {e}"))
}

#[derive(Serialize)]
pub(crate) struct PinWire {
    cid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    origins: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct PinStatusWire {
    requestid: String,
    status: &'static str,
    created: String,
    pin: PinWire,
    delegates: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    info: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct PinResultsWire {
    pub(crate) count: u64,
    pub(crate) results: Vec<PinStatusWire>,
}

impl PinStatusWire {
    pub(crate) fn from_domain(view: PinView, delegates: &[String]) -> PinStatusWire {
        let PinView { user, cluster } = view;
        let mut info = BTreeMap::new();
        // The status is the cluster's summary; progress and size are this peer's.
        if cluster.summary == PinStatus::Failed {
            let local = cluster.error.as_ref().filter(|_| cluster.status == PinStatus::Failed);
            if let Some(error) = cluster.summary_error.as_ref().or(local) {
                info.insert("status_details".to_string(), error.clone());
            }
        }
        if let Some(size) = cluster.dag_size {
            info.insert("dag_size".to_string(), size.to_string());
        }
        if cluster.status == PinStatus::Pinning || cluster.progress.blocks > 0 {
            info.insert("fetched_blocks".to_string(), cluster.progress.blocks.to_string());
            info.insert("fetched_bytes".to_string(), cluster.progress.bytes.to_string());
        }
        if let Some(expire) = cluster.options.expire_at {
            info.insert("pinned_until".to_string(), expire.to_rfc3339());
        }
        info.retain(|_, v| !v.is_empty());
        let requestid = user.cid.to_string();
        PinStatusWire {
            requestid: requestid.clone(),
            status: cluster.summary.as_str(),
            created: user.created.to_rfc3339(),
            pin: PinWire {
                cid: requestid,
                name: user.name.filter(|n| !n.is_empty()),
                origins: user.origins.iter().map(ToString::to_string).collect(),
                meta: user.meta,
            },
            delegates: delegates.to_vec(),
            info,
        }
    }
}
