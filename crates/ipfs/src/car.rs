//! CAR import (`/add?format=car`): read [`CarImporter`] first.
//!
//! A push parser over CAR v1 (and the v1 payload of a CAR v2): the header (a varint length and a
//! dag-cbor map with `version` and `roots`), then sections (a varint length, a CID, the block).
//! Every block's hash is checked against its CID before it is written; headers and blocks have
//! size limits so a hostile stream cannot make the importer buffer much.

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::import::Imported;
use crate::sink::BlockSink;
use crate::{IpfsError, Node};

/// The largest block accepted (Kubo's own limit for blocks on the network is 2 MiB).
pub const MAX_CAR_BLOCK: usize = 2 * 1024 * 1024;
/// The largest CAR header accepted.
const MAX_HEADER: usize = 1024 * 1024;
/// Room for the CID in front of a block.
const MAX_CID: usize = 256;
/// The size of the fixed CAR v2 header after the pragma.
const V2_HEADER: usize = 40;

/// A CAR import in progress: push the stream's bytes with [`CarImporter::write`], then
/// [`CarImporter::finish`]. Memory stays bounded by one section (≤ 2 MiB plus its CID).
pub struct CarImporter {
    sink: BlockSink,
    reader: CarReader,
}

impl std::fmt::Debug for CarImporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarImporter")
            .field("offset", &self.reader.offset)
            .field("blocks", &self.sink.blocks)
            .finish_non_exhaustive()
    }
}

/// The parser behind [`CarImporter`], without a block store: push bytes with
/// [`CarReader::extend`], then take the verified blocks with [`CarReader::step`].
pub(crate) struct CarReader {
    buffer: Vec<u8>,
    state: State,
    roots: Vec<Cid>,
    /// Bytes of the stream consumed so far (for error messages and CAR v2 offsets).
    offset: u64,
}

enum State {
    /// The first header (v1 header or v2 pragma).
    Header,
    /// The 40-byte v2 header after the pragma.
    V2Header,
    /// Skipping to the v1 payload of a v2 file; then `payload_end` bounds the sections.
    V2Skip { until: u64, payload_end: u64 },
    /// The v1 header inside a v2 payload.
    InnerHeader { payload_end: u64 },
    /// Sections; `end` is the end of the payload for v2 (the index after it is ignored).
    Sections { end: Option<u64> },
    /// A v2 payload is over: the rest (the index) is ignored.
    Done,
}

impl Node {
    /// Starts a CAR import into this node's block store.
    pub fn car_importer(&self) -> CarImporter {
        CarImporter { sink: BlockSink::new(self), reader: CarReader::new() }
    }
}

impl CarImporter {
    /// Pushes the next bytes of the CAR stream; complete blocks are verified and written.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), IpfsError> {
        while !data.is_empty() {
            self.reader.extend(&mut data)?;
            while let Some((cid, block)) = self.reader.step()? {
                self.sink.put(cid, block).await?;
            }
        }
        Ok(())
    }

    /// Ends the stream: fails when it stopped inside a header or a section; otherwise syncs
    /// every written block and returns the header's roots.
    pub async fn finish(mut self) -> Result<Imported, IpfsError> {
        while let Some((cid, block)) = self.reader.step()? {
            self.sink.put(cid, block).await?;
        }
        let roots = self.reader.finish()?;
        let (blocks, bytes) = (self.sink.blocks, self.sink.bytes);
        let protection = self.sink.finish().await?;
        Ok(Imported { entries: Vec::new(), roots, blocks, bytes, protection })
    }
}

impl CarReader {
    pub(crate) fn new() -> CarReader {
        CarReader { buffer: Vec::new(), state: State::Header, roots: Vec::new(), offset: 0 }
    }

    /// Buffers the start of `data`, at most what the current item still needs (so the buffer
    /// stays bounded), and advances `data` past it. Call [`CarReader::step`] after each call.
    pub(crate) fn extend(&mut self, data: &mut &[u8]) -> Result<(), IpfsError> {
        let want = self.wanted()?;
        if matches!(self.state, State::Done) {
            self.offset += data.len() as u64;
            *data = &[];
            return Ok(());
        }
        let missing = want.saturating_sub(self.buffer.len()).max(1);
        let take = missing.min(data.len());
        let (head, rest) = data.split_at(take);
        self.buffer.extend_from_slice(head);
        *data = rest;
        Ok(())
    }

    /// After the last [`CarReader::step`]: the header's roots, or an error when the stream
    /// stopped inside a header or a section.
    pub(crate) fn finish(self) -> Result<Vec<Cid>, IpfsError> {
        let complete = match self.state {
            State::Sections { end: None } => self.buffer.is_empty(),
            State::Done => true,
            _ => false,
        };
        if !complete {
            return Err(IpfsError::Car(format!(
                "the stream ends inside a {} at byte {}",
                match self.state {
                    State::Sections { .. } => "block section",
                    _ => "header",
                },
                self.offset
            )));
        }
        Ok(self.roots)
    }

    /// How many buffered bytes the current item needs at least (a guess while its length
    /// prefix is incomplete).
    fn wanted(&self) -> Result<usize, IpfsError> {
        let wanted = match self.state {
            State::V2Header => V2_HEADER,
            State::V2Skip { until, .. } => usize::try_from(until.saturating_sub(self.offset)).unwrap_or(usize::MAX),
            State::Done => 0,
            _ => match crate::varint::read(&self.buffer) {
                Ok(Some((len, used))) => usize::try_from(len).unwrap_or(usize::MAX).saturating_add(used),
                // Invalid prefixes are refused by `step`.
                Ok(None) | Err(_) => 1,
            },
        };
        // An oversized length is refused by `step` as soon as its prefix is complete.
        Ok(wanted.min(MAX_CAR_BLOCK + MAX_CID + 16))
    }

    /// Consumes complete items in the buffer up to the next block section, and returns that
    /// block once its hash is checked; `None` when the buffer holds no complete item.
    pub(crate) fn step(&mut self) -> Result<Option<(Cid, Vec<u8>)>, IpfsError> {
        loop {
            match self.state {
                State::Done => {
                    self.buffer.clear();
                    return Ok(None);
                }
                State::V2Header => {
                    if self.buffer.len() < V2_HEADER {
                        return Ok(None);
                    }
                    let u64_at = |at: usize| {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&self.buffer[at..at + 8]);
                        u64::from_le_bytes(bytes)
                    };
                    let (data_offset, data_size) = (u64_at(16), u64_at(24));
                    self.consume(V2_HEADER);
                    if data_offset < self.offset {
                        return Err(self.error("CAR v2 data offset points into its header"));
                    }
                    let payload_end = data_offset
                        .checked_add(data_size)
                        .ok_or_else(|| self.error("CAR v2 data offset and size overflow"))?;
                    self.state = State::V2Skip { until: data_offset, payload_end };
                }
                State::V2Skip { until, payload_end } => {
                    let skip =
                        usize::try_from(until.saturating_sub(self.offset)).unwrap_or(usize::MAX).min(self.buffer.len());
                    self.consume(skip);
                    if self.offset < until {
                        return Ok(None);
                    }
                    self.state = State::InnerHeader { payload_end };
                }
                State::Header | State::InnerHeader { .. } | State::Sections { .. } => {
                    if let State::Sections { end: Some(end) } = self.state {
                        if self.offset >= end {
                            self.state = State::Done;
                            continue;
                        }
                    }
                    let (len, used) = match crate::varint::read(&self.buffer) {
                        Ok(Some(prefix)) => prefix,
                        Ok(None) => return Ok(None),
                        Err(e) => return Err(self.error(&format!("invalid length prefix: {e}"))),
                    };
                    let limit = match self.state {
                        State::Sections { .. } => MAX_CAR_BLOCK + MAX_CID,
                        _ => MAX_HEADER,
                    };
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if len > limit {
                        return Err(self.error(&format!("item of {len} bytes exceeds the limit of {limit} bytes")));
                    }
                    if len == 0 {
                        return Err(self.error("empty item"));
                    }
                    if self.buffer.len() < used + len {
                        return Ok(None);
                    }
                    let item = self.buffer[used..used + len].to_vec();
                    self.consume(used + len);
                    if let Some(block) = self.item(item)? {
                        return Ok(Some(block));
                    }
                }
            }
        }
    }

    /// Handles one length-prefixed item; a block section's block is returned.
    fn item(&mut self, item: Vec<u8>) -> Result<Option<(Cid, Vec<u8>)>, IpfsError> {
        match self.state {
            State::Header => {
                let (version, roots) = self.header(&item)?;
                match version {
                    1 => {
                        self.roots = roots;
                        self.state = State::Sections { end: None };
                    }
                    2 => self.state = State::V2Header,
                    other => {
                        return Err(self.error(&format!("unsupported CAR version {other}")));
                    }
                }
            }
            State::InnerHeader { payload_end } => {
                let (version, roots) = self.header(&item)?;
                if version != 1 {
                    return Err(self.error("the payload of a CAR v2 must be a CAR v1"));
                }
                self.roots = roots;
                self.state = State::Sections { end: Some(payload_end) };
            }
            _ => return self.section(item).map(Some),
        }
        Ok(None)
    }

    fn header(&self, item: &[u8]) -> Result<(u64, Vec<Cid>), IpfsError> {
        let header: Ipld =
            serde_ipld_dagcbor::from_slice(item).map_err(|e| self.error(&format!("header is not dag-cbor: {e}")))?;
        let Ipld::Map(map) = header else {
            return Err(self.error("header is not a map"));
        };
        let version = match map.get("version") {
            Some(Ipld::Integer(v)) => u64::try_from(*v).unwrap_or(0),
            _ => return Err(self.error("header has no version")),
        };
        let mut roots = Vec::new();
        match map.get("roots") {
            Some(Ipld::List(list)) => {
                for root in list {
                    match root {
                        Ipld::Link(cid) => roots.push(*cid),
                        _ => return Err(self.error("a header root is not a CID")),
                    }
                }
            }
            None if version == 2 => {}
            _ => return Err(self.error("header has no roots")),
        }
        Ok((version, roots))
    }

    fn section(&self, item: Vec<u8>) -> Result<(Cid, Vec<u8>), IpfsError> {
        let mut reader = std::io::Cursor::new(&item[..]);
        let cid =
            Cid::read_bytes(&mut reader).map_err(|e| self.error(&format!("invalid CID in a block section: {e}")))?;
        let start = usize::try_from(reader.position()).unwrap_or(item.len());
        let data = item.get(start..).unwrap_or_default();
        if data.len() > MAX_CAR_BLOCK {
            return Err(
                self.error(&format!("block {cid} of {} bytes exceeds the limit of {MAX_CAR_BLOCK} bytes", data.len()))
            );
        }
        let Some(matches) = crate::blockfile::hash_matches(&cid, data) else {
            let code = cid.hash().code();
            return Err(self.error(&format!("block {cid} uses an unsupported hash function 0x{code:x}")));
        };
        if !matches {
            return Err(self.error(&format!("block {cid} does not match its hash (corrupt or forged data)")));
        }
        Ok((cid, data.to_vec()))
    }

    fn consume(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.offset += n as u64;
    }

    fn error(&self, what: &str) -> IpfsError {
        IpfsError::Car(format!("{what} (at byte {})", self.offset))
    }
}
