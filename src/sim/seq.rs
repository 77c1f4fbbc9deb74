//! Per-subscription sequence checking on the RIC side: gaps, duplicates and
//! reordering, from the sequence numbers the node writes into each header.

use std::collections::BTreeMap;

/// At most this many separate holes are remembered per subscription; older
/// ones are forgotten (they stay counted as missing; a late arrival into a
/// forgotten hole then counts as a duplicate).
pub const MAX_HOLES: usize = 4096;

/// What one sequence number meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// The next expected number.
    InOrder,
    /// Ahead of the expected one: this many numbers are missing (so far).
    Gap(u64),
    /// Behind, filling a hole: it arrived out of order.
    Reordered,
    /// Behind, not in a hole: seen before.
    Duplicate,
}

/// Sequence state of one subscription.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// First number expected (`Some(0)` for a subscription this RIC created);
    /// `None`: start wherever the stream starts (a subscription moved in).
    expect_from: Option<u64>,
    next: Option<u64>,
    /// Holes as `start -> end` (exclusive).
    holes: BTreeMap<u64, u64>,
    pub received: u64,
    pub first: Option<u64>,
    pub max: Option<u64>,
    /// Numbers currently missing (holes not filled).
    pub missing: u64,
    /// Gap events seen.
    pub gaps: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl SeqTracker {
    pub fn new(expect_from: Option<u64>) -> Self {
        SeqTracker {
            expect_from,
            ..Default::default()
        }
    }

    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        self.received += 1;
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        let next = match self.next {
            Some(n) => n,
            None => {
                self.first = Some(seq);
                self.expect_from.filter(|&e| e <= seq).unwrap_or(seq)
            }
        };
        let event = if seq == next {
            SeqEvent::InOrder
        } else if seq > next {
            let n = seq - next;
            self.add_hole(next, seq);
            self.missing += n;
            self.gaps += 1;
            SeqEvent::Gap(n)
        } else if self.fill_hole(seq) {
            self.missing -= 1;
            self.reordered += 1;
            SeqEvent::Reordered
        } else {
            self.duplicates += 1;
            SeqEvent::Duplicate
        };
        // The first number is never behind `next`, so `next` is always set here.
        self.next = Some(next.max(seq.saturating_add(1)));
        event
    }

    fn add_hole(&mut self, start: u64, end: u64) {
        if self.holes.len() >= MAX_HOLES {
            self.holes.pop_first();
        }
        self.holes.insert(start, end);
    }

    /// Remove `seq` from the hole containing it; false if it is in none.
    fn fill_hole(&mut self, seq: u64) -> bool {
        let Some((&start, &end)) = self.holes.range(..=seq).next_back() else {
            return false;
        };
        if seq >= end {
            return false;
        }
        self.holes.remove(&start);
        if start < seq {
            self.holes.insert(start, seq);
        }
        if seq + 1 < end {
            self.holes.insert(seq + 1, end);
        }
        true
    }

    /// Whether every number from the first expected to the highest seen arrived exactly once.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.reordered == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u64]) -> Vec<SeqEvent> {
        seqs.iter().map(|&s| t.observe(s)).collect()
    }

    #[test]
    fn in_order_is_clean() {
        let mut t = SeqTracker::new(Some(0));
        assert!(feed(&mut t, &[0, 1, 2, 3])
            .iter()
            .all(|e| *e == SeqEvent::InOrder));
        assert!(t.clean());
        assert_eq!((t.received, t.first, t.max), (4, Some(0), Some(3)));
    }

    #[test]
    fn hole_is_missing_until_filled() {
        let mut t = SeqTracker::new(Some(0));
        let ev = feed(&mut t, &[0, 1, 4, 5]);
        assert_eq!(ev[2], SeqEvent::Gap(2));
        assert_eq!((t.missing, t.gaps), (2, 1));
        assert_eq!(t.observe(3), SeqEvent::Reordered);
        assert_eq!(t.observe(3), SeqEvent::Duplicate);
        assert_eq!(t.observe(2), SeqEvent::Reordered);
        assert_eq!((t.missing, t.reordered, t.duplicates), (0, 2, 1));
        assert_eq!(t.observe(5), SeqEvent::Duplicate);
        assert_eq!(t.observe(6), SeqEvent::InOrder);
    }

    #[test]
    fn head_loss_counts_for_own_subscriptions_only() {
        let mut own = SeqTracker::new(Some(0));
        assert_eq!(own.observe(3), SeqEvent::Gap(3));
        assert_eq!(own.missing, 3);
        assert_eq!(own.observe(0), SeqEvent::Reordered);

        let mut moved_in = SeqTracker::new(None);
        assert_eq!(moved_in.observe(500), SeqEvent::InOrder);
        assert_eq!(moved_in.observe(501), SeqEvent::InOrder);
        assert!(moved_in.clean());
        assert_eq!(moved_in.first, Some(500));
    }

    #[test]
    fn holes_split_when_filled_in_the_middle() {
        let mut t = SeqTracker::new(Some(0));
        feed(&mut t, &[0, 10]);
        assert_eq!(t.missing, 9);
        assert_eq!(t.observe(5), SeqEvent::Reordered);
        assert_eq!(t.observe(1), SeqEvent::Reordered);
        assert_eq!(t.observe(9), SeqEvent::Reordered);
        assert_eq!(t.observe(5), SeqEvent::Duplicate);
        assert_eq!(t.missing, 6);
    }

    #[test]
    fn hole_table_is_bounded() {
        let mut t = SeqTracker::new(Some(0));
        for i in 0..(MAX_HOLES as u64 + 10) {
            t.observe(i * 2 + 1);
        }
        assert_eq!(t.holes.len(), MAX_HOLES);
        assert_eq!(t.missing, MAX_HOLES as u64 + 10);
    }
}
