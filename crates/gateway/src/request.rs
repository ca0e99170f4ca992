//! What a gateway request asks for, from its path, query and `Accept` header: [`Ask`]. Parsing
//! only (no IO), so every refusal is decided before any block is read; tested here.

use cid::Cid;

use crate::range::EntityBytes;
use crate::GatewayError;

pub(crate) const RAW_TYPE: &str = "application/vnd.ipld.raw";
pub(crate) const CAR_TYPE: &str = "application/vnd.ipld.car";

/// Which blocks of the DAG a CAR response holds (`dag-scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The blocks of the path and the terminus block.
    Block,
    /// The path, then a whole UnixFS file (or the asked bytes of it) or the blocks that list a
    /// directory; other data as `Block`.
    Entity,
    /// The path, then the whole DAG below the terminus.
    All,
}

/// The parameters of a CAR response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CarAsk {
    pub(crate) scope: Scope,
    /// `dups=y`: a block is written each time the walk meets it.
    pub(crate) dups: bool,
    /// `entity-bytes`, which implies `Scope::Entity`.
    pub(crate) entity_bytes: Option<EntityBytes>,
}

/// The response format a request negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/vnd.ipld.raw`: one block.
    Raw,
    /// `application/vnd.ipld.car`, version 1, blocks in depth-first order.
    Car(CarAsk),
    /// The file's bytes with a content type (only with `deserialized_responses`).
    Plain,
}

/// A parsed request: the root CID, the path below it and the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    pub(crate) root: Cid,
    /// Path segments below the root, percent-decoded.
    pub(crate) segments: Vec<String>,
    pub(crate) format: Format,
}

/// Parses `/ipfs/{cid}[/{path}]` (the raw path, still percent-encoded), the query pairs and the
/// `Accept` header values.
pub(crate) fn parse(
    raw_path: &str,
    query: &[(String, String)],
    accept: &[&str],
    deserialized: bool,
) -> Result<Ask, GatewayError> {
    let rest =
        raw_path.strip_prefix("/ipfs/").ok_or_else(|| GatewayError::BadRequest("expected /ipfs/{cid}".into()))?;
    let mut parts = rest.split('/');
    let cid_text = percent_decode(parts.next().unwrap_or_default())?;
    let root: Cid = cid_text
        .parse()
        .map_err(|e: cid::Error| GatewayError::InvalidCid { text: cid_text.clone(), reason: e.to_string() })?;
    let mut segments = Vec::new();
    for part in parts.filter(|p| !p.is_empty()) {
        let segment = percent_decode(part)?;
        if segment == "." || segment == ".." {
            return Err(GatewayError::BadRequest(format!("invalid path segment {segment:?}")));
        }
        segments.push(segment);
    }
    let format = negotiate(query, accept, deserialized)?;
    if format == Format::Raw && !segments.is_empty() {
        return Err(GatewayError::BadRequest(
            "application/vnd.ipld.raw serves /ipfs/{cid} only: ask for a CAR to resolve a path".into(),
        ));
    }
    Ok(Ask { root, segments, format })
}

/// The last value of query parameter `name`.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// CAR parameters as the client gave them (URL or `Accept`); `None` = not given.
#[derive(Default)]
struct CarParams<'a> {
    version: Option<&'a str>,
    order: Option<&'a str>,
    dups: Option<&'a str>,
}

impl CarParams<'_> {
    /// Whether this gateway can write such a CAR (version 1, depth-first order).
    fn supported(&self) -> bool {
        matches!(self.version, None | Some("1"))
            && matches!(self.order, None | Some("dfs") | Some("unk"))
            && matches!(self.dups, None | Some("y") | Some("n"))
    }
}

/// Chooses the format: `?format=` wins over `Accept`; the `car-*` URL parameters win over the
/// `Accept` parameters.
fn negotiate(query: &[(String, String)], accept: &[&str], deserialized: bool) -> Result<Format, GatewayError> {
    let ranges = accept.iter().map(|v| parse_accept(v)).collect::<Result<Vec<_>, _>>()?;
    let mut ranges: Vec<MediaRange<'_>> = ranges.into_iter().flatten().filter(|r| r.q > 0.0).collect();
    // Highest quality first; equal ones keep the client's order.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    let url = CarParams {
        version: param(query, "car-version"),
        order: param(query, "car-order"),
        dups: param(query, "car-dups"),
    };
    if let Some(version) = url.version.filter(|v| *v != "1") {
        return Err(GatewayError::BadRequest(format!("unsupported car-version={version}: only 1 is served")));
    }
    if let Some(order) = url.order.filter(|v| !matches!(*v, "dfs" | "unk")) {
        return Err(GatewayError::BadRequest(format!("unsupported car-order={order}: dfs or unk")));
    }
    if let Some(dups) = url.dups.filter(|v| !matches!(*v, "y" | "n")) {
        return Err(GatewayError::BadRequest(format!("invalid car-dups={dups}: y or n")));
    }

    let mut car_from_accept: Option<CarParams<'_>> = None;
    let chosen = match param(query, "format") {
        Some("raw") => Some(Kind::Raw),
        Some("car") => {
            car_from_accept = ranges.iter().find(|r| r.essence == CAR_TYPE).map(|r| r.car_params());
            Some(Kind::Car)
        }
        Some(other) => {
            return Err(GatewayError::BadRequest(format!("unsupported format={other}: raw or car")));
        }
        None => {
            let mut chosen = None;
            for range in &ranges {
                match range.essence.as_str() {
                    RAW_TYPE => chosen = Some(Kind::Raw),
                    CAR_TYPE => {
                        let params = range.car_params();
                        if params.supported() {
                            car_from_accept = Some(params);
                            chosen = Some(Kind::Car);
                        }
                    }
                    "*/*" | "text/*" | "text/html" | "application/*" | "application/octet-stream" if deserialized => {
                        chosen = Some(Kind::Plain)
                    }
                    _ => {}
                }
                if chosen.is_some() {
                    break;
                }
            }
            if chosen.is_none() && ranges.is_empty() && deserialized {
                chosen = Some(Kind::Plain);
            }
            chosen
        }
    };
    let Some(kind) = chosen else {
        return Err(if ranges.is_empty() {
            GatewayError::BadRequest(format!(
                "ask for Accept: {RAW_TYPE} or {CAR_TYPE} (or ?format=raw|car): this gateway serves verifiable responses only"
            ))
        } else {
            GatewayError::NotAcceptable(format!(
                "none of the accepted types is served here: {RAW_TYPE}, or {CAR_TYPE} with version=1"
            ))
        });
    };
    Ok(match kind {
        Kind::Raw => Format::Raw,
        Kind::Plain => Format::Plain,
        Kind::Car => {
            let accept = car_from_accept.unwrap_or_default();
            let dups = url.dups.or(accept.dups) == Some("y");
            let entity_bytes = param(query, "entity-bytes").map(EntityBytes::parse).transpose()?;
            let scope = match param(query, "dag-scope") {
                None | Some("all") => Scope::All,
                Some("entity") => Scope::Entity,
                Some("block") => Scope::Block,
                Some(other) => {
                    return Err(GatewayError::BadRequest(format!("invalid dag-scope={other}: block, entity or all")))
                }
            };
            // entity-bytes implies (and narrows) the entity scope.
            let scope = if entity_bytes.is_some() { Scope::Entity } else { scope };
            Format::Car(CarAsk { scope, dups, entity_bytes })
        }
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Raw,
    Car,
    Plain,
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    /// `type/subtype`, lower case.
    essence: String,
    params: Vec<(String, &'a str)>,
    q: f32,
}

impl<'a> MediaRange<'a> {
    fn car_params(&self) -> CarParams<'a> {
        let get = |name: &str| self.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        CarParams { version: get("version"), order: get("order"), dups: get("dups") }
    }
}

/// The media ranges of one `Accept` value; malformed ones are a bad request.
fn parse_accept(value: &str) -> Result<Vec<MediaRange<'_>>, GatewayError> {
    let malformed = || GatewayError::BadRequest(format!("malformed Accept header {value:?}"));
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut parts = item.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        let (kind, sub) = essence.split_once('/').ok_or_else(malformed)?;
        let token =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b));
        if !token(kind) || !token(sub) {
            return Err(malformed());
        }
        let mut params = Vec::new();
        let mut q = 1.0f32;
        for param in parts.filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').ok_or_else(malformed)?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().trim_matches('"'));
            if name == "q" {
                q = value.parse().ok().filter(|q| (0.0..=1.0).contains(q)).ok_or_else(malformed)?;
            } else {
                params.push((name, value));
            }
        }
        out.push(MediaRange { essence: essence.to_ascii_lowercase(), params, q });
    }
    Ok(out)
}

/// Decodes `%XX` escapes of one path segment; the result must be UTF-8.
pub(crate) fn percent_decode(text: &str) -> Result<String, GatewayError> {
    let bad = || GatewayError::BadRequest(format!("invalid percent-encoding in {text:?}"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::Bound;

    const CID: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    fn ask(path: &str, query: &[(&str, &str)], accept: &[&str]) -> Result<Ask, GatewayError> {
        let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(path, &query, accept, false)
    }

    fn format(query: &[(&str, &str)], accept: &[&str]) -> Result<Format, GatewayError> {
        ask(&format!("/ipfs/{CID}"), query, accept).map(|a| a.format)
    }

    fn status(result: Result<impl std::fmt::Debug, GatewayError>) -> u16 {
        result.expect_err("must be refused").status().as_u16()
    }

    const ALL: Format = Format::Car(CarAsk { scope: Scope::All, dups: false, entity_bytes: None });

    #[test]
    fn format_comes_from_the_query_then_accept() {
        assert_eq!(format(&[("format", "raw")], &[]).ok(), Some(Format::Raw));
        assert_eq!(format(&[("format", "car")], &[]).ok(), Some(ALL));
        assert_eq!(format(&[("format", "raw")], &[CAR_TYPE]).ok(), Some(Format::Raw), "the URL wins");
        assert_eq!(format(&[], &[RAW_TYPE]).ok(), Some(Format::Raw));
        assert_eq!(format(&[], &["application/vnd.ipld.car; version=1; order=dfs; dups=n"]).ok(), Some(ALL));
        assert_eq!(
            format(&[], &["application/vnd.ipld.car;version=2, application/vnd.ipld.raw;q=0.5"]).ok(),
            Some(Format::Raw),
            "an unsupported CAR version is skipped"
        );
        assert_eq!(
            format(&[], &["application/vnd.ipld.raw;q=0.2, application/vnd.ipld.car;q=0.9"]).ok(),
            Some(ALL),
            "by quality"
        );
        let dups = Format::Car(CarAsk { scope: Scope::All, dups: true, entity_bytes: None });
        assert_eq!(format(&[], &["application/vnd.ipld.car; dups=y"]).ok(), Some(dups));
        assert_eq!(format(&[("car-dups", "n")], &["application/vnd.ipld.car; dups=y"]).ok(), Some(ALL), "URL wins");
        assert_eq!(format(&[("format", "car"), ("car-dups", "y")], &[]).ok(), Some(dups));
    }

    #[test]
    fn car_parameters() {
        let entity = format(&[("format", "car"), ("dag-scope", "entity")], &[]).ok();
        assert_eq!(entity, Some(Format::Car(CarAsk { scope: Scope::Entity, dups: false, entity_bytes: None })));
        let block = format(&[("format", "car"), ("dag-scope", "block")], &[]).ok();
        assert_eq!(block, Some(Format::Car(CarAsk { scope: Scope::Block, dups: false, entity_bytes: None })));
        let bytes = format(&[("format", "car"), ("entity-bytes", "0:*")], &[]).ok();
        let expected = Some(EntityBytes { from: 0, to: Bound::End });
        assert_eq!(bytes, Some(Format::Car(CarAsk { scope: Scope::Entity, dups: false, entity_bytes: expected })));
        assert_eq!(status(format(&[("format", "car"), ("dag-scope", "everything")], &[])), 400);
        assert_eq!(status(format(&[("format", "car"), ("car-version", "2")], &[])), 400);
        assert_eq!(status(format(&[("format", "car"), ("car-order", "bfs")], &[])), 400);
        assert_eq!(status(format(&[("format", "car"), ("car-dups", "maybe")], &[])), 400);
        assert_eq!(status(format(&[("format", "car"), ("entity-bytes", "x")], &[])), 400);
    }

    #[test]
    fn refusals_have_the_spec_statuses() {
        assert_eq!(status(format(&[("format", "dag-json")], &[])), 400, "unknown format");
        assert_eq!(status(format(&[("format", "tar")], &[])), 400);
        assert_eq!(status(format(&[], &[])), 400, "no Accept, no format");
        assert_eq!(status(format(&[], &["application/vnd.ipld.dag-json"])), 406);
        assert_eq!(status(format(&[], &["application/vnd.ipld.car; version=2"])), 406);
        assert_eq!(status(format(&[], &["*/*"])), 406, "deserialized responses are off");
        assert_eq!(status(format(&[], &["not a media type"])), 400, "malformed Accept");
        assert_eq!(status(format(&[], &["application/vnd.ipld.raw; q=high"])), 400);
        assert_eq!(status(ask("/ipfs/not-a-cid", &[("format", "raw")], &[])), 400);
        assert_eq!(status(ask(&format!("/ipfs/{CID}/a.txt"), &[("format", "raw")], &[])), 400, "raw takes no path");
        assert_eq!(status(ask(&format!("/ipfs/{CID}/%zz"), &[("format", "car")], &[])), 400);
        assert_eq!(status(ask(&format!("/ipfs/{CID}/../x"), &[("format", "car")], &[])), 400);
    }

    #[test]
    fn paths_are_split_and_decoded() {
        let parsed = ask(&format!("/ipfs/{CID}/dir/a%20b.txt/"), &[("format", "car")], &[]).expect("parses");
        assert_eq!(parsed.root.to_string(), CID);
        assert_eq!(parsed.segments, vec!["dir".to_string(), "a b.txt".to_string()]);
    }

    #[test]
    fn deserialized_responses_when_enabled() {
        let plain = |accept: &[&str]| parse(&format!("/ipfs/{CID}"), &[], accept, true).map(|a| a.format).ok();
        assert_eq!(plain(&[]), Some(Format::Plain));
        assert_eq!(plain(&["text/html,application/xhtml+xml,*/*;q=0.8"]), Some(Format::Plain));
        assert_eq!(plain(&[RAW_TYPE]), Some(Format::Raw));
    }
}
