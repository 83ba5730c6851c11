//! Process-level tests of the lameduck library live in `tests/`; the fixture
//! programs they signal live in `src/bin/`. [`load`] is the HTTP load both
//! the upgrade tests and the upgrade benchmark drive.

pub mod fixture;
pub mod load;
