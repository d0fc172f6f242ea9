//! Stage records: `OUT/stages/<stage>.txt` says a stage finished, with the options it ran with,
//! the exact commands it equals, and how long it took. A rerun skips a stage whose record matches
//! its options, and refuses (without `--force`) to redo one recorded with other options.

use crate::checkpoint::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageRecord {
    pub stage: String,
    /// Everything the stage's outputs depend on, on one line.
    pub options: String,
    pub seconds: f64,
    /// Unix time the stage finished.
    pub finished: u64,
    /// The `pix2pix` commands that do the same work, in order.
    pub commands: Vec<String>,
    pub notes: Vec<String>,
}

impl StageRecord {
    pub fn new(stage: &str, options: &str) -> StageRecord {
        StageRecord {
            stage: stage.to_string(),
            options: one_line(options),
            ..Default::default()
        }
    }

    fn text(&self) -> String {
        let mut s = format!(
            "stage: {}\noptions: {}\nseconds: {:.1}\nfinished: {}\n",
            self.stage, self.options, self.seconds, self.finished
        );
        for c in &self.commands {
            s += &format!("command: {}\n", one_line(c));
        }
        for n in &self.notes {
            s += &format!("note: {}\n", one_line(n));
        }
        s
    }

    fn parse(text: &str, path: &Path) -> Result<StageRecord> {
        let mut r = StageRecord::default();
        for line in text.lines() {
            let (k, v) = line
                .split_once(": ")
                .with_context(|| format!("{}: line {line:?} is not `key: value`", path.display()))?;
            match k {
                "stage" => r.stage = v.to_string(),
                "options" => r.options = v.to_string(),
                "seconds" => r.seconds = v.parse().with_context(|| format!("{}: seconds", path.display()))?,
                "finished" => r.finished = v.parse().with_context(|| format!("{}: finished", path.display()))?,
                "command" => r.commands.push(v.to_string()),
                "note" => r.notes.push(v.to_string()),
                _ => bail!("{}: unknown key {k:?}", path.display()),
            }
        }
        if r.stage.is_empty() {
            bail!("{}: no `stage:` line", path.display());
        }
        Ok(r)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The records of one study folder.
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(out: &Path) -> Records {
        Records {
            dir: out.join("stages"),
        }
    }

    fn path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.txt"))
    }

    pub fn get(&self, stage: &str) -> Result<Option<StageRecord>> {
        let p = self.path(stage);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        StageRecord::parse(&text, &p).map(Some)
    }

    /// Whether `stage` finished with these options. A record with other options is an error
    /// unless `force` (then the record is removed and the stage redone).
    pub fn done(&self, stage: &str, options: &str, force: bool) -> Result<bool> {
        let Some(r) = self.get(stage)? else {
            return Ok(false);
        };
        if force {
            self.remove(stage)?;
            return Ok(false);
        }
        if r.options != one_line(options) {
            bail!(
                "stage {stage} in {} was made with other options:\n  recorded: {}\n  now:      {}\n\
                 rerun with --force to redo it (its outputs are replaced), or use another --out",
                self.dir.parent().unwrap_or(&self.dir).display(),
                r.options,
                one_line(options)
            );
        }
        Ok(true)
    }

    pub fn write(&self, rec: &StageRecord) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        write_atomic(&self.path(&rec.stage), rec.text().as_bytes())
    }

    pub fn remove(&self, stage: &str) -> Result<()> {
        let p = self.path(stage);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
        Ok(())
    }

    /// Every record, sorted by finishing time.
    pub fn all(&self) -> Result<Vec<StageRecord>> {
        let mut v = vec![];
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "txt") {
                    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    v.push(StageRecord::parse(&text, &p)?);
                }
            }
        }
        v.sort_by(|a, b| a.finished.cmp(&b.finished).then(a.stage.cmp(&b.stage)));
        Ok(v)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Quotes a command-line word when the shell would split or expand it.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `pix2pix` followed by the words, quoted as needed.
pub fn command(words: &[String]) -> String {
    let mut s = String::from("pix2pix");
    for w in words {
        s.push(' ');
        s.push_str(&shell_word(w));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_other_options() {
        let t = tempfile::tempdir().unwrap();
        let r = Records::new(t.path());
        let mut rec = StageRecord::new("train_run2", "a=1\nb=2");
        rec.seconds = 12.5;
        rec.finished = 7;
        rec.commands.push("pix2pix train --name 'x y'".into());
        rec.notes.push("resumed".into());
        r.write(&rec).unwrap();
        assert_eq!(r.get("train_run2").unwrap().unwrap(), rec);
        assert!(r.done("train_run2", "a=1 b=2", false).unwrap());
        let err = r.done("train_run2", "a=2", false).unwrap_err().to_string();
        assert!(err.contains("--force") && err.contains("a=2"), "{err}");
        assert!(!r.done("train_run2", "a=2", true).unwrap());
        assert!(r.get("train_run2").unwrap().is_none());
    }

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        assert_eq!(
            command(&["train".into(), "--name".into(), "a b".into(), "it's".into()]),
            "pix2pix train --name 'a b' 'it'\\''s'"
        );
    }
}
