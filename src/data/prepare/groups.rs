//! Which photos belong to one person, for a split that never puts a person in two splits: a
//! persons CSV, or a file-name pattern (`--group-regex`, its first group is the person), else each
//! file alone, with a warning when the names look like several photos per person.

use anyhow::{bail, Context, Result};
use regex_lite::Regex;
use std::collections::{BTreeMap, HashMap};

/// Compiles `--group-regex`, which must have a capture group (the person).
pub fn compile(pattern: &str) -> Result<Regex> {
    let re = Regex::new(pattern).with_context(|| format!("--group-regex {pattern:?} is not a valid regex"))?;
    if re.captures_len() < 2 {
        bail!("--group-regex {pattern:?} has no capture group: its first group (…) names the person, e.g. '^([^_]+)_'");
    }
    Ok(re)
}

/// The group of file `name`: its person in `persons`, else the regex's first group, else the file.
pub fn group_key(name: &str, persons: Option<&HashMap<String, String>>, re: Option<&Regex>) -> String {
    if let Some(p) = persons.and_then(|m| m.get(name)) {
        return format!("person:{p}");
    }
    if let Some(g) = re.and_then(|r| r.captures(name)).and_then(|c| c.get(1)) {
        return format!("person:{}", g.as_str());
    }
    format!("file:{name}")
}

/// A warning when no grouping was given but at least a quarter of the names share a prefix
/// before `_`, `-` or a space with another name (`001_03.jpg`, `001_08.jpg`): such a set has
/// several photos per person, and splitting by file leaks people between train and test.
pub fn looks_grouped(names: &[String]) -> Option<String> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in names {
        let stem = n.rsplit_once('.').map_or(n.as_str(), |(s, _)| s);
        if let Some(i) = stem.find(['_', '-', ' ']).filter(|&i| i > 0) {
            groups.entry(&stem[..i]).or_default().push(n);
        }
    }
    let shared: Vec<&Vec<&str>> = groups.values().filter(|v| v.len() > 1).collect();
    let files: usize = shared.iter().map(|v| v.len()).sum();
    if names.len() < 4 || files * 4 < names.len() {
        return None;
    }
    let ex = shared[0];
    Some(format!(
        "warning: {files} of {} file names share a prefix with another (e.g. {} and {}); if they are \
         photos of one person, a split by file puts that person in two splits. Pass --persons CSV, or \
         --group-regex '^([^_-]+)' to group by the prefix",
        names.len(),
        ex[0],
        ex[1]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_groups_and_fallbacks() {
        let re = compile(r"^(\d+)_").unwrap();
        assert_eq!(group_key("001_03.jpg", None, Some(&re)), "person:001");
        assert_eq!(group_key("x.jpg", None, Some(&re)), "file:x.jpg");
        let m: HashMap<String, String> = [("001_03.jpg".to_string(), "ann".to_string())].into();
        assert_eq!(group_key("001_03.jpg", Some(&m), Some(&re)), "person:ann");
        assert!(compile("^[0-9]+").is_err());
        assert!(compile("(").is_err());
    }

    #[test]
    fn grouped_names_are_noticed() {
        let names: Vec<String> = ["001_03.jpg", "001_08.jpg", "002_03.jpg", "002_08.jpg"]
            .map(String::from)
            .into();
        assert!(looks_grouped(&names).unwrap().contains("001_03.jpg"));
        let plain: Vec<String> = ["001366.jpg", "002605.jpg", "004812.jpg", "009369.jpg"]
            .map(String::from)
            .into();
        assert!(looks_grouped(&plain).is_none());
    }
}
