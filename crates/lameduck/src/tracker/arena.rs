//! One tracker's chunks: a grow-only directory, slot claiming, counting,
//! reading and waiting for idle.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::chunk::{Chunk, Label, OCCUPANCY, SLOTS, releases};
use super::lease::{LEASES, WAYS, Way, can_keep_leases, new_lease};

/// Chunks in the first directory segment; each next segment doubles.
const BASE: usize = 8;
const SEGMENTS: usize = 19;
/// Most chunks one tracker can have: 4_194_296, i.e. 134 million live guards.
const CAPACITY: usize = BASE * ((1 << SEGMENTS) - 1);
/// Bits of an id that hold the slot index (`CAPACITY * SLOTS < 2^27`).
const INDEX_BITS: u32 = 27;

/// A live item as read by a snapshot, before its label is resolved.
pub(super) struct RawItem {
    pub(super) id: u64,
    pub(super) start: u64,
    pub(super) label: Label,
}

/// The id of the occupant with generation `generation` of slot `index`.
#[inline]
pub(super) fn item_id(generation: u64, index: usize) -> u64 {
    (generation >> 1) << INDEX_BITS | index as u64
}

/// The slot index of an item id.
#[cfg(test)]
pub(super) fn index_of(id: u64) -> usize {
    (id & ((1 << INDEX_BITS) - 1)) as usize
}

/// Source of `Arena::uid`s; never reused, so a stale lease can never match
/// a newer tracker that happens to sit at the same address.
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

pub(super) struct Arena {
    /// Identifies this arena in the per-thread leases.
    uid: u64,
    /// Segment `s` holds `BASE << s` entries. Entries below `len` are set.
    /// `OnceLock` makes a published entry readable with an acquire load and
    /// no lock; a segment never moves, so growing never blocks readers.
    segments: [OnceLock<Box<[OnceLock<&'static Chunk>]>>; SEGMENTS],
    /// Number of published chunks.
    len: AtomicUsize,
    /// Where the next lease starts looking for a chunk with room.
    cursor: AtomicUsize,
    grow: Mutex<()>,
}

impl Arena {
    pub(super) fn new() -> Self {
        super::clock::hold();
        Self {
            // Relaxed: uniqueness is all that matters.
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            segments: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            grow: Mutex::new(()),
        }
    }

    /// Published chunks. `SeqCst` to sit in the idle check's total order.
    #[inline]
    fn chunks(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    #[inline]
    fn chunk(&self, i: usize) -> &'static Chunk {
        let j = i + BASE;
        let segment = (usize::BITS - 1 - j.leading_zeros() - BASE.trailing_zeros()) as usize;
        let entries = self.segments[segment].get().expect("published segment");
        entries[j - (BASE << segment)]
            .get()
            .copied()
            .expect("published chunk")
    }

    /// This arena's id; see [`claim_leased`](Self::claim_leased).
    pub(super) fn uid(&self) -> u64 {
        self.uid
    }

    /// Claims a slot through this thread's lease for the tracker `uid`, if
    /// it has one with a slot known to be free. Returns the chunk and the
    /// slot's index within the tracker.
    ///
    /// The fast path. It takes the uid rather than `&self` so that it does
    /// not wait for the load of the arena: it touches only the thread's own
    /// lease and the leased chunk's word.
    #[inline(always)]
    pub(super) fn claim_leased(uid: u64) -> Option<(&'static Chunk, usize)> {
        LEASES.with(|ways| {
            let way = &ways[uid as usize % WAYS];
            let free = way.free.get();
            // A matching uid means a chunk of that tracker, which is alive
            // (the caller holds it), leased to this thread: a tracker's
            // chunks stay its own until it is dropped.
            if way.uid.get() != uid || free == 0 {
                return None;
            }
            let chunk = way.chunk.get()?;
            let (bit, free) = chunk.claim(free);
            way.free.set(free);
            Some((chunk, way.first.get() + bit))
        })
    }

    /// Claims a slot when [`claim_leased`](Self::claim_leased) could not:
    /// refreshes this thread's lease or takes a new one.
    #[cold]
    #[inline(never)]
    pub(super) fn claim(&self) -> (&'static Chunk, usize) {
        if can_keep_leases() {
            LEASES.with(|ways| self.claim_in(&ways[self.uid as usize % WAYS]))
        } else {
            // The thread is exiting: lease a chunk for this one claim.
            let way = Way::empty();
            let claimed = self.claim_in(&way);
            way.give_up();
            claimed
        }
    }

    /// Claims through `way`, first refreshing its view of the leased chunk
    /// (slots released since the last claim), then leasing another chunk.
    fn claim_in(&self, way: &Way) -> (&'static Chunk, usize) {
        if way.uid.get() == self.uid
            && let Some(chunk) = way.chunk.get()
        {
            let free = chunk.free_slots();
            if free != 0 {
                let (bit, free) = chunk.claim(free);
                way.free.set(free);
                return (chunk, way.first.get() + bit);
            }
        }
        way.give_up();
        let lease = new_lease();
        let (chunk, i) = self.lease(lease);
        // Only we set bits now, so what is free now stays free for us.
        let (bit, free) = chunk.claim(chunk.free_slots());
        way.uid.set(self.uid);
        way.chunk.set(Some(chunk));
        way.lease.set(lease);
        way.first.set(i * SLOTS);
        way.free.set(free);
        (chunk, i * SLOTS + bit)
    }

    /// Leases a chunk with a free slot to `lease`; returns it and its index.
    ///
    /// Looks at a few chunks from the cursor, then grows. Bounding the look
    /// keeps a lease O(1) when a large tracker is full (a fan-out of 100k
    /// tasks fills 3125 chunks); the cursor moves on each time, so over many
    /// leases every chunk is looked at and freed slots are found again.
    fn lease(&self, lease: u64) -> (&'static Chunk, usize) {
        const LOOK: usize = 8;
        loop {
            let n = self.chunks();
            // Relaxed: the cursor is only a place to start looking.
            let start = self.cursor.load(Ordering::Relaxed);
            for k in 0..n.min(LOOK) {
                let i = start.wrapping_add(k) % n;
                let chunk = self.chunk(i);
                if chunk.free_slots() != 0 && chunk.try_lease(lease) {
                    // Another holder may have filled it before we got it.
                    if chunk.free_slots() != 0 {
                        self.cursor.store(i + 1, Ordering::Relaxed);
                        return (chunk, i);
                    }
                    chunk.unlease(lease);
                }
            }
            self.cursor
                .store(start.wrapping_add(LOOK), Ordering::Relaxed);
            if let Some(grown) = self.grow(n, lease) {
                return grown;
            }
        }
    }

    /// Adds a chunk leased to `lease`, unless another thread changed the
    /// directory since we saw `seen` chunks (then look again).
    #[cold]
    fn grow(&self, seen: usize, lease: u64) -> Option<(&'static Chunk, usize)> {
        let _lock = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        let n = self.chunks();
        if n != seen {
            return None;
        }
        assert!(
            n < CAPACITY,
            "more than {} guards live at once on one tracker",
            CAPACITY * SLOTS
        );
        let chunk = Chunk::take();
        // Leased before anyone can see it, so no other thread takes it.
        chunk.lease_new(lease);
        let j = n + BASE;
        let segment = (usize::BITS - 1 - j.leading_zeros() - BASE.trailing_zeros()) as usize;
        let entries = self.segments[segment]
            .get_or_init(|| (0..BASE << segment).map(|_| OnceLock::new()).collect());
        if entries[j - (BASE << segment)].set(chunk).is_err() {
            unreachable!("directory entry {n} set twice");
        }
        // Publish after the entry is set: a thread that sees the new length
        // sees the entry (SeqCst includes release; `chunks` acquires).
        self.len.store(n + 1, Ordering::SeqCst);
        Some((chunk, n))
    }

    /// Live slots, summed chunk by chunk (not one atomic instant).
    pub(super) fn count(&self) -> usize {
        (0..self.chunks())
            .map(|i| (self.chunk(i).load() & OCCUPANCY).count_ones() as usize)
            .sum()
    }

    /// `Ok` if at some instant during the call no slot was live; else the
    /// index of a chunk to look at again.
    ///
    /// A double collect: read every word, then read them all again. If every
    /// chunk was empty both times and its releases counter did not move, no
    /// slot of it was live between its two reads (a claim in between would
    /// still be live, or its release would show; all claims and releases are
    /// in the same `SeqCst` order as these loads), so none was live at the
    /// moment between the two passes. Chunks published after the first `len`
    /// load can only hold claims made after it, which the final `len` check
    /// catches.
    pub(super) fn quiescent(&self) -> Result<(), usize> {
        let n = self.chunks();
        // Most trackers have a chunk or two; keep `is_empty` allocation-free
        // for them.
        let mut inline = [0; 16];
        let mut heap = Vec::new();
        let first = if n <= inline.len() {
            &mut inline[..n]
        } else {
            heap.resize(n, 0);
            &mut heap[..]
        };
        for (i, before) in first.iter_mut().enumerate() {
            let word = self.chunk(i).load();
            if word & OCCUPANCY != 0 {
                return Err(i);
            }
            *before = releases(word);
        }
        for (i, &before) in first.iter().enumerate() {
            if releases(self.chunk(i).load()) != before {
                return Err(i);
            }
        }
        match self.chunks() {
            m if m == n => Ok(()),
            m => Err(m - 1),
        }
    }

    /// Resolves once [`quiescent`](Self::quiescent) holds. Cancel safe.
    pub(super) async fn wait_idle(&self) {
        loop {
            // Walk from the newest chunk down, sleeping on each busy one until
            // it empties. Under a cancellation fan-out the oldest work tends
            // to finish first, so the waiter sleeps on the chunk that empties
            // last and wakes a few times instead of once per chunk. Only the
            // wake-up count depends on this order; correctness does not.
            for i in (0..self.chunks()).rev() {
                self.chunk(i).until_empty().await;
            }
            match self.quiescent() {
                Ok(()) => return,
                Err(i) if self.chunk(i).load() & OCCUPANCY != 0 => {}
                // Work started and finished during the check. Let others run
                // rather than spin on a tracker that is never still.
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    /// Appends every live item to `out`.
    pub(super) fn collect(&self, out: &mut Vec<RawItem>) {
        for i in 0..self.chunks() {
            let chunk = self.chunk(i);
            let mut live = chunk.load() & OCCUPANCY;
            while live != 0 {
                let bit = live.trailing_zeros() as usize;
                live &= live - 1;
                if let Some(read) = chunk.slots[bit].read() {
                    out.push(RawItem {
                        id: item_id(read.generation, i * SLOTS + bit),
                        start: read.start,
                        label: read.label,
                    });
                }
            }
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        super::clock::release();
        for i in 0..self.chunks() {
            self.chunk(i).orphan();
        }
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("chunks", &self.chunks())
            .field("live", &self.count())
            .finish()
    }
}
