//! The libFuzzer entry point of the campaign: runs the target named by `FUZZ_TARGET` (see
//! `pincluster_fuzz::TARGETS`) on each input libFuzzer makes. Built by benches/fuzz.sh only.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;

/// The largest single allocation allowed: inputs are a few KiB, so a parser asking for more
/// than this was talked into it by a length field (libFuzzer's own `-malloc_limit_mb` needs a
/// sanitizer's allocator hooks, which a stable build does not have).
const MAX_ALLOCATION: usize = 256 << 20;

struct Bounded;

// SAFETY: every call is passed on to the system allocator unchanged, or aborts.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No formatting here: it would allocate.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"allocation larger than MAX_ALLOCATION\n");
        std::process::abort();
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

fn chosen() -> fn(&[u8]) {
    static RUN: OnceLock<fn(&[u8])> = OnceLock::new();
    *RUN.get_or_init(|| {
        let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
        match pincluster_fuzz::target(&name) {
            Some(target) => target.run,
            None => {
                let names: Vec<&str> = pincluster_fuzz::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("FUZZ_TARGET must be one of: {}", names.join(" "));
                std::process::exit(2);
            }
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chosen()(data);
});
