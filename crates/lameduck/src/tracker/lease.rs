//! Per-thread chunk leases: the fast path of `track`.
//!
//! A thread that tracks work leases one chunk per tracker and claims slots
//! only from it. Because no other thread sets bits in a leased chunk, the
//! thread knows which slots are free without reading the word, and a claim is
//! one `fetch_add` (see `chunk.rs`). The cache also saves the walk from the
//! tracker through its directory to the chunk, a chain of dependent loads
//! that cost more than the atomics.
//!
//! Each thread keeps [`WAYS`] leases, indexed by the tracker's uid, so a
//! thread that serves a few trackers keeps a lease on each. A lease is given
//! up when its chunk is full, when another tracker needs its way, and when
//! the thread exits (so a pool whose threads come and go does not strand
//! chunks).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::chunk::Chunk;

/// Leases per thread; a power of two.
pub(super) const WAYS: usize = 4;

/// Source of lease ids. Never reused, so a stale lease can never pass for a
/// newer one on a recycled chunk. 0 is `UNLEASED`.
static NEXT_LEASE: AtomicU64 = AtomicU64::new(1);

/// A new lease id.
pub(super) fn new_lease() -> u64 {
    // Relaxed: uniqueness is all that matters.
    NEXT_LEASE.fetch_add(1, Ordering::Relaxed)
}

/// One thread's lease on one chunk of one tracker.
pub(super) struct Way {
    /// `Arena::uid` of the tracker; 0 when empty.
    pub(super) uid: Cell<u64>,
    pub(super) chunk: Cell<Option<&'static Chunk>>,
    pub(super) lease: Cell<u64>,
    /// Index of the chunk's first slot within its tracker.
    pub(super) first: Cell<usize>,
    /// Slots known to be free: clear at the last read of the word, and only
    /// this lease sets bits.
    pub(super) free: Cell<u64>,
}

impl Way {
    /// A way that holds no lease.
    pub(super) const fn empty() -> Way {
        Way {
            uid: Cell::new(0),
            chunk: Cell::new(None),
            lease: Cell::new(0),
            first: Cell::new(0),
            free: Cell::new(0),
        }
    }

    /// Gives up the lease this way holds, if any.
    pub(super) fn give_up(&self) {
        if let Some(chunk) = self.chunk.take() {
            chunk.unlease(self.lease.get());
        }
        self.uid.set(0);
        self.free.set(0);
    }
}

thread_local! {
    // `const` and free of `Drop`: the fast path's access is a plain TLS
    // offset, with no lazy-init or destructor-state check, and it stays
    // valid while the thread is torn down.
    pub(super) static LEASES: [Way; WAYS] = const { [const { Way::empty() }; WAYS] };

    // Gives the leases up when the thread exits. Touched only when a lease
    // is taken, which registers its destructor.
    static CLEANUP: Cleanup = const { Cleanup };
}

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = LEASES.try_with(|ways| ways.iter().for_each(Way::give_up));
    }
}

/// Whether this thread will give its leases up when it exits; `false` once
/// it has started exiting, when a lease taken now would be stranded.
pub(super) fn can_keep_leases() -> bool {
    CLEANUP.try_with(|_| ()).is_ok()
}
