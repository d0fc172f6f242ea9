//! `pix2pix study`: the whole study from one folder of photos (its Table 2's runs, Table 3, Figs.
//! 5, 6-8 and 10, the out-of-distribution tests) into one report, `OUT/index.html`.
//!
//! - [`plan`]: the scales and the run table;
//! - [`measure`]: the measured step behind the time estimate;
//! - [`records`]: stage records (resume, skip, `--force`);
//! - [`datasets`]: one prepare, three derived datasets;
//! - [`runs`]: a run's training and tests;
//! - [`stages`]: the stage list, the plan and the loop over stages;
//! - [`report`], [`figures`], [`face_score`]: the report.
//!
//! Everything is a library call into `prepare`, `train`, `test` and `eval`; each stage records the
//! `pix2pix` commands that do the same work.

pub mod datasets;
pub mod face_score;
pub mod figures;
pub mod measure;
pub mod plan;
pub mod records;
pub mod report;
pub mod runs;
pub mod stages;

pub use plan::{parse_only, RunSpec, Scale, ScaleParams, RUNS};
pub use stages::run_study;

use std::path::PathBuf;

/// Everything `pix2pix study` was asked to do.
#[derive(Clone, Debug)]
pub struct StudyConfig {
    pub photos: PathBuf,
    pub out: PathBuf,
    pub persons: Option<PathBuf>,
    pub person_column: Option<String>,
    pub group_regex: Option<String>,
    pub params: ScaleParams,
    /// Run ids to run (1-6); the others are left as they are.
    pub only: Option<Vec<usize>>,
    pub device: String,
    pub seed: u64,
    /// Redo the selected stages even when they are recorded as finished.
    pub force: bool,
    /// No face detection: no small-face filter, central crops, no face score.
    pub no_face_filter: bool,
    pub cascade: Option<PathBuf>,
    pub progress: bool,
    /// The command line as typed, for the report.
    pub command_line: String,
}

impl StudyConfig {
    pub fn selected(&self, r: &RunSpec) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&r.id))
    }
}
