//! The box a connection keeps for its handlers' futures.
//!
//! Every handler's future is boxed, so that one still running when the
//! cancel signal fires can be moved off its request and finish in the
//! background while its client gets a `503` (see
//! [`Cancel`](super::Cancel)). A box per request would be an allocation and
//! a free per request, the one allocation lameduck's server would add to
//! hyper's. So the connection keeps the box of the last future that
//! finished, emptied, and the next request's future moves into it: on a
//! keep-alive HTTP/1.1 connection, whose requests come one after another,
//! no request allocates. (A future moved to the background, or dropped
//! unfinished, takes its box with it: the next request allocates one.)
//!
//! The only `unsafe` code of the server's request path: a box is taken
//! apart to drop its future in place and keep the memory, and kept as a
//! pointer whose type a [`TypeId`] stands for. Each block says why it is
//! sound.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

/// One connection's spare box.
pub(crate) struct Spare {
    /// An empty box, a `Box<MaybeUninit<F>>` given up with
    /// `Box::into_raw`, for the `F` that `kind` names; or null.
    boxed: AtomicPtr<()>,
    /// The type of future whose boxes this keeps, set by the first box
    /// kept: a connection's service has one.
    kind: OnceLock<Kind>,
}

struct Kind {
    id: TypeId,
    /// Frees a kept box of this type.
    free: unsafe fn(*mut ()),
}

/// Frees an empty box of `F` given up with `Box::into_raw`.
///
/// # Safety
///
/// `p` is a `Box<MaybeUninit<F>>`'s pointer from `Box::into_raw`, owned by
/// the caller.
unsafe fn free<F>(p: *mut ()) {
    // SAFETY: as the caller promises.
    drop(unsafe { Box::from_raw(p.cast::<MaybeUninit<F>>()) });
}

impl Spare {
    pub(crate) const fn new() -> Self {
        Self {
            boxed: AtomicPtr::new(ptr::null_mut()),
            kind: OnceLock::new(),
        }
    }

    /// `fut` in a box: the spare one when there is one of its type, else a
    /// new one.
    #[inline]
    pub(crate) fn boxed<F: 'static>(&self, fut: F) -> Pin<Box<F>> {
        if self.kind.get().is_some_and(|k| k.id == TypeId::of::<F>()) {
            let p = self.boxed.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: a pointer in `boxed` was put there by `keep::<G>`
                // from a `Box<MaybeUninit<G>>`, and only with the `TypeId`
                // that `kind` holds, here that of `F`: so `G` is `F`. The
                // swap took it out: it is ours alone.
                let empty = unsafe { Box::from_raw(p.cast::<MaybeUninit<F>>()) };
                return Box::into_pin(Box::write(empty, fut));
            }
        }
        Box::pin(fut)
    }

    /// Ends the future in `fut` (it has completed, or is given up) and
    /// keeps its box for the next request's.
    #[inline]
    pub(crate) fn keep<F: 'static>(&self, fut: Pin<Box<F>>) {
        let kind = self.kind.get_or_init(|| Kind {
            id: TypeId::of::<F>(),
            free: free::<F>,
        });
        if kind.id != TypeId::of::<F>() {
            // Another type than the connection's (none is known): freed.
            return;
        }
        // SAFETY: the future is dropped in place below and never moved,
        // which is all that pinning asks.
        let raw = Box::into_raw(unsafe { Pin::into_inner_unchecked(fut) });
        // SAFETY: `raw` points to a live `F` that we own; it is dropped
        // once, here. Should its drop panic, the box leaks: no double free.
        unsafe { ptr::drop_in_place(raw) };
        // The same allocation, now uninitialised: `MaybeUninit<F>` has
        // `F`'s layout and allows that.
        let empty = raw.cast::<()>();
        let before = self.boxed.swap(empty, Ordering::AcqRel);
        if !before.is_null() {
            // Two finished at once (HTTP/2 streams): one box is enough.
            // SAFETY: taken out of `boxed` by the swap, of `kind`'s type.
            unsafe { (kind.free)(before) };
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        let p = *self.boxed.get_mut();
        if let (false, Some(kind)) = (p.is_null(), self.kind.get()) {
            // SAFETY: a kept box, of `kind`'s type; nobody else can take it.
            unsafe { (kind.free)(p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use super::Spare;

    /// A future that counts its drops, 64 bytes large.
    struct Counted {
        drops: Arc<AtomicUsize>,
        _weight: [u64; 8],
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Future for Counted {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }

    fn counted(drops: &Arc<AtomicUsize>) -> Counted {
        Counted {
            drops: drops.clone(),
            _weight: [7; 8],
        }
    }

    #[test]
    fn a_kept_box_is_the_next_future_s_and_each_future_is_dropped_once() {
        let spare = Spare::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let first = spare.boxed(counted(&drops));
        let at = std::ptr::from_ref::<Counted>(&first) as usize;
        spare.keep(first);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        let second = spare.boxed(counted(&drops));
        assert_eq!(std::ptr::from_ref::<Counted>(&second) as usize, at);
        // The spare was taken: a third future gets a box of its own.
        let third = spare.boxed(counted(&drops));
        assert_ne!(std::ptr::from_ref::<Counted>(&third) as usize, at);
        spare.keep(second);
        // Two finished at once: one box is kept, the other freed.
        spare.keep(third);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        drop(spare);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_box_of_another_type_is_neither_kept_nor_given() {
        let spare = Spare::new();
        let drops = Arc::new(AtomicUsize::new(0));
        spare.keep(spare.boxed(counted(&drops)));
        // Another type: freed, not kept in place of the first type's box.
        spare.keep(Box::pin(std::future::ready(5u64)));
        let other = spare.boxed(std::future::ready(6u64));
        let again = spare.boxed(counted(&drops));
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop((other, again));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }
}
