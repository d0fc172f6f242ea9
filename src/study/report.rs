//! The study's report, `OUT/index.html`, with every table as CSV and every figure as PNG beside
//! it; rebuilt from the files on disk at the end of every `pix2pix study` (so a partial study
//! gives a partial report, each missing part said to be missing).

use super::datasets::read_photos_csv;
use super::face_score;
use super::figures;
use super::measure::{fmt_duration, Measured, StepTimes};
use super::plan::{Model, RunSpec, Scale, ScaleParams, RUNS, SEED_TABLE3, TEST_STYLES};
use super::records::Records;
use super::runs::{original_result_folder, result_folder};
use super::stages::{train_estimate, Counts};
use super::StudyConfig;
use crate::checkpoint::write_atomic;
use crate::eval::{Stat, Summary};
use crate::report::html::esc;
use crate::report::table::fmt_stat;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One image's metrics read back from a result folder's metrics.csv.
struct Row {
    stem: String,
    values: [f64; 4],
}

fn read_metrics(folder: &Path) -> Result<Option<Vec<Row>>> {
    let path = folder.join("metrics.csv");
    if !path.is_file() {
        return Ok(None);
    }
    let mut rdr = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = vec![];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        let mut values = [0.0; 4];
        for (k, v) in values.iter_mut().enumerate() {
            let t = rec.get(k + 1).unwrap_or("");
            *v = t
                .parse()
                .with_context(|| format!("{}: row {}: {t:?} is not a number", path.display(), i + 2))?;
        }
        rows.push(Row {
            stem: rec[0].to_string(),
            values,
        });
    }
    Ok(Some(rows))
}

fn summarize(name: &str, rows: &[&Row]) -> Summary {
    let col = |k: usize| Stat::of(&rows.iter().map(|r| r.values[k]).collect::<Vec<_>>());
    Summary {
        name: name.to_string(),
        images: rows.len(),
        cosine_dissimilarity: col(0),
        l1: col(1),
        psnr: col(2),
        ssim: col(3),
    }
}

fn stat_cells(s: &Summary) -> String {
    s.stats()
        .iter()
        .map(|(m, st)| format!("<td>{}</td>", esc(&fmt_stat(m, *st))))
        .collect()
}

fn stat_csv(s: &Summary) -> String {
    s.stats()
        .iter()
        .map(|(_, st)| format!(",{},{}", crate::eval::fmt_num(st.mean), crate::eval::fmt_num(st.std)))
        .collect()
}

const METRIC_HEAD: &str = "<th>cosine dissimilarity</th><th>L1</th><th>PSNR (dB)</th><th>SSIM</th>";
const METRIC_CSV: &str = "cosine_mean,cosine_std,l1_mean,l1_std,psnr_mean,psnr_std,ssim_mean,ssim_std";

fn seed_value(r: &RunSpec) -> Option<f64> {
    if r.data.name() != "filtered" || r.model != Model::Pix2Pix {
        return None;
    }
    SEED_TABLE3.iter().find(|(b, _)| *b == r.batch_size).map(|(_, v)| *v)
}

struct Page {
    html: String,
    files: Vec<String>,
}

impl Page {
    fn csv(&mut self, out: &Path, name: &str, text: &str) -> Result<()> {
        write_atomic(&out.join(name), text.as_bytes())?;
        self.files.push(name.to_string());
        let _ = writeln!(self.html, "<p class=\"f\">CSV: <a href=\"{0}\">{0}</a></p>", esc(name));
        Ok(())
    }
    fn img(&mut self, name: &str, made: bool, missing: &str) {
        if made {
            self.files.push(name.to_string());
            let _ = writeln!(
                self.html,
                "<p><a href=\"{0}\"><img src=\"{0}\" style=\"max-width:100%\"></a></p>",
                esc(name)
            );
        } else {
            let _ = writeln!(self.html, "<p><em>{}</em></p>", esc(missing));
        }
    }
}

fn table3(cfg: &StudyConfig, p: &mut Page) -> Result<()> {
    p.html += "<h2>Table 3: test scores on the filtered test split</h2>\n<p>Cosine dissimilarity is the study's Eq. 5 \
        (1 − cos between the flattened fake_B and real_B, pixels in [0, 1]); mean ± std over the test images. \
        The seed study's own Table 3 values are on colorFERET at 256², 200 epochs: a different photo set and a \
        different scale unless this is a <code>full</code> study on colorFERET.</p>\n";
    p.html += &format!("<table><tr><th>run</th><th>images</th>{METRIC_HEAD}<th>seed study (colorFERET)</th></tr>\n");
    let mut csv = format!("run,model,data,batch_size,images,{METRIC_CSV},seed_cosine_colorferet\n");
    for r in &RUNS {
        let seed = seed_value(r).map_or(String::new(), |v| format!("{v}"));
        match read_metrics(&result_folder(&cfg.out, r, "classic"))? {
            Some(rows) => {
                let s = summarize(&r.label(), &rows.iter().collect::<Vec<_>>());
                p.html += &format!(
                    "<tr><td>{}</td><td>{}</td>{}<td>{seed}</td></tr>\n",
                    esc(&r.label()),
                    s.images,
                    stat_cells(&s)
                );
                csv += &format!(
                    "{},{},{},{},{}{},{seed}\n",
                    r.id,
                    r.model.name(),
                    r.data.name(),
                    r.batch_size,
                    s.images,
                    stat_csv(&s)
                );
            }
            None => {
                p.html += &format!(
                    "<tr><td>{}</td><td colspan=\"5\">not run yet</td><td>{seed}</td></tr>\n",
                    esc(&r.label())
                );
                csv += &format!(
                    "{},{},{},{},,,,,,,,,,{seed}\n",
                    r.id,
                    r.model.name(),
                    r.data.name(),
                    r.batch_size
                );
            }
        }
    }
    p.html += "</table>\n";
    p.csv(&cfg.out, "table3.csv", &csv)
}

fn run1_split(cfg: &StudyConfig, p: &mut Page) -> Result<()> {
    p.html +=
        "<h2>Run 1 (trained on unfiltered photos) on its own test split, by what the filters would have dropped</h2>\n\
        <p>The study's Fig. 1c/1d finding, measured: grayscale photos (colourfulness below 6) and small faces \
        (no face found, or a face box under 0.08 of the image), against the rest. From the prepare manifest's \
        measurements (data/photos.csv).</p>\n";
    let r = &RUNS[0];
    let Some(rows) = read_metrics(&original_result_folder(&cfg.out, r))? else {
        p.html += "<p><em>run 1 has not been tested yet</em></p>\n";
        return Ok(());
    };
    let reasons = read_photos_csv(&cfg.out)?;
    let group = |stem: &str| match reasons.get(stem).map(|(_, why)| why.as_str()) {
        Some("grayscale") => "grayscale",
        Some("small_face") | Some("no_face") => "small_face",
        _ => "rest",
    };
    p.html += &format!("<table><tr><th>group</th><th>images</th>{METRIC_HEAD}</tr>\n");
    let mut csv = format!("group,images,{METRIC_CSV}\n");
    for g in ["grayscale", "small_face", "rest", "all"] {
        let sel: Vec<&Row> = rows.iter().filter(|r| g == "all" || group(&r.stem) == g).collect();
        let label = if g == "small_face" && cfg.no_face_filter {
            "small_face (not measured: --no-face-filter)".to_string()
        } else {
            g.to_string()
        };
        if sel.is_empty() {
            p.html += &format!(
                "<tr><td>{}</td><td>0</td><td colspan=\"4\">no test image in this group</td></tr>\n",
                esc(&label)
            );
            csv += &format!("{g},0,,,,,,,,\n");
            continue;
        }
        let s = summarize(g, &sel);
        p.html += &format!(
            "<tr><td>{}</td><td>{}</td>{}</tr>\n",
            esc(&label),
            s.images,
            stat_cells(&s)
        );
        csv += &format!("{g},{}{}\n", s.images, stat_csv(&s));
    }
    p.html += "</table>\n";
    p.csv(&cfg.out, "run1_split.csv", &csv)
}

fn available(cfg: &StudyConfig) -> Vec<RunSpec> {
    RUNS.iter()
        .filter(|r| result_folder(&cfg.out, r, "classic").is_dir())
        .copied()
        .collect()
}

fn styles(cfg: &StudyConfig, p: &mut Page) -> Result<()> {
    p.html += "<h2>Figs. 6-8: every model on the test photos cartoonized in each style</h2>\n<p>Runs 1-4 were \
        trained on <code>classic</code> cartoons only, run 5 on classic, smooth, bold and posterized; \
        <code>sketch</code> (a pencil drawing) is out of distribution for every run. Mean ± std cosine \
        dissimilarity on the filtered test split.</p>\n";
    p.html += "<table><tr><th>run</th>";
    for s in TEST_STYLES {
        p.html += &format!("<th>{s}</th>");
    }
    p.html += "</tr>\n";
    let mut csv = String::from("run,style,images,cosine_mean,cosine_std\n");
    for r in RUNS.iter() {
        p.html += &format!("<tr><td>{}</td>", esc(&r.label()));
        for s in TEST_STYLES {
            let cell = match read_metrics(&result_folder(&cfg.out, r, s))? {
                None => "not run yet".to_string(),
                Some(rows) => {
                    let sm = summarize(s, &rows.iter().collect::<Vec<_>>());
                    let st = sm.cosine_dissimilarity;
                    csv += &format!("{},{s},{},{},{}\n", r.id, sm.images, st.mean, st.std);
                    fmt_stat("cosine_dissimilarity", st)
                }
            };
            p.html += &format!("<td>{}</td>", esc(&cell));
        }
        p.html += "</tr>\n";
    }
    p.html += "</table>\n";
    p.csv(&cfg.out, "styles.csv", &csv)?;
    let runs = available(cfg);
    for s in TEST_STYLES {
        let name = format!("styles_{s}.jpg");
        let made = figures::style_grid(&cfg.out, &cfg.out.join(&name), s, &runs)?;
        let _ = writeln!(p.html, "<h3>{s}: input, each run's output, the photo</h3>");
        p.img(&name, made, "no run has been tested yet");
    }
    Ok(())
}

fn face(cfg: &StudyConfig, p: &mut Page) -> Result<()> {
    p.html += "<h2>Face-detector score (in the spirit of the study's Table 4)</h2>\n<p>The study scored fake_B \
        with an Inception V3 gender classifier; its weights cannot be had offline, so this report uses what the \
        project has: prepare's Haar face detector on every fake_B and its real_B of the filtered test split. \
        Rate = share of images with a detected face; IoU = agreement of the two face boxes where both have one.</p>\n";
    let cascade = match crate::data::prepare::haar::find_cascade(cfg.cascade.as_deref()) {
        Some(c) if !cfg.no_face_filter => crate::data::prepare::haar::Cascade::load(&c)?,
        _ => {
            p.html += "<p><em>not measured: this study ran with --no-face-filter (no face detector)</em></p>\n";
            return Ok(());
        }
    };
    p.html += "<table><tr><th>run</th><th>images</th><th>face found in real_B</th><th>face found in fake_B</th><th>mean IoU</th></tr>\n";
    let mut csv = String::from("run,images,real_detected,fake_detected,real_rate,fake_rate,mean_iou\n");
    for r in available(cfg) {
        let s = face_score::score(&cascade, &result_folder(&cfg.out, &r, "classic"))?;
        p.html += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1} %</td><td>{:.1} %</td><td>{:.3}</td></tr>\n",
            esc(&r.label()),
            s.images,
            100.0 * s.real_rate(),
            100.0 * s.fake_rate(),
            s.mean_iou
        );
        csv += &format!(
            "{},{},{},{},{},{},{}\n",
            r.id,
            s.images,
            s.real_detected,
            s.fake_detected,
            s.real_rate(),
            s.fake_rate(),
            s.mean_iou
        );
    }
    p.html += "</table>\n";
    p.csv(&cfg.out, "face_score.csv", &csv)
}

fn times(cfg: &StudyConfig, p: &mut Page, records: &Records, counts: &Counts, m: &Measured) -> Result<()> {
    p.html += "<h2>Stages: time and exact commands</h2>\n<table><tr><th>stage</th><th>time</th><th>commands (each stage is these library calls)</th></tr>\n";
    let mut csv = String::from("stage,seconds,finished_unix,commands\n");
    let mut txt = format!("# {}\n", cfg.command_line);
    for r in records.all()? {
        let cmds = r.commands.join("\n");
        p.html += &format!(
            "<tr><td>{}</td><td>{}</td><td><pre>{}</pre>{}</td></tr>\n",
            esc(&r.stage),
            fmt_duration(r.seconds),
            esc(&cmds),
            esc(&r.notes.join("; "))
        );
        csv += &format!(
            "{},{:.1},{},{}\n",
            r.stage,
            r.seconds,
            r.finished,
            crate::eval::run::csv_field(&r.commands.join(" && "))
        );
        txt += &format!("\n# stage {} ({:.1} s)\n{cmds}\n", r.stage, r.seconds);
    }
    p.html += "</table>\n";
    p.csv(&cfg.out, "stages.csv", &csv)?;
    write_atomic(&cfg.out.join("commands.txt"), txt.as_bytes())?;
    p.files.push("commands.txt".into());
    p.html += "<p class=\"f\">all commands: <a href=\"commands.txt\">commands.txt</a></p>\n";

    p.html += "<h2>Measured step and projections</h2>\n";
    let mut csv =
        String::from("config,device,batch,step_seconds,measured,run,images_per_epoch,epochs,projected_seconds\n");
    let mut block = |name: &str, p_: &ScaleParams, st: &StepTimes, model: Model, html: &mut String| {
        *html += &format!(
            "<h3>{}</h3><p>{} on {}: {:.4} s per step at batch 1, {:.4} s at batch 8 (measured), {:.4} s per G forward; \
             batch 64 is a straight line through the two measured points.</p>\n<table><tr><th>run</th><th>train images</th><th>steps</th><th>projected</th></tr>\n",
            esc(name),
            esc(&st.config),
            esc(&st.device),
            st.step_s[0],
            st.step_s[1],
            st.fwd_s
        );
        for r in RUNS.iter().filter(|r| r.model == model) {
            let n = counts.train_images(r);
            let est = train_estimate(p_, st, n, r);
            *html += &format!(
                "<tr><td>{}</td><td>{n}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&r.label()),
                p_.epochs() * n.div_ceil(r.batch_size),
                fmt_duration(est)
            );
            csv += &format!(
                "{},{},{},{},{},{},{n},{},{est}\n",
                st.config,
                st.device,
                r.batch_size,
                st.step(r.batch_size),
                StepTimes::is_measured(r.batch_size),
                r.id,
                p_.epochs()
            );
        }
        *html += "</table>\n";
    };
    let mut html = String::new();
    block(
        &format!("this study ({})", cfg.params.scale),
        &cfg.params,
        &m.pix2pix,
        Model::Pix2Pix,
        &mut html,
    );
    if let Some(cg) = &m.cycle_gan {
        block(
            &format!("this study ({}), run 6", cfg.params.scale),
            &cfg.params,
            cg,
            Model::CycleGan,
            &mut html,
        );
    }
    if let Some(f) = &m.full {
        block(
            "the full protocol (256², unet_256, 100+100 epochs) on the same device",
            &ScaleParams::of(Scale::Full),
            f,
            Model::Pix2Pix,
            &mut html,
        );
        html +=
            "<p>Run 6 (CycleGAN, resnet_9blocks at 256²) is not projected: its full-scale step is not measured.</p>\n";
        html += "<p>On a GPU: not measured here. <code>pix2pix study --scale full --device cuda</code> measures the step on \
            the GPU and prints the same projection in its plan before it starts.</p>\n";
    }
    p.html += &html;
    p.csv(&cfg.out, "projection.csv", &csv)
}

/// Writes `OUT/index.html` and the CSV and PNG files beside it; returns the page's path.
pub fn write_report(cfg: &StudyConfig, records: &Records, counts: &Counts, m: &Measured) -> Result<PathBuf> {
    let t = &m.pix2pix;
    let out = &cfg.out;
    let mut p = Page {
        html: String::new(),
        files: vec![],
    };
    p.html += &format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pix2pix study: {0}</title>\n<style>body{{font-family:sans-serif;max-width:1300px;margin:auto}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}pre{{margin:0;white-space:pre-wrap}}.f{{font-size:90%}}</style></head><body>\n\
         <h1>pix2pix study: {0}</h1>\n<p><code>{1}</code></p>\n<p>{2}; photos {3}; device {4}.</p>\n",
        esc(&out.display().to_string()),
        esc(&cfg.command_line),
        esc(&cfg.params.describe()),
        esc(&cfg.photos.display().to_string()),
        esc(&t.device)
    );
    p.html += "<h2>Table 2: the runs</h2>\n<table><tr><th>run</th><th>model</th><th>data</th><th>change</th><th>train images</th><th>status</th></tr>\n";
    for r in &RUNS {
        let status = match records.get(&format!("train_run{}", r.id))? {
            Some(rec) => format!("trained in {}", fmt_duration(rec.seconds)),
            None => "not trained yet".into(),
        };
        p.html += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            r.id,
            r.model.name(),
            r.data.name(),
            r.change,
            counts.train_images(r),
            esc(&status)
        );
    }
    p.html += "</table>\n";
    table3(cfg, &mut p)?;
    p.html += "<h2>Fig. 5: losses against epochs, one line per batch size (runs 2-4)</h2>\n";
    let batch_runs: Vec<RunSpec> = RUNS[1..4].to_vec();
    let made = figures::fig5(out, &out.join("fig5_losses.png"), &batch_runs, &|r| {
        counts.train_images(r)
    })?;
    p.img("fig5_losses.png", made, "runs 2-4 have not been trained yet");
    p.html += "<h2>Fig. 10: validation cosine dissimilarity during training</h2>\n";
    let made = figures::fig10(out, &out.join("fig10_validation.png"), &RUNS)?;
    p.img("fig10_validation.png", made, "no run has been validated yet");
    run1_split(cfg, &mut p)?;
    styles(cfg, &mut p)?;
    p.html += "<h2>Samples per run (filtered test split)</h2>\n";
    for r in RUNS.iter() {
        let name = format!("samples_run{}.jpg", r.id);
        let made = figures::sample_grid(out, &out.join(&name), r)?;
        let _ = writeln!(p.html, "<h3>{}</h3>", esc(&r.label()));
        p.img(&name, made, "not tested yet");
    }
    face(cfg, &mut p)?;
    times(cfg, &mut p, records, counts, m)?;
    p.html += "</body></html>\n";
    let page = out.join("index.html");
    write_atomic(&page, p.html.as_bytes())?;
    Ok(page)
}
