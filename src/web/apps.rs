//! The visitor's platform, which picks the apps an invite page shows first.

/// The visitor's platform, from the User-Agent header.
pub fn platform(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("android") {
        "android"
    } else if ua.contains("iphone") || ua.contains("ipad") {
        "ios"
    } else if ua.contains("mac os") {
        "macos"
    } else if ua.contains("windows") {
        "windows"
    } else {
        "linux"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_come_from_the_user_agent() {
        assert_eq!(
            platform("Mozilla/5.0 (Linux; Android 14; Pixel 8)"),
            "android"
        );
        assert_eq!(
            platform("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
            "ios"
        );
        assert_eq!(
            platform("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)"),
            "macos"
        );
        assert_eq!(
            platform("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            "windows"
        );
        assert_eq!(platform("curl/8"), "linux");
    }
}
