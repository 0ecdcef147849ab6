//! The layer order of README's "Architecture", checked from the source: a
//! module may name (`crate::x`) only modules of lower layers, so there are no
//! import cycles and nothing reaches upwards.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first; modules on one line are one layer and may not use each other.
const LAYERS: &[&[&str]] = &[
    &[
        "xmpp",
        "clock",
        "secrets",
        "bearer",
        "metrics",
        "failpoint",
        "blocking_pool",
        "throttle",
    ],
    &["invites", "config", "tls_files", "capped_incoming"],
    &["accounts", "ledger"],
    &["sessions"],
    &["registration", "issuing"],
    &["peer"],
    &["c2s", "web", "admin"],
    &["node"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `crate::NAME` a source text mentions, also inside `use crate::{a, b}`.
fn crate_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeMap::new();
    let mut checked = 0;
    for path in files {
        let relative = path.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name")
            .trim_end_matches(".rs")
            .to_owned();
        // The binary (main.rs, cli/) sits on top of the library and uses it as `usher::`.
        if matches!(top.as_str(), "main" | "cli" | "lib") {
            continue;
        }
        let own = layer_of(&top).unwrap_or_else(|| {
            panic!(
                "src/{} is in no layer: add `{top}` to LAYERS and to README",
                relative.display()
            )
        });
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for name in crate_references(&text) {
            if name == top {
                continue;
            }
            let theirs = layer_of(&name).unwrap_or_else(|| {
                panic!(
                    "src/{} names crate::{name}, which is in no layer",
                    relative.display()
                )
            });
            if theirs >= own {
                violations
                    .entry(format!("src/{}", relative.display()))
                    .or_insert_with(Vec::new)
                    .push(format!("{top} (layer {own}) uses {name} (layer {theirs})"));
            }
        }
        checked += 1;
    }
    assert!(
        checked > 50,
        "only {checked} files found under {}",
        src.display()
    );
    assert!(
        violations.is_empty(),
        "upward or sideways imports: {violations:#?}"
    );
}

#[test]
fn references_are_found_in_every_form() {
    let text = "use crate::accounts::Account;\nuse crate::{ledger, xmpp::Element};\nlet x = crate::clock::now_millis();";
    assert_eq!(
        crate_references(text),
        ["accounts", "ledger", "xmpp", "clock"]
    );
}
