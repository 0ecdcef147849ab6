#![no_main]

use usher::xmpp::fuzzing::{tree_memory_counted, CountingAllocator};

// Counts what the parsed trees really hold, to check the reader's memory bound
// and the structural count `cargo test` relies on.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| tree_memory_counted(data));
