#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| usher::xmpp::fuzzing::stream_reader(data));
