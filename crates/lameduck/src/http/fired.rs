//! Cancellation tokens read without their lock.
//!
//! `CancellationToken::is_cancelled` takes the token's mutex, and polling
//! a wait on it takes that and the waiters' lock of its `Notify`. Asked on
//! every read and write of an upgraded connection, shared by every
//! connection of a server, that is two to four locks per poll on one
//! mutex for the whole server, while nothing is stopping. [`Fired`]
//! answers "has one of these tokens fired?" with an atomic load, and
//! [`TokenWait`] keeps a task registered on a token, polling the wait
//! again only when the task's waker changed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Whether any of a few tokens has fired, known without a lock, and a
/// token of its own fired right after, for tasks to wait on.
pub(crate) struct Fired {
    flag: Arc<Flag>,
    /// The waits that carry [`Flag`]'s waker; dropping them would
    /// unregister it.
    _waits: Mutex<Vec<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

/// The waker registered on the watched tokens.
struct Flag {
    fired: AtomicBool,
    then: CancellationToken,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    // A token's waiters are woken only by its `cancel`, on the cancelling
    // thread: the flag is set before `cancel` returns, and, for a waiter
    // registered after this one on the same token, before that waiter is
    // woken (a `Notify` wakes its waiters first in, first out).
    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.then.cancel();
    }
}

impl Fired {
    /// Watches `tokens`: [`fired`](Self::fired) from the moment the first
    /// of them is cancelled (at once if one already is).
    pub(crate) fn watch(tokens: &[&CancellationToken]) -> Self {
        let flag = Arc::new(Flag {
            fired: AtomicBool::new(false),
            then: CancellationToken::new(),
        });
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let waits = tokens
            .iter()
            .map(|token| {
                let mut wait = Box::pin((*token).clone().cancelled_owned());
                if wait.as_mut().poll(&mut cx).is_ready() {
                    flag.wake_by_ref();
                }
                wait
            })
            .collect();
        Self {
            flag,
            _waits: Mutex::new(waits),
        }
    }

    /// Whether one of the tokens has fired: one atomic load.
    #[inline]
    pub(crate) fn fired(&self) -> bool {
        self.flag.fired.load(Ordering::Acquire)
    }

    /// A token cancelled just after [`fired`](Self::fired) turns true.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.flag.then
    }
}

impl fmt::Debug for Fired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fired")
            .field("fired", &self.fired())
            .finish_non_exhaustive()
    }
}

/// A task's registration on a token, made again only when the task's
/// waker changed: a registered wait stays registered until the token
/// fires, and polling it again would take two locks.
///
/// It only wakes the task: whether the token fired is for the caller to
/// read from a flag set before the token is cancelled, after
/// [`register`](Self::register) (registered first, a firing is never
/// missed between the two).
#[derive(Default)]
pub(crate) struct TokenWait {
    wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    waker: Option<Waker>,
}

impl TokenWait {
    /// Makes sure the task of `cx` is woken when `token` fires.
    #[inline]
    pub(crate) fn register(&mut self, token: &CancellationToken, cx: &mut Context<'_>) {
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return;
        }
        self.register_slow(token, cx);
    }

    #[cold]
    fn register_slow(&mut self, token: &CancellationToken, cx: &mut Context<'_>) {
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
        // Ready: the token has fired, and nothing more will wake anyone
        // through it; the caller's flag says so.
        let _ = wait.as_mut().poll(cx);
        self.waker = Some(cx.waker().clone());
    }
}

impl fmt::Debug for TokenWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenWait")
            .field("registered", &self.waker.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn fired_turns_true_when_any_watched_token_is_cancelled_and_not_before() {
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        let fired = Fired::watch(&[&a, &b]);
        assert!(!fired.fired());
        assert!(!fired.token().is_cancelled());
        b.cancel();
        assert!(fired.fired());
        assert!(fired.token().is_cancelled());
        a.cancel();
        assert!(fired.fired());
    }

    #[test]
    fn a_token_cancelled_before_the_watch_counts_as_fired() {
        let a = CancellationToken::new();
        a.cancel();
        assert!(Fired::watch(&[&a]).fired());
    }

    #[test]
    fn a_child_token_cancelled_through_its_parent_sets_the_flag() {
        let parent = CancellationToken::new();
        let child = parent.child_token();
        let fired = Fired::watch(&[&child]);
        parent.cancel();
        assert!(fired.fired());
    }

    /// Counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_registered_task_is_woken_once_when_the_token_fires() {
        let token = CancellationToken::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = TokenWait::default();
        // Registered once; asking again with the same waker changes nothing.
        for _ in 0..3 {
            wait.register(&token, &mut cx);
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        token.cancel();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_new_waker_is_registered_in_place_of_the_old_one() {
        let token = CancellationToken::new();
        let (old, new) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let mut wait = TokenWait::default();
        wait.register(&token, &mut Context::from_waker(&Waker::from(old.clone())));
        wait.register(&token, &mut Context::from_waker(&Waker::from(new.clone())));
        token.cancel();
        assert_eq!(new.0.load(Ordering::SeqCst), 1);
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
    }
}
