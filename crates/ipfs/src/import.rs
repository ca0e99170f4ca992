//! UnixFS import (the engine of `/add`): read [`Importer`] first.
//!
//! Files are chunked and assembled by `rust-unixfs`'s `FileAdder` (fixed-size chunker, balanced
//! layout with 174 links per node, dag-pb or raw leaves, CIDv0 or CIDv1), directories by its
//! `BufferingTreeBuilder` (links sorted by name, HAMT sharding past Kubo's threshold). The tests
//! check the result against a real Kubo peer and Kubo's published vectors. Every block goes
//! through a `BlockSink` as soon as it is produced: marked against GC, written, synced at the end.

use std::collections::HashMap;

use cid::{Cid, Version};
use rust_unixfs::dir::builder::{BufferingTreeBuilder, TreeOptions};
use rust_unixfs::file::adder::{Chunker, FileAdder};

use crate::sink::{BlockSink, ImportProtection};
use crate::{IpfsError, Node};

/// The largest chunk Kubo accepts (`chunker size-N` with N ≤ 1 MiB).
pub const MAX_CHUNK_SIZE: usize = 1024 * 1024;

/// Kubo 0.22's HAMT threshold: a directory whose estimated size (sum of each entry's name
/// length plus its CID's byte length) reaches 256 KiB is sharded. Kubo 0.22 switches at `>=`
/// (later Kubo releases at `>`); the builder compares with `>`, hence the minus one.
const HAMT_THRESHOLD: u64 = 256 * 1024 - 1;

/// How files are chunked and encoded. [`Default`] gives Kubo's `ipfs add` defaults.
///
/// Kubo derives `raw_leaves` from the CID version when the user does not set it (CIDv1 implies raw
/// leaves); this struct takes the final value, see [`ImportOptions::kubo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Fixed chunk size in bytes (Kubo's `chunker=size-N`); 1 ..= 1 MiB. Default 262144.
    pub chunk_size: usize,
    /// Leaves as raw blocks (codec 0x55, always CIDv1) instead of dag-pb UnixFS nodes.
    pub raw_leaves: bool,
    /// CID version of the dag-pb nodes: 0 (default) or 1.
    pub cid_version: u8,
    /// Wrap everything in one directory (name "") that becomes the only root.
    pub wrap_with_directory: bool,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions { chunk_size: 256 * 1024, raw_leaves: false, cid_version: 0, wrap_with_directory: false }
    }
}

impl ImportOptions {
    /// Kubo's reading of `cid-version` and an optional `raw-leaves`: raw leaves default to on for
    /// CIDv1 and off for CIDv0. The other fields keep their defaults.
    pub fn kubo(cid_version: u8, raw_leaves: Option<bool>) -> ImportOptions {
        ImportOptions { cid_version, raw_leaves: raw_leaves.unwrap_or(cid_version >= 1), ..ImportOptions::default() }
    }

    fn check(&self) -> Result<Version, IpfsError> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(IpfsError::InvalidOptions(format!(
                "chunk size {} is out of range: it must be between 1 and {MAX_CHUNK_SIZE} bytes",
                self.chunk_size
            )));
        }
        match self.cid_version {
            0 => Ok(Version::V0),
            1 => Ok(Version::V1),
            other => Err(IpfsError::InvalidOptions(format!("unknown CID version {other}: use 0 or 1"))),
        }
    }
}

/// One line of Kubo's `add` output: a file when it ends, or a directory at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedEntry {
    /// The path as given (`"dir/sub/b.bin"`); `""` for the wrapping directory.
    pub name: String,
    /// The entry's root CID.
    pub cid: Cid,
    /// Kubo's `Size`: the cumulative size of the entry's DAG (every block's bytes, the dag-pb
    /// `Tsize` a parent would record).
    pub size: u64,
    /// The file's content bytes (0 for directories).
    pub bytes: u64,
}

/// What a finished import produced. Keep [`Imported::protection`] alive until the pin of
/// [`Imported::roots`] is recorded: until then it keeps every block safe from [`Node::gc`].
#[derive(Debug)]
pub struct Imported {
    /// Directory entries in Kubo's output order: post-order, children by name, the wrapping
    /// directory last. Files were returned by [`Importer::finish_file`]. Empty for a CAR.
    pub entries: Vec<AddedEntry>,
    /// The top-level entries in the order they were first named, or the wrapping directory
    /// alone; for a CAR, the roots of its header.
    pub roots: Vec<Cid>,
    /// Distinct blocks written by the import.
    pub blocks: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Keeps the written blocks from being collected; drop it after the pin is recorded.
    pub protection: ImportProtection,
}

/// A UnixFS import in progress: files one after the other, then [`Importer::finish`].
///
/// Memory stays bounded by one chunk plus the pending links of the current file's tree (at most
/// 174 per level) and one entry per file for the directory tree; blocks go to disk as they are
/// produced. Works from any tokio runtime. Dropping an unfinished importer abandons the import:
/// its blocks are left for GC.
pub struct Importer {
    sink: BlockSink,
    options: ImportOptions,
    version: Version,
    /// Every file and declared directory, for the directory nodes.
    tree: BufferingTreeBuilder,
    /// True once a path has a directory in it (or a directory was declared).
    has_directories: bool,
    /// Top-level names in the order first seen, with the CID once known (files).
    top_level: Vec<(String, Option<Cid>)>,
    current: Option<OpenFile>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("options", &self.options)
            .field("blocks", &self.sink.blocks)
            .finish_non_exhaustive()
    }
}

struct OpenFile {
    path: String,
    adder: FileAdder,
    bytes: u64,
    /// Sum of the sizes of every block produced for the file (duplicates included, like Tsize).
    size: u64,
    /// The last block produced: the root once the adder is finished.
    last: Option<Cid>,
}

impl Node {
    /// Starts a UnixFS import into this node's block store with `options`.
    pub fn importer(&self, options: ImportOptions) -> Result<Importer, IpfsError> {
        let version = options.check()?;
        let mut tree_options = TreeOptions::default();
        // Always build a wrapping root; without `wrap_with_directory` it is simply not written,
        // which allows several top-level entries like Kubo.
        tree_options.wrap_with_directory();
        tree_options.cid_version(version);
        tree_options.shard_threshold(Some(HAMT_THRESHOLD));
        tree_options.block_size_limit(None);
        Ok(Importer {
            sink: BlockSink::new(self),
            options,
            version,
            tree: BufferingTreeBuilder::new(tree_options),
            has_directories: options.wrap_with_directory,
            top_level: Vec::new(),
            current: None,
        })
    }
}

impl Importer {
    /// Starts a file at `path` (`"a.txt"`, `"dir/sub/b.bin"`: '/'-separated, no empty, `.` or
    /// `..` parts). Fails when another file is still open or the path is invalid.
    pub fn start_file(&mut self, path: &str) -> Result<(), IpfsError> {
        if let Some(open) = &self.current {
            return Err(IpfsError::Import(format!("cannot start {path:?}: file {:?} is not finished", open.path)));
        }
        check_path(path)?;
        let adder = FileAdder::builder()
            .with_chunker(Chunker::Size(self.options.chunk_size))
            .with_cid_version(self.version)
            .with_raw_leaves(self.options.raw_leaves)
            .build();
        self.current = Some(OpenFile { path: path.to_string(), adder, bytes: 0, size: 0, last: None });
        Ok(())
    }

    /// Appends bytes to the current file; finished blocks are written to the store at once.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), IpfsError> {
        let Some(open) = self.current.as_mut() else {
            return Err(IpfsError::Import("write before start_file".to_string()));
        };
        open.bytes += data.len() as u64;
        while !data.is_empty() {
            let (blocks, consumed) = open.adder.push(data);
            let blocks: Vec<(Cid, Vec<u8>)> = blocks.collect();
            data = data.get(consumed..).unwrap_or_default();
            for (cid, block) in blocks {
                open.size += block.len() as u64;
                open.last = Some(cid);
                self.sink.put(cid, block).await?;
            }
        }
        Ok(())
    }

    /// Ends the current file and returns its entry (Kubo prints one line per file as it ends).
    pub async fn finish_file(&mut self) -> Result<AddedEntry, IpfsError> {
        let Some(mut open) = self.current.take() else {
            return Err(IpfsError::Import("finish_file without start_file".to_string()));
        };
        for (cid, block) in open.adder.finish() {
            open.size += block.len() as u64;
            open.last = Some(cid);
            self.sink.put(cid, block).await?;
        }
        let Some(root) = open.last else {
            return Err(IpfsError::Import(format!("no block was produced for {:?}", open.path)));
        };
        self.tree
            .put_link(&open.path, root, open.size)
            .map_err(|e| IpfsError::InvalidPath { path: open.path.clone(), reason: e.to_string() })?;
        self.note_top_level(&open.path, Some(root));
        Ok(AddedEntry { name: open.path, cid: root, size: open.size, bytes: open.bytes })
    }

    /// Declares a directory (possibly empty) at `path`. Parents of files are implied anyway.
    pub fn add_directory(&mut self, path: &str) -> Result<(), IpfsError> {
        check_path(path)?;
        self.tree
            .set_metadata(path, rust_unixfs::Metadata::default())
            .map_err(|e| IpfsError::InvalidPath { path: path.to_string(), reason: e.to_string() })?;
        self.has_directories = true;
        self.note_top_level(path, None);
        Ok(())
    }

    fn note_top_level(&mut self, path: &str, file: Option<Cid>) {
        let (first, nested) = match path.split_once('/') {
            Some((first, _)) => (first, true),
            None => (path, false),
        };
        if nested {
            self.has_directories = true;
        }
        let cid = if nested { None } else { file };
        match self.top_level.iter_mut().find(|(name, _)| name == first) {
            Some(entry) => {
                if cid.is_some() {
                    entry.1 = cid;
                }
            }
            None => self.top_level.push((first.to_string(), cid)),
        }
    }

    /// Builds the directories (and the wrapping one, name `""`), makes every written block
    /// durable (one sync pass), and returns the directory entries and the roots.
    pub async fn finish(mut self) -> Result<Imported, IpfsError> {
        if let Some(open) = &self.current {
            return Err(IpfsError::Import(format!("file {:?} is not finished", open.path)));
        }
        let mut entries = Vec::new();
        let mut top_dirs: HashMap<String, Cid> = HashMap::new();
        let mut wrapper: Option<AddedEntry> = None;
        if self.has_directories {
            let tree = std::mem::take(&mut self.tree).build();
            // Nodes with an empty path are HAMT interior shards, or the root (always last): hold
            // each back until the next node shows it was not the last.
            let mut held: Option<(Cid, Vec<u8>, u64)> = None;
            for node in tree {
                let node = node.map_err(|e| IpfsError::Import(e.to_string()))?;
                if let Some((cid, block, _)) = held.take() {
                    self.sink.put(cid, block).await?;
                }
                if node.path.is_empty() {
                    held = Some((node.cid, node.block.into_vec(), node.total_size));
                    continue;
                }
                if !node.path.contains('/') {
                    top_dirs.insert(node.path.clone(), node.cid);
                }
                entries.push(AddedEntry { name: node.path, cid: node.cid, size: node.total_size, bytes: 0 });
                self.sink.put(node.cid, node.block.into_vec()).await?;
            }
            if let (true, Some((cid, block, size))) = (self.options.wrap_with_directory, held) {
                self.sink.put(cid, block).await?;
                wrapper = Some(AddedEntry { name: String::new(), cid, size, bytes: 0 });
            }
        }
        // The builder emits siblings in reverse; Kubo lists them by name.
        entries.sort_by(|a, b| kubo_order(&a.name, &b.name));
        let roots: Vec<Cid> = match &wrapper {
            Some(wrapper) => vec![wrapper.cid],
            None => {
                self.top_level.iter().filter_map(|(name, file)| file.or_else(|| top_dirs.get(name).copied())).collect()
            }
        };
        entries.extend(wrapper);
        let (blocks, bytes) = (self.sink.blocks, self.sink.bytes);
        let protection = self.sink.finish().await?;
        Ok(Imported { entries, roots, blocks, bytes, protection })
    }
}

/// Kubo's order of directory lines: post-order (a directory after everything inside it),
/// siblings by name (byte order).
fn kubo_order(a: &str, b: &str) -> std::cmp::Ordering {
    let mut left = a.split('/');
    let mut right = b.split('/');
    loop {
        match (left.next(), right.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => return x.as_bytes().cmp(y.as_bytes()),
            // `a` is inside `b`: it comes first.
            (Some(_), None) => return std::cmp::Ordering::Less,
            (None, Some(_)) => return std::cmp::Ordering::Greater,
            (None, None) => return std::cmp::Ordering::Equal,
        }
    }
}

/// A relative '/'-separated path without empty, `.` or `..` parts.
fn check_path(path: &str) -> Result<(), IpfsError> {
    let invalid = |reason: &str| IpfsError::InvalidPath { path: path.to_string(), reason: reason.to_string() };
    if path.is_empty() {
        return Err(invalid("the path is empty"));
    }
    if path.starts_with('/') {
        return Err(invalid("the path must be relative"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(invalid("the path has an empty part")),
            "." | ".." => return Err(invalid("the path has a '.' or '..' part")),
            _ if part.contains('\0') => return Err(invalid("the path has a NUL byte")),
            _ => {}
        }
    }
    Ok(())
}
