//! A shard's Raft log on disk: append-only segment files in a directory of
//! their own, each record checksummed. An append is one write and one
//! fdatasync at the end of the newest segment; a redb transaction for the same
//! entries cost more than twice the CPU (it rewrites B-tree and allocator
//! pages), and the log writers were the largest CPU cost of every node.
//!
//! A record is `crc32 | len | kind | index | payload`, little-endian, the
//! checksum over everything after it. Kinds: an entry (its JSON, as openraft
//! hands it over) or a commit mark (the JSON of the newest committed log id,
//! which need not be durable and so rides along with the next append).
//!
//! Segments are named by the index of their first entry and roll at
//! `SEGMENT_BYTES` (or where an append does not follow on, as after a
//! snapshot); purging deletes whole segments, truncation cuts the file
//! holding the first removed entry. At start a record that does not check out
//! in the newest segment is a write torn by a crash (nothing after it was
//! acknowledged: each append is durable before it is reported) and is cut
//! off; anywhere else it is corruption, and the shard does not start. (A flipped
//! bit in an acknowledged record of the newest segment looks the same as a
//! torn write and is cut off too, with the warning saying how many bytes went;
//! telling them apart needs a checksummed end mark per write, not done yet.)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment takes no more appends once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const HEADER: usize = 4 + 4 + 1 + 8;
const KIND_ENTRY: u8 = 1;
const KIND_COMMIT: u8 = 2;
const SUFFIX: &str = ".seg";

/// Records longer than this are not ours (an entry is at most 512 commands).
const MAX_RECORD: u32 = 256 << 20;

/// Offset and length of an entry's payload in its file.
type Place = (u64, u32);

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Index of its first entry.
    first: u64,
    /// Where each entry's payload lies, in index order.
    entries: Vec<Place>,
    /// Bytes of whole records.
    len: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

pub struct LogFile {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Entries before this index are purged: never read again, and gone
    /// with their segment once all of it is purged.
    floor: u64,
    /// The newest commit mark on disk (its JSON).
    committed: Option<Vec<u8>>,
}

fn corrupt(path: &Path, offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "Raft log segment {} is damaged at byte {offset}: {what}; restore the data dir from a backup or remove this node's ledger dir and let it rejoin",
            path.display()
        ),
    )
}

fn encode(buf: &mut Vec<u8>, kind: u8, index: u64, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_RECORD)
        .ok_or_else(|| io::Error::other("Raft log record too large"))?;
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The records of one write: `entries`, then `commit` if any; and where each
/// entry's payload lies in the buffer.
fn encode_write(
    entries: &[(u64, &[u8])],
    commit: Option<&[u8]>,
) -> io::Result<(Vec<u8>, Vec<Place>)> {
    let mut buf = Vec::new();
    let mut placed = Vec::with_capacity(entries.len());
    for &(index, payload) in entries {
        placed.push(((buf.len() + HEADER) as u64, payload.len() as u32));
        encode(&mut buf, KIND_ENTRY, index, payload)?;
    }
    if let Some(mark) = commit {
        encode(&mut buf, KIND_COMMIT, 0, mark)?;
    }
    Ok((buf, placed))
}

/// One record parsed from `bytes` at `at`: kind, index, payload range, and
/// where the next record starts; `None` if it is cut short or fails its check.
fn decode(bytes: &[u8], at: usize) -> Option<(u8, u64, std::ops::Range<usize>, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let crc = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let kind = header[8];
    let index = u64::from_le_bytes(header[9..17].try_into().ok()?);
    let end = at.checked_add(HEADER)?.checked_add(len as usize)?;
    let body = bytes.get(at + 4..end)?;
    (crc32fast::hash(body) == crc).then_some((kind, index, at + HEADER..end, end))
}

fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LogFile {
    /// Opens (or creates) the log in `dir`. Segments whose entries all lie at
    /// or before `last_purged` are what a purge left behind and go.
    pub fn open(dir: &Path, last_purged: Option<u64>) -> io::Result<LogFile> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            // Its entry in the parent is durable before any append is reported so.
            sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
        }
        let mut names = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(Ok(first)) = name.strip_suffix(SUFFIX).map(str::parse::<u64>) {
                // Indices near the top of u64 are not ours (and would overflow).
                if first > u64::MAX / 2 {
                    return Err(corrupt(&path, 0, "its first index is out of range"));
                }
                names.push((first, path));
            }
        }
        names.sort();
        let mut log = LogFile {
            dir: dir.to_owned(),
            segments: Vec::new(),
            floor: 0,
            committed: None,
        };
        let count = names.len();
        for (n, (first, path)) in names.into_iter().enumerate() {
            let newest = n + 1 == count;
            let segment = log.load(first, path, newest)?;
            // A gap is allowed (entries before a snapshot that are not
            // purged yet, then the entries after it); an overlap is not.
            if let Some(previous) = log.segments.last() {
                if segment.first < previous.next_index() {
                    return Err(corrupt(
                        &segment.path,
                        0,
                        &format!(
                            "it starts at entry {} but the segment before holds entries up to {}",
                            segment.first,
                            previous.next_index() - 1
                        ),
                    ));
                }
            }
            log.segments.push(segment);
        }
        if let Some(purged) = last_purged {
            log.purge(purged)?;
        }
        Ok(log)
    }

    fn load(&mut self, first: u64, path: PathBuf, newest: bool) -> io::Result<Segment> {
        let bytes = std::fs::read(&path)?;
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let Some((kind, index, payload, next)) = decode(&bytes, at) else {
                if !newest {
                    return Err(corrupt(&path, at as u64, "a record fails its checksum"));
                }
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    dropped = bytes.len() - at,
                    "cutting off a Raft log write torn by a crash"
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(at as u64)?;
                file.sync_all()?;
                break;
            };
            match kind {
                KIND_ENTRY => {
                    let expected = first + entries.len() as u64;
                    if index != expected {
                        return Err(corrupt(
                            &path,
                            at as u64,
                            &format!("entry {index} where {expected} belongs"),
                        ));
                    }
                    entries.push((payload.start as u64, payload.len() as u32));
                }
                KIND_COMMIT => self.committed = Some(bytes[payload].to_vec()),
                other => {
                    return Err(corrupt(
                        &path,
                        at as u64,
                        &format!("unknown record kind {other}"),
                    ))
                }
            }
            at = next;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Segment {
            path,
            file: Arc::new(file),
            first,
            entries,
            len: at as u64,
        })
    }

    /// Whether the log holds no entry (that is not purged).
    pub fn is_empty(&self) -> bool {
        self.segments
            .last()
            .is_none_or(|s| s.next_index() <= self.floor)
    }

    /// The newest commit mark on disk.
    pub fn committed(&self) -> Option<&[u8]> {
        self.committed.as_deref()
    }

    /// The payload of the newest entry.
    pub fn last(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(next) = self.segments.last().map(Segment::next_index) else {
            return Ok(None);
        };
        Ok(match next.checked_sub(1) {
            Some(last) => self.read(last, next)?.pop(),
            None => None,
        })
    }

    /// Payloads of the entries `start..stop` the log holds, in order.
    pub fn read(&self, start: u64, stop: u64) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for segment in &self.segments {
            let from = start.max(segment.first).max(self.floor);
            let to = stop.min(segment.next_index());
            for index in from..to {
                let (offset, len) = segment.entries[(index - segment.first) as usize];
                let mut payload = vec![0; len as usize];
                segment.file.read_exact_at(&mut payload, offset)?;
                out.push(payload);
            }
        }
        Ok(out)
    }

    /// Writes `entries` (index, payload; contiguous) and `commit` at the end
    /// of the log, replacing any entries from the first index on. Returns
    /// what must be synced for them to be durable; the caller syncs after
    /// letting go of the log, so readers need not wait for the disk.
    pub fn append(
        &mut self,
        entries: &[(u64, &[u8])],
        commit: Option<&[u8]>,
    ) -> io::Result<ToSync> {
        let mut new_segment = false;
        if let Some(&(first, _)) = entries.first() {
            let next = self.segments.last().map(Segment::next_index);
            if next.is_some_and(|n| first < n) {
                self.truncate(first)?;
            }
            let roll = match self.segments.last() {
                None => true,
                Some(s) => s.next_index() != first || s.len >= SEGMENT_BYTES,
            };
            if roll {
                let path = self.dir.join(format!("{first:020}{SUFFIX}"));
                let file = create_file(&path)?;
                self.segments.push(Segment {
                    path,
                    file: Arc::new(file),
                    first,
                    entries: Vec::new(),
                    len: 0,
                });
                new_segment = true;
            }
        }
        let Some(segment) = self.segments.last_mut() else {
            // No entry anywhere: a commit mark has nothing to describe.
            return Ok(ToSync::default());
        };
        for (n, &(index, _)) in entries.iter().enumerate() {
            let expected = segment.next_index() + n as u64;
            if index != expected {
                return Err(io::Error::other(format!(
                    "Raft log entries not contiguous: {index} where {expected} belongs"
                )));
            }
        }
        let (buf, placed) = encode_write(entries, commit)?;
        segment.file.write_all_at(&buf, segment.len)?;
        let base = segment.len;
        segment.len += buf.len() as u64;
        segment
            .entries
            .extend(placed.into_iter().map(|(at, len)| (base + at, len)));
        if let Some(mark) = commit {
            self.committed = Some(mark.to_vec());
        }
        Ok(ToSync {
            file: Some(segment.file.clone()),
            dir: new_segment.then(|| self.dir.clone()),
        })
    }

    /// Removes the entries from `index` on, durably.
    pub fn truncate(&mut self, index: u64) -> io::Result<()> {
        let mut removed = false;
        while let Some(segment) = self.segments.last_mut() {
            if segment.first >= index {
                std::fs::remove_file(&segment.path)?;
                self.segments.pop();
                removed = true;
                continue;
            }
            if removed {
                // The deletions are on disk before the cut: a power loss in
                // between must not bring later segments back behind a cut one
                // (a gap, then entries that were removed).
                sync_dir(&self.dir)?;
                removed = false;
            }
            if index < segment.next_index() {
                let (offset, _) = segment.entries[(index - segment.first) as usize];
                let cut = offset - HEADER as u64;
                segment.file.set_len(cut)?;
                segment.file.sync_all()?;
                segment.entries.truncate((index - segment.first) as usize);
                segment.len = cut;
            }
            break;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Purges the entries up to `index`: they are not read again, and the
    /// segments that hold nothing else go.
    pub fn purge(&mut self, index: u64) -> io::Result<()> {
        self.floor = self.floor.max(index.saturating_add(1));
        let whole = self
            .segments
            .iter()
            .take_while(|s| s.next_index() <= index.saturating_add(1))
            .count();
        if whole == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..whole) {
            std::fs::remove_file(&segment.path)?;
        }
        sync_dir(&self.dir)
    }

    /// Writes a whole log (entries as from an older store) as `dir`, which
    /// must hold no segment: built beside it and renamed into place, so it is
    /// there whole or not at all. Entries that do not follow on start a
    /// segment of their own.
    pub fn write_whole(
        dir: &Path,
        entries: &[(u64, &[u8])],
        commit: Option<&[u8]>,
    ) -> io::Result<()> {
        let building = dir.with_extension("building");
        match std::fs::remove_dir_all(&building) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::DirBuilder::new().mode(0o700).create(&building)?;
        let mut runs: Vec<&[(u64, &[u8])]> = Vec::new();
        let mut start = 0;
        for n in 1..=entries.len() {
            if n == entries.len() || Some(entries[n].0) != entries[n - 1].0.checked_add(1) {
                runs.push(&entries[start..n]);
                start = n;
            }
        }
        let count = runs.len();
        for (r, run) in runs.into_iter().enumerate() {
            let (buf, _) = encode_write(run, commit.filter(|_| r + 1 == count))?;
            let file = create_file(&building.join(format!("{:020}{SUFFIX}", run[0].0)))?;
            file.write_all_at(&buf, 0)?;
            file.sync_all()?;
        }
        sync_dir(&building)?;
        // Replaces an empty `dir` in one step.
        std::fs::rename(&building, dir)?;
        sync_dir(dir.parent().unwrap_or(Path::new(".")))
    }
}

/// What an append leaves to sync.
#[derive(Default)]
pub struct ToSync {
    file: Option<Arc<File>>,
    /// A new segment's directory entry.
    dir: Option<PathBuf>,
}

impl ToSync {
    pub fn run(self) -> io::Result<()> {
        if let Some(file) = self.file {
            file.sync_data()?;
        }
        if let Some(dir) = self.dir {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, LogFile) {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path(), None).unwrap();
        (dir, log)
    }

    fn payload(index: u64) -> Vec<u8> {
        format!("entry {index} {}", "x".repeat(index as usize % 7)).into_bytes()
    }

    fn append(log: &mut LogFile, range: std::ops::Range<u64>, commit: Option<&[u8]>) {
        let payloads: Vec<_> = range.clone().map(payload).collect();
        let entries: Vec<_> = range.zip(payloads.iter().map(Vec::as_slice)).collect();
        log.append(&entries, commit).unwrap().run().unwrap();
    }

    fn all(log: &LogFile) -> Vec<Vec<u8>> {
        log.read(0, u64::MAX).unwrap()
    }

    fn expected(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
        range.map(payload).collect()
    }

    #[test]
    fn entries_and_the_commit_mark_survive_a_reopen() {
        let (dir, mut log) = fresh();
        assert!(log.is_empty());
        append(&mut log, 1..5, None);
        append(&mut log, 5..9, Some(b"mark 4"));
        append(&mut log, 9..10, None);
        assert_eq!(log.read(3, 6).unwrap(), expected(3..6));
        drop(log);
        let log = LogFile::open(dir.path(), None).unwrap();
        assert_eq!(all(&log), expected(1..10));
        assert_eq!(log.committed(), Some(&b"mark 4"[..]));
        assert_eq!(log.last().unwrap(), Some(payload(9)));
    }

    #[test]
    fn truncation_and_rewrites_replace_the_tail() {
        let (dir, mut log) = fresh();
        append(&mut log, 1..10, None);
        log.truncate(6).unwrap();
        assert_eq!(all(&log), expected(1..6));
        // An append that starts inside the log replaces what follows.
        append(&mut log, 4..7, None);
        assert_eq!(all(&log), expected(1..7));
        drop(log);
        assert_eq!(
            all(&LogFile::open(dir.path(), None).unwrap()),
            expected(1..7)
        );
    }

    #[test]
    fn segments_roll_purge_whole_and_gaps_start_a_new_one() {
        let (dir, mut log) = fresh();
        append(&mut log, 1..4, None);
        // As after a snapshot install: purge past the log, then append on.
        log.purge(20).unwrap();
        assert!(log.is_empty());
        append(&mut log, 21..24, None);
        log.segments.last_mut().unwrap().len = SEGMENT_BYTES;
        append(&mut log, 24..26, None);
        assert_eq!(log.segments.len(), 2);
        log.purge(22).unwrap();
        // Purged entries are not read, though 21 and 22 share a segment with 23.
        assert_eq!(all(&log), expected(23..26));
        assert_eq!(log.segments.len(), 2);
        log.purge(23).unwrap();
        // Now all of the first segment (21..24) is purged: it goes.
        assert_eq!(log.segments.len(), 1);
        assert_eq!(all(&log), expected(24..26));
        drop(log);
        let log = LogFile::open(dir.path(), None).unwrap();
        assert_eq!(all(&log), expected(24..26));
        // Truncating below every segment empties the log.
        let mut log = log;
        log.truncate(10).unwrap();
        assert!(log.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A gap that is not purged yet (a snapshot's purge still to come)
        // reads as what is there, also after a reopen.
        append(&mut log, 1..3, None);
        append(&mut log, 30..32, None);
        let mut both = expected(1..3);
        both.extend(expected(30..32));
        assert_eq!(all(&log), both);
        drop(log);
        assert_eq!(all(&LogFile::open(dir.path(), None).unwrap()), both);
    }

    #[test]
    fn a_torn_last_write_is_cut_and_older_damage_refuses_to_start() {
        let (dir, mut log) = fresh();
        append(&mut log, 1..4, None);
        log.segments.last_mut().unwrap().len = SEGMENT_BYTES;
        append(&mut log, 4..8, None);
        let newest = log.segments[1].path.clone();
        let oldest = log.segments[0].path.clone();
        drop(log);
        // A crash in the middle of the last record.
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() - 3]).unwrap();
        let mut log = LogFile::open(dir.path(), None).unwrap();
        assert_eq!(all(&log), expected(1..7));
        // Appends go on from the cut.
        append(&mut log, 7..9, None);
        drop(log);
        assert_eq!(
            all(&LogFile::open(dir.path(), None).unwrap()),
            expected(1..9)
        );
        // A flipped byte in a segment that is not the newest.
        let mut bytes = std::fs::read(&oldest).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&oldest, &bytes).unwrap();
        let err = LogFile::open(dir.path(), None).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_whole_log_is_written_at_once_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shard-0.log");
        assert!(LogFile::open(&dir, None).unwrap().is_empty());
        // What a crash left of an earlier attempt is not in the way.
        let building = root.path().join("shard-0.building");
        std::fs::create_dir(&building).unwrap();
        std::fs::write(building.join("00000000000000000005.seg"), b"half").unwrap();
        let mut payloads = expected(5..9);
        payloads.extend(expected(12..14));
        let indices = (5..9).chain(12..14);
        let entries: Vec<_> = indices.zip(payloads.iter().map(Vec::as_slice)).collect();
        LogFile::write_whole(&dir, &entries, Some(b"mark")).unwrap();
        assert!(!building.exists());
        let log = LogFile::open(&dir, None).unwrap();
        assert_eq!(all(&log), payloads);
        assert_eq!(log.committed(), Some(&b"mark"[..]));
        assert_eq!(log.segments.len(), 2);
        // A purge that was recorded but not carried out is finished at start.
        drop(log);
        let log = LogFile::open(&dir, Some(8)).unwrap();
        assert_eq!(log.segments.len(), 1);
        assert_eq!(all(&log), expected(12..14));
    }

    #[test]
    fn a_segment_named_beyond_any_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{}{SUFFIX}", u64::MAX)), b"").unwrap();
        let err = LogFile::open(dir.path(), None).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn random_bytes_never_parse_as_records() {
        // Garbage at the end of the newest segment is cut, not read.
        let (dir, mut log) = fresh();
        append(&mut log, 1..3, None);
        let path = log.segments[0].path.clone();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            all(&LogFile::open(dir.path(), None).unwrap()),
            expected(1..3)
        );
    }
}
