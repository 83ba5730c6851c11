//! Which program an upgrade starts.
//!
//! The path the process was started with, made absolute, is what nginx and
//! tableflip re-execute, and for good reason: `/proc/self/exe` (which
//! `std::env::current_exe` reads) follows the inode that is running, so
//! once a deployment has replaced the binary it names the old, deleted file
//! (`… (deleted)`), and a release switched by a symlink
//! (`/opt/app/current -> releases/v2`) would never be picked up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static START: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Records the program and arguments, once; call early (the app builder
/// does), before anything changes the working directory.
pub(crate) fn capture() -> &'static (PathBuf, Vec<OsString>) {
    START.get_or_init(|| {
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_default();
        let program = resolve(&argv0)
            .unwrap_or_else(|| std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&argv0)));
        (program, args.collect())
    })
}

fn resolve(argv0: &OsString) -> Option<PathBuf> {
    let p = Path::new(argv0);
    if p.as_os_str().is_empty() {
        return None;
    }
    if p.components().count() > 1 || p.is_absolute() {
        // Made absolute, but not canonical: symlinks stay, to be followed
        // again at the upgrade.
        return Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(p)
        });
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_made_absolute_without_resolving_links() {
        let got = resolve(&OsString::from("./bin/../app")).unwrap();
        assert!(got.is_absolute());
        assert!(got.ends_with("bin/../app"), "{got:?}");
        assert_eq!(
            resolve(&OsString::from("/opt/app/current/app")).unwrap(),
            PathBuf::from("/opt/app/current/app")
        );
    }

    #[test]
    fn a_bare_name_is_looked_up_in_path() {
        assert!(resolve(&OsString::from("sh")).is_some_and(|p| p.is_absolute()));
        assert!(resolve(&OsString::from("")).is_none());
    }
}
