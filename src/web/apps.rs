//! Recommended clients, by platform: configurable (`web_apps`), with a
//! built-in list of well-known clients that support invites.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// android, ios, macos, windows, linux
    pub platforms: Vec<String>,
    pub url: String,
}

fn app(name: &str, platforms: &[&str], url: &str) -> App {
    App {
        name: name.into(),
        platforms: platforms.iter().map(|p| (*p).to_owned()).collect(),
        url: url.into(),
    }
}

pub fn defaults() -> Vec<App> {
    vec![
        app(
            "Conversations",
            &["android"],
            "https://f-droid.org/packages/eu.siacs.conversations/",
        ),
        app(
            "Cheogram",
            &["android"],
            "https://f-droid.org/packages/com.cheogram.android/",
        ),
        app(
            "Monal",
            &["ios", "macos"],
            "https://apps.apple.com/app/monal-free-xmpp-chat/id1637078500",
        ),
        app(
            "Siskin IM",
            &["ios"],
            "https://apps.apple.com/app/siskin-im/id1153516838",
        ),
        app(
            "Gajim",
            &["windows", "linux"],
            "https://gajim.org/download/",
        ),
        app("Dino", &["linux"], "https://dino.im/#download"),
    ]
}

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
        assert!(defaults()
            .iter()
            .any(|a| a.platforms.iter().any(|p| p == "ios")));
    }
}
