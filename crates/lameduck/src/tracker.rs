//! In-flight work tracking: RAII guards that know their label and start time.

mod arena;
mod chunk;
mod clock;
#[cfg(feature = "http")]
pub(crate) use clock::{coarse_nanos, instant_at};
mod label;
mod lease;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arena::Arena;
use chunk::{Chunk, INLINE_BYTES, Label, SLOTS, Text};

/// Counts in-flight work (requests, jobs) as RAII guards, and knows what each
/// one is and how long it has been running.
///
/// A service hands out one [`WorkGuard`] per piece of work with
/// [`track`](Self::track); dropping the guard marks the work finished. At
/// shutdown, [`wait_idle`](Self::wait_idle) waits for the work to drain, and
/// when it does not, [`snapshot`](Self::snapshot) says *what* is stuck:
/// "`GET /report` has been running for 12.3 s".
///
/// `Tracker` is a handle: clones are cheap and share the same state.
///
/// # Compared with `TaskTracker`
///
/// [`tokio_util::task::TaskTracker`] counts tasks and waits for them. It does
/// not know what the tasks are, and it is open/closed: its `wait` resolves
/// only once the tracker is closed *and* empty. `Tracker` counts guards, not
/// tasks (one task may hold several, a guard may move between tasks), keeps
/// a label and a start time per guard, and [`wait_idle`](Self::wait_idle)
/// resolves whenever nothing is in flight; stopping new work is the
/// listener's job, not the tracker's.
///
/// It also costs less: [`track`](Self::track) plus the drop of its guard
/// are two atomic adds and a few plain stores, with no allocation, no lock
/// and no reference count, where a `TaskTracker` token costs four atomic
/// operations (see `benches/tracker.rs`). The label is a `&'static str`; for
/// text built at run time (`"GET /work"`) use
/// [`track_parts`](Self::track_parts), which keeps a short label in place
/// without allocating, or [`track_with`](Self::track_with), which takes a
/// `String`. Work that began before it was tracked — a process found
/// running — is tracked with [`track_since`](Self::track_since), which takes
/// its start.
///
/// # Examples
///
/// ```
/// use lameduck::Tracker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tracker = Tracker::new("http");
///
/// let guard = tracker.track("GET /report");
/// let job = tokio::spawn(async move {
///     // ... the work ...
///     drop(guard); // finished
/// });
///
/// // At shutdown: say what is still running, then wait for it.
/// for item in tracker.snapshot() {
///     println!("{} {} running for {:?}", item.tracker, item.label, item.age);
/// }
/// tracker.wait_idle().await;
/// assert!(tracker.is_empty());
/// # job.await.unwrap();
/// # }
/// ```
///
/// # Resources
///
/// Guards live in slots, about 100 bytes each, in chunks of 32. Each thread
/// that tracks work leases a chunk per tracker and fills it, so memory
/// follows the peak number of guards live at once, rounded up to a chunk per
/// thread. Chunks are never returned to the allocator; a dropped tracker's
/// chunks go to a process-wide pool that the next tracker to grow draws on.
///
/// Start times come from a clock that a background thread, `lameduck-clock`,
/// advances every 4 ms while any tracker exists and work is being tracked
/// (reading a clock on every `track` would cost more than the rest of it).
/// Ages are therefore up to 4 ms long, never short. After 20 ms in which
/// nothing read the time the thread sleeps; the next read takes the clock
/// itself and wakes it, so an idle process is not woken 250 times a second.
#[derive(Clone, Debug)]
pub struct Tracker {
    inner: Arc<Inner>,
    /// `inner.arena.uid()`, kept here so that `track` need not load the
    /// `Arc`'s pointee before it can claim.
    uid: u64,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    arena: Arena,
    /// What the shutdown knows of how some work ended, by id: marked
    /// only during the shutdown, so it stays short.
    marks: Mutex<Vec<(u64, Mark)>>,
}

/// How a piece of work ended, when its guard's drop alone does not say:
/// recorded during the shutdown for the [`Report`](crate::Report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Only the HTTP code answers 503s and cuts responses.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Mark {
    /// The shutdown ended it on purpose, cleanly ([`Tracker::mark_ended`]).
    Ended,
    /// Answered with the clean error (`503` + `Retry-After`, gRPC
    /// `UNAVAILABLE`) at the cancel signal; its handler may run on.
    Unavailable,
    /// Its response was cut short: the body failed, or was dropped before
    /// its end.
    Cut,
}

/// One piece of in-flight work; dropping it marks the work finished.
///
/// `Send` and `'static`, so it can move into a spawned task or another
/// thread. Purposefully not `Clone`: each guard is one piece of work.
#[must_use = "the work counts as finished as soon as the guard is dropped"]
pub struct WorkGuard {
    chunk: &'static Chunk,
    /// Slot index within the tracker; `index % SLOTS` is the bit in `chunk`.
    index: u32,
    /// Whether the slot holds a run-time label that the drop must free.
    dynamic: bool,
}

/// A snapshot of one piece of work that was in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// Name of the tracker the work belongs to.
    pub tracker: Arc<str>,
    /// The label given when the work started.
    pub label: String,
    /// How long the work had been running when the snapshot was taken, to
    /// within a few milliseconds (a coarse clock keeps `track` cheap).
    pub age: Duration,
    /// Identifies this piece of work, so two snapshots can be compared: an id
    /// in both is work that ran through both. No other guard of the same
    /// tracker gets the same id (until one slot has been reused 2^37 times).
    /// Equals [`WorkGuard::id`].
    pub id: u64,
}

impl Tracker {
    /// Creates an empty tracker; `name` shows up in every [`WorkItem`].
    #[must_use]
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let arena = Arena::new();
        Self {
            uid: arena.uid(),
            inner: Arc::new(Inner {
                name: name.into(),
                arena,
                marks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The tracker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts tracking one piece of work, labelled with static text.
    ///
    /// This is the fast path: no allocation, no lock, no reference count.
    ///
    /// # Panics
    ///
    /// If more than 134 million guards of this tracker are live at once.
    #[inline]
    pub fn track(&self, label: &'static str) -> WorkGuard {
        self.start(label::intern(label), Text::Interned)
    }

    /// Starts tracking one piece of work, labelled with text built at run
    /// time, like `format!("GET {uri}")`.
    ///
    /// Costs an allocation for the text and a short uncontended lock more
    /// than [`track`](Self::track).
    ///
    /// # Panics
    ///
    /// As [`track`](Self::track).
    pub fn track_with(&self, label: impl Into<String>) -> WorkGuard {
        self.start(label::DYNAMIC, Text::Boxed(label.into().into_boxed_str()))
    }

    /// Starts tracking one piece of work, labelled with `parts` put end to
    /// end — `["GET", " ", path]`, say — without building the text first.
    ///
    /// A label of up to 48 bytes is kept in the tracker's own slot: no
    /// allocation and no lock, a few more stores than
    /// [`track`](Self::track). A longer one costs what
    /// [`track_with`](Self::track_with) does.
    ///
    /// # Panics
    ///
    /// As [`track`](Self::track).
    #[inline]
    pub fn track_parts(&self, parts: &[&str]) -> WorkGuard {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > INLINE_BYTES {
            return self.track_with(parts.concat());
        }
        let mut bytes = [0u8; INLINE_BYTES];
        let mut at = 0;
        for part in parts {
            bytes[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        self.start(label::INLINE, Text::Inline(bytes, len))
    }

    /// Starts tracking one piece of work that began before now, at
    /// `started`, labelled with text built at run time: its age in every
    /// [`snapshot`](Self::snapshot) counts from `started`, not from this
    /// call. For work that lameduck hears of late — a process found
    /// running, a job taken over from a queue with its enqueue time.
    ///
    /// `started` is taken exactly (ages then have the resolution of
    /// [`Instant`], not the few milliseconds of [`track`](Self::track)).
    /// A `started` in the future counts as now: an age is never negative.
    /// One before the tracker, or before the first tracker of the process,
    /// was created is fine; only one more than 146 years before that counts
    /// as that limit. The age follows [`Instant`]: on Linux,
    /// `CLOCK_MONOTONIC`, which does not count the time the machine was
    /// suspended.
    ///
    /// Costs what [`track_with`](Self::track_with) does, and a clock read.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck::Tracker;
    ///
    /// let tracker = Tracker::new("jobs");
    /// // A job queued five seconds before this worker took it.
    /// let queued = Instant::now() - Duration::from_secs(5);
    /// let _guard = tracker.track_since("job 42", queued);
    /// assert!(tracker.snapshot()[0].age >= Duration::from_secs(5));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`track`](Self::track).
    pub fn track_since(&self, label: impl Into<String>, started: Instant) -> WorkGuard {
        let start = clock::time_of(started).min(clock::precise_now());
        self.start_at(
            label::DYNAMIC,
            Text::Boxed(label.into().into_boxed_str()),
            start,
        )
    }

    #[inline]
    fn start(&self, label: u32, text: Text) -> WorkGuard {
        self.start_at(label, text, clock::start_time())
    }

    #[inline]
    fn start_at(&self, label: u32, text: Text, start: u64) -> WorkGuard {
        let dynamic = matches!(text, Text::Boxed(_));
        let (chunk, index) =
            Arena::claim_leased(self.uid).unwrap_or_else(|| self.inner.arena.claim());
        chunk.publish(index % SLOTS, label, start, text);
        WorkGuard {
            chunk,
            // Below 2^27 by the capacity check in `claim`.
            index: index as u32,
            dynamic,
        }
    }

    /// Number of pieces of work in flight.
    ///
    /// Exact when nothing starts or finishes during the call; otherwise a
    /// value between the counts before and after.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.arena.count()
    }

    /// Whether no work is in flight: `true` only if there was an instant
    /// during the call with no guard live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.arena.quiescent().is_ok()
    }

    /// The work in flight now, oldest first.
    ///
    /// Work that starts or finishes during the call may or may not appear.
    #[must_use]
    pub fn snapshot(&self) -> Vec<WorkItem> {
        let mut raw = Vec::new();
        self.inner.arena.collect(&mut raw);
        let now = clock::precise_now();
        raw.sort_unstable_by_key(|item| (item.start, item.id));
        label::with_texts(|texts| {
            raw.into_iter()
                .map(|item| WorkItem {
                    tracker: self.inner.name.clone(),
                    label: match item.label {
                        Label::Static(id) => texts[id as usize].to_owned(),
                        Label::Dynamic(text) => text,
                    },
                    age: Duration::from_nanos(now.saturating_sub(item.start)),
                    id: item.id,
                })
                .collect()
        })
    }

    /// Records that the shutdown ended this work on purpose — an event
    /// stream or a WebSocket told to reconnect elsewhere — rather than the
    /// work finishing on its own. The [`Report`](crate::Report) lists such
    /// work as *ended by the shutdown*, which is not a failure.
    ///
    /// The guard stays live: drop it when the work is over, as always.
    /// Costs a short lock; meant for the shutdown, not for every request.
    pub fn mark_ended(&self, guard: &WorkGuard) {
        self.mark(guard, Mark::Ended);
    }

    /// Records how `guard`'s work ended; the first mark of a guard is the
    /// one that counts. Meant for the shutdown only: marks are kept until
    /// the shutdown takes them.
    pub(crate) fn mark(&self, guard: &WorkGuard, how: Mark) {
        self.inner
            .marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((guard.id(), how));
    }

    /// The marks recorded so far, in the order they were made, emptied.
    pub(crate) fn take_marks(&self) -> Vec<(u64, Mark)> {
        std::mem::take(&mut *self.inner.marks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until no work is in flight.
    ///
    /// Resolves at once if the tracker is empty. Otherwise it resolves after
    /// an instant at which no guard of this tracker was live, so a piece of
    /// work that hands over to another (starting the new guard before dropping
    /// the old) keeps it waiting. New work may start right after it resolves;
    /// stop accepting work first if that matters.
    ///
    /// The returned future owns a clone of the tracker, so it can be spawned.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes has no effect on
    /// the tracker, and calling `wait_idle` again starts over.
    pub fn wait_idle(&self) -> IdleFuture {
        let tracker = self.clone();
        IdleFuture {
            inner: Box::pin(async move { tracker.inner.arena.wait_idle().await }),
        }
    }
}

/// Future returned by [`Tracker::wait_idle`]: resolves when no work is in
/// flight.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct IdleFuture {
    // Boxed: waiting is the slow path, and the box lets the future hold a
    // pinned `Notified` of a chunk without unsafe pin projection.
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Future for IdleFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for IdleFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleFuture").finish_non_exhaustive()
    }
}

impl WorkGuard {
    /// The id of this work, as in [`WorkItem::id`].
    #[must_use]
    pub fn id(&self) -> u64 {
        let index = self.index as usize;
        arena::item_id(self.chunk.slots[index % SLOTS].own_generation(), index)
    }
}

impl Drop for WorkGuard {
    // `always` (and the text cleanup kept out of line): otherwise the drop
    // glue can stay a call at the end of the caller's scope, which spills
    // the guard to the stack and costs more than the atomic add itself.
    #[inline(always)]
    fn drop(&mut self) {
        self.chunk
            .release(self.index as usize % SLOTS, self.dynamic);
    }
}

impl fmt::Debug for WorkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkGuard").field("id", &self.id()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Barrier;

    use tokio::sync::{Notify, oneshot};

    use super::*;

    fn labels(tracker: &Tracker) -> Vec<String> {
        let mut labels: Vec<_> = tracker.snapshot().into_iter().map(|i| i.label).collect();
        labels.sort();
        labels
    }

    /// Whether `fut` is still pending once every other task has had its turn.
    /// Under paused time the timeout fires only when the runtime has nothing
    /// left to do, so this reads no wall clock.
    async fn still_pending(fut: &mut IdleFuture) -> bool {
        tokio::time::timeout(Duration::from_secs(3600), fut)
            .await
            .is_err()
    }

    #[test]
    fn counts_follow_guards() {
        let tracker = Tracker::new("t");
        assert!(tracker.is_empty());
        let a = tracker.track("a");
        let b = tracker.track("b");
        let c = tracker.track_with("c");
        assert_eq!(tracker.len(), 3);
        assert!(!tracker.is_empty());
        drop(b);
        assert_eq!(tracker.len(), 2);
        drop((a, c));
        assert_eq!(tracker.len(), 0);
        assert!(tracker.is_empty());
    }

    #[test]
    fn snapshot_names_each_live_item_once() {
        let tracker = Tracker::new("http");
        let guards: Vec<_> = ["GET /a", "GET /b", "POST /c"]
            .into_iter()
            .map(|l| tracker.track(l))
            .collect();
        let items = tracker.snapshot();
        assert_eq!(labels(&tracker), ["GET /a", "GET /b", "POST /c"]);
        assert!(items.iter().all(|i| &*i.tracker == "http"));
        let ids: HashSet<_> = items.iter().map(|i| i.id).collect();
        let guard_ids: HashSet<_> = guards.iter().map(WorkGuard::id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids, guard_ids);
    }

    #[test]
    fn snapshot_is_oldest_first() {
        let tracker = Tracker::new("t");
        let _guards: Vec<_> = (0..100).map(|_| tracker.track("x")).collect();
        let items = tracker.snapshot();
        assert_eq!(items.len(), 100);
        assert!(items.windows(2).all(|w| w[0].age >= w[1].age));
    }

    #[test]
    fn ids_are_stable_across_snapshots() {
        let tracker = Tracker::new("t");
        let stays = tracker.track("stays");
        let ends = tracker.track("ends");
        let at_stopping = tracker.snapshot();
        drop(ends);
        let _late = tracker.track("late");
        let at_cancelling = tracker.snapshot();

        let before: HashSet<_> = at_stopping.iter().map(|i| i.id).collect();
        let after: HashSet<_> = at_cancelling.iter().map(|i| i.id).collect();
        let ran_through: Vec<_> = before.intersection(&after).collect();
        assert_eq!(ran_through, [&stays.id()]);
        assert_eq!(before.difference(&after).count(), 1, "one finished");
        assert_eq!(after.difference(&before).count(), 1, "one started");
    }

    #[test]
    fn reused_slot_gets_a_new_id() {
        let tracker = Tracker::new("t");
        let first = tracker.track("x");
        let first_id = first.id();
        drop(first);
        let second = tracker.track("x");
        assert_ne!(second.id(), first_id);
    }

    #[test]
    fn dynamic_labels_show_their_text() {
        let tracker = Tracker::new("t");
        let ms = 5;
        let _g = tracker.track_with(format!("GET /work?ms={ms}"));
        let _s = tracker.track("static");
        assert_eq!(labels(&tracker), ["GET /work?ms=5", "static"]);
    }

    #[test]
    fn work_tracked_since_a_past_start_is_as_old_as_that_start() {
        let tracker = Tracker::new("t");
        let hour = Duration::from_secs(3600);
        // Before this process (and its trackers' clock) began, where
        // `Instant` reaches that far back.
        let Some(started) = Instant::now().checked_sub(hour) else {
            return;
        };
        let _new = tracker.track("new");
        let _old = tracker.track_since(String::from("old"), started);
        let before = Instant::now();
        let items = tracker.snapshot();
        let upper = started.elapsed();
        assert_eq!(items[0].label, "old", "oldest first: {items:?}");
        assert!(items[0].age >= before - started, "{items:?}");
        assert!(items[0].age <= upper, "{items:?}");
    }

    #[test]
    fn work_tracked_since_a_future_start_counts_from_when_it_was_tracked() {
        let tracker = Tracker::new("t");
        let before = Instant::now();
        let _g = tracker.track_since("later", before + Duration::from_secs(3600));
        let tracked = Instant::now();
        // Bounded: the clock moves on within a few of its reads.
        for _ in 0..1_000_000 {
            if Instant::now() > tracked {
                break;
            }
        }
        let age = tracker.snapshot()[0].age;
        let upper = before.elapsed();
        assert!(age > Duration::ZERO, "its age grows from the call on");
        assert!(age <= upper, "{age:?} > {upper:?}");
    }

    #[test]
    fn slot_reuse_does_not_leak_labels() {
        let tracker = Tracker::new("t");
        drop(tracker.track_with("secret dynamic"));
        let s = tracker.track("plain static");
        assert_eq!(labels(&tracker), ["plain static"]);
        drop(s);
        let d = tracker.track_with(String::from("fresh dynamic"));
        assert_eq!(labels(&tracker), ["fresh dynamic"]);
        drop(d);
        let _s = tracker.track("static again");
        assert_eq!(labels(&tracker), ["static again"]);
    }

    #[test]
    fn labels_from_parts_are_kept_in_place_or_boxed_when_long() {
        let tracker = Tracker::new("t");
        let long = "x".repeat(100);
        let exact = "y".repeat(chunk::INLINE_BYTES - 4);
        let _a = tracker.track_parts(&["GET", " ", "/work"]);
        let _b = tracker.track_parts(&["PUT /", &long]);
        let _c = tracker.track_parts(&["GET ", &exact]);
        let _d = tracker.track_parts(&[]);
        let _e = tracker.track_parts(&["é", "ß"]);
        let mut want = vec![
            "GET /work".to_string(),
            format!("PUT /{long}"),
            format!("GET {exact}"),
            String::new(),
            "éß".to_string(),
        ];
        want.sort();
        assert_eq!(labels(&tracker), want);
    }

    #[test]
    fn an_inline_label_does_not_outlive_its_slot() {
        let tracker = Tracker::new("t");
        drop(tracker.track_parts(&["secret ", "inline"]));
        let s = tracker.track("plain static");
        assert_eq!(labels(&tracker), ["plain static"]);
        drop(s);
        let _i = tracker.track_parts(&["short"]);
        assert_eq!(labels(&tracker), ["short"]);
    }

    #[test]
    fn guards_can_finish_on_other_threads() {
        let tracker = Tracker::new("t");
        let mut a: Vec<_> = (0..200).map(|_| tracker.track("x")).collect();
        let b = a.split_off(100);
        assert_eq!(tracker.len(), 200);
        std::thread::scope(|s| {
            s.spawn(move || drop(a));
            s.spawn(move || drop(b));
        });
        assert!(tracker.is_empty());
    }

    #[test]
    fn leases_are_returned_when_a_thread_exits() {
        let tracker = Tracker::new("t");
        let theirs = std::thread::scope(|s| s.spawn(|| tracker.track("there")).join().unwrap());
        // Had the exited thread kept its lease, this thread would have had
        // to start a second chunk.
        let ours = tracker.track("here");
        let chunk_of = |g: &WorkGuard| arena::index_of(g.id()) / SLOTS;
        assert_eq!(chunk_of(&ours), chunk_of(&theirs));
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn more_trackers_than_cached_leases_stay_correct() {
        let trackers: Vec<_> = (0..3 * lease::WAYS)
            .map(|i| Tracker::new(i.to_string()))
            .collect();
        let mut held = Vec::new();
        for round in 0..200 {
            for (i, tracker) in trackers.iter().enumerate() {
                let guard = tracker.track_with(i.to_string());
                if round % 4 == 0 {
                    held.push((i, guard));
                }
            }
        }
        for (i, tracker) in trackers.iter().enumerate() {
            assert_eq!(tracker.len(), 50);
            assert!(
                tracker
                    .snapshot()
                    .iter()
                    .all(|item| item.label == i.to_string())
            );
        }
        drop(held);
        assert!(trackers.iter().all(Tracker::is_empty));
    }

    #[test]
    fn trackers_are_isolated() {
        let one = Tracker::new("one");
        let two = Tracker::new("two");
        let _a: Vec<_> = (0..40).map(|_| one.track("one")).collect();
        let _b = two.track("two");
        assert_eq!((one.len(), two.len()), (40, 1));
        assert_eq!(labels(&two), ["two"]);
        assert!(one.snapshot().iter().all(|i| &*i.tracker == "one"));
    }

    #[test]
    fn guards_outlive_their_tracker() {
        let old = Tracker::new("old");
        let guard = old.track_with("left behind");
        drop(old);
        // The old chunk is not in the pool until its last guard finishes.
        let fresh = Tracker::new("fresh");
        assert!(fresh.is_empty());
        drop(guard);
        let reused: Vec<_> = (0..64).map(|_| fresh.track("fresh")).collect();
        assert_eq!(fresh.len(), 64);
        assert_eq!(labels(&fresh), vec!["fresh"; 64]);
        drop(reused);
        assert!(fresh.is_empty());
    }

    #[tokio::test]
    async fn wait_idle_resolves_at_once_when_empty() {
        Tracker::new("t").wait_idle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn wait_idle_wakes_when_the_last_guard_drops() {
        let tracker = Tracker::new("t");
        let (finish, finished) = oneshot::channel::<()>();
        let other = tracker.track("other");
        let guard = tracker.track("job");
        let job = tokio::spawn(async move {
            finished.await.unwrap();
            drop(guard);
        });
        let mut idle = tracker.wait_idle();
        drop(other);
        assert!(still_pending(&mut idle).await, "one guard is still live");
        finish.send(()).unwrap();
        idle.await;
        assert!(tracker.is_empty());
        job.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wait_idle_waits_for_handed_over_work() {
        let tracker = Tracker::new("t");
        let go = Arc::new(Notify::new());
        let first = tracker.track("first");
        let (tx, rx) = oneshot::channel();
        let worker = tokio::spawn({
            let (tracker, go) = (tracker.clone(), go.clone());
            async move {
                go.notified().await;
                // Start the follow-up before finishing the first part.
                let second = tracker.track("second");
                drop(first);
                rx.await.unwrap();
                drop(second);
            }
        });
        let mut idle = tracker.wait_idle();
        assert!(still_pending(&mut idle).await);
        go.notify_one();
        assert!(still_pending(&mut idle).await, "second part still live");
        assert_eq!(labels(&tracker), ["second"]);
        tx.send(()).unwrap();
        idle.await;
        worker.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wait_idle_spans_many_chunks() {
        let tracker = Tracker::new("t");
        let guards: Vec<_> = (0..10 * SLOTS).map(|_| tracker.track("x")).collect();
        let release = Arc::new(Notify::new());
        let dropper = tokio::spawn({
            let release = release.clone();
            async move {
                for guard in guards {
                    release.notified().await;
                    drop(guard);
                }
            }
        });
        let mut idle = tracker.wait_idle();
        for _ in 0..10 * SLOTS - 1 {
            release.notify_one();
            assert!(still_pending(&mut idle).await);
        }
        release.notify_one();
        idle.await;
        assert!(tracker.is_empty());
        dropper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wait_idle_is_cancel_safe() {
        let tracker = Tracker::new("t");
        let guard = tracker.track("x");
        let mut idle = tracker.wait_idle();
        assert!(still_pending(&mut idle).await);
        drop(idle);
        drop(guard);
        let guard = tracker.track("y");
        let mut idle = tracker.wait_idle();
        assert!(still_pending(&mut idle).await);
        drop(guard);
        idle.await;
    }

    #[tokio::test(start_paused = true)]
    async fn wait_idle_ignores_other_trackers() {
        let busy = Tracker::new("busy");
        let quiet = Tracker::new("quiet");
        let guard = busy.track("x");
        quiet.wait_idle().await;
        let mut idle = busy.wait_idle();
        assert!(still_pending(&mut idle).await);
        drop(guard);
        idle.await;
    }

    #[test]
    fn concurrent_churn_leaves_nothing_behind() {
        const THREADS: usize = 3;
        const ROUNDS: usize = 5_000;
        let tracker = Tracker::new("stress");
        let start = Barrier::new(THREADS + 1);
        // Guards finished by a thread that did not start them.
        let (elsewhere, finish) = std::sync::mpsc::channel::<WorkGuard>();
        std::thread::scope(|s| {
            s.spawn(move || finish.into_iter().for_each(drop));
            for t in 0..THREADS {
                let (tracker, start, elsewhere) = (&tracker, &start, elsewhere.clone());
                s.spawn(move || {
                    start.wait();
                    let mut held = Vec::new();
                    for round in 0..ROUNDS {
                        held.push(if round % 3 == 0 {
                            tracker.track_with(format!("dyn {t}"))
                        } else {
                            tracker.track("static")
                        });
                        if held.len() > 40 || round % 7 == 0 {
                            let guard = held.swap_remove(round % held.len());
                            if round % 2 == 0 {
                                elsewhere.send(guard).unwrap();
                            }
                        }
                    }
                });
            }
            drop(elsewhere);
            start.wait();
            for _ in 0..200 {
                let items = tracker.snapshot();
                let ids: HashSet<_> = items.iter().map(|i| i.id).collect();
                assert_eq!(ids.len(), items.len(), "duplicate id in a snapshot");
                assert!(
                    items
                        .iter()
                        .all(|i| i.label == "static" || i.label.starts_with("dyn ")),
                    "torn label"
                );
            }
        });
        assert_eq!(tracker.len(), 0);
        assert!(tracker.is_empty());
    }
}
