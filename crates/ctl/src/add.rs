//! `pincluster-ctl add`: uploads files and directories to `POST /add` as one
//! streamed multipart body, with a progress bar of bytes sent and the rate.
//! Read [`AddArgs`] first.
//!
//! Parts follow Kubo's convention, as the server expects: the file name is
//! the `/`-separated path (percent-escaped), and directories are parts of
//! type `application/x-directory`. Files are opened one at a time while the
//! body is sent, so a directory of any size is never read into memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::client::Client;
use crate::{pin_query, Encoding, PinFlags};

/// Options of `pincluster-ctl add`, named as in `ipfs-cluster-ctl add`.
#[derive(clap::Args)]
pub(crate) struct AddArgs {
    /// Files or directories to add.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Add directories recursively.
    #[arg(long, short = 'r')]
    recursive: bool,
    /// Wrap the added entries in a directory (its CID is the one pinned).
    #[arg(long, short = 'w')]
    wrap_with_directory: bool,
    /// Include files whose name starts with a dot.
    #[arg(long, short = 'H')]
    hidden: bool,
    /// Chunker: size-N (bytes per leaf, up to 1 MiB).
    #[arg(long, short = 's')]
    chunker: Option<String>,
    /// Raw leaves (default: on with --cid-version 1).
    #[arg(long)]
    raw_leaves: Option<bool>,
    /// CID version of the DAG: 0 or 1.
    #[arg(long)]
    cid_version: Option<u8>,
    /// The DAG layout (only balanced is supported).
    #[arg(long)]
    layout: Option<String>,
    /// unixfs (default), or car to import one CAR file as it is.
    #[arg(long)]
    format: Option<String>,
    /// Import without pinning.
    #[arg(long)]
    no_pin: bool,
    /// Print only the CIDs.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print only the last CID (the root).
    #[arg(long, short = 'Q')]
    quieter: bool,
    /// Ask for the whole answer at once instead of a stream.
    #[arg(long)]
    no_stream: bool,
    #[command(flatten)]
    pin: PinFlags,
}

/// One entry of the upload, in the order it is sent.
struct Entry {
    /// The path under which the server sees it (`dir/sub/file`).
    name: String,
    /// `None` for a directory.
    file: Option<PathBuf>,
}

/// Runs `add`: walks the paths, uploads them, prints the outputs.
pub(crate) fn run(client: &Client, enc: Encoding, args: AddArgs) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    for path in &args.paths {
        collect(path, &args, &mut entries)?;
    }
    let total: u64 = entries
        .iter()
        .filter_map(|e| e.file.as_ref())
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bytes}/{total_bytes} {binary_bytes_per_sec} [{wide_bar}] {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut form = Form::new();
    for entry in entries {
        let name = escape(&entry.name);
        let part = match entry.file {
            None => Part::bytes(Vec::new()).file_name(name).mime_str("application/x-directory")?,
            Some(path) => Part::stream(LazyFile { path, file: None, bar: bar.clone() }.into_body())
                .file_name(name)
                .mime_str("application/octet-stream")?,
        };
        form = form.part("file", part);
    }

    let query = add_query(&args)?;
    let mut outputs = Vec::new();
    let result = client.upload("/add", &query, form, |value| {
        if value.get("cid").is_none() {
            return Ok(()); // a progress object
        }
        if enc == Encoding::Text && !args.quieter {
            bar.suspend(|| println!("{}", line(&value, args.quiet)));
        }
        outputs.push(value);
        Ok(())
    });
    bar.finish_and_clear();
    result?;
    if args.pin.wait && !args.no_pin {
        if let Some(root) = outputs.last().and_then(|o| o["cid"].as_str()) {
            return crate::after_pin(client, enc, root, &Value::Null, false, Some(args.pin.wait_timeout));
        }
    }
    match enc {
        Encoding::Json => println!("{}", serde_json::to_string_pretty(&outputs)?),
        Encoding::Text if args.quieter => {
            if let Some(last) = outputs.last() {
                println!("{}", line(last, true));
            }
        }
        Encoding::Text => {}
    }
    Ok(())
}

fn line(value: &Value, quiet: bool) -> String {
    let cid = value["cid"].as_str().unwrap_or_default();
    if quiet {
        return cid.to_string();
    }
    format!("added {cid} {}", value["name"].as_str().unwrap_or_default())
}

fn add_query(args: &AddArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut query = pin_query(&args.pin)?;
    let mut put = |k: &str, v: String| query.push((k.to_string(), v));
    if args.wrap_with_directory {
        put("wrap-with-directory", "true".into());
    }
    if args.hidden {
        put("hidden", "true".into());
    }
    if let Some(c) = &args.chunker {
        put("chunker", c.clone());
    }
    if let Some(r) = args.raw_leaves {
        put("raw-leaves", r.to_string());
    }
    if let Some(v) = args.cid_version {
        put("cid-version", v.to_string());
    }
    if let Some(l) = &args.layout {
        put("layout", l.clone());
    }
    if let Some(f) = &args.format {
        put("format", f.clone());
    }
    if args.no_pin {
        put("no-pin", "true".into());
    }
    if args.no_stream {
        put("stream-channels", "false".into());
    }
    Ok(query)
}

/// Adds `path` (and, with `-r`, everything under it) to `entries`.
fn collect(path: &Path, args: &AddArgs, entries: &mut Vec<Entry>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?
        .to_string();
    if meta.is_file() {
        entries.push(Entry { name, file: Some(path.to_path_buf()) });
        return Ok(());
    }
    if !meta.is_dir() {
        bail!("{} is neither a file nor a directory", path.display());
    }
    if !args.recursive {
        bail!("{} is a directory: use -r to add it recursively", path.display());
    }
    walk(path, name, args.hidden, entries)
}

fn walk(dir: &Path, name: String, hidden: bool, entries: &mut Vec<Entry>) -> anyhow::Result<()> {
    entries.push(Entry { name: name.clone(), file: None });
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let Some(child_name) = child.file_name().to_str().map(str::to_string) else {
            bail!("{}: file names must be UTF-8", child.path().display());
        };
        if !hidden && child_name.starts_with('.') {
            continue;
        }
        let kind = child.file_type().with_context(|| format!("cannot read {}", child.path().display()))?;
        let path = format!("{name}/{child_name}");
        if kind.is_dir() {
            walk(&child.path(), path, hidden, entries)?;
        } else if kind.is_file() {
            entries.push(Entry { name: path, file: Some(child.path()) });
        } else {
            eprintln!("skipping {}: only files and directories are added", child.path().display());
        }
    }
    Ok(())
}

/// Escapes a path for a part's file name: `%XX` for everything but
/// letters, digits, `-._~` and `/`.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A file opened when the body reaches it, counting bytes into the bar.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
    bar: ProgressBar,
}

/// How much of a file one body chunk holds.
const CHUNK_BYTES: usize = 256 * 1024;

impl LazyFile {
    /// The file as a request body, read chunk by chunk as it is sent.
    fn into_body(self) -> reqwest::Body {
        let chunks = futures_util::stream::unfold(Some(self), |state| async move {
            let mut lazy = state?;
            let mut buf = vec![0u8; CHUNK_BYTES];
            match lazy.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(lazy)))
                }
                Err(error) => Some((Err(error), None)),
            }
        });
        reqwest::Body::wrap_stream(chunks)
    }
}

impl Read for LazyFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(File::open(&self.path)?),
        };
        let n = file.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_names() {
        assert_eq!(escape("dir/a b%.txt"), "dir/a%20b%25.txt");
        assert_eq!(escape("é"), "%C3%A9");
    }
}
