//! Settings from the environment: `USHER_` + the key in upper case, nested keys
//! joined by `__`. Only the config's own keys are read. Scripts around the node
//! have `USHER_*` variables of their own (`USHER_CACHE`, `USHER_BIN`, …), so an
//! unknown name is not an error — unless it is one typo away from a real key,
//! which is almost certainly a setting that would otherwise be silently lost.

use std::collections::BTreeSet;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

pub const PREFIX: &str = "USHER_";

/// Variables that are not settings but are read by the node itself.
const NOT_SETTINGS: &[&str] = &["failpoints"];

/// The dotted config keys (`limits.max_stanza_size`) a variable may set, and
/// the open maps (`role_invite_quotas`) whose sub-keys are free.
pub struct Keys {
    exact: BTreeSet<String>,
    maps: BTreeSet<String>,
}

impl Keys {
    /// Every key of `defaults` (the serialised default config).
    pub fn of(defaults: &serde_json::Value) -> Keys {
        let mut keys = Keys {
            exact: BTreeSet::new(),
            maps: BTreeSet::new(),
        };
        keys.walk("", defaults);
        keys
    }

    fn walk(&mut self, path: &str, value: &serde_json::Value) {
        if let serde_json::Value::Object(fields) = value {
            if fields.is_empty() && !path.is_empty() {
                self.maps.insert(path.to_owned());
            }
            for (name, v) in fields {
                let key = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                self.exact.insert(key.clone());
                self.walk(&key, v);
            }
        }
    }

    fn knows(&self, key: &str) -> bool {
        self.exact.contains(key)
            || key
                .rsplit_once('.')
                .is_some_and(|(parent, _)| self.maps.contains(parent))
    }

    /// The real key `key` is probably a misspelling of.
    fn near_miss(&self, key: &str) -> Option<&str> {
        let limit = (key.len() / 8).clamp(1, 3);
        self.exact
            .iter()
            .map(|k| (strsim::osa_distance(key, k), k))
            .filter(|(d, _)| *d <= limit)
            .min()
            .map(|(_, k)| k.as_str())
    }
}

/// What the environment holds for the config.
pub struct ConfigEnv {
    settings: Vec<(String, String)>,
    /// Variables with the prefix that are not settings, for one log line.
    pub ignored: Vec<String>,
}

impl ConfigEnv {
    /// Sorts `vars` into settings and others; a near-miss of a key is an error.
    pub fn read(
        vars: impl IntoIterator<Item = (String, String)>,
        keys: &Keys,
    ) -> Result<ConfigEnv, String> {
        let mut env = ConfigEnv {
            settings: Vec::new(),
            ignored: Vec::new(),
        };
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if NOT_SETTINGS.contains(&key.as_str()) {
                continue;
            }
            if keys.knows(&key) {
                env.settings.push((key, value));
            } else if let Some(meant) = keys.near_miss(&key) {
                let var = format!("{PREFIX}{}", meant.replace('.', "__").to_ascii_uppercase());
                return Err(format!(
                    "environment variable {name} is no setting; did you mean `{meant}` ({var})?"
                ));
            } else {
                env.ignored.push(name);
            }
        }
        Ok(env)
    }
}

impl Provider for ConfigEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("`USHER_` environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.settings {
            // Values are parsed as figment parses environment variables:
            // `false`, `3s`, `["a", "b"]` and `{ a = 1 }` all work.
            let parsed: Value = match value.parse() {
                Ok(v) => v,
                Err(never) => match never {},
            };
            let path: Vec<&str> = key.split('.').collect();
            insert(&mut dict, &path, parsed);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::of(&serde_json::json!({
            "domain": "x",
            "log": "info",
            "limits": { "max_stanza_size": 1, "max_depth": 2 },
            "role_invite_quotas": {},
        }))
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn only_own_keys_are_read_and_near_misses_are_named() {
        let env = ConfigEnv::read(
            vars(&[
                ("USHER_LIMITS__MAX_DEPTH", "9"),
                ("USHER_ROLE_INVITE_QUOTAS__TRUSTED", "50"),
                ("USHER_CACHE", "/tmp/x"),
                ("USHER_SOMETHING_ELSE", "1"),
                ("USHER_FAILPOINTS", "after-reserve"),
                ("PATH", "/bin"),
            ]),
            &keys(),
        )
        .unwrap();
        let read: Vec<&str> = env.settings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(read, ["limits.max_depth", "role_invite_quotas.trusted"]);
        assert_eq!(env.ignored, ["USHER_CACHE", "USHER_SOMETHING_ELSE"]);
        let e = ConfigEnv::read(vars(&[("USHER_LIMITS__MAX_DEPHT", "9")]), &keys())
            .err()
            .unwrap();
        assert!(
            e.contains("USHER_LIMITS__MAX_DEPHT") && e.contains("limits.max_depth"),
            "{e}"
        );
        let e = ConfigEnv::read(vars(&[("USHER_DOMIAN", "x")]), &keys())
            .err()
            .unwrap();
        assert!(e.contains("`domain`"), "{e}");
    }
}
