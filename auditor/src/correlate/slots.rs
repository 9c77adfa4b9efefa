//! The correlator's pins and PFN maps: values in a slab addressed by `u32` slots (what the
//! indexes hold, 4 bytes instead of an 8-byte id or pointer), kept in insertion order by links
//! inside the slab, so the oldest is found in O(1) for eviction and a pin's place in the order
//! never moves while its pages change. The `slab` crate holds the values; the order is ours (a
//! linked hash map would add an allocation and two pointers per value).
use slab::Slab;

/// A slot: the index of a value in an [`Ordered`].
pub(crate) type Slot = u32;

/// No slot (ends of the links).
pub(crate) const NIL: Slot = Slot::MAX;

struct Node<T> {
    value: T,
    prev: Slot,
    next: Slot,
}

/// Values by slot, in the order they were pushed.
pub(crate) struct Ordered<T> {
    slab: Slab<Node<T>>,
    head: Slot,
    tail: Slot,
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self { slab: Slab::new(), head: NIL, tail: NIL }
    }
}

impl<T> Ordered<T> {
    /// Most values an `Ordered` holds (slots are `u32`, one value is kept for "none").
    pub(crate) const MAX_LEN: usize = NIL as usize;

    /// Adds `value` as the newest; returns its slot. Panics past [`Ordered::MAX_LEN`] values (the
    /// correlator's bounds stay below).
    pub(crate) fn push(&mut self, value: T) -> Slot {
        let slot = Slot::try_from(self.slab.insert(Node { value, prev: self.tail, next: NIL })).expect("fewer than 2^32 - 1 values");
        assert_ne!(slot, NIL, "fewer than 2^32 - 1 values");
        match self.slab.get_mut(self.tail as usize) {
            Some(tail) => tail.next = slot,
            None => self.head = slot,
        }
        self.tail = slot;
        slot
    }

    pub(crate) fn remove(&mut self, slot: Slot) -> Option<T> {
        let node = self.slab.try_remove(slot as usize)?;
        match self.slab.get_mut(node.prev as usize) {
            Some(prev) => prev.next = node.next,
            None => self.head = node.next,
        }
        match self.slab.get_mut(node.next as usize) {
            Some(next) => next.prev = node.prev,
            None => self.tail = node.prev,
        }
        Some(node.value)
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&T> {
        self.slab.get(slot as usize).map(|n| &n.value)
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.slab.get_mut(slot as usize).map(|n| &mut n.value)
    }

    /// The oldest value's slot.
    pub(crate) fn first(&self) -> Option<Slot> {
        (self.head != NIL).then_some(self.head)
    }

    /// Values oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let node = self.slab.get(at as usize)?;
            at = node.next;
            Some(&node.value)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_push_order_across_removals_and_reused_slots() {
        let mut o = Ordered::default();
        let a = o.push("a");
        let b = o.push("b");
        o.push("c");
        assert_eq!(o.remove(b), Some("b"));
        assert_eq!(o.remove(b), None, "a slot is removed once");
        let d = o.push("d");
        assert_eq!(d, b, "the slab reuses the free slot");
        assert_eq!(o.iter().copied().collect::<Vec<_>>(), ["a", "c", "d"], "but the order is the push order");
        assert_eq!(o.first(), Some(a));
        o.remove(a);
        assert_eq!(o.get(o.first().unwrap()), Some(&"c"));
        assert_eq!(o.len(), 2);
        o.remove(d);
        o.remove(o.first().unwrap());
        assert_eq!((o.first(), o.iter().count()), (None, 0));
        o.push("e");
        assert_eq!(o.iter().copied().collect::<Vec<_>>(), ["e"]);
    }
}
