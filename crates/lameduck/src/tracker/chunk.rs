//! A chunk of 32 slots with one atomic word of state, and the process-wide
//! pool that recycles chunks between trackers.
//!
//! # The state word
//!
//! ```text
//!  63             34  33        32       31                0
//! [ releases (30 b) | ORPHANED | WATCHED | occupancy, 1 bit/slot ]
//! ```
//!
//! - *occupancy*: a slot is live from the `fetch_add` that sets its bit to
//!   the `fetch_add` that clears it. `len` is a popcount.
//! - *releases*: bumped by every release in the same RMW, so two reads of an
//!   empty chunk with equal counters prove that no slot was live in between:
//!   a claim in between would still be live, or its release would show (see
//!   `Arena::quiescent`). It wraps after 2^30 releases, far more than can
//!   happen between two reads of one word during a scan.
//! - *WATCHED*: an idle waiter sleeps on this chunk's [`Notify`]; the release
//!   that empties the chunk clears the bit and wakes it. Releases that see the
//!   bit clear pay nothing for notification.
//! - *ORPHANED*: the owning tracker is gone; the release that empties the
//!   chunk (or the tracker's drop, if already empty) returns it to the pool.
//!   Both sides learn "empty and orphaned" from one RMW on this word, so
//!   exactly one of them recycles.
//!
//! Only the thread holding the chunk's *lease* (see `lease.rs`) sets
//! occupancy bits, and it only sets bits it knows are clear. So a claim is a
//! plain `fetch_add` of the bit (one `lock xadd` on x86-64, no CAS loop, no
//! load first), and a release, which owns its bit, is a `fetch_add` that
//! subtracts the bit and bumps the counter at once. Both RMWs return the old
//! word, which is all the flags and the lease holder's free mask need.
//!
//! Every RMW on the word is `SeqCst`: on x86-64 and AArch64 a `SeqCst` RMW
//! costs the same as an `AcqRel` one, and it gives the idle check a single
//! total order to reason about. Its release and acquire halves carry a
//! slot's history to its next claimer: whoever reads the word and finds the
//! slot free has synchronized with the release that freed it, which came
//! after everything the previous occupant wrote.
//!
//! # A slot
//!
//! The lease holder writes a slot's fields with `Relaxed` stores under a
//! seqlock formed by the generation: odd while the fields are being written,
//! even once they are stable, two steps per occupant. A free slot is only
//! ever written by its chunk's lease holder, so the odd step is taken
//! *before* the claim sets the slot's bit: a reader that sees the bit then
//! sees the odd generation or later, never the previous occupant's even one.
//! Releasing needs no store to the slot at all, so a guard finished on
//! another thread touches only the chunk's word and the slot's cache line
//! stays with the thread that claims from it. `generation >> 1` numbers the
//! occupants of a slot, which makes `(generation >> 1, slot index)` an id
//! that no other guard of the same tracker gets.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::label::{DYNAMIC, INLINE};

/// Bytes of label text a slot holds in place.
pub(super) const INLINE_BYTES: usize = 48;
const INLINE_WORDS: usize = INLINE_BYTES / 8;

/// Slots per chunk: the low half of the state word.
pub(super) const SLOTS: usize = 32;
pub(super) const OCCUPANCY: u64 = (1 << SLOTS) - 1;
pub(super) const WATCHED: u64 = 1 << 32;
const ORPHANED: u64 = 1 << 33;
const RELEASE_SHIFT: u32 = 34;
const RELEASE_ONE: u64 = 1 << RELEASE_SHIFT;
/// `Chunk::owner` of a chunk that nobody leases.
const UNLEASED: u64 = 0;

/// The releases counter of a state word.
pub(super) fn releases(word: u64) -> u64 {
    word >> RELEASE_SHIFT
}

pub(super) struct Slot {
    /// Seqlock and occupant number; see the module docs.
    generation: AtomicU64,
    /// Start time from `clock::start_time`.
    start: AtomicU64,
    /// Interned label id, `DYNAMIC`, or `INLINE | length`.
    label: AtomicU32,
    /// A short run-time label's bytes, written and read under the seqlock
    /// like the other fields: no lock, no allocation.
    inline: [AtomicU64; INLINE_WORDS],
    /// Text of a run-time label. Only `track_with`, the drop of its guard and
    /// snapshots lock it; the static fast path never does.
    dynamic: Mutex<Option<Box<str>>>,
}

/// What a snapshot read from one live slot.
pub(super) struct Reading {
    pub(super) generation: u64,
    pub(super) start: u64,
    pub(super) label: Label,
}

pub(super) enum Label {
    Static(u32),
    Dynamic(String),
}

/// A label as a guard is started with.
pub(super) enum Text {
    /// Interned: the label id says it all.
    Interned,
    /// Held in the slot's dynamic-label cell.
    Boxed(Box<str>),
    /// Held in the slot itself (at most `INLINE_BYTES`).
    Inline([u8; INLINE_BYTES], usize),
}

impl Slot {
    fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            start: AtomicU64::new(0),
            label: AtomicU32::new(0),
            inline: std::array::from_fn(|_| AtomicU64::new(0)),
            dynamic: Mutex::new(None),
        }
    }

    /// Drops the run-time label before the slot can be reused, so the text
    /// neither outlives its work nor shows up under the next occupant.
    /// Out of line, to keep the mutex out of every guard's drop.
    #[cold]
    #[inline(never)]
    fn clear_text(&self) {
        let text = self
            .dynamic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(text);
    }

    /// The generation of the live occupant. Only its owner may call this.
    #[inline]
    pub(super) fn own_generation(&self) -> u64 {
        // Only the owner writes `generation` while the slot is live.
        self.generation.load(Ordering::Relaxed)
    }

    /// Reads the occupant of a slot whose bit was just seen set, or `None`
    /// if it is being filled or changed hands while being read (then that
    /// occupant has finished, and the next one started after the read began).
    pub(super) fn read(&self) -> Option<Reading> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation & 1 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let label = match self.label.load(Ordering::Relaxed) {
            // No text means its release has cleared it: the occupant has
            // finished. (A release leaves the generation alone, so the
            // re-check below would not catch this one.)
            DYNAMIC => Label::Dynamic(
                self.dynamic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_deref()?
                    .to_owned(),
            ),
            id if id & INLINE != 0 => {
                let mut bytes = [0u8; INLINE_BYTES];
                for (word, out) in self.inline.iter().zip(bytes.chunks_exact_mut(8)) {
                    out.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
                }
                let len = ((id & !INLINE) as usize).min(INLINE_BYTES);
                // A torn read fails the re-check below; this text is then
                // dropped unseen.
                Label::Dynamic(String::from_utf8_lossy(&bytes[..len]).into_owned())
            }
            id => Label::Static(id),
        };
        // Seqlock read side: keep the field loads above before the re-check.
        // If any of them saw a newer occupant's store, that occupant's
        // release fence (in `publish`) synchronizes with this fence, so the
        // re-check sees at least the odd value written before that store.
        fence(Ordering::Acquire);
        (self.generation.load(Ordering::Relaxed) == generation).then_some(Reading {
            generation,
            start,
            label,
        })
    }
}

pub(super) struct Chunk {
    word: AtomicU64,
    /// The lease that may set occupancy bits, or `UNLEASED`.
    owner: AtomicU64,
    /// Wakes idle waiters when this chunk empties while WATCHED.
    idle: Notify,
    pub(super) slots: [Slot; SLOTS],
}

impl Chunk {
    fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            owner: AtomicU64::new(UNLEASED),
            idle: Notify::new(),
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    /// A chunk from the pool, or a new one leaked for the life of the process.
    ///
    /// Leaking is what lets a guard hold `&'static Chunk` instead of an `Arc`
    /// (two more RMWs per guard). Chunks are recycled, so the memory is
    /// bounded by the peak number of guards live at once, over all trackers.
    pub(super) fn take() -> &'static Chunk {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        pooled.unwrap_or_else(|| Box::leak(Box::new(Chunk::new())))
    }

    #[inline]
    pub(super) fn load(&self) -> u64 {
        self.word.load(Ordering::SeqCst)
    }

    /// Slots that are free now. Only the lease holder can rely on them
    /// staying free.
    #[inline]
    pub(super) fn free_slots(&self) -> u64 {
        !self.load() & OCCUPANCY
    }

    /// Takes the lease if nobody holds it.
    pub(super) fn try_lease(&self, lease: u64) -> bool {
        // Acquire: pairs with `unlease`, so the previous holder's claims are
        // visible to this holder's loads of the word.
        self.owner
            .compare_exchange(UNLEASED, lease, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives the lease up, if `lease` still holds it. A stale lease (the
    /// chunk was recycled since) fails the compare and changes nothing.
    pub(super) fn unlease(&self, lease: u64) {
        let _ = self
            .owner
            .compare_exchange(lease, UNLEASED, Ordering::Release, Ordering::Relaxed);
    }

    /// Lease a chunk that nobody else can see yet.
    pub(super) fn lease_new(&self, lease: u64) {
        self.owner.store(lease, Ordering::Relaxed);
    }

    /// Marks the lowest slot of `free` live. Returns its bit and the slots
    /// still free after it.
    ///
    /// `free` must hold only slots that were free at a read of the word by
    /// the current lease holder; as only the holder sets bits, they still
    /// are, which is what makes a plain add correct.
    #[inline]
    pub(super) fn claim(&self, free: u64) -> (usize, u64) {
        let bit = free.trailing_zeros() as usize;
        let generation = &self.slots[bit].generation;
        // Odd before the bit: the add's release half orders this store first,
        // so a snapshot that sees the bit cannot take the previous occupant's
        // fields for this one's. Relaxed load: the read of the word that
        // found the slot free synchronized with the release that freed it.
        generation.store(generation.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let prev = self.word.fetch_add(1 << bit, Ordering::SeqCst);
        debug_assert_eq!(prev & 1 << bit, 0, "claimed a live slot");
        (bit, !prev & OCCUPANCY & !(1 << bit))
    }

    /// Fills a freshly claimed slot and makes it visible to snapshots.
    #[inline]
    pub(super) fn publish(&self, bit: usize, label: u32, start: u64, text: Text) {
        let slot = &self.slots[bit];
        // Seqlock write side: pairs with the fence in `Slot::read`, and sits
        // after the odd store in `claim`. (A compiler barrier on x86-64.)
        fence(Ordering::Release);
        slot.start.store(start, Ordering::Relaxed);
        match text {
            Text::Interned => slot.label.store(label, Ordering::Relaxed),
            Text::Boxed(text) => {
                slot.label.store(DYNAMIC, Ordering::Relaxed);
                *slot.dynamic.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
            }
            Text::Inline(bytes, len) => {
                for (word, chunk) in slot.inline.iter().zip(bytes.chunks_exact(8)) {
                    let chunk: [u8; 8] = chunk.try_into().expect("chunks of 8");
                    word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
                }
                // `len` is at most INLINE_BYTES, far below the flag bit.
                slot.label.store(INLINE | len as u32, Ordering::Relaxed);
            }
        }
        // Even: stable. Release so a reader that sees it sees the fields.
        slot.generation
            .store(slot.own_generation() + 1, Ordering::Release);
    }

    /// Ends the occupancy of `bit`. `dynamic` says whether it holds a text.
    #[inline(always)]
    pub(super) fn release(&'static self, bit: usize, dynamic: bool) {
        if dynamic {
            self.slots[bit].clear_text();
        }
        // We own the bit, so subtracting it clears it without a borrow, and
        // the same add bumps the releases counter (wrapping off the top). On
        // x86-64 that is one `lock xadd`, where a `fetch_and` whose result is
        // used would be a load plus a `lock cmpxchg` loop.
        let prev = self
            .word
            .fetch_add(RELEASE_ONE.wrapping_sub(1 << bit), Ordering::SeqCst);
        if prev & (WATCHED | ORPHANED) != 0 && prev & OCCUPANCY == 1 << bit {
            self.emptied(prev);
        }
    }

    /// The release of the last live slot saw WATCHED or ORPHANED.
    #[cold]
    #[inline(never)]
    fn emptied(&'static self, prev: u64) {
        if prev & ORPHANED != 0 {
            // A waiter owns a tracker clone, so an orphan has no waiters.
            self.recycle();
            return;
        }
        // Clear first, then wake: a waiter that set WATCHED before this clear
        // enabled its `Notified` before that (its program order), and our RMW
        // reads from its RMW, so the wake below reaches it. A waiter that sets
        // WATCHED after the clear sees the chunk's current state itself.
        self.word.fetch_and(!WATCHED, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    /// Sleeps until this chunk has no live slot. Cancel safe.
    pub(super) async fn until_empty(&self) {
        loop {
            if self.load() & OCCUPANCY == 0 {
                return;
            }
            let mut notified = std::pin::pin!(self.idle.notified());
            notified.as_mut().enable();
            // Enable, then announce: the releaser that empties the chunk
            // either precedes this RMW (we see empty) or follows it (sees
            // WATCHED and wakes the already-registered `Notified`).
            if self.word.fetch_or(WATCHED, Ordering::SeqCst) & OCCUPANCY == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The owning tracker is being dropped: hand the chunk to the pool now if
    /// it is empty, else leave that to the release that empties it.
    pub(super) fn orphan(&'static self) {
        if self.word.fetch_or(ORPHANED, Ordering::SeqCst) & OCCUPANCY == 0 {
            self.recycle();
        }
    }

    fn recycle(&'static self) {
        // Nobody else can touch the word now: no tracker claims from an
        // orphan, and no guard is left. A thread may still hold a stale lease
        // in its cache; its `unlease` will fail the compare against a newer
        // lease. The pool's mutex publishes the reset to the next owner, and
        // with it the generations, which carry on. Texts were cleared by
        // their own releases.
        self.word.store(0, Ordering::Relaxed);
        self.owner.store(UNLEASED, Ordering::Relaxed);
        POOL.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self);
    }
}

/// Chunks whose tracker was dropped and whose last guard has finished.
static POOL: Mutex<Vec<&'static Chunk>> = Mutex::new(Vec::new());
