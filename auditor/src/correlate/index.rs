//! Interval indexes over the correlator's state: which pins (or PFN maps) of one group (a vma, an
//! mm, a file mapping, a release rule) have a page interval overlapping a query interval.
//!
//! A `BTreeMap` keyed by `(group, first, id)`: a query scans the group's entries whose `first`
//! lies in `[lo - longest, last]`, where `longest` is the longest interval the group has held
//! since it was last empty. Intervals of one group seldom overlap (a vma's pins cover distinct
//! pages, a file's vmas distinct offsets), so a query costs O(log n + hits) without an interval
//! tree; a group that once held a very long interval scans more until it empties. Results are
//! candidates: the caller checks each one exactly.
use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

pub(crate) struct IntervalIndex<K> {
    /// `(group, first, id)` → last (inclusive).
    entries: BTreeMap<(K, u64, u64), u64>,
    groups: HashMap<K, Group>,
}

#[derive(Default)]
struct Group {
    count: u64,
    /// Longest `last - first` held since the group was last empty.
    longest: u64,
}

impl<K> Default for IntervalIndex<K> {
    fn default() -> Self {
        Self { entries: BTreeMap::new(), groups: HashMap::new() }
    }
}

impl<K: Copy + Ord + Hash> IntervalIndex<K> {
    /// Adds `[first, last]` of `id` to `group` (once per `(group, first, id)`).
    pub fn insert(&mut self, group: K, first: u64, last: u64, id: u64) {
        let last = last.max(first);
        if self.entries.insert((group, first, id), last).is_none() {
            let g = self.groups.entry(group).or_default();
            g.count += 1;
            g.longest = g.longest.max(last - first);
        }
    }

    /// Moves the end of an interval already held (its start stays).
    pub(crate) fn set_last(&mut self, group: K, first: u64, id: u64, last: u64) {
        let last = last.max(first);
        if let Some(end) = self.entries.get_mut(&(group, first, id)) {
            *end = last;
            if let Some(g) = self.groups.get_mut(&group) {
                g.longest = g.longest.max(last - first);
            }
        }
    }

    pub fn remove(&mut self, group: K, first: u64, id: u64) {
        if self.entries.remove(&(group, first, id)).is_some()
            && let Some(g) = self.groups.get_mut(&group)
        {
            g.count -= 1;
            if g.count == 0 {
                self.groups.remove(&group);
            }
        }
    }

    /// Pushes the ids of `group`'s intervals that overlap `[lo, last]` (unsorted, an id once per
    /// interval).
    pub(crate) fn overlapping(&self, group: K, lo: u64, last: u64, out: &mut Vec<u64>) {
        let Some(g) = self.groups.get(&group) else { return };
        let from = lo.saturating_sub(g.longest);
        if from > last {
            return;
        }
        for (&(_, _, id), &end) in self.entries.range((group, from, 0)..=(group, last, u64::MAX)) {
            if end >= lo {
                out.push(id);
            }
        }
    }

    /// Pushes the ids of every interval of `group`.
    pub fn all(&self, group: K, out: &mut Vec<u64>) {
        if !self.groups.contains_key(&group) {
            return;
        }
        out.extend(self.entries.range((group, 0, 0)..=(group, u64::MAX, u64::MAX)).map(|(&(_, _, id), _)| id));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_overlaps_including_long_intervals_and_forgets_removed_ones() {
        let mut ix = IntervalIndex::default();
        ix.insert(1u64, 0, 999, 1);
        ix.insert(1, 2000, 2000, 2);
        ix.insert(1, 3000, 3009, 3);
        ix.insert(2, 2000, 2000, 4);
        let q = |ix: &IntervalIndex<u64>, lo, last| {
            let mut out = Vec::new();
            ix.overlapping(1, lo, last, &mut out);
            out.sort();
            out
        };
        assert_eq!(q(&ix, 500, 2000), [1, 2]);
        assert_eq!(q(&ix, 1000, 1999), Vec::<u64>::new());
        assert_eq!(q(&ix, 3009, u64::MAX), [3]);
        ix.remove(1, 0, 1);
        assert_eq!(q(&ix, 0, u64::MAX), [2, 3]);
        let mut all = Vec::new();
        ix.all(2, &mut all);
        assert_eq!(all, [4]);
        ix.remove(2, 2000, 4);
        assert_eq!(ix.len(), 2);
    }
}
