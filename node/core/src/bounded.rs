//! [`BoundedMap`]: a map with a bound on its entries that drops the oldest first.
//!
//! The market keeps several such maps (served outputs, traces, verified outputs, job clocks);
//! this is the one implementation. Eviction is O(log n): entries carry an insertion sequence
//! number, and a second ordered map finds the oldest without a scan.

use std::collections::BTreeMap;

/// A map of at most `cap` entries; inserting a new key into a full map drops the entry
/// inserted longest ago. Iteration is in key order.
#[derive(Debug, Clone)]
pub struct BoundedMap<K, V> {
    cap: usize,
    seq: u64,
    entries: BTreeMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
}

impl<K: Ord + Clone, V> BoundedMap<K, V> {
    /// An empty map that holds at most `cap` entries (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            seq: 0,
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The bound.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// The value of `key`, to change in place (its age stays).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    /// Inserts `value` under `key` as the newest entry (a held key is replaced and becomes the
    /// newest). Returns the entry dropped to make room, if one was.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let evicted = if let Some((seq, _)) = self.entries.remove(&key) {
            self.order.remove(&seq);
            None
        } else {
            self.make_room()
        };
        self.seq += 1;
        self.order.insert(self.seq, key.clone());
        self.entries.insert(key, (self.seq, value));
        evicted
    }

    /// The value of `key`, inserted with `make` as the newest entry if absent (dropping the
    /// oldest if full). A held key keeps its age.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(&key) {
            self.make_room();
            self.seq += 1;
            self.order.insert(self.seq, key.clone());
            self.entries.insert(key.clone(), (self.seq, make()));
        }
        &mut self
            .entries
            .get_mut(&key)
            .expect("present: inserted above if absent")
            .1
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (seq, value) = self.entries.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|k, (seq, v)| {
            let kept = keep(k, v);
            if !kept {
                order.remove(seq);
            }
            kept
        });
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (_, v))| (k, v))
    }

    /// The entries in key order, values to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, (_, v))| (k, v))
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(_, v)| v)
    }

    fn make_room(&mut self) -> Option<(K, V)> {
        if self.entries.len() < self.cap {
            return None;
        }
        let (_, oldest) = self.order.pop_first()?;
        let (_, value) = self.entries.remove(&oldest)?;
        Some((oldest, value))
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn the_oldest_goes_first_and_a_replaced_key_becomes_the_newest() {
        let mut m = BoundedMap::new(3);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(2, "b"), None);
        assert_eq!(m.insert(3, "c"), None);
        // Replacing 1 makes it the newest: 2 is now the oldest.
        assert_eq!(m.insert(1, "a2"), None);
        assert_eq!(m.insert(4, "d"), Some((2, "b")));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&1), Some(&"a2"));
        assert!(!m.contains_key(&2));
        let keys: Vec<_> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 3, 4]);
    }

    #[test]
    fn get_or_insert_keeps_the_age_of_a_held_key() {
        let mut m = BoundedMap::new(2);
        *m.get_or_insert_with(1, || 0) += 1;
        *m.get_or_insert_with(2, || 0) += 1;
        *m.get_or_insert_with(1, || 0) += 1;
        // 1 was inserted first and was not refreshed: it goes.
        *m.get_or_insert_with(3, || 0) += 1;
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get(&2), Some(&1));
        assert_eq!(m.get(&3), Some(&1));
    }

    #[test]
    fn remove_and_retain_keep_the_order_consistent() {
        let mut m = BoundedMap::new(3);
        for k in 0..3 {
            m.insert(k, k * 10);
        }
        assert_eq!(m.remove(&0), Some(0));
        m.retain(|k, _| *k != 1);
        assert_eq!(m.len(), 1);
        // Room for two more without evicting 2.
        assert_eq!(m.insert(5, 50), None);
        assert_eq!(m.insert(6, 60), None);
        assert_eq!(m.insert(7, 70), Some((2, 20)));
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [50, 60, 70]);
    }
}
