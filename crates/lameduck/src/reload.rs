//! Reloading configuration without a restart: what each component does
//! when the app is asked to, and what came of it.

use std::fmt;
use std::sync::Arc;

use crate::BoxError;

/// What one component does on [`AppHandle::reload`](crate::AppHandle::reload).
pub(crate) type ReloadFn = Arc<dyn Fn() -> Result<(), BoxError> + Send + Sync>;

/// Each component's reload, by component name, in registration order.
#[derive(Default)]
pub(crate) struct Reloads(Vec<(Arc<str>, ReloadFn)>);

impl Reloads {
    /// Sets `name`'s reload, replacing one it set before (a component
    /// restarted by its policy registers again).
    pub(crate) fn set(&mut self, name: Arc<str>, reload: ReloadFn) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = reload,
            None => self.0.push((name, reload)),
        }
    }

    pub(crate) fn all(&self) -> Vec<(Arc<str>, ReloadFn)> {
        self.0.clone()
    }
}

impl fmt::Debug for Reloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// Runs every reload; the names of those that ran, or what failed.
pub(crate) fn run(reloads: Vec<(Arc<str>, ReloadFn)>) -> Result<Vec<Arc<str>>, ReloadError> {
    let mut reloaded = Vec::new();
    let mut failed = Vec::new();
    for (name, reload) in reloads {
        match reload() {
            Ok(()) => reloaded.push(name),
            Err(err) => {
                tracing::warn!(target: "lameduck", component = %name, error = %Chain(&*err), "reload failed; the old configuration stays");
                failed.push((name, err));
            }
        }
    }
    if failed.is_empty() {
        Ok(reloaded)
    } else {
        Err(ReloadError { reloaded, failed })
    }
}

/// Why [`AppHandle::reload`](crate::AppHandle::reload) failed: the
/// components whose reload failed, each with its error (each keeps its old
/// configuration), and those that reloaded.
#[derive(Debug)]
pub struct ReloadError {
    reloaded: Vec<Arc<str>>,
    failed: Vec<(Arc<str>, BoxError)>,
}

impl ReloadError {
    /// The components whose reload failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &(dyn std::error::Error + 'static))> {
        self.failed.iter().map(|(n, e)| (&**n, &**e as _))
    }

    /// The components that reloaded.
    pub fn reloaded(&self) -> impl Iterator<Item = &str> {
        self.reloaded.iter().map(|n| &**n)
    }
}

impl fmt::Display for ReloadError {
    /// One line: each failed component with its error and their causes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reload failed")?;
        for (i, (name, err)) in self.failed.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{name}: {}", Chain(&**err))?;
        }
        Ok(())
    }
}

impl std::error::Error for ReloadError {}

/// An error and its causes, joined with `: `.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}
