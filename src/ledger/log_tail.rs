//! The newest Raft log entries of a shard, kept in memory after they are on
//! disk. openraft reads each entry back soon after it is appended: once to
//! apply it and once per follower to replicate it. Served from here, those
//! reads cost a clone instead of a redb lookup and a JSON decode each (the
//! leader spent a tenth of its CPU on them under load).
//!
//! The entries held are always a suffix of the log: appends extend the tail,
//! truncation cuts it, purging and the size limit drop from the front. A read
//! that starts before the first entry held goes to disk. Entries are held
//! from the moment openraft hands them over, before they are on disk (it
//! may read them at once); the size limit only drops entries already written.

use std::collections::VecDeque;

use openraft::Entry;

use super::types::{LedgerRaft, LogId};

/// Bytes of entries (as stored) one shard keeps at most. Enough for several
/// rounds of full entries (512 commands of ~200 bytes), so a follower that is
/// a few rounds behind is still served from memory.
pub const MAX_BYTES: usize = 4 << 20;

pub struct LogTail {
    /// Index of the first entry in `entries`.
    first: u64,
    entries: VecDeque<Held>,
    bytes: usize,
    max_bytes: usize,
    /// Appends are numbered in the order they are written; those up to this
    /// one are on disk.
    next_append: u64,
    written: u64,
}

struct Held {
    entry: Entry<LedgerRaft>,
    /// Its size as stored.
    size: usize,
    /// The append that brought it.
    append: u64,
}

impl LogTail {
    pub fn new(max_bytes: usize) -> Self {
        LogTail {
            first: 0,
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            next_append: 1,
            written: 0,
        }
    }

    /// One past the last index held, or `first` when empty.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Holds entries just handed over for the tail of the log, each with the
    /// size it takes on disk; returns the number of this append, to pass to
    /// `written` once it is on disk.
    pub fn appended(
        &mut self,
        entries: impl IntoIterator<Item = (Entry<LedgerRaft>, usize)>,
    ) -> u64 {
        let append = self.next_append;
        self.next_append += 1;
        for (entry, size) in entries {
            let index = entry.log_id.index;
            if !self.entries.is_empty() && index > self.first && index < self.end() {
                // A tail rewritten without a truncation first: what follows
                // this entry is replaced, what precedes it stays.
                self.truncated(index);
            } else if self.entries.is_empty() || index != self.end() {
                // Not contiguous with what is held (first append since start,
                // or after a snapshot): start again from this entry, which is
                // now the log's tail.
                self.truncated(0);
                self.first = index;
            }
            self.bytes += size;
            self.entries.push_back(Held {
                entry,
                size,
                append,
            });
        }
        self.shrink();
        append
    }

    /// Appends up to `append` are on disk.
    pub fn written(&mut self, append: u64) {
        self.written = self.written.max(append);
        self.shrink();
    }

    fn shrink(&mut self) {
        while self.bytes > self.max_bytes
            && self
                .entries
                .front()
                .is_some_and(|h| h.append <= self.written)
        {
            self.pop_front();
        }
    }

    /// Entries from `index` on were removed from the log.
    pub fn truncated(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            match self.entries.pop_back() {
                Some(held) => self.bytes -= held.size,
                None => break,
            }
        }
        if self.entries.is_empty() {
            self.bytes = 0;
        }
    }

    /// Entries up to and including `index` were removed from the log.
    pub fn purged(&mut self, index: u64) {
        while !self.entries.is_empty() && self.first <= index {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(held) = self.entries.pop_front() {
            self.bytes -= held.size;
            self.first += 1;
        }
    }

    /// The id of the newest entry held, which is the log's last.
    pub fn last(&self) -> Option<LogId> {
        self.entries.back().map(|h| h.entry.log_id)
    }

    /// The index of the first entry held; those before it are on disk.
    pub fn first_held(&self) -> Option<u64> {
        (!self.entries.is_empty()).then_some(self.first)
    }

    /// The entries of `start..stop` if this holds the start of the range (the
    /// log has nothing after what is held, so the rest is all there is);
    /// `None` if the range begins before the first entry held.
    pub fn get(&self, start: u64, stop: u64) -> Option<Vec<Entry<LedgerRaft>>> {
        if self.entries.is_empty() || start < self.first {
            return None;
        }
        let stop = stop.min(self.end());
        if stop <= start {
            return Some(Vec::new());
        }
        let from = (start - self.first) as usize;
        let to = (stop - self.first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|h| h.entry.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> (Entry<LedgerRaft>, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 10)
    }

    const ALL: u64 = u64::MAX;

    fn indices(entries: Option<Vec<Entry<LedgerRaft>>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_ranges_that_start_inside_what_it_holds() {
        let mut tail = LogTail::new(1000);
        tail.appended((5..10).map(entry));
        assert_eq!(indices(tail.get(5, ALL)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indices(tail.get(7, 9)), Some(vec![7, 8]));
        assert_eq!(indices(tail.get(7, 10)), Some(vec![7, 8, 9]));
        // Past the tail: nothing there, in memory or on disk.
        assert_eq!(indices(tail.get(12, ALL)), Some(vec![]));
        // Before the first held: the caller must read the disk.
        assert_eq!(indices(tail.get(4, ALL)), None);
        assert_eq!(indices(LogTail::new(1000).get(0, ALL)), None);
        assert_eq!(tail.first_held(), Some(5));
        assert_eq!(LogTail::new(1000).first_held(), None);
    }

    #[test]
    fn truncation_cuts_the_tail_and_appends_continue_from_it() {
        let mut tail = LogTail::new(1000);
        tail.appended((1..=6).map(entry));
        tail.truncated(4);
        assert_eq!(indices(tail.get(1, ALL)), Some(vec![1, 2, 3]));
        tail.appended((4..=5).map(entry));
        assert_eq!(indices(tail.get(1, ALL)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(tail.bytes, 50);
        // Truncating below what is held empties it.
        tail.truncated(0);
        assert_eq!(indices(tail.get(1, ALL)), None);
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    fn a_rewrite_without_truncation_keeps_what_precedes_it() {
        let mut tail = LogTail::new(1000);
        tail.appended((1..=6).map(entry));
        tail.appended((4..=5).map(entry));
        assert_eq!(indices(tail.get(1, ALL)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(tail.bytes, 50);
        assert_eq!(tail.last().map(|id| id.index), Some(5));
    }

    #[test]
    fn a_gap_starts_it_again_from_the_new_tail() {
        let mut tail = LogTail::new(1000);
        tail.appended((1..=3).map(entry));
        tail.appended((8..=9).map(entry));
        assert_eq!(indices(tail.get(1, ALL)), None);
        assert_eq!(indices(tail.get(8, ALL)), Some(vec![8, 9]));
        assert_eq!(tail.bytes, 20);
    }

    #[test]
    fn purging_and_the_size_limit_drop_the_oldest() {
        let mut tail = LogTail::new(45);
        let append = tail.appended((1..=6).map(entry));
        // 60 bytes against a limit of 45, but none is on disk yet: all stay.
        assert_eq!(indices(tail.get(1, ALL)).map(|v| v.len()), Some(6));
        tail.written(append);
        // Written: the two oldest go.
        assert_eq!(indices(tail.get(2, ALL)), None);
        assert_eq!(indices(tail.get(3, ALL)), Some(vec![3, 4, 5, 6]));
        tail.purged(4);
        assert_eq!(indices(tail.get(4, ALL)), None);
        assert_eq!(indices(tail.get(5, ALL)), Some(vec![5, 6]));
        tail.purged(100);
        assert_eq!(indices(tail.get(5, ALL)), None);
        assert_eq!(tail.bytes, 0);
        // Still a suffix after emptying: the next append starts it again.
        tail.appended([entry(7)]);
        assert_eq!(indices(tail.get(7, ALL)), Some(vec![7]));
    }

    #[test]
    fn only_entries_on_disk_make_room() {
        let mut tail = LogTail::new(15);
        let first = tail.appended((1..=2).map(entry));
        let second = tail.appended((3..=4).map(entry));
        tail.written(first);
        // 40 bytes against 15: 1 and 2 are written and go; 3 and 4 are not,
        // and stay although still over the limit.
        assert_eq!(indices(tail.get(3, ALL)), Some(vec![3, 4]));
        // A rewritten tail is not on disk because an older append was.
        tail.truncated(4);
        let third = tail.appended((4..=5).map(entry));
        tail.written(second);
        assert_eq!(indices(tail.get(4, ALL)), Some(vec![4, 5]));
        tail.written(third);
        assert_eq!(indices(tail.get(4, ALL)), None);
        assert_eq!(indices(tail.get(5, ALL)), Some(vec![5]));
    }
}
