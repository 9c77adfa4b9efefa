//! Interval indexes over the correlator's state: which pins (or PFN maps) of one group (a vma, an
//! mm, a file mapping, a release rule) have a page interval starting near a query interval.
//!
//! A `BTreeSet` of packed `(group, first, id)` keys (20 bytes with a `u32` id, no value): a query
//! scans the group's entries whose `first` lies in `[lo - longest, last]`, where `longest` is the
//! longest interval the group has held since it was last empty. Intervals of one group seldom
//! overlap (a vma's pins cover distinct pages, a file's vmas distinct offsets), so a query costs
//! O(log n + hits) without an interval tree; a group that once held a very long interval scans
//! more until it empties. Only groups that held an interval longer than the index's `short`
//! length (one page, in the index's unit) have a `longest` of their own, so a million groups of
//! one page each cost nothing beyond their keys.
//!
//! Results are candidates, a superset of the overlapping intervals (an interval's end is not
//! kept): the caller checks each one exactly against the pin or PFN map it names.
use std::{
    collections::{BTreeSet, HashMap},
    hash::Hash,
};

use super::slots::{NIL, Slot};

/// An index entry: packed to 4-byte alignment so a `u32` id makes 20 bytes, not 24.
#[repr(C, packed(4))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key<I: Copy> {
    group: u64,
    first: u64,
    id: I,
}

pub(crate) struct IntervalIndex<I: Copy> {
    entries: BTreeSet<Key<I>>,
    /// Longest `last - first` held since the group was last empty, for groups where it exceeds
    /// `short`.
    long: HashMap<u64, u64>,
    short: u64,
}

/// The id type of an index: its smallest and largest values bound a group's range.
pub(crate) trait Id: Copy + Ord {
    const MIN: Self;
    const MAX: Self;
}

impl Id for u32 {
    const MIN: Self = 0;
    const MAX: Self = u32::MAX;
}

impl Id for u64 {
    const MIN: Self = 0;
    const MAX: Self = u64::MAX;
}

impl<I: Id> IntervalIndex<I> {
    /// An index whose intervals are mostly at most `short` long (`last - first`: one page in
    /// the index's unit, `PAGE - 1` for addresses, 0 for page numbers).
    pub(crate) fn new(short: u64) -> Self {
        Self { entries: BTreeSet::new(), long: HashMap::new(), short }
    }

    /// Adds `[first, last]` of `id` to `group` (once per `(group, first, id)`).
    pub(crate) fn insert(&mut self, group: u64, first: u64, last: u64, id: I) {
        if self.entries.insert(Key { group, first, id }) {
            self.note_length(group, first, last);
        }
    }

    /// Moves the end of an interval already held (its start stays).
    pub(crate) fn set_last(&mut self, group: u64, first: u64, last: u64) {
        self.note_length(group, first, last);
    }

    fn note_length(&mut self, group: u64, first: u64, last: u64) {
        let len = last.saturating_sub(first);
        if len > self.short {
            let longest = self.long.entry(group).or_insert(len);
            *longest = (*longest).max(len);
        }
    }

    pub(crate) fn remove(&mut self, group: u64, first: u64, id: I) {
        if self.entries.remove(&Key { group, first, id }) && self.long.contains_key(&group) && self.group(group).next().is_none() {
            self.long.remove(&group);
        }
    }

    fn group(&self, group: u64) -> impl Iterator<Item = I> + '_ {
        self.entries.range(Key { group, first: 0, id: I::MIN }..=Key { group, first: u64::MAX, id: I::MAX }).map(|k| k.id)
    }

    /// Pushes the ids of `group`'s intervals that may overlap `[lo, last]`: every one that does,
    /// and some that start less than the group's longest interval before `lo` (unsorted, an id
    /// once per interval).
    pub(crate) fn overlapping(&self, group: u64, lo: u64, last: u64, out: &mut Vec<I>) {
        let longest = self.long.get(&group).copied().unwrap_or(self.short);
        let from = lo.saturating_sub(longest);
        if from > last {
            return;
        }
        out.extend(self.entries.range(Key { group, first: from, id: I::MIN }..=Key { group, first: last, id: I::MAX }).map(|k| k.id));
    }

    /// Pushes the ids of every interval of `group`.
    pub(crate) fn all(&self, group: u64, out: &mut Vec<I>) {
        out.extend(self.group(group));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Slots by a group key, for a question that wants every member of a group and no order (every
/// pin of a process and release class): a doubly linked list per group through a vector indexed
/// by slot, and a hash map of the groups' heads. Adding or removing a member is O(1) whatever the
/// number of members (8 bytes a slot, a hash entry a group; an ordered set of `(group, slot)`
/// keys walks a tree of every member).
pub(crate) struct SlotLists<K> {
    heads: HashMap<K, Slot>,
    /// `[previous, next]` member of the slot's group, `NIL` at the ends.
    links: Vec<[Slot; 2]>,
}

impl<K: Copy + Eq + Hash> SlotLists<K> {
    pub(crate) fn new() -> Self {
        Self { heads: HashMap::new(), links: Vec::new() }
    }

    /// Adds `slot`, not a member of any group, to `group`.
    pub(crate) fn insert(&mut self, group: K, slot: Slot) {
        let at = slot as usize;
        if self.links.len() <= at {
            self.links.resize(at + 1, [NIL, NIL]);
        }
        let next = self.heads.insert(group, slot).unwrap_or(NIL);
        self.links[at] = [NIL, next];
        if let Some(n) = self.links.get_mut(next as usize) {
            n[0] = slot;
        }
    }

    /// Removes `slot` from `group`, where [`SlotLists::insert`] put it.
    pub(crate) fn remove(&mut self, group: K, slot: Slot) {
        let Some(&[prev, next]) = self.links.get(slot as usize) else { return };
        match self.links.get_mut(prev as usize) {
            Some(p) => p[1] = next,
            None if next == NIL => {
                self.heads.remove(&group);
            }
            None => {
                self.heads.insert(group, next);
            }
        }
        if let Some(n) = self.links.get_mut(next as usize) {
            n[0] = prev;
        }
        self.links[slot as usize] = [NIL, NIL];
    }

    /// A member of `group`, if it has one.
    pub(crate) fn any(&self, group: K) -> Option<Slot> {
        self.heads.get(&group).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_hold_each_group_s_members_until_removed() {
        let mut l = SlotLists::new();
        for (group, slot) in [(1, 0), (2, 1), (1, 5), (1, 3)] {
            l.insert(group, slot);
        }
        let members = |l: &mut SlotLists<u32>, group| {
            let mut out = Vec::new();
            while let Some(s) = l.any(group) {
                l.remove(group, s);
                out.push(s);
            }
            out.sort();
            out
        };
        l.remove(1, 5);
        assert_eq!(members(&mut l, 1), [0, 3], "a middle member removed, the others kept");
        l.insert(1, 5);
        assert_eq!(members(&mut l, 1), [5], "a slot reused after its removal");
        assert_eq!(members(&mut l, 2), [1]);
        assert_eq!((l.any(1), l.any(2), l.heads.len()), (None, None, 0));
    }

    #[test]
    fn finds_overlaps_including_long_intervals_and_forgets_removed_ones() {
        let mut ix = IntervalIndex::<u32>::new(0);
        ix.insert(1, 0, 999, 1);
        ix.insert(1, 2000, 2000, 2);
        ix.insert(1, 3000, 3009, 3);
        ix.insert(2, 2000, 2000, 4);
        let q = |ix: &IntervalIndex<u32>, lo, last| {
            let mut out = Vec::new();
            ix.overlapping(1, lo, last, &mut out);
            out.sort();
            out
        };
        assert_eq!(q(&ix, 500, 2000), [1, 2]);
        assert_eq!(q(&ix, 3009, u64::MAX), [3]);
        // A candidate, not a hit: 3 starts within the longest interval (999) before 3500.
        assert_eq!(q(&ix, 3500, 3600), [3]);
        ix.remove(1, 0, 1);
        assert_eq!(q(&ix, 0, u64::MAX), [2, 3]);
        let mut all = Vec::new();
        ix.all(2, &mut all);
        assert_eq!(all, [4]);
        ix.remove(2, 2000, 4);
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn a_group_forgets_its_longest_interval_once_empty() {
        let mut ix = IntervalIndex::<u64>::new(0);
        ix.insert(7, 0, 1_000_000, 1);
        ix.remove(7, 0, 1);
        ix.insert(7, 10, 10, 2);
        let mut out = Vec::new();
        ix.overlapping(7, 500, 600, &mut out);
        assert_eq!(out, Vec::<u64>::new(), "the long interval is gone: the scan starts at 500");
        ix.overlapping(7, 10, 10, &mut out);
        assert_eq!(out, [2]);
    }
}
