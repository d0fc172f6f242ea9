//! Small HTML helpers: escaping, and links from a page to files elsewhere on disk.

use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The path of `target` relative to the folder `base`, both made absolute and free of `..` first
/// (so the link works however the two were spelled on the command line). Both must exist.
pub fn relative_path(base: &Path, target: &Path) -> Result<PathBuf> {
    let base = base
        .canonicalize()
        .with_context(|| format!("resolving {}", base.display()))?;
    let target = target
        .canonicalize()
        .with_context(|| format!("resolving {}", target.display()))?;
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    Ok(rel)
}

/// A relative path as a URL: `/`-separated, with bytes outside the unreserved set
/// percent-encoded (a stem may hold spaces, `#` or `%`).
pub fn url(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            let s = c.as_os_str().to_string_lossy();
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        })
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_odd_characters() {
        assert_eq!(url(Path::new("../a b/x#1%.png")), "../a%20b/x%231%25.png");
    }

    #[test]
    fn relative_path_walks_up_and_down() {
        let d = std::env::temp_dir().join(format!("p2p-rel-{}", std::process::id()));
        std::fs::create_dir_all(d.join("out/page")).unwrap();
        std::fs::create_dir_all(d.join("results/run/images")).unwrap();
        std::fs::write(d.join("results/run/images/x.png"), b"").unwrap();
        let rel = relative_path(&d.join("out/page"), &d.join("results/run/images/x.png")).unwrap();
        assert_eq!(rel, Path::new("../../results/run/images/x.png"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
