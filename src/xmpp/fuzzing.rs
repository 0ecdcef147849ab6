//! Entry points for the fuzz targets in `fuzz/`, kept here so that `cargo test`
//! replays the seed corpus through the very same code on stable Rust.

use super::reader::{ReaderLimits, StreamReader};
use super::sasl::scram::{parse_client_final, parse_client_first, ScramExchange};
use super::sasl::{decode_payload, plain, HashAlg, ScramKeys};

/// Feeds `data` to the stream reader whole and split in two at a point chosen by
/// the first byte; both must agree (same events, or both refuse the input).
pub fn stream_reader(data: &[u8]) {
    let limits = ReaderLimits {
        max_stanza_size: 16 * 1024,
        max_depth: 16,
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

    #[test]
    fn sasl_seed_corpus() {
        replay("sasl", sasl);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn stream_reader_random_xmlish(
            cut in any::<u8>(),
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".to_owned()),
                    Just("<iq type='get' id='1'>".to_owned()),
                    Just("</iq>".to_owned()),
                    Just("<a/>".to_owned()),
                    Just("&amp;".to_owned()),
                    Just("<![CDATA[x]]>".to_owned()),
                    Just("</stream:stream>".to_owned()),
                    "[ -~]{0,8}",
                    "\\PC{0,4}",
                ],
                0..24,
            ),
        ) {
            let mut data = vec![cut];
            data.extend(parts.concat().into_bytes());
            stream_reader(&data);
        }

        #[test]
        fn sasl_random(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            sasl(&data);
        }
    }
}
