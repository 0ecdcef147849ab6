//! Fault injection for crash tests: `USHER_FAILPOINTS=name[,name…]` makes the
//! process abort, as abruptly as `kill -9`, when it reaches a named point of the
//! registration saga; `name:5s` (a humantime duration) instead holds up a
//! `delay` point that long, as a stalled database would. Compiled in only with
//! the `failpoints` feature, which the test build turns on and a release build
//! never has.

#[cfg(feature = "failpoints")]
fn armed() -> &'static std::collections::HashSet<String> {
    static ARMED: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
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
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if armed().contains(name) {
        eprintln!("usher: failpoint {name} reached, aborting");
        std::process::abort();
    }
}

/// Whether `name` is armed, for a point that switches something off.
#[cfg(feature = "failpoints")]
pub fn on(name: &str) -> bool {
    armed().contains(name)
}

/// Sleeps here if `name:duration` is armed.
#[cfg(feature = "failpoints")]
pub async fn delay(name: &str) {
    let prefix = format!("{name}:");
    let held = armed()
        .iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .and_then(|d| humantime::parse_duration(d).ok());
    if let Some(d) = held {
        eprintln!("usher: failpoint {name} holds for {d:?}");
        tokio::time::sleep(d).await;
    }
}

/// Whether this build has failpoints; a crash test asks before it relies on one.
pub const COMPILED: bool = cfg!(feature = "failpoints");

/// Without the feature a failpoint is nothing at all.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn delay(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn on(_name: &str) -> bool {
    false
}
