//! Replays every committed input through its target in `make test`, without an instrumented
//! build: the seed and minimized corpora (`corpus/<target>/`) and every crash a campaign found
//! (`regressions/<target>/`), which must no longer crash.

use std::path::Path;

use pincluster_fuzz::{crate_dir, TARGETS};

/// The files of `dir` (none when it does not exist), sorted by name.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs each input through its target; returns the inputs that panicked.
fn replay(folder: &str) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut failed = Vec::new();
    for target in TARGETS {
        for path in inputs(&crate_dir().join(folder).join(target.name)) {
            let data = std::fs::read(&path).expect("readable input");
            count += 1;
            if std::panic::catch_unwind(|| (target.run)(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    (count, failed)
}

#[test]
fn every_target_has_a_seed_corpus_and_every_folder_a_target() {
    for target in TARGETS {
        assert!(!inputs(&crate_dir().join("corpus").join(target.name)).is_empty(), "no corpus for {}", target.name);
    }
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(crate_dir().join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(TARGETS.iter().any(|t| t.name == name), "{folder}/{name} names no target");
        }
    }
}

#[test]
fn the_corpora_replay_without_a_crash() {
    let (count, failed) = replay("corpus");
    assert!(count >= TARGETS.len(), "only {count} corpus inputs");
    assert!(failed.is_empty(), "these inputs crash their target: {failed:#?}");
}

#[test]
fn every_crash_found_so_far_is_fixed() {
    let (_, failed) = replay("regressions");
    assert!(failed.is_empty(), "these regressions crash again: {failed:#?}");
}
