//! Per-connection state indexed by fd: one slot for every fd a table can hold (its hard
//! RLIMIT_NOFILE), allocated once when the worker starts, so serving a connection allocates
//! nothing. An fd past the end (impossible while the limit holds) is refused, never indexed.

use std::os::fd::RawFd;

/// A slot per fd of one fd table.
pub struct Slots<T> {
    slots: Vec<T>,
}

impl<T: Default> Slots<T> {
    /// Slots for fds `0..=fd_limit`.
    pub fn new(fd_limit: usize) -> Slots<T> {
        Slots {
            slots: std::iter::repeat_with(T::default)
                .take(fd_limit + 1)
                .collect(),
        }
    }

    /// The slot of `fd`, if the table can hold it.
    pub fn get(&self, fd: RawFd) -> Option<&T> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get(i))
    }

    pub fn get_mut(&mut self, fd: RawFd) -> Option<&mut T> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_past_the_limit_have_no_slot() {
        let mut s: Slots<u8> = Slots::new(10);
        *s.get_mut(10).unwrap() = 3;
        assert_eq!(s.get(10), Some(&3));
        assert!(s.get(11).is_none() && s.get(-1).is_none());
    }
}
