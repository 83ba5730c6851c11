//! Responses whose body has ended but whose bytes are not yet all handed
//! to the socket: parked on their connection until the IO wrapper sees
//! them written (see the [parent module](super)).
//!
//! HTTP/1 parks one response at a time, and the connection's next flush
//! releases it: the request path's park and release. They take no lock: the
//! first parked response goes into a slot that an atomic state word hands
//! to one thread at a time. Only a second response parked before the
//! first is released (pipelined HTTP/1.1 requests answered before one
//! flush, HTTP/2's concurrent streams) goes to a list under a mutex.
//!
//! The slot is this module's one `unsafe` code: a cell that the state word
//! guards. The block says why it is sound.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::WorkGuard;
use crate::http::shared::Shared;

/// A parked response.
pub(crate) struct Parked {
    /// Held for its drop: the work ends when the entry goes.
    pub(crate) guard: Option<WorkGuard>,
    /// Data bytes the body gave, to find its HTTP/2 stream by.
    pub(crate) bytes: u64,
    /// The server: should the connection end before the bytes are on the
    /// wire, after the cancel signal, it hears that the response was cut.
    pub(crate) server: Option<Arc<Shared>>,
}

impl Parked {
    /// The response never reached the socket in full: after the cancel
    /// signal, the server hears that it was cut.
    pub(crate) fn cut(&self) {
        if let Some(shared) = &self.server {
            shared.mark_after_cancel(self.guard.as_ref(), crate::tracker::Mark::Cut);
        }
    }
}

/// [`Slot::state`]: nothing in the cell.
const EMPTY: u8 = 0;
/// Some thread is putting into or taking from the cell.
const BUSY: u8 = 1;
/// A response is in the cell.
const FULL: u8 = 2;

/// One parked response, put and taken without a lock.
struct Slot {
    state: AtomicU8,
    /// `Some` exactly while `state` is `FULL` (and during the moves that
    /// `BUSY` covers).
    cell: UnsafeCell<Option<Parked>>,
}

// SAFETY: the cell is read or written only by the thread that moved
// `state` to `BUSY` (see `Slot::with`); `Parked` is `Send`.
unsafe impl Sync for Slot {}

impl Slot {
    /// Runs `f` on the cell if `state` is `from`, leaving it at what `f`
    /// returns (`EMPTY` or `FULL`); `None` when `state` was not `from`.
    #[inline]
    fn with<R>(&self, from: u8, f: impl FnOnce(&mut Option<Parked>) -> (u8, R)) -> Option<R> {
        // Acquire: the cell's contents written before the release below,
        // by whichever thread last held it, are visible here.
        self.state
            .compare_exchange(from, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: the exchange above moved `state` from `EMPTY` or `FULL`
        // to `BUSY`, which no other thread does while it is `BUSY`: until
        // the store below, this thread alone touches the cell.
        let (to, out) = f(unsafe { &mut *self.cell.get() });
        self.state.store(to, Ordering::Release);
        Some(out)
    }
}

/// One connection's parked responses.
pub(crate) struct Parking {
    slot: Slot,
    /// Responses parked while the slot was full.
    more: Mutex<Vec<Parked>>,
    /// How many `more` holds, readable without its lock.
    more_len: AtomicUsize,
}

impl Parking {
    pub(crate) const fn new() -> Self {
        Self {
            slot: Slot {
                state: AtomicU8::new(EMPTY),
                cell: UnsafeCell::new(None),
            },
            more: Mutex::new(Vec::new()),
            more_len: AtomicUsize::new(0),
        }
    }

    /// How many responses are parked. Exact when none is parked or
    /// released during the call (a response being put in or taken out of
    /// the slot counts as parked).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.slot.state.load(Ordering::Acquire) != EMPTY)
            + self.more_len.load(Ordering::Acquire)
    }

    pub(crate) fn park(&self, parked: Parked) {
        let mut parked = Some(parked);
        let put = self.slot.with(EMPTY, |cell| {
            *cell = parked.take();
            (FULL, ())
        });
        if put.is_none() {
            let mut more = lock(&self.more);
            more.extend(parked);
            self.more_len.store(more.len(), Ordering::Release);
        }
    }

    /// Drops every parked response (their work ends); how many there were.
    pub(crate) fn release_all(&self) -> usize {
        let mut n = 0;
        if let Some(p) = self.slot.with(FULL, |cell| (EMPTY, cell.take())) {
            n += 1;
            drop(p);
        }
        if self.more_len.load(Ordering::Acquire) > 0 {
            let mut more = lock(&self.more);
            n += more.len();
            // The guards' drops are an atomic add each: done under the
            // lock, which keeps the vector's capacity.
            more.clear();
            self.more_len.store(0, Ordering::Release);
        }
        n
    }

    /// Takes out the parked response that gave `bytes` bytes of data.
    pub(crate) fn take_by_bytes(&self, bytes: u64) -> Option<Parked> {
        let found = self.slot.with(FULL, |cell| match cell {
            Some(p) if p.bytes == bytes => (EMPTY, cell.take()),
            _ => (FULL, None),
        });
        if let Some(Some(p)) = found {
            return Some(p);
        }
        if self.more_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut more = lock(&self.more);
        let at = more.iter().position(|p| p.bytes == bytes)?;
        let p = more.swap_remove(at);
        self.more_len.store(more.len(), Ordering::Release);
        Some(p)
    }

    /// Takes out every parked response.
    pub(crate) fn take_all(&self) -> Vec<Parked> {
        let mut all = if self.more_len.load(Ordering::Acquire) > 0 {
            let mut more = lock(&self.more);
            self.more_len.store(0, Ordering::Release);
            std::mem::take(&mut *more)
        } else {
            Vec::new()
        };
        if let Some(Some(p)) = self.slot.with(FULL, |cell| (EMPTY, cell.take())) {
            all.push(p);
        }
        all
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        // Responses still parked when the connection is gone never reached
        // the socket in full: they were cut.
        let slot = self.slot.cell.get_mut().take();
        let more = self.more.get_mut().unwrap_or_else(|e| e.into_inner());
        for p in slot.iter().chain(more.iter()) {
            p.cut();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{Parked, Parking};

    fn parked(bytes: u64) -> Parked {
        Parked {
            guard: None,
            bytes,
            server: None,
        }
    }

    #[test]
    fn the_first_response_takes_the_slot_and_more_go_to_the_list_all_counted() {
        let parking = Parking::new();
        assert_eq!(parking.len(), 0);
        parking.park(parked(1));
        assert_eq!(parking.len(), 1);
        assert_eq!(
            parking.more_len.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        parking.park(parked(2));
        parking.park(parked(3));
        assert_eq!(parking.len(), 3);
        assert_eq!(parking.release_all(), 3);
        assert_eq!(parking.len(), 0);
        // The slot is free again.
        parking.park(parked(4));
        assert_eq!(
            parking.more_len.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(parking.len(), 1);
    }

    #[test]
    fn a_response_is_found_by_its_bytes_in_the_slot_or_the_list() {
        let parking = Parking::new();
        for bytes in [10, 20, 30] {
            parking.park(parked(bytes));
        }
        assert!(parking.take_by_bytes(99).is_none());
        assert_eq!(parking.take_by_bytes(20).map(|p| p.bytes), Some(20));
        assert_eq!(parking.take_by_bytes(10).map(|p| p.bytes), Some(10));
        assert_eq!(parking.len(), 1);
        let rest: Vec<u64> = parking.take_all().iter().map(|p| p.bytes).collect();
        assert_eq!(rest, [30]);
        assert_eq!(parking.len(), 0);
    }

    #[test]
    fn responses_parked_and_released_from_many_threads_are_each_counted_once() {
        let parking = std::sync::Arc::new(Parking::new());
        let released = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (parking, released) = (parking.clone(), released.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        parking.park(parked(i));
                        if i % 3 == 0 {
                            let n = parking.release_all();
                            released.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a parking thread");
        }
        let left = parking.release_all();
        assert_eq!(
            released.load(std::sync::atomic::Ordering::Relaxed) + left,
            4 * 2_000
        );
        assert_eq!(parking.len(), 0);
    }
}
