//! Static labels interned to small integers.
//!
//! A slot cannot hold a `&'static str` in an atomic without `unsafe`, so a
//! static label is stored as a `u32` that indexes a process-wide table. The
//! table only grows: static labels are program text, a bounded set.
//!
//! The fast path never touches the table. A small direct-mapped cache per
//! thread maps the label's address and length to its id: a `&'static str`
//! lives (and keeps its bytes) until the process exits, so its address can
//! never come to mean a different text.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

/// Label id that says "the text is in the slot's dynamic-label cell".
pub(super) const DYNAMIC: u32 = u32::MAX;

/// Label ids with this bit set (other than `DYNAMIC`) say "the text is in
/// the slot itself", its length in the low bits. Interned ids never reach
/// it: static labels are program text, a few hundred at most.
pub(super) const INLINE: u32 = 1 << 31;

/// Number of entries in the per-thread cache; a power of two.
const WAYS: usize = 32;

#[derive(Clone, Copy)]
struct Entry {
    /// Address of the text; 0 marks an empty entry (no reference is null).
    addr: usize,
    len: usize,
    id: u32,
}

const EMPTY: Entry = Entry {
    addr: 0,
    len: 0,
    id: 0,
};

thread_local! {
    // `const` and free of `Drop`, so access is a plain TLS offset with no
    // lazy-init check and works even while the thread is being torn down.
    static CACHE: [Cell<Entry>; WAYS] = const { [const { Cell::new(EMPTY) }; WAYS] };
}

struct Table {
    ids: BTreeMap<&'static str, u32>,
    texts: Vec<&'static str>,
}

static TABLE: RwLock<Table> = RwLock::new(Table {
    ids: BTreeMap::new(),
    texts: Vec::new(),
});

/// The id of a static label, interning it on first sight.
#[inline]
pub(super) fn intern(label: &'static str) -> u32 {
    let addr = label.as_ptr() as usize;
    let len = label.len();
    // Fibonacci hashing of the address: literals sit at arbitrary byte
    // offsets, so the top bits of the product spread them evenly.
    let way = (addr ^ len).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize)
        >> (usize::BITS - WAYS.trailing_zeros());
    CACHE.with(|cache| {
        let entry = cache[way].get();
        if entry.addr == addr && entry.len == len {
            return entry.id;
        }
        let id = intern_slow(label);
        cache[way].set(Entry { addr, len, id });
        id
    })
}

#[cold]
fn intern_slow(label: &'static str) -> u32 {
    if let Some(&id) = TABLE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .ids
        .get(label)
    {
        return id;
    }
    let mut table = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(&id) = table.ids.get(label) {
        return id;
    }
    let id = u32::try_from(table.texts.len())
        .ok()
        .filter(|&id| id != DYNAMIC)
        .expect("more than 4 billion distinct static labels; use track_with for run-time text");
    table.texts.push(label);
    table.ids.insert(label, id);
    id
}

/// Runs `f` with the interned texts, indexed by id.
pub(super) fn with_texts<R>(f: impl FnOnce(&[&'static str]) -> R) -> R {
    f(&TABLE.read().unwrap_or_else(PoisonError::into_inner).texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_id_even_from_different_addresses() {
        let a: &'static str = "label::same";
        let b: &'static str = String::from("label::same").leak();
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(intern(a), intern(b));
        assert_eq!(intern(a), intern(a));
    }

    #[test]
    fn ids_resolve_to_their_text() {
        let id = intern("label::resolve");
        let other = intern("label::other");
        assert_ne!(id, other);
        with_texts(|texts| {
            assert_eq!(texts[id as usize], "label::resolve");
            assert_eq!(texts[other as usize], "label::other");
        });
    }

    #[test]
    fn prefix_sharing_literals_are_told_apart_by_length() {
        // The compiler may place "ab" inside "abc": same address, other length.
        let long: &'static str = "label::abc";
        let short: &'static str = &long[..9];
        assert_eq!(long.as_ptr(), short.as_ptr());
        let (l, s) = (intern(long), intern(short));
        assert_ne!(l, s);
        with_texts(|texts| assert_eq!(texts[s as usize], "label::ab"));
    }
}
