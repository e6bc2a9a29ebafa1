//! `lineage demo`: trains a small zoo on built-in data and analyses it, offline, in seconds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lineage_core::data::eval_sets::EvalSet;
use lineage_core::models::cnn::vgg::Layer;
use lineage_core::train::{ConvLayers, EVAL_FILE, OOD_EVAL_FILE, Recipe, ShortcutSpec, Task, TrainConfig, train_zoo};
use lineage_core::{AnalysisOptions, analyse};
use lineage_loaders::discover;

use crate::summary::{print_warnings, print_zoo_problems, summary};
use crate::terminal_progress::TerminalProgress;

/// Arguments of `lineage demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo zoo (`zoo/`) and its analysis (`results/`).
    #[arg(long, default_value = "lineage-demo")]
    pub out: PathBuf,
    /// Only print the summary and write tables and figures; do not open the desktop app afterwards.
    #[arg(long)]
    pub no_gui: bool,
    /// Zoo recipe: `families` (3 inits x 3 data orders) or `forks` (one parent, children forked at 4 steps).
    #[arg(long, default_value = "families")]
    pub recipe: String,
    /// Training task: `digits` (the bundled UCI digits), `modular-addition` ((a + b) mod p from one-hot
    /// a and b; half of the p^2 pairs train, the other half is the eval set) or `shortcut` (a 4-bit
    /// parity that a spurious input also gives away, except on an out-of-distribution eval set: the
    /// analysis uses both sets, `id` and `ood`, and prints each basin's error on each).
    #[arg(long, default_value = "digits")]
    pub task: String,
    /// The modulus p of `--task modular-addition` (at least 12, so the p^2 / 2 training pairs fill a batch).
    #[arg(long, default_value_t = 59)]
    pub modulus: usize,
    /// The model: `mlp` (64-128-128-10) or `cnn` (the digits as 1x8x8 images: two 3x3 conv +
    /// BatchNorm + ReLU + 2x2 max-pool stages of 8 and 16 channels, then linear layers of 32 and
    /// 10, torchvision's VGG names; analysed with `--bn reset`). `cnn` needs `--task digits`.
    #[arg(long, default_value = "mlp")]
    pub model: String,
}

/// Runs the command.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let recipe = match args.recipe.as_str() {
        "families" => Recipe::Families { inits: 3, orders: 3 },
        "forks" => Recipe::Forks {
            fork_steps: vec![0, 29, 120, 490],
            children_per_fork: 2,
        },
        other => anyhow::bail!("unknown recipe `{other}` (expected `families` or `forks`)"),
    };
    let (task, suffix) = match args.task.as_str() {
        "digits" => (Task::Digits, String::new()),
        "modular-addition" => {
            anyhow::ensure!(args.modulus >= 2, "--modulus must be at least 2");
            let task = Task::ModularAddition {
                modulus: args.modulus,
                train_fraction: 0.5,
                split_seed: 0,
            };
            (task, format!("-mod{}", args.modulus))
        }
        "shortcut" => (Task::Shortcut(SHORTCUT), "-shortcut".to_string()),
        other => anyhow::bail!("unknown task `{other}` (expected `digits`, `modular-addition` or `shortcut`)"),
    };
    let (config, suffix) = match args.model.as_str() {
        "mlp" => (
            TrainConfig {
                task,
                ..TrainConfig::default()
            },
            suffix,
        ),
        "cnn" => {
            anyhow::ensure!(
                task == Task::Digits,
                "--model cnn trains on images: it needs --task digits (the 8x8 digits)"
            );
            (cnn_config(), format!("{suffix}-cnn"))
        }
        other => anyhow::bail!("unknown model `{other}` (expected `mlp` or `cnn`)"),
    };
    // One folder per recipe and task, so a zoo of another task is never reused by mistake.
    let zoo_dir = args.out.join(format!("zoo-{}{suffix}", args.recipe));
    if is_trained(&zoo_dir) {
        eprintln!("demo: reusing the zoo trained earlier in {}", zoo_dir.display());
    } else {
        if zoo_dir.exists() {
            // A zoo cut short by an interrupted demo: training takes seconds, so start it afresh.
            std::fs::remove_dir_all(&zoo_dir)
                .with_context(|| format!("{}: cannot remove the unfinished zoo", zoo_dir.display()))?;
        }
        let started = std::time::Instant::now();
        let zoo = train_zoo(&recipe, &config, &zoo_dir, &TerminalProgress::new())?;
        std::fs::write(zoo_dir.join(COMPLETE_MARKER), b"")
            .with_context(|| format!("{}: cannot write", zoo_dir.join(COMPLETE_MARKER).display()))?;
        eprintln!(
            "demo: trained {} runs of a {}-parameter {} on {} in {:.1} s -> {}",
            zoo.runs.len(),
            zoo.n_params,
            zoo.model,
            match config.task {
                Task::Digits => "the UCI digits".to_string(),
                Task::ModularAddition { modulus, .. } => format!("modular addition mod {modulus}"),
                Task::Shortcut(spec) => format!(
                    "{}-bit parity with a shortcut input (strength {})",
                    spec.parity_bits, spec.spurious
                ),
            },
            started.elapsed().as_secs_f64(),
            zoo_dir.display()
        );
    }
    let data = zoo_dir.join(EVAL_FILE);
    let out = args.out.join(format!("results-{}{suffix}", args.recipe));
    let mut options = AnalysisOptions::default();
    if let Task::Shortcut(_) = config.task {
        // Basins from the in-distribution set; every checkpoint is also scored out of distribution.
        options.sweep.data_name = Some("id".into());
        options.sweep.more_sets = vec![EvalSet {
            name: "ood".into(),
            path: zoo_dir.join(OOD_EVAL_FILE),
        }];
    }
    let _claim = lineage_core::output::lock::OutputLock::claim(&out)?;
    let zoo = discover(&zoo_dir);
    print_zoo_problems(&zoo);
    let analysis = analyse(&zoo, &data, &options, &TerminalProgress::new())?;
    analysis.write(&out)?;
    print_warnings(&analysis, Some(&zoo));
    print!("{}", summary(&analysis, &out));
    if !args.no_gui && !crate::gui::display_available() {
        eprintln!(
            "demo: no display (DISPLAY is not set): tables and figures are written, the desktop app is not opened"
        );
    } else if !args.no_gui {
        eprintln!("demo: opening the desktop app on {}", zoo_dir.display());
        crate::gui::run(Some(zoo_dir.clone()), Some(data), options)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo's shortcut task: 16 random ±1 bits, the label their first 4 bits' parity, and a shortcut
/// input of strength 0.08 (train set 2,048 examples, eval sets 500 each, as the digits demo). A 4-bit parity takes a
/// few hundred steps to learn, and how many depends on the init; a strong shortcut is learned first
/// by every run and a weak one by none, and at this strength the race goes either way depending
/// on the init (not on the data order), so different init families end in different strategies.
const SHORTCUT: ShortcutSpec = ShortcutSpec {
    bits: 16,
    parity_bits: 4,
    spurious: 0.08,
    train_examples: 2048,
    eval_examples: 500,
    sample_seed: 0,
};

/// The CNN demo: the digits as 1x8x8 images, conv(8) BN ReLU pool, conv(16) BN ReLU pool (2x2
/// maps), a hidden linear layer of 32 (the layer the representation views read), then the 10
/// classes; 500 steps (its training loss is as low at 500 as at 1,000, and the basins are
/// settled from step 29 on), otherwise the MLP demo's settings.
fn cnn_config() -> TrainConfig {
    TrainConfig {
        hidden: vec![32],
        total_steps: 500,
        conv: Some(ConvLayers {
            input_shape: [1, 8, 8],
            layers: vec![Layer::Conv(8), Layer::Pool, Layer::Conv(16), Layer::Pool],
            batch_norm: true,
        }),
        ..TrainConfig::default()
    }
}

/// Written once the demo zoo is fully trained, so an interrupted demo retrains and a finished one does not.
const COMPLETE_MARKER: &str = ".lineage-demo-complete";

fn is_trained(zoo_dir: &Path) -> bool {
    zoo_dir.join(COMPLETE_MARKER).is_file()
}
