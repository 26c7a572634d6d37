//! [`BoundedMap`]: a map with a bound on its entries, and optionally on their bytes, that
//! drops the oldest first.
//!
//! The market keeps several such maps (served outputs, traces, verified outputs, job clocks);
//! this is the one implementation. Eviction is O(log n): entries carry an insertion sequence
//! number, and a second ordered map finds the oldest without a scan.

use std::collections::BTreeMap;

/// A map of at most `cap` entries, and with [`BoundedMap::with_bytes`] at most a byte budget;
/// inserting a new key drops the entries inserted longest ago until both bounds hold.
/// Iteration is in key order.
#[derive(Debug, Clone)]
pub struct BoundedMap<K, V> {
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    weigh: fn(&V) -> usize,
    seq: u64,
    /// Key -> (insertion sequence number, weight when inserted, value).
    entries: BTreeMap<K, (u64, usize, V)>,
    order: BTreeMap<u64, K>,
}

impl<K: Ord + Clone, V> BoundedMap<K, V> {
    /// An empty map that holds at most `cap` entries (at least one).
    pub fn new(cap: usize) -> Self {
        Self::with_bytes(cap, usize::MAX, |_| 0)
    }

    /// An empty map that holds at most `cap` entries (at least one) weighing at most
    /// `max_bytes` together, each weighed by `weigh` when it is inserted (a value changed in
    /// place keeps its weight). A value heavier than the whole budget is held alone.
    pub fn with_bytes(cap: usize, max_bytes: usize, weigh: fn(&V) -> usize) -> Self {
        Self {
            cap: cap.max(1),
            max_bytes,
            bytes: 0,
            weigh,
            seq: 0,
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The bound on entries.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// What the held entries weighed when they were inserted.
    pub fn bytes(&self) -> usize {
        self.bytes
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
        self.entries.get(key).map(|(_, _, v)| v)
    }

    /// The value of `key`, to change in place (its age and weight stay).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, _, v)| v)
    }

    /// Inserts `value` under `key` as the newest entry (a held key is replaced and becomes the
    /// newest). Returns the entries dropped to make room, oldest first.
    pub fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        self.remove(&key);
        let weight = (self.weigh)(&value);
        let evicted = self.make_room(weight);
        self.put(key, weight, value);
        evicted
    }

    /// The value of `key`, inserted with `make` as the newest entry if absent (dropping the
    /// oldest to make room). A held key keeps its age.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(&key) {
            let value = make();
            let weight = (self.weigh)(&value);
            self.make_room(weight);
            self.put(key.clone(), weight, value);
        }
        &mut self
            .entries
            .get_mut(&key)
            .expect("present: inserted above if absent")
            .2
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (seq, weight, value) = self.entries.remove(key)?;
        self.order.remove(&seq);
        self.bytes -= weight;
        Some(value)
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let (order, bytes) = (&mut self.order, &mut self.bytes);
        self.entries.retain(|k, (seq, weight, v)| {
            let kept = keep(k, v);
            if !kept {
                order.remove(seq);
                *bytes -= *weight;
            }
            kept
        });
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (_, _, v))| (k, v))
    }

    /// The entries in key order, values to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, (_, _, v))| (k, v))
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(_, _, v)| v)
    }

    fn put(&mut self, key: K, weight: usize, value: V) {
        self.seq += 1;
        self.order.insert(self.seq, key.clone());
        self.entries.insert(key, (self.seq, weight, value));
        self.bytes += weight;
    }

    /// Drops the oldest entries until one more of `weight` fits both bounds (or none is left).
    fn make_room(&mut self, weight: usize) -> Vec<(K, V)> {
        let mut evicted = Vec::new();
        while self.entries.len() >= self.cap
            || self.bytes.saturating_add(weight) > self.max_bytes && !self.entries.is_empty()
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, value)) = self.entries.remove(&oldest) {
                self.bytes -= w;
                evicted.push((oldest, value));
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn the_oldest_goes_first_and_a_replaced_key_becomes_the_newest() {
        let mut m = BoundedMap::new(3);
        assert_eq!(m.insert(1, "a"), []);
        assert_eq!(m.insert(2, "b"), []);
        assert_eq!(m.insert(3, "c"), []);
        // Replacing 1 makes it the newest: 2 is now the oldest.
        assert_eq!(m.insert(1, "a2"), []);
        assert_eq!(m.insert(4, "d"), [(2, "b")]);
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
        assert_eq!(m.insert(5, 50), []);
        assert_eq!(m.insert(6, 60), []);
        assert_eq!(m.insert(7, 70), [(2, 20)]);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [50, 60, 70]);
    }

    #[test]
    fn a_byte_budget_drops_the_oldest_until_the_new_entry_fits() {
        let mut m: BoundedMap<u32, Vec<u8>> = BoundedMap::with_bytes(100, 10, Vec::len);
        assert!(m.insert(1, vec![0; 4]).is_empty());
        assert!(m.insert(2, vec![0; 4]).is_empty());
        assert_eq!(m.bytes(), 8);
        // 7 more bytes need both older entries gone (6 would need only the oldest).
        let dropped: Vec<u32> = m
            .insert(3, vec![0; 7])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(dropped, [1, 2]);
        assert_eq!(m.bytes(), 7);
        // Removal and retain give their bytes back.
        m.insert(4, vec![0; 2]);
        m.remove(&3);
        m.retain(|_, _| false);
        assert_eq!((m.len(), m.bytes()), (0, 0));
        // A value over the whole budget is held alone.
        m.insert(5, vec![0; 1]);
        assert_eq!(m.insert(6, vec![0; 50]).len(), 1);
        assert_eq!((m.len(), m.bytes()), (1, 50));
    }
}
