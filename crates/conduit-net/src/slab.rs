//! A generational slab: dense indices for mio tokens, generations so a stale id never reaches a new occupant.

/// Identifies one connection for its whole life. The index is reused after the connection closes; the
/// generation is not, so messages addressed to a closed connection are recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// The slot index: dense, below the largest number of connections open at once. Handlers may use it to
    /// index their own per-connection tables.
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// Distinguishes successive connections that share an index.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// Packs the id into one integer, e.g. to use as a timer key.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`to_u64`](Self::to_u64). Any value is accepted: an id that names no open connection is
    /// simply refused wherever it is used.
    pub fn from_u64(value: u64) -> ConnId {
        ConnId { index: value as u32, generation: (value >> 32) as u32 }
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

#[derive(Debug)]
enum Slot<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32, next_free: Option<u32> },
}

/// Storage with stable, reusable indices and generation-checked access.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free_head: Option<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), free_head: None, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(index) = self.free_head {
            let slot = &mut self.slots[index as usize];
            let Slot::Vacant { generation, next_free } = *slot else {
                unreachable!("free list points at an occupied slot")
            };
            self.free_head = next_free;
            *slot = Slot::Occupied { generation, value };
            return ConnId { index, generation };
        }
        let index = u32::try_from(self.slots.len()).expect("more than u32::MAX connections");
        self.slots.push(Slot::Occupied { generation: 0, value });
        ConnId { index, generation: 0 }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        match self.slots.get(id.index as usize) {
            Some(Slot::Occupied { generation, value }) if *generation == id.generation => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slots.get_mut(id.index as usize) {
            Some(Slot::Occupied { generation, value }) if *generation == id.generation => Some(value),
            _ => None,
        }
    }

    /// The live id at `index`, used to map a mio token back to a connection.
    pub(crate) fn id_at(&self, index: usize) -> Option<ConnId> {
        match self.slots.get(index) {
            Some(Slot::Occupied { generation, .. }) => Some(ConnId { index: index as u32, generation: *generation }),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        match slot {
            Slot::Occupied { generation, .. } if *generation == id.generation => {}
            _ => return None,
        }
        let vacant = Slot::Vacant { generation: id.generation.wrapping_add(1), next_free: self.free_head };
        let Slot::Occupied { value, .. } = std::mem::replace(slot, vacant) else { unreachable!() };
        self.free_head = Some(id.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Occupied { generation, .. } => Some(ConnId { index: i as u32, generation: *generation }),
            Slot::Vacant { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_indices_with_new_generations() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.get(a), None, "a removed id must not resolve");
        let c = slab.insert("c");
        assert_eq!(c.index(), 0);
        assert_ne!(c.generation(), a.generation());
        assert_eq!(slab.get(a), None, "a stale id must not reach the new occupant");
        assert_eq!(slab.get(c), Some(&"c"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.id_at(0), Some(c));
        assert_eq!(slab.ids().collect::<Vec<_>>(), vec![c, b]);
        assert_eq!(ConnId::from_u64(c.to_u64()), c);
    }
}
