//! Heap cost of parsed stanzas as the allocator sees it. This test binary has
//! its own counting global allocator, which the library's unit tests cannot.

use std::path::Path;
use std::time::Instant;

use usher::xmpp::element::Node;
use usher::xmpp::fuzzing::{live_bytes, live_chunk_bytes, tree_memory_counted, CountingAllocator};
use usher::xmpp::reader::{ReaderLimits, StreamEvent, StreamReader};
use usher::xmpp::Element;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The fuzz target's oracle over its seed corpus: the allocator's count equals
/// `Element::heap_size`, and both keep the bound.
#[test]
fn tree_memory_seed_corpus_counted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tree_memory");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
        let path = entry.expect("a corpus entry").path();
        tree_memory_counted(&std::fs::read(&path).expect("a seed"));
        seen += 1;
    }
    assert!(seen > 0, "empty corpus in {}", dir.display());
}

fn live() -> (isize, isize) {
    (live_bytes(), live_chunk_bytes())
}

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Feeds `input` in 4096-byte reads, as the server does; returns the stanzas
/// (in a vector of exact size, the reader dropped) or the error.
fn parse(input: &[u8], limits: ReaderLimits) -> Result<Vec<Element>, String> {
    let mut reader = StreamReader::new(limits);
    let mut stanzas = Vec::new();
    for piece in input.chunks(4096) {
        for event in reader.feed(piece).map_err(|e| e.to_string())? {
            if let StreamEvent::Stanza(s) = event {
                stanzas.push(s);
            }
        }
    }
    drop(reader);
    stanzas.shrink_to_fit();
    Ok(stanzas)
}

/// Heap bytes (requested, glibc chunks) the stanzas parsed from `input` hold.
fn heap_of(input: &[u8], limits: ReaderLimits) -> Result<(usize, usize), String> {
    let before = live();
    let stanzas = parse(input, limits)?;
    let after = live();
    drop(stanzas);
    Ok(((after.0 - before.0) as usize, (after.1 - before.1) as usize))
}

/// Limits under which every bomb below is accepted, so that what it costs shows.
fn open_limits() -> ReaderLimits {
    ReaderLimits {
        max_attributes: 100_000,
        max_namespace_declarations: 100_000,
        max_namespace_length: 64 * 1024,
        ..ReaderLimits::default()
    }
}

/// Inputs a hostile client can send before TLS; each within 256 KiB a stanza.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    let stanza = |inner: &str| format!("{HEADER}<message>{inner}</message>").into_bytes();
    vec![
        (
            "namespace bomb: 50,000-byte ns, 20,000 <a/>",
            format!(
                "{HEADER}<x xmlns='urn:{}'>{}</x>",
                "A".repeat(50_000),
                "<a/>".repeat(20_000)
            )
            .into_bytes(),
        ),
        ("60,000 <a/> in one stanza", stanza(&"<a/>".repeat(60_000))),
        (
            "50,000 × <a/>x (tiny text between)",
            stanza(&"<a/>x".repeat(50_000)),
        ),
        ("30,000 × <a>x</a>", stanza(&"<a>x</a>".repeat(30_000))),
        (
            "depth-31 nesting, repeated",
            stanza(&format!("{}{}", "<a>".repeat(30), "</a>".repeat(30)).repeat(1_000)),
        ),
        (
            "40,000 × &#x41; (shrinking refs)",
            stanza(&"&#x41;".repeat(40_000)),
        ),
        (
            "60 tiny attributes × 500 elements",
            stanza(
                &format!(
                    "<a {}/>",
                    (0..60)
                        .map(|i| format!("a{i}=''"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
                .repeat(500),
            ),
        ),
        (
            "60,000 top-level <a/> stanzas",
            format!("{HEADER}{}", "<a/>".repeat(60_000)).into_bytes(),
        ),
    ]
}

/// Prints heap per input byte for each bomb (run with --ignored --nocapture).
#[test]
#[ignore = "measurement; prints numbers"]
fn measure_bombs() {
    println!(
        "sizes: Element {} bytes, Node {}, StreamEvent {}",
        std::mem::size_of::<Element>(),
        std::mem::size_of::<Node>(),
        std::mem::size_of::<StreamEvent>()
    );
    for (name, input) in bombs() {
        let start = Instant::now();
        match heap_of(&input, open_limits()) {
            Ok((heap, chunks)) => println!(
                "{name}: {} input bytes, heap {heap} ({:.1}/byte), glibc chunks {chunks} ({:.1}/byte), {:?}",
                input.len(),
                heap as f64 / input.len() as f64,
                chunks as f64 / input.len() as f64,
                start.elapsed()
            ),
            Err(e) => println!("{name}: refused ({e}) in {:?}", start.elapsed()),
        }
    }
}

fn timed(name: &str, input: &[u8], limits: ReaderLimits) {
    let start = Instant::now();
    let outcome = match parse(input, limits) {
        Ok(s) => format!("accepted, {} stanzas", s.len()),
        Err(e) => format!("refused: {e}"),
    };
    println!(
        "{name}: {} bytes, {outcome}, {:?}",
        input.len(),
        start.elapsed()
    );
}

/// Prints the time of the inputs that were quadratic (run with --ignored --nocapture).
#[test]
#[ignore = "measurement; prints numbers"]
fn measure_cpu_bombs() {
    let attrs: String = (0..20_000).map(|i| format!(" a{i}=''")).collect();
    let input = format!("{HEADER}<message{attrs}/>");
    timed("20,000 attributes", input.as_bytes(), open_limits());
    timed(
        "20,000 attributes, default limits",
        input.as_bytes(),
        ReaderLimits::default(),
    );

    let prefixes: String = (0..9_000).map(|i| format!(" xmlns:p{i}='u'")).collect();
    let input = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'{prefixes}>{}",
        "<p0:a/>".repeat(20_000)
    );
    timed(
        "9,000 prefixes, 20,000 <p0:a/>",
        input.as_bytes(),
        open_limits(),
    );

    // One byte at a time into a pending start tag of 1 KB and of 240 KB.
    for pending in [1_000, 240_000] {
        let mut reader = StreamReader::new(open_limits());
        reader.feed(HEADER.as_bytes()).unwrap();
        reader
            .feed(format!("<message a='{}", "x".repeat(pending)).as_bytes())
            .unwrap();
        let start = Instant::now();
        for _ in 0..2_000 {
            reader.feed(b"y").unwrap();
        }
        println!(
            "2,000 bytes dripped into a {pending}-byte pending tag: {:?} ({:?}/byte)",
            start.elapsed(),
            start.elapsed() / 2_000
        );
    }
}

/// Ordinary client traffic: what the common path must not lose speed on.
fn normal_stanzas() -> String {
    [
        "<message to='juliet@example.com/balcony' from='romeo@example.net/orchard' type='chat' id='m1' xml:lang='en'><body>Wherefore art thou, Romeo? &amp; more text here</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<presence from='romeo@example.net/orchard' id='p1'><show>away</show><status>out &lt;back soon&gt;</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
        "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>jabber:iq:register</value></field><field var='username'><value>bill</value></field><field var='password'><value>Calliope</value></field></x></query></iq>",
        "<iq type='get' id='ping1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
    ]
    .concat()
}

/// Parse throughput of ordinary stanzas (run with --release --ignored --nocapture).
#[test]
#[ignore = "measurement; prints numbers"]
fn measure_throughput() {
    let batch = normal_stanzas();
    let input = format!("{HEADER}{}", batch.repeat(8 * 1024 * 1024 / batch.len()));
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        let stanzas = parse(input.as_bytes(), open_limits()).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(stanzas.len(), 4 * (8 * 1024 * 1024 / batch.len()));
        best = best.min(secs);
    }
    let mb = input.len() as f64 / 1e6;
    println!(
        "ordinary stanzas: {mb:.1} MB in 4096-byte reads, best of 7: {:.1} ms/MB, {:.0} MB/s",
        best * 1e3 / mb,
        mb / best
    );
}
