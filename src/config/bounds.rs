//! Range checks that name the key: every duration and count a node reads is
//! bounded, so no setting can overflow an integer or make a feature useless.

use std::time::Duration;

use super::ConfigError;

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

pub(super) fn duration(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!(
                "{} is out of range: use {} to {}",
                humantime::format_duration(value),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

pub(super) fn count<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("{value} is out of range: use {min} to {max}"),
        ));
    }
    Ok(())
}

pub(super) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let e = duration(
            "ledger.reservation_lease",
            secs(u64::MAX / 1000),
            secs(1),
            secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ledger.reservation_lease") && e.contains("1m"),
            "{e}"
        );
        assert!(duration("k", secs(5), secs(1), secs(60)).is_ok());
        let e = count("scram_iterations", 4_000_000_000u32, 4096, 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("4000000000") && e.contains("4096 to 1000000"),
            "{e}"
        );
    }
}
