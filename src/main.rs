//! The `pix2pix` command line. `pix2pix --help` lists the commands; each has its own `--help`.

mod cli;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// The CPU GEMM allocates packing buffers on every call; mimalloc keeps their pages mapped
// instead of faulting them in again (measured: 0.79 → 0.31 s per unet_128 step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pix2pix (U-Net generator + 70×70 PatchGAN, cGAN + λ·L1) on a hand-written engine: a CPU
/// reference and our own CUDA kernels. Outputs go to ./checkpoints/NAME and ./results/NAME.
#[derive(Parser, Debug)]
#[command(name = "pix2pix", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a small dataset, train a small model for a few minutes, test it, and show the page.
    Demo(cli::demo::DemoArgs),
    /// Turn a folder of face photos into a cartoon|photo dataset (filters, framing, 60/20/20 split).
    Prepare(pix2pix::data::prepare::PrepareArgs),
    /// Cartoonize one image or a folder in one of the styles.
    Cartoonize(pix2pix::data::prepare::CartoonizeArgs),
    /// Draw the style gallery: a face (drawn by the program, or --photo) in every cartoon style.
    Styles(cli::demo::StylesArgs),
    /// Train pix2pix on DATAROOT/train (A|B images).
    Train(cli::train::TrainArgs),
    /// Generate results for DATAROOT/test with a trained generator (HTML page + PNGs).
    Test(cli::train::TestArgs),
    /// Metrics of test results (cosine dissimilarity, L1, PSNR, SSIM), a table and a side-by-side page.
    Eval(cli::eval::EvalArgs),
    /// The whole study from a folder of photos: Table 2's runs, Table 3, Figs. 5-10, one report.
    Study(cli::study::StudyArgs),
    /// Plot a training run's losses (RUN_DIR/loss_log.csv → RUN_DIR/loss.png).
    Plot(cli::eval::PlotArgs),
    /// Run one training step on a device and on the CPU reference; compare every gradient.
    Gradcheck(cli::gradcheck::GradcheckArgs),
    /// Write freshly initialised G and D checkpoints (PyTorch state_dict names).
    Init(cli::step::InitArgs),
    /// Run exactly one training iteration on one A|B image and dump losses, gradients and weights.
    Step(cli::step::StepArgs),
}

/// Every option of the matched subcommand as `name: value`, marking the ones not at their default
/// (the reference's train_opt.txt).
fn options_text(m: &clap::ArgMatches) -> String {
    let mut s = String::from("----------------- Options ---------------\n");
    for id in m.ids() {
        let id = id.as_str();
        let Ok(Some(raw)) = m.try_get_raw(id) else { continue };
        let v: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let default = m.value_source(id) == Some(clap::parser::ValueSource::DefaultValue);
        s += &format!(
            "{:>25}: {:<30}{}\n",
            id,
            v.join(","),
            if default { "" } else { "\t[changed]" }
        );
    }
    s + "----------------- End -------------------\n"
}

fn main() -> Result<()> {
    // `--device cuda-emu:memcheck|racecheck` restarts the program with the sanitizer runtime first.
    pix2pix::device::emu::reexec_for_sanitizer()?;
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    pix2pix::device::cpu::on_pool(|| run(&cli, &matches))
}

fn run(cli: &Cli, matches: &clap::ArgMatches) -> Result<()> {
    match &cli.command {
        Command::Train(a) => {
            let sub = matches.subcommand_matches("train").expect("train matched");
            cli::train::run_train(a, options_text(sub))
        }
        Command::Prepare(a) => pix2pix::data::prepare::run_prepare(a),
        Command::Cartoonize(a) => pix2pix::data::prepare::run_cartoonize(a),
        Command::Styles(a) => pix2pix::data::prepare::style_gallery(&a.out, a.photo.as_deref()),
        Command::Demo(a) => cli::demo::demo(a),
        Command::Test(a) => cli::train::run_test_cmd(a),
        Command::Eval(a) => cli::eval::eval(a),
        Command::Plot(a) => cli::eval::plot(a),
        Command::Study(a) => cli::study::study(a),
        Command::Gradcheck(a) => cli::gradcheck::gradcheck(a),
        Command::Init(a) => cli::step::init(a),
        Command::Step(a) => cli::step::step(a),
    }
}
