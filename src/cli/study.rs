//! `study`: the whole study from one folder of photos into one report (see `pix2pix::study`).

use anyhow::Result;
use clap::Args;
use pix2pix::study::{parse_only, run_study, Scale, ScaleParams, StudyConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Folder of face photos (jpg, png, bmp, tif, pnm; not recursive). Only read.
    #[arg(long)]
    pub photos: PathBuf,
    /// The study folder: data/, checkpoints/, results/, stages/ and the report (index.html, CSV,
    /// PNG). Rerunning with the same folder skips finished stages and resumes the rest.
    #[arg(long)]
    pub out: PathBuf,
    /// CSV mapping file name → person id, so a person never lands in two splits.
    #[arg(long)]
    pub persons: Option<PathBuf>,
    /// Column of --persons holding the person id.
    #[arg(long)]
    pub person_column: Option<String>,
    /// Group photos into persons by file name: the regex's first capture group is the person.
    #[arg(long)]
    pub group_regex: Option<String>,
    /// tiny (minutes), small (about an hour on 2 CPU cores: 128², unet_128 ngf 32), full (the
    /// study's protocol: 256², unet_256, 100+100 epochs; meant for a GPU).
    #[arg(long, default_value = "small")]
    pub scale: Scale,
    /// Override the scale's epochs at the initial learning rate (every run gets the same).
    #[arg(long)]
    pub n_epochs: Option<usize>,
    /// Override the scale's decay epochs.
    #[arg(long)]
    pub n_epochs_decay: Option<usize>,
    /// Use at most this many photos (evenly spaced in name order) instead of the scale's choice.
    #[arg(long)]
    pub max_photos: Option<usize>,
    /// Run only these runs of Table 2 (e.g. 2,3); the data stage runs if it has not yet.
    #[arg(long)]
    pub only: Option<String>,
    /// Redo the selected stages even when recorded as finished (their outputs are replaced).
    /// With --only, the data stage is kept.
    #[arg(long)]
    pub force: bool,
    /// No face detection (no small-face filter, central crops, no face score).
    #[arg(long)]
    pub no_face_filter: bool,
    /// OpenCV Haar cascade XML (default: $PIX2PIX_FACE_CASCADE, then Debian's opencv-data).
    #[arg(long)]
    pub cascade: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seeds the split, the initialisation, dropout, crops and shuffling of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No per-epoch progress bars (the overall progress lines stay).
    #[arg(long)]
    pub no_progress: bool,
}

pub fn study(a: &StudyArgs) -> Result<()> {
    let mut params = ScaleParams::of(a.scale);
    if let Some(e) = a.n_epochs {
        params.n_epochs = e;
    }
    if let Some(e) = a.n_epochs_decay {
        params.n_epochs_decay = e;
    }
    if a.max_photos.is_some() {
        params.max_photos = a.max_photos;
    }
    let cfg = StudyConfig {
        photos: a.photos.clone(),
        out: a.out.clone(),
        persons: a.persons.clone(),
        person_column: a.person_column.clone(),
        group_regex: a.group_regex.clone(),
        params,
        only: a.only.as_deref().map(parse_only).transpose()?,
        device: a.device.clone(),
        seed: a.seed,
        force: a.force,
        no_face_filter: a.no_face_filter,
        cascade: a.cascade.clone(),
        progress: !a.no_progress,
        command_line: std::env::args()
            .map(|w| pix2pix::study::records::shell_word(&w))
            .collect::<Vec<_>>()
            .join(" "),
    };
    run_study(&cfg)
}
