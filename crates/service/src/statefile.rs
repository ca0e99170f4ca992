//! `state export` and `state import`: the shared pinset as newline-delimited
//! JSON, a backup that people can read, diff and restore. Read [`StateCommand`]
//! first, then [`PinLine`] for the format.
//!
//! The first line is a [`Header`]; each further line is one cluster pin with
//! all its holders, in CID byte order (holders in user-name order, meta by
//! key), so exporting the same pinset twice gives the same bytes. Only the
//! shared half of the pinset is written, what users asked for, never this
//! peer's status of the content: an imported pin starts `queued` and is
//! fetched again. Times are integer milliseconds, the precision of `created`,
//! so they come back exact and listings page the same after a restore.
//!
//! Both commands open the pinset of the config folder directly, holding the
//! daemon's folder lock: the daemon must be stopped. Memory stays bounded
//! whatever the size of the pinset: export writes each line as the scan
//! yields its entry, import reads line by line and proposes
//! [`Command::Restore`] in batches. The wire structs are private to this file
//! and converted explicitly, like every wire format of this project.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use pincluster_config::{Overrides, CONFIG_FILE};
use pincluster_model::{
    Cid, ClusterPin, Multiaddr, NewPin, PinMode, PinOptions, StatusSet, Timestamp, UserName, UserPin,
};
use pincluster_state::{Applied, ClusterEntry, Command, Pinset, StateError};
use serde::{Deserialize, Serialize};

use crate::daemon;

/// The `format` of the header line.
const FORMAT: &str = "pincluster-state";
/// The `version` of the header line this build writes and reads.
const VERSION: u32 = 1;
/// The longest line `state import` reads by default. A cluster pin is one
/// line with all its holders, so a CID that many users hold with large meta
/// can exceed it: export warns when it writes such a line.
const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// The most entries one [`Command::Restore`] batch (one log entry) carries.
const BATCH_ENTRIES: usize = 1000;
/// The most input bytes one batch carries, so that long lines keep the batch small.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Progress goes to stderr every this many cluster pins.
const PROGRESS_EVERY: u64 = 100_000;

/// `pincluster-service state …`.
#[derive(clap::Subcommand)]
pub enum StateCommand {
    /// Write the shared pinset (every pin of every user, without this peer's
    /// statuses) as newline-delimited JSON. The daemon must be stopped.
    Export {
        /// Where to write; "-" is stdout. A file is written whole or not at
        /// all (through FILE.partial, renamed when complete).
        #[arg(long, short = 'o', value_name = "FILE|-", default_value = "-")]
        output: PathBuf,
    },
    /// Restore pins from a file written by `state export`, keeping every
    /// `created`. The daemon must be stopped; it fetches the pins when it starts.
    Import {
        /// Add to a pinset that already holds pins: a CID already present gains
        /// the holders it lacks, holders already present are left as they are.
        #[arg(long)]
        merge: bool,
        /// Refuse lines longer than this many bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
        max_line_bytes: usize,
        /// The file to read; "-" is stdin.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
}

/// Runs `command` on the pinset of the config folder `dir`.
pub fn run(dir: &Path, command: StateCommand) -> anyhow::Result<()> {
    let config_file = dir.join(CONFIG_FILE);
    if !config_file.exists() {
        bail!("{} does not exist: run `pincluster-service init` first", config_file.display());
    }
    let config = pincluster_config::load(dir, std::env::vars(), &Overrides::default())?;
    let in_use =
        || format!("the pinset is in use: stop the daemon first ({} is locked)", daemon::lock_path(dir).display());
    let Some(_lock) = daemon::try_lock(dir)? else {
        bail!(in_use());
    };
    let options = daemon::state_options(dir, &config);
    let pinset = match Pinset::open(&options) {
        Ok(pinset) => pinset,
        // sled's own lock: another process has the database open without the folder lock.
        Err(error) if error.to_string().contains("could not acquire lock") => bail!(in_use()),
        Err(error) => return Err(error).with_context(|| format!("cannot open the pinset {}", options.path.display())),
    };
    let result = match command {
        StateCommand::Export { output } => export_to(&pinset, &output),
        StateCommand::Import { merge, max_line_bytes, file } => {
            pincluster_consensus::detach(&pinset, &crate::cluster::snapshot_dir(dir))
                .context("cannot import into this pinset")
                .and_then(|()| import_from(&pinset, &file, ImportOptions { merge, max_line_bytes }))
        }
    };
    // Close in every case, so that the next open (the daemon's) reads a fresh snapshot.
    let closed = pinset.close();
    result?;
    closed.context("cannot close the pinset")?;
    Ok(())
}

/// The first line: what the file is.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// Always [`FORMAT`].
    format: String,
    /// [`VERSION`]; a newer version is refused.
    version: u32,
}

/// One cluster pin: the options the cluster shares and every user who holds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinLine {
    cid: String,
    mode: ModeLine,
    /// -1 = every peer.
    replication_factor_min: i32,
    /// -1 = every peer.
    replication_factor_max: i32,
    user_allocations: Vec<String>,
    allocations: Vec<String>,
    /// Milliseconds since the Unix epoch.
    expire_at: Option<u64>,
    /// When the first user pinned it, in milliseconds since the Unix epoch.
    created: u64,
    /// In user-name byte order; at least one.
    holders: Vec<HolderLine>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeLine {
    Recursive,
    Direct,
}

/// One user's pin object of the line's CID.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolderLine {
    user: String,
    name: Option<String>,
    meta: BTreeMap<String, String>,
    /// Multiaddresses.
    origins: Vec<String>,
    /// Unique per user, in milliseconds since the Unix epoch.
    created: u64,
}

impl PinLine {
    fn from_domain(entry: &ClusterEntry) -> PinLine {
        let pin = &entry.pin;
        PinLine {
            cid: pin.cid.to_string(),
            mode: match pin.options.mode {
                PinMode::Recursive => ModeLine::Recursive,
                PinMode::Direct => ModeLine::Direct,
            },
            replication_factor_min: pin.options.replication_min,
            replication_factor_max: pin.options.replication_max,
            user_allocations: pin.options.user_allocations.clone(),
            allocations: pin.allocations.clone(),
            expire_at: pin.options.expire_at.map(Timestamp::as_millis),
            created: pin.created.as_millis(),
            holders: entry
                .holders
                .iter()
                .map(|(user, pin)| HolderLine {
                    user: user.as_str().to_owned(),
                    name: pin.name.clone(),
                    meta: pin.meta.clone(),
                    origins: pin.origins.iter().map(ToString::to_string).collect(),
                    created: pin.created.as_millis(),
                })
                .collect(),
        }
    }

    /// The entry this line describes, checked as the APIs check a new pin.
    fn into_domain(self) -> Result<ClusterEntry, String> {
        let cid = Cid::try_from(self.cid.as_str()).map_err(|e| format!("cid {:?}: {e}", self.cid))?;
        let (min, max) = (self.replication_factor_min, self.replication_factor_max);
        if min < -1 || max < -1 || (min == -1) != (max == -1) || min > max {
            return Err(format!(
                "replication_factor_min {min} and replication_factor_max {max}: both must be -1 (every peer), \
                 or positive with min <= max"
            ));
        }
        let options = PinOptions {
            mode: match self.mode {
                ModeLine::Recursive => PinMode::Recursive,
                ModeLine::Direct => PinMode::Direct,
            },
            replication_min: min,
            replication_max: max,
            user_allocations: self.user_allocations,
            expire_at: self.expire_at.map(Timestamp),
        };
        if self.holders.is_empty() {
            return Err("holders is empty: a pin needs at least one holder".into());
        }
        let mut holders: Vec<(UserName, UserPin)> = Vec::with_capacity(self.holders.len());
        for (i, holder) in self.holders.into_iter().enumerate() {
            let user =
                UserName::new(holder.user.as_str()).map_err(|e| format!("holders[{i}].user {:?}: {e}", holder.user))?;
            if holders.iter().any(|(u, _)| *u == user) {
                return Err(format!("holders[{i}].user {:?}: the user is listed twice", holder.user));
            }
            let origins = holder
                .origins
                .iter()
                .enumerate()
                .map(|(j, o)| o.parse::<Multiaddr>().map_err(|e| format!("holders[{i}].origins[{j}] {o:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let pin = NewPin { cid, name: holder.name, meta: holder.meta, origins, options: options.clone() };
            pin.validate().map_err(|e| format!("holders[{i}] ({user}): {e}"))?;
            let pin = UserPin {
                cid,
                name: pin.name,
                meta: pin.meta,
                origins: pin.origins,
                created: Timestamp(holder.created),
            };
            holders.push((user, pin));
        }
        Ok(ClusterEntry { pin: ClusterPin::shared(cid, options, self.allocations, Timestamp(self.created)), holders })
    }
}

/// What was exported or imported.
#[derive(Clone, Copy, Default)]
struct Counts {
    /// Cluster pins: lines.
    cluster_pins: u64,
    /// User pins: holders (for an import, the holders added).
    user_pins: u64,
}

/// `n` and the noun, plural unless `n` is 1.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Exports to `output` ("-" = stdout); a file is written through a temporary
/// name and renamed once complete and on disk.
fn export_to(pinset: &Pinset, output: &Path) -> anyhow::Result<()> {
    let counts = if output == Path::new("-") {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let counts = export(pinset, &mut out).context("cannot export to stdout")?;
        out.flush().context("cannot export to stdout")?;
        counts
    } else {
        let partial = partial_path(output);
        let write = || -> anyhow::Result<Counts> {
            let file = File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
            let mut out = BufWriter::new(file);
            let counts = export(pinset, &mut out)?;
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.sync_all()?;
            std::fs::rename(&partial, output)?;
            Ok(counts)
        };
        match write() {
            Ok(counts) => counts,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error).with_context(|| format!("cannot write {}", output.display()));
            }
        }
    };
    eprintln!(
        "exported {} ({}) to {}",
        count(counts.cluster_pins, "cluster pin"),
        count(counts.user_pins, "user pin"),
        if output == Path::new("-") { "stdout".into() } else { output.display().to_string() }
    );
    Ok(())
}

/// `FILE.partial` next to `FILE`.
fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

/// Writes the header and one line per cluster pin, each as the scan yields it.
fn export(pinset: &Pinset, out: &mut impl Write) -> anyhow::Result<Counts> {
    let mut line = Vec::new();
    serde_json::to_writer(&mut line, &Header { format: FORMAT.into(), version: VERSION })?;
    line.push(b'\n');
    out.write_all(&line)?;
    let mut counts = Counts::default();
    for entry in pinset.entries() {
        let entry = entry.context("cannot read the pinset")?;
        line.clear();
        serde_json::to_writer(&mut line, &PinLine::from_domain(&entry))?;
        line.push(b'\n');
        out.write_all(&line)?;
        counts.cluster_pins += 1;
        counts.user_pins += entry.holders.len() as u64;
        if line.len() > DEFAULT_MAX_LINE_BYTES {
            eprintln!(
                "warning: line {} ({}) is {} bytes long; import it with --max-line-bytes {}",
                counts.cluster_pins + 1,
                entry.pin.cid,
                line.len(),
                line.len()
            );
        }
        if counts.cluster_pins % PROGRESS_EVERY == 0 {
            eprintln!("exported {} so far", count(counts.cluster_pins, "cluster pin"));
        }
    }
    Ok(counts)
}

#[derive(Clone, Copy)]
struct ImportOptions {
    merge: bool,
    max_line_bytes: usize,
}

/// Imports from `file` ("-" = stdin).
fn import_from(pinset: &Pinset, file: &Path, options: ImportOptions) -> anyhow::Result<()> {
    let present = pinset.cluster_count(StatusSet::ALL).context("cannot read the pinset")?;
    if present > 0 && !options.merge {
        bail!(
            "the pinset already holds {}: import into an empty pinset, or pass --merge to add the file's pins to \
             them; nothing was imported",
            count(present, "cluster pin")
        );
    }
    let (source, counts) = if file == Path::new("-") {
        ("stdin".to_string(), import(pinset, io::stdin().lock(), options)?)
    } else {
        let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        (file.display().to_string(), import(pinset, BufReader::new(input), options)?)
    };
    eprintln!(
        "imported {} from {source}: {} added",
        count(counts.cluster_pins, "cluster pin"),
        count(counts.user_pins, "user pin")
    );
    Ok(())
}

/// Reads the header, then proposes the entries in batches. On an error,
/// every line before the failing one is imported (a malformed line first
/// imports the batch before it), and the message says so.
fn import(pinset: &Pinset, mut input: impl BufRead, options: ImportOptions) -> anyhow::Result<Counts> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().build().context("cannot start a runtime for the pinset")?;
    let mut importer =
        Importer { pinset, runtime, merge: options.merge, batch: Vec::new(), batch_bytes: 0, done: Counts::default() };
    let mut line = Vec::new();
    let mut number: u64 = 0;
    loop {
        number += 1;
        let read = read_line(&mut input, &mut line, options.max_line_bytes);
        let parsed = match read {
            Ok(false) if number == 1 => Err(format!("the input is empty; expected the header {}", header_text())),
            Ok(false) => break,
            Ok(true) if number == 1 => check_header(&line).map(|()| None),
            Ok(true) => parse_entry(&line).map(Some),
            Err(ReadError::TooLong) => Err(format!(
                "the line is longer than {} bytes (raise --max-line-bytes to read it)",
                options.max_line_bytes
            )),
            Err(ReadError::Io(error)) => Err(format!("cannot read the input: {error}")),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(entry)) => {
                importer.push(number, entry, line.len())?;
            }
            Err(reason) => {
                // Everything before this line goes in, so the message is simple to act on.
                importer.flush()?;
                bail!("line {number}: {reason}. {}", importer.before(number));
            }
        }
    }
    importer.flush()?;
    Ok(importer.done)
}

/// The header this build writes, as text.
fn header_text() -> String {
    format!(r#"{{"format":"{FORMAT}","version":{VERSION}}}"#)
}

fn check_header(line: &[u8]) -> Result<(), String> {
    let header: Header = serde_json::from_slice(line).map_err(|e| {
        format!("not a pincluster state export: expected the header {} ({})", header_text(), json_error(&e))
    })?;
    if header.format != FORMAT {
        return Err(format!("not a pincluster state export: format {:?}, expected {FORMAT:?}", header.format));
    }
    if header.version != VERSION {
        return Err(format!(
            "format version {} is not the version {VERSION} this build reads{}",
            header.version,
            if header.version > VERSION { "; upgrade pincluster to import it" } else { "" }
        ));
    }
    Ok(())
}

fn parse_entry(line: &[u8]) -> Result<ClusterEntry, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("the line is empty".into());
    }
    let line: PinLine = serde_json::from_slice(line).map_err(|e| format!("invalid pin: {}", json_error(&e)))?;
    line.into_domain().map_err(|e| format!("invalid pin: {e}"))
}

/// serde_json's message with the column instead of its "at line 1 column N"
/// (this file's line numbers are the ones that mean something).
fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => format!("{message} (column {})", error.column()),
        None => text,
    }
}

enum ReadError {
    TooLong,
    Io(io::Error),
}

/// Reads the next line into `line`, without its `\n`, reading at most
/// `max + 1` bytes of it. `Ok(false)` at the end of the input. The last line
/// needs no `\n`.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> Result<bool, ReadError> {
    line.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = input.by_ref().take(limit).read_until(b'\n', line).map_err(ReadError::Io)?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > max {
        return Err(ReadError::TooLong);
    }
    Ok(true)
}

/// Proposes entries in batches and keeps count.
struct Importer<'a> {
    pinset: &'a Pinset,
    runtime: tokio::runtime::Runtime,
    merge: bool,
    /// Each entry with its line number.
    batch: Vec<(u64, ClusterEntry)>,
    batch_bytes: usize,
    /// What the batches proposed so far added.
    done: Counts,
}

impl Importer<'_> {
    fn push(&mut self, number: u64, entry: ClusterEntry, bytes: usize) -> anyhow::Result<()> {
        self.batch.push((number, entry));
        self.batch_bytes += bytes;
        if self.batch.len() >= BATCH_ENTRIES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Proposes the batch as one log entry; fails naming the first line the
    /// pinset refused (the batch's other entries are in).
    fn flush(&mut self) -> anyhow::Result<()> {
        let Some(&(last, _)) = self.batch.last() else {
            return Ok(());
        };
        let (numbers, commands): (Vec<u64>, Vec<Command>) =
            self.batch.drain(..).map(|(number, entry)| (number, Command::Restore { entry, merge: self.merge })).unzip();
        self.batch_bytes = 0;
        let results = match self.runtime.block_on(self.pinset.propose(commands)) {
            Ok(results) => results,
            Err(error) => bail!(
                "cannot write lines {} to {last} to the pinset: {error}. {}",
                numbers.first().copied().unwrap_or(last),
                self.before(numbers.first().copied().unwrap_or(last))
            ),
        };
        let before = self.done.cluster_pins;
        let mut refused: Vec<(u64, StateError)> = Vec::new();
        for (number, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(Applied::Restore(added)) => {
                    self.done.cluster_pins += 1;
                    self.done.user_pins += added as u64;
                }
                Ok(_) => refused.push((number, StateError::Refused("the pinset did not restore it".into()))),
                Err(error) => refused.push((number, error)),
            }
        }
        if let Some((first, error)) = refused.first() {
            let lines: Vec<String> = refused.iter().take(10).map(|(n, _)| n.to_string()).collect();
            bail!(
                "line {first}: {error}. {} imported, from every line up to line {last} except {} ({}{}); \
                 nothing after line {last} was read.{}",
                count(self.done.cluster_pins, "cluster pin"),
                count(refused.len() as u64, "refused line"),
                lines.join(", "),
                if refused.len() > lines.len() { ", …" } else { "" },
                self.again()
            );
        }
        if self.done.cluster_pins / PROGRESS_EVERY > before / PROGRESS_EVERY {
            eprintln!("imported {} so far", count(self.done.cluster_pins, "cluster pin"));
        }
        Ok(())
    }

    /// What happened to the lines before `number`, once every batch is proposed.
    fn before(&self, number: u64) -> String {
        match self.done.cluster_pins {
            0 => "Nothing was imported.".into(),
            n => format!(
                "The {} before line {number} {} imported (in batches of up to {BATCH_ENTRIES}), nothing from line \
                 {number} on.{}",
                count(n, "cluster pin"),
                if n == 1 { "was" } else { "were" },
                self.again()
            ),
        }
    }

    /// How to import the rest once some pins are in.
    fn again(&self) -> &'static str {
        if self.done.cluster_pins == 0 {
            ""
        } else {
            " To import the rest, fix the file and import it again with --merge: the pins already imported stay \
             as they are."
        }
    }
}
