//! How the master's memory goes back to the system. At 1,000 nodes the
//! master decodes tens of thousands of objects a second (heartbeats, the
//! store's watch, controller rounds) on several threads, and glibc's
//! allocator, left to its defaults, keeps what bursts freed: heaptrack
//! showed about 210 MiB in use where 808 MiB were resident
//! (`berth-bench cluster-sim`).

use std::time::Duration;

/// How often freed memory is handed back.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Sets the allocator up; call before any thread starts. At most two
/// arenas: glibc gives each thread that allocates under contention an
/// arena of its own, up to eight per core, and memory freed in one serves
/// only that one.
#[allow(unsafe_code)] // a libc call with no pointer in it
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, and is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages freed inside the heap back to the system every
/// [`TRIM_INTERVAL`], forever: glibc returns only the heap's top on its
/// own, and a burst of decoding leaves free pages all through it.
pub async fn trim_forever() {
    loop {
        tokio::time::sleep(TRIM_INTERVAL).await;
        trim();
    }
}

#[allow(unsafe_code)] // a libc call with no pointer in it
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it is safe to
    // call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
