//! A small filesystem for the full-disk tests, made without root: a tmpfs of
//! a chosen size mounted in a user and mount namespace of its own
//! (`unshare -rm`), which a holder process keeps alive across daemon
//! restarts. Read [`SmallDisk`] first.
//!
//! The daemon runs inside the namespace through [`SmallDisk::wrapper`]
//! (`nsenter`); the test reaches the files through `/proc/<holder>/root`,
//! which the owner of the namespace may read, so it can fill the disk and
//! free it again while the daemon runs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One tmpfs of a fixed size, mounted at a path inside a namespace of its own;
/// unmounted when dropped (the namespace goes with its last process).
pub struct SmallDisk {
    holder: Child,
    /// Where it is mounted, as the daemon inside sees it.
    at: PathBuf,
}

/// The filler file's name, at the root of the small disk.
const FILLER: &str = "filler.bin";

impl SmallDisk {
    /// Mounts a tmpfs of `size` bytes at `at` (created when missing) in a new
    /// user and mount namespace. Panics, saying why, when the system forbids
    /// unprivileged user namespaces and the test does not run as root.
    pub fn mount(at: &Path, size: u64) -> SmallDisk {
        std::fs::create_dir_all(at).expect("create the mount point");
        let script = format!("mount -t tmpfs -o size={size} tmpfs \"$0\" && echo mounted && exec sleep 1000000",);
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(at)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read the holder's output");
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let output = holder.wait_with_output().expect("holder output");
            panic!(
                "cannot mount a small tmpfs in a user namespace ({}); the full-disk tests need unprivileged user \
                 namespaces (kernel.unprivileged_userns_clone / apparmor_restrict_unprivileged_userns) or root",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        SmallDisk { holder, at: at.to_path_buf() }
    }

    /// The command prefix that runs a program inside the namespace, where the disk is mounted.
    pub fn wrapper(&self) -> Vec<String> {
        let pid = self.holder.id().to_string();
        ["nsenter", "-t", &pid, "--user", "--mount", "--preserve-credentials", "--"].map(String::from).to_vec()
    }

    /// `relative` on the small disk, as this process reaches it.
    pub fn path(&self, relative: &str) -> PathBuf {
        let inside = self.at.strip_prefix("/").unwrap_or(&self.at);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(inside).join(relative)
    }

    /// Bytes free on the small disk now.
    pub fn available(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.path("")).expect("statvfs of the small disk");
        stat.f_bavail * stat.f_frsize
    }

    /// Grows the filler file until `left` bytes are free (or the disk is full).
    pub fn fill_leaving(&self, left: u64) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(FILLER))
            .expect("open the filler file");
        let chunk = vec![0xa5u8; 64 * 1024];
        while self.available() > left {
            let want = (self.available() - left).min(chunk.len() as u64) as usize;
            match file.write_all(&chunk[..want]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("cannot write the filler file: {e}"),
            }
        }
        file.sync_all().expect("sync the filler");
    }

    /// Removes the filler file.
    pub fn free(&self) {
        std::fs::remove_file(self.path(FILLER)).expect("remove the filler file");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
