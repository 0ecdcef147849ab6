//! Entry points for the fuzz targets in `fuzz/`, kept here so that `cargo test`
//! replays the seed corpus through the very same code on stable Rust.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;

use super::element::Element;
use super::reader::{ReaderLimits, StreamEvent, StreamReader, TREE_HEAP_FIXED, TREE_HEAP_PER_BYTE};
use super::sasl::scram::{parse_client_final, parse_client_first, ScramExchange};
use super::sasl::{decode_payload, plain, HashAlg, ScramKeys};

/// Feeds `data` to the stream reader whole and split in two at a point chosen by
/// the first byte; both must agree (same events, or both refuse the input).
pub fn stream_reader(data: &[u8]) {
    let limits = ReaderLimits {
        max_stanza_size: 16 * 1024,
        max_depth: 16,
        ..ReaderLimits::default()
    };
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = StreamReader::new(limits).feed(input);
    let cut = if input.is_empty() {
        0
    } else {
        first as usize % input.len()
    };
    let mut split_reader = StreamReader::new(limits);
    let split = split_reader.feed(&input[..cut]).and_then(|mut events| {
        events.extend(split_reader.feed(&input[cut..])?);
        Ok(events)
    });
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "events differ when the input is split at {cut}"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole: {whole:?}, split at {cut}: {split:?}"),
    }
}

/// A client stream header, put in front of the input when its first byte asks.
const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Parses a stream for the memory oracle: the first byte of `data` picks the
/// read size (its upper bits) and whether a client header goes first (its low
/// bit). Returns the stanzas, with the reader and the events dropped, in a
/// vector of exact size, and the number of input bytes the reader was given.
pub fn parse_stanzas(data: &[u8]) -> (Vec<Element>, usize) {
    let Some((&mode, body)) = data.split_first() else {
        return (Vec::new(), 0);
    };
    let limits = ReaderLimits {
        max_stanza_size: 64 * 1024,
        ..ReaderLimits::default()
    };
    let header: &[u8] = if mode & 1 == 1 { HEADER } else { b"" };
    let read_size = 1 + usize::from(mode >> 1) * 37;
    let mut reader = StreamReader::new(limits);
    let mut stanzas = Vec::new();
    let mut given = 0;
    'reads: for input in [header, body] {
        for piece in input.chunks(read_size) {
            given += piece.len();
            match reader.feed(piece) {
                Ok(events) => stanzas.extend(events.into_iter().filter_map(|e| match e {
                    StreamEvent::Stanza(s) => Some(s),
                    _ => None,
                })),
                Err(_) => break 'reads,
            }
        }
    }
    drop(reader);
    stanzas.shrink_to_fit();
    (stanzas, given)
}

/// Heap held by `stanzas`: the vector's slots and each tree, every shared
/// allocation counted once.
pub fn stanzas_heap(stanzas: &[Element]) -> usize {
    let mut seen = HashSet::new();
    let slots = if stanzas.is_empty() {
        0
    } else {
        std::mem::size_of_val(stanzas)
    };
    slots
        + stanzas
            .iter()
            .map(|s| s.heap_size_sharing(&mut seen))
            .sum::<usize>()
}

/// The memory bound the reader promises (see [`TREE_HEAP_PER_BYTE`]).
pub fn check_tree_heap(input_len: usize, heap: usize) {
    let bound = TREE_HEAP_PER_BYTE * input_len + TREE_HEAP_FIXED;
    assert!(
        heap <= bound,
        "stanzas from {input_len} bytes hold {heap} bytes of heap, over {bound}"
    );
}

/// The memory oracle with heap sizes computed from the trees' structure (for
/// `cargo test`, whose test binary cannot count allocations).
pub fn tree_memory(data: &[u8]) {
    let (stanzas, given) = parse_stanzas(data);
    check_tree_heap(given, stanzas_heap(&stanzas));
}

/// The memory oracle with the heap counted by [`CountingAllocator`], which
/// must be the global allocator: the count must match the structural size
/// (which `cargo test` then relies on), and both must keep the bound.
pub fn tree_memory_counted(data: &[u8]) {
    static WARM: std::sync::Once = std::sync::Once::new();
    // Anything the standard library sets up once per process is not the trees'.
    WARM.call_once(|| drop(parse_stanzas(b"\x01<a>x</a>")));
    let before = live_bytes();
    let (stanzas, given) = parse_stanzas(data);
    let counted = live_bytes() - before;
    let structural = stanzas_heap(&stanzas);
    assert_eq!(
        counted, structural as isize,
        "allocator counts {counted} bytes, heap_size {structural}"
    );
    check_tree_heap(given, structural);
}

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The same in the chunks glibc's malloc takes for them.
    static CHUNKS: Cell<isize> = const { Cell::new(0) };
}

/// A global allocator that counts the bytes each thread holds; for the
/// `tree_memory` fuzz target and test binary (the server does not use it).
pub struct CountingAllocator;

/// What glibc's malloc takes for `bytes`: an 8-byte header, 16-byte granules,
/// 32 bytes at least. An estimate of resident memory, for measurements.
fn glibc_chunk(bytes: usize) -> usize {
    (bytes + 8).div_ceil(16).max(2) * 16
}

fn account(bytes: usize, sign: isize) {
    // A thread being torn down has no counter left; its frees do not matter.
    let _ = LIVE.try_with(|l| l.set(l.get() + sign * bytes as isize));
    let _ = CHUNKS.try_with(|c| c.set(c.get() + sign * glibc_chunk(bytes) as isize));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 1);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(layout.size(), -1);
        account(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes the current thread holds, as [`CountingAllocator`] counts them.
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

/// [`live_bytes`] in glibc malloc chunks: what the heap really grows by.
pub fn live_chunk_bytes() -> isize {
    CHUNKS.with(Cell::get)
}

/// Every SASL parser and the SCRAM proof check on arbitrary bytes: no panics.
pub fn sasl(data: &[u8]) {
    let _ = plain::parse(data);
    let _ = parse_client_final(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_payload(text);
    }
    if let Ok(first) = parse_client_first(data) {
        let keys = ScramKeys::derive(HashAlg::Sha256, "pencil", b"saltsaltsaltsalt", 1);
        let (exchange, _) = ScramExchange::start(HashAlg::Sha256, first, keys, "servernonce");
        let _ = exchange.finish(data);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::xmpp::reader::ReadError;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_file() {
                run(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen > 0, "empty corpus in {}", dir.display());
    }

    #[test]
    fn stream_reader_seed_corpus() {
        replay("stream_reader", stream_reader);
    }

    /// Feeds `input` cut at `cuts` (ascending), under the default limits.
    fn in_pieces(input: &[u8], cuts: &[usize]) -> Result<Vec<StreamEvent>, ReadError> {
        let mut r = StreamReader::new(ReaderLimits::default());
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            events.extend(r.feed(&input[from..cut])?);
            from = cut;
        }
        Ok(events)
    }

    /// Every seed of both reader targets cut at every point (spread cuts for
    /// long seeds), and fed a byte at a time: always the events of the whole.
    #[test]
    fn reader_seeds_split_anywhere() {
        for target in ["stream_reader", "tree_memory"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let seed = std::fs::read(&path).unwrap();
                let input = seed.get(1..).unwrap_or_default();
                let whole = in_pieces(input, &[]);
                let step = (input.len() / 200).max(1);
                let every_byte: Vec<usize> = (1..input.len()).collect();
                let splits = (0..input.len())
                    .step_by(step)
                    .map(|cut| vec![cut])
                    .chain([every_byte]);
                for cuts in splits {
                    let split = in_pieces(input, &cuts);
                    match (&whole, &split) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", path.display()),
                        (Err(_), Err(_)) => {}
                        _ => panic!("{}: whole {whole:?}, split {split:?}", path.display()),
                    }
                }
            }
        }
    }

    #[test]
    fn tree_memory_seed_corpus() {
        replay("tree_memory", tree_memory);
    }

    #[test]
    fn sasl_seed_corpus() {
        replay("sasl", sasl);
    }

    #[test]
    fn tree_memory_oracle_can_fail() {
        // 10 bytes cannot pay for 50 KiB, so the check must refuse it.
        let refused = std::panic::catch_unwind(|| check_tree_heap(10, 50 * 1024));
        assert!(refused.is_err());
        check_tree_heap(10, TREE_HEAP_FIXED);
    }

    fn xmlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".to_owned()),
                Just("<iq type='get' id='1'>".to_owned()),
                Just("</iq>".to_owned()),
                Just("<a/>".to_owned()),
                Just("<p:a xmlns:p='urn:p'>".to_owned()),
                Just("</p:a>".to_owned()),
                Just("&amp;".to_owned()),
                Just("<![CDATA[x]]>".to_owned()),
                Just("</stream:stream>".to_owned()),
                "[ -~]{0,8}",
                "\\PC{0,4}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn stream_reader_random_xmlish(cut in any::<u8>(), body in xmlish()) {
            let mut data = vec![cut];
            data.extend(body.into_bytes());
            stream_reader(&data);
        }

        #[test]
        fn tree_memory_random_xmlish(mode in any::<u8>(), body in xmlish()) {
            let mut data = vec![mode];
            data.extend(body.into_bytes());
            tree_memory(&data);
        }

        #[test]
        fn sasl_random(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            sasl(&data);
        }
    }
}
