//! Sharing what many pins have in common: the task, call site and stack that took them, the vma
//! they are in. A pin holds an [`Arc`] to one shared copy instead of its own strings, so a pin is a
//! few dozen bytes plus its indexes (README "Correlator": memory at 1 M pins).
//!
//! A table of `Arc<T>` found by a caller-given hash and equality (hashbrown's `HashTable`), so a
//! lookup compares against borrowed event fields and allocates only for a value not seen yet. The
//! hash is not stored (8 bytes a bucket, not 16): the table recomputes it from the value
//! ([`Interned::key_hash`]) when it grows, which must give what the caller passed.
//! Entries nobody else holds any more are dropped whenever the table has doubled since the last
//! sweep: its size stays within twice what the pins share, amortized O(1) per insert.
//! (`internment` has the same idea as a process-global table and takes an owned value per lookup:
//! a clone of the stack for every pin.)
use std::{
    hash::{BuildHasher, Hash},
    sync::Arc,
};

use hashbrown::HashTable;

/// A value an [`Interner`] can hold: its hash, the same the caller computes from borrowed fields.
pub(crate) trait Interned {
    fn key_hash(&self, hasher: &impl BuildHasher) -> u64;
}

pub(crate) struct Interner<T> {
    table: HashTable<Arc<T>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Entries after the last sweep: the next sweep is at twice that (at least `MIN_SWEEP`).
    swept_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self { table: HashTable::new(), hasher: hashbrown::DefaultHashBuilder::default(), swept_at: 0 }
    }
}

impl<T: Interned> Interner<T> {
    /// The hash to pass to [`Interner::get_or_insert`] for a key (the same key must hash the same).
    pub(crate) fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shared copy of the value that `hash` and `eq` name, made by `make` if there is none.
    pub(crate) fn get_or_insert(&mut self, hash: u64, eq: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(shared) = self.table.find(hash, |v| eq(v)) {
            return shared.clone();
        }
        if self.table.len() >= (2 * self.swept_at).max(MIN_SWEEP) {
            self.table.retain(|v| Arc::strong_count(v) > 1);
            self.swept_at = self.table.len();
        }
        let shared = Arc::new(make());
        debug_assert_eq!(shared.key_hash(&self.hasher), hash, "the caller's hash is the value's");
        let hasher = &self.hasher;
        self.table.insert_unique(hash, shared.clone(), |v| v.key_hash(hasher));
        shared
    }

    /// The values whose hash is `hash` (and maybe a few others: check each), including values
    /// nobody holds any more that no sweep has dropped yet.
    pub(crate) fn with_hash(&self, hash: u64) -> impl Iterator<Item = &T> + '_ {
        self.table.iter_hash(hash).map(|v| &**v)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Interned for String {
        fn key_hash(&self, hasher: &impl BuildHasher) -> u64 {
            hasher.hash_one(self.as_str())
        }
    }

    #[test]
    fn equal_values_share_one_copy_and_unused_copies_are_swept() {
        fn get(strings: &mut Interner<String>, s: &str) -> Arc<String> {
            let h = strings.hash(s);
            strings.get_or_insert(h, |v| v == s, || s.to_string())
        }
        let mut strings = Interner::default();
        let a = get(&mut strings, "follow_pfn");
        assert!(Arc::ptr_eq(&a, &get(&mut strings, "follow_pfn")));
        assert!(!Arc::ptr_eq(&a, &get(&mut strings, "follow_pte")));
        // 10 000 values nobody keeps: the table sweeps them instead of growing to 10 000.
        for i in 0..10_000 {
            get(&mut strings, &i.to_string());
        }
        assert!(strings.len() <= 2 * MIN_SWEEP, "{}", strings.len());
        assert!(Arc::ptr_eq(&a, &get(&mut strings, "follow_pfn")), "a value still held survives sweeps");
    }
}
