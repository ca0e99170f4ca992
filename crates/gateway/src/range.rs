//! Byte ranges of a file: the Trustless Gateway's `entity-bytes=from:to` and HTTP `Range` for
//! deserialized responses, resolved against the file's size, and the target ranges the UnixFS
//! file walk takes. Pure arithmetic, tested here.

use std::ops::Range;

use crate::GatewayError;

/// One end of an `entity-bytes` range as written: an offset (negative = from the end) or `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Offset(i64),
    End,
}

/// `entity-bytes=from:to` as written; [`EntityBytes::resolve`] turns it into bytes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntityBytes {
    pub(crate) from: i64,
    pub(crate) to: Bound,
}

impl EntityBytes {
    /// Parses `from:to`: `from` an integer (negative counts from the end), `to` an integer
    /// (negative counts from the end) or `*` (the last byte).
    pub(crate) fn parse(text: &str) -> Result<EntityBytes, GatewayError> {
        let bad = || {
            GatewayError::BadRequest(format!("invalid entity-bytes {text:?}: expected from:to, e.g. 0:1023 or -100:*"))
        };
        let (from, to) = text.split_once(':').ok_or_else(bad)?;
        let from: i64 = from.parse().map_err(|_| bad())?;
        let to = match to {
            "*" => Bound::End,
            number => Bound::Offset(number.parse().map_err(|_| bad())?),
        };
        if let Bound::Offset(to) = to {
            // Both from the start (or both from the end): their order is known now.
            if (from >= 0) == (to >= 0) && to < from {
                return Err(GatewayError::BadRequest(format!("invalid entity-bytes {text:?}: to is before from")));
            }
        }
        Ok(EntityBytes { from, to })
    }

    /// The inclusive byte range `(first, last)` of a file of `size` bytes this asks for, clamped
    /// to the file; `None` for an empty file (whose root block is all there is). A range wholly
    /// outside the file is a bad request (the size is known before the response starts).
    pub(crate) fn resolve(&self, size: u64) -> Result<Option<(u64, u64)>, GatewayError> {
        if size == 0 {
            return Ok(None);
        }
        let at = |offset: i64| -> i64 {
            if offset < 0 {
                (i128::from(size) + i128::from(offset)).max(0) as i64
            } else {
                offset
            }
        };
        let size_i = i64::try_from(size).unwrap_or(i64::MAX);
        let first = at(self.from);
        let last = match self.to {
            Bound::End => size_i - 1,
            Bound::Offset(to) => at(to).min(size_i - 1),
        };
        if first >= size_i || last < first || (matches!(self.to, Bound::Offset(to) if to < 0 && size_i + to < 0)) {
            return Err(GatewayError::BadRequest(format!(
                "entity-bytes {}:{} is outside the file of {size} bytes",
                self.from,
                match self.to {
                    Bound::End => "*".to_string(),
                    Bound::Offset(to) => to.to_string(),
                }
            )));
        }
        Ok(Some((first as u64, last as u64)))
    }
}

/// The target the UnixFS walk (`rust_unixfs::file::visit`) takes to visit exactly the blocks that
/// hold some byte of `first..=last`. The walk keeps a block spanning `a..b` when
/// `max(a, start) <= min(b, end)`, which also keeps a block that merely touches the target; with
/// `start = first + 1` and `end = last` that test becomes `a <= last && b > first`, the true
/// overlap. (For a one-byte range, the walk widens `end` to `start`, so a block starting right
/// after the byte may come along too: harmless, clients verify what they get.)
pub(crate) fn walk_target(first: u64, last: u64) -> Range<u64> {
    first.saturating_add(1)..last
}

/// An HTTP `Range` header of a deserialized response, resolved against the file's `size`:
/// `Ok(None)` to serve the whole file (no header, a multi-range or a unit we do not know, which
/// RFC 9110 lets a server ignore), `Ok(Some((first, last)))` inclusive, or an unsatisfiable range.
pub(crate) fn http_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, GatewayError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = Err(GatewayError::RangeNotSatisfiable { size });
    let Some((start, end)) = spec.trim().split_once('-') else { return Ok(None) };
    let (start, end) = (start.trim(), end.trim());
    let (first, last) = match (start.is_empty(), end.is_empty()) {
        // The last N bytes.
        (true, false) => {
            let Ok(n) = end.parse::<u64>() else { return Ok(None) };
            if n == 0 || size == 0 {
                return unsatisfiable;
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let Ok(first) = start.parse::<u64>() else { return Ok(None) };
            let last = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                match end.parse::<u64>() {
                    Ok(last) if last >= first => last.min(size.saturating_sub(1)),
                    _ => return Ok(None),
                }
            };
            if first >= size {
                return unsatisfiable;
            }
            (first, last)
        }
        (true, true) => return Ok(None),
    };
    Ok(Some((first, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, size: u64) -> Option<Option<(u64, u64)>> {
        EntityBytes::parse(text).ok()?.resolve(size).ok()
    }

    #[test]
    fn entity_bytes_parse_and_resolve_as_the_spec_says() {
        assert_eq!(resolve("0:*", 10), Some(Some((0, 9))));
        assert_eq!(resolve("0:0", 10), Some(Some((0, 0))));
        assert_eq!(resolve("2:5", 10), Some(Some((2, 5))));
        assert_eq!(resolve("2:500", 10), Some(Some((2, 9))), "clamped to the file");
        assert_eq!(resolve("-3:*", 10), Some(Some((7, 9))), "from the end");
        assert_eq!(resolve("-30:*", 10), Some(Some((0, 9))), "from the end, clamped");
        assert_eq!(resolve("0:-2", 10), Some(Some((0, 8))), "to counts from the end");
        assert_eq!(resolve("-4:-2", 10), Some(Some((6, 8))));
        assert_eq!(resolve("0:*", 0), Some(None), "an empty file is its root block");
        assert_eq!(resolve("10:*", 10), None, "wholly outside");
        assert_eq!(resolve("5:-9", 10), None, "to before from once resolved");
        for bad in ["", "5", "a:b", "1:2:3", "5:2", "-2:-5", "1.5:*", ":*", "0:"] {
            assert!(EntityBytes::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn walk_target_keeps_exactly_the_overlapping_blocks() {
        // The visitor's own test, as in rust-unixfs, over 10-byte blocks.
        let keeps = |block: Range<u64>, target: &Range<u64>| {
            let end = target.end.max(target.start);
            block.start.max(target.start) <= block.end.min(end)
        };
        let blocks: Vec<Range<u64>> = (0..5).map(|i| i * 10..i * 10 + 10).collect();
        for (first, last, expected) in
            [(10, 19, vec![1]), (9, 10, vec![0, 1]), (0, 49, vec![0, 1, 2, 3, 4]), (25, 34, vec![2, 3])]
        {
            let target = walk_target(first, last);
            let kept: Vec<usize> =
                blocks.iter().enumerate().filter(|(_, b)| keeps((*b).clone(), &target)).map(|(i, _)| i).collect();
            assert_eq!(kept, expected, "{first}..={last}");
        }
    }

    #[test]
    fn http_ranges_resolve_or_are_ignored() {
        assert_eq!(http_range(None, 100).ok(), Some(None));
        assert_eq!(http_range(Some("bytes=0-9"), 100).ok(), Some(Some((0, 9))));
        assert_eq!(http_range(Some("bytes=90-"), 100).ok(), Some(Some((90, 99))));
        assert_eq!(http_range(Some("bytes=-10"), 100).ok(), Some(Some((90, 99))));
        assert_eq!(http_range(Some("bytes=-1000"), 100).ok(), Some(Some((0, 99))));
        assert_eq!(http_range(Some("bytes=50-1000"), 100).ok(), Some(Some((50, 99))));
        assert_eq!(http_range(Some("bytes=0-1,5-6"), 100).ok(), Some(None), "multi-range: whole file");
        assert_eq!(http_range(Some("items=0-1"), 100).ok(), Some(None));
        assert_eq!(http_range(Some("bytes=5-2"), 100).ok(), Some(None));
        assert!(matches!(http_range(Some("bytes=100-"), 100), Err(GatewayError::RangeNotSatisfiable { size: 100 })));
        assert!(matches!(http_range(Some("bytes=-0"), 100), Err(GatewayError::RangeNotSatisfiable { .. })));
    }
}
