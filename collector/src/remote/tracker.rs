//! The delivered position: the highest input position at or before which
//! every sample was acknowledged by the receiver or dropped by policy.

use std::collections::VecDeque;

use tokio::sync::watch;

#[derive(Debug)]
pub(crate) struct Tracker {
    /// Input positions in increasing order with their samples still in
    /// flight.
    pending: VecDeque<(u64, usize)>,
    delivered: watch::Sender<u64>,
}

impl Tracker {
    pub(crate) fn new(delivered: watch::Sender<u64>) -> Self {
        Tracker {
            pending: VecDeque::new(),
            delivered,
        }
    }

    /// Records that the input at `position` (greater than every earlier
    /// one) put `in_flight` samples into the shards.
    pub(crate) fn register(&mut self, position: u64, in_flight: usize) {
        self.pending.push_back((position, in_flight));
        self.advance();
    }

    /// `n` samples of `position` were acknowledged or dropped.
    pub(crate) fn done(&mut self, position: u64, n: usize) {
        if let Ok(i) = self.pending.binary_search_by_key(&position, |(p, _)| *p) {
            let left = &mut self.pending[i].1;
            *left = left.saturating_sub(n);
        }
        self.advance();
    }

    fn advance(&mut self) {
        let mut highest = None;
        while let Some(&(p, 0)) = self.pending.front() {
            highest = Some(p);
            self.pending.pop_front();
        }
        if let Some(p) = highest {
            self.delivered.send_if_modified(|d| {
                let changed = p > *d;
                if changed {
                    *d = p;
                }
                changed
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_only_past_fully_acknowledged_positions() {
        let (tx, rx) = watch::channel(0);
        let mut t = Tracker::new(tx);
        t.register(1, 2);
        t.register(2, 0);
        t.register(3, 1);
        assert_eq!(*rx.borrow(), 0);
        t.done(3, 1);
        assert_eq!(*rx.borrow(), 0, "position 1 still has samples in flight");
        t.done(1, 1);
        assert_eq!(*rx.borrow(), 0);
        t.done(1, 1);
        assert_eq!(*rx.borrow(), 3);
        t.register(4, 0);
        assert_eq!(*rx.borrow(), 4);
    }
}
