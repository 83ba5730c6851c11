//! In-flight work tracking. (Placeholder implementation; replaced by the
//! lock-free tracker.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Counts in-flight work as RAII guards, each with a label and a start instant.
#[derive(Clone, Debug)]
pub struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    next: AtomicU64,
    live: Mutex<HashMap<u64, (String, Instant)>>,
    idle: Notify,
}

/// One piece of in-flight work; dropping it marks the work finished.
#[derive(Debug)]
#[must_use = "the work counts as finished as soon as the guard is dropped"]
pub struct WorkGuard {
    inner: Arc<Inner>,
    id: u64,
}

/// A snapshot of one piece of work that was in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// Name of the tracker the work belongs to.
    pub tracker: Arc<str>,
    /// The label given when the work started.
    pub label: String,
    /// How long the work had been running when the snapshot was taken.
    pub age: Duration,
    /// Identifies the item across snapshots of the same tracker.
    pub id: u64,
}

impl Tracker {
    /// Creates an empty tracker.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                next: AtomicU64::new(0),
                live: Mutex::new(HashMap::new()),
                idle: Notify::new(),
            }),
        }
    }

    /// The tracker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts tracking one piece of work.
    pub fn track(&self, label: &'static str) -> WorkGuard {
        self.track_with(label)
    }

    /// Starts tracking one piece of work with a label built at run time.
    pub fn track_with(&self, label: impl Into<String>) -> WorkGuard {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .live
            .lock()
            .unwrap()
            .insert(id, (label.into(), Instant::now()));
        WorkGuard {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Number of pieces of work in flight.
    pub fn len(&self) -> usize {
        self.inner.live.lock().unwrap().len()
    }

    /// Whether no work is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The work in flight now.
    pub fn snapshot(&self) -> Vec<WorkItem> {
        let now = Instant::now();
        let mut items: Vec<_> = self
            .inner
            .live
            .lock()
            .unwrap()
            .iter()
            .map(|(id, (label, start))| WorkItem {
                tracker: self.inner.name.clone(),
                label: label.clone(),
                age: now - *start,
                id: *id,
            })
            .collect();
        items.sort_by(|a, b| b.age.cmp(&a.age));
        items
    }

    /// Waits until no work is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let mut live = self.inner.live.lock().unwrap();
        live.remove(&self.id);
        if live.is_empty() {
            self.inner.idle.notify_waiters();
        }
    }
}
