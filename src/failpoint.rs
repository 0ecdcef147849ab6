//! Fault injection for crash tests: `USHER_FAILPOINTS=name[,name…]` makes the
//! process abort, as abruptly as `kill -9`, when it reaches a named point of the
//! registration saga. Unset (always, in production) it costs one check of an
//! empty set.

use std::collections::HashSet;
use std::sync::OnceLock;

fn armed() -> &'static HashSet<String> {
    static ARMED: OnceLock<HashSet<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("USHER_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process here if the point `name` is armed.
pub fn hit(name: &str) {
    if armed().contains(name) {
        eprintln!("usher: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
