//! `web_apps`: the clients invite pages recommend, by platform; unset, a
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_defaults_cover_every_platform() {
        for platform in ["android", "ios", "macos", "windows", "linux"] {
            assert!(
                super::defaults()
                    .iter()
                    .any(|a| a.platforms.iter().any(|p| p == platform)),
                "{platform}"
            );
        }
    }
}
