//! Process-level tests of the lameduck library live in `tests/`; the fixture
//! programs they signal live in `src/bin/`.
