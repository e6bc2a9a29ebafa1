//! `lineage batch DIR --data FILE --out OUT`: the headless analysis for papers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lineage_core::models::cnn::BnOptions;
use lineage_core::output::lock::OutputLock;
use lineage_core::pipeline::economy::EconomyOptions;
use lineage_core::pipeline::plan::Shard;
use lineage_core::pipeline::selection::SelectionOptions;
use lineage_core::{AnalysisOptions, Named, analyse};
use lineage_loaders::discover;

use crate::options::{
    BasinArgs, BnArgs, ComputeArgs, PathsOn, Plan, RepresentationArgs, SelectionArgs, analysis_options, eval_sets,
};
use crate::summary::{print_warnings, print_zoo_problems, summary};
use crate::terminal_progress::TerminalProgress;

/// Arguments of `lineage batch`. Every option can also come from `--plan plan.toml` (flags win).
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Zoo folder (runs of checkpoints, in any supported layout).
    pub dir: Option<PathBuf>,
    /// Eval data: .safetensors / .npz (`inputs`, `labels`) or .parquet (`inputs`/`input_ids`, `labels`).
    /// Repeatable as named sets, `--data id=mnli.parquet --data ood=hans.parquet`: every checkpoint is
    /// evaluated on each; the first (or `--basins-on NAME`) gives the barriers and basins.
    #[arg(long, value_name = "[NAME=]FILE")]
    pub data: Vec<String>,
    /// The eval set barriers and basins are computed on [default: the first --data].
    #[arg(long, value_name = "NAME")]
    pub basins_on: Option<String>,
    /// Eval sets the interpolation paths are computed on: the basins' set, or all [default: basins].
    #[arg(long, value_enum)]
    pub paths_on: Option<PathsOn>,
    /// Output folder for the Parquet tables, figures and report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of interpolation points between two checkpoints, endpoints included (>= 3) [default: 11].
    #[arg(long)]
    pub alphas: Option<usize>,
    /// Result cache folder [default: $LINEAGE_CACHE, else $XDG_CACHE_HOME/lineage/results, else ~/.cache/lineage/results].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Also interpolate every pair with B permutation-aligned to A (Git Re-Basin weight matching):
    /// rows with `aligned = true` next to the raw ones (basins use the raw barriers).
    #[arg(long)]
    pub align: bool,
    /// Skip the checkpoint-vs-final-checkpoint pairs (commitment).
    #[arg(long)]
    pub no_to_final: bool,
    /// Skip the seed pairs at each step.
    #[arg(long)]
    pub no_seeds: bool,
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Evaluate only the first N examples of the eval data (Juneja et al. use 512).
    #[arg(long, value_name = "N")]
    pub max_examples: Option<usize>,
    #[command(flatten)]
    pub basins: BasinArgs,
    #[command(flatten)]
    pub views: RepresentationArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(flatten)]
    pub bn: BnArgs,
    /// Most checkpoints of a step held in memory at once: peak memory follows it, not the number of
    /// runs (results do not depend on it) [default: twice the worker threads].
    #[arg(long, value_name = "N")]
    pub models_in_flight: Option<usize>,
    /// Bootstrap resamples of the eval examples (0: off): a 95% interval on every barrier
    /// (`loss_barrier_lo`/`_hi`, `error_barrier_lo`/`_hi`) and `co_membership.parquet`, how often
    /// resampling puts two seeds in one basin [default: 1000].
    #[arg(long, value_name = "B")]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap resamples [default: 0].
    #[arg(long, value_name = "SEED")]
    pub bootstrap_seed: Option<u64>,
    /// Economy mode: adaptive alphas, sequential examples and (threshold clustering) pair pruning,
    /// for the same basins with fewer forward passes; `report.json` counts the work done. `--economy`
    /// alone turns on all three; PARTS picks some (`alphas,examples,pairs`). Off: the exact grid.
    #[arg(long, value_name = "PARTS", num_args = 0..=1, default_missing_value = "all")]
    pub economy: Option<String>,
    /// Compute only share K of N (1-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/16`; combine with `lineage merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Write a SLURM job-array script running this batch as N shards (to OUT/slurm.sbatch) and exit.
    #[arg(long, value_name = "N")]
    pub emit_slurm: Option<usize>,
    /// TOML file holding every option (zoo, data, out, alphas, cache, pairs, align, bootstrap,
    /// bootstrap_seed, economy, cluster, eps, k, barrier, and a `[select]` table: runs, steps, every, max_examples, include, exclude), so a paper's figures
    /// are one reproducible command.
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: &BatchArgs) -> anyhow::Result<ExitCode> {
    let plan = match &args.plan {
        Some(path) => Plan::read(path)?,
        None => Plan::default(),
    };
    let required = |flag: Option<&PathBuf>, planned: Option<&PathBuf>, what: &str| {
        flag.or(planned)
            .cloned()
            .with_context(|| format!("missing {what} (give it on the command line or in --plan)"))
    };
    let (data, data_name, more_sets) = eval_sets(&args.data, args.basins_on.as_deref(), &plan)?;
    let mut options = options(args, &plan)?;
    options.sweep.data_name = data_name;
    options.sweep.more_sets = more_sets;
    let job = Job {
        zoo: required(args.dir.as_ref(), plan.zoo.as_ref(), "the zoo folder")?,
        data,
        out: required(args.out.as_ref(), plan.out.as_ref(), "--out")?,
        options,
    };
    if let Some(n) = args.emit_slurm {
        let script = slurm_script(&job, args, n)?;
        std::fs::create_dir_all(&job.out).with_context(|| format!("{}: cannot create", job.out.display()))?;
        let path = job.out.join("slurm.sbatch");
        std::fs::write(&path, script).with_context(|| format!("{}: cannot write", path.display()))?;
        println!("wrote {} (submit with `sbatch {}`)", path.display(), path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Claimed before any work: a folder that cannot be written, or that another run is writing,
    // fails now rather than after the computation.
    let _claim = OutputLock::claim(&job.out)?;
    let zoo = discover(&job.zoo);
    print_zoo_problems(&zoo);
    let analysis = analyse(&zoo, &job.data, &job.options, &TerminalProgress::new())?;
    analysis.write(&job.out)?;
    print_warnings(&analysis, Some(&zoo));
    print!("{}", summary(&analysis, &job.out));
    Ok(ExitCode::SUCCESS)
}

/// One batch job: a zoo, its eval data, where to write, and how.
struct Job {
    zoo: PathBuf,
    data: PathBuf,
    out: PathBuf,
    options: AnalysisOptions,
}

/// The analysis options of `lineage batch`: flags, then the plan, then core's defaults.
fn options(args: &BatchArgs, plan: &Plan) -> anyhow::Result<AnalysisOptions> {
    let mut options = analysis_options(&args.basins, &args.views, &args.compute, plan)?;
    let sweep = &mut options.sweep;
    if let Some(pairs) = plan.pairs {
        sweep.pairs = pairs;
    }
    sweep.pairs.seeds &= !args.no_seeds;
    sweep.pairs.to_final &= !args.no_to_final;
    if let Some(alphas) = args.alphas.or(plan.alphas) {
        sweep.alphas = alphas;
    }
    if let Some(cache) = args.cache.clone().or(plan.cache.clone()) {
        sweep.cache_dir = cache;
    }
    sweep.align |= args.align || plan.align.unwrap_or(false);
    sweep.shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    sweep.selection = args.select.options(args.max_examples, plan)?;
    sweep.paths_on_all = args.paths_on.or(plan.paths_on) == Some(PathsOn::All);
    sweep.in_flight = args.models_in_flight.or(plan.models_in_flight);
    if let Some(b) = args.bootstrap.or(plan.bootstrap) {
        sweep.bootstrap = b;
    }
    if let Some(seed) = args.bootstrap_seed.or(plan.bootstrap_seed) {
        sweep.bootstrap_seed = seed;
    }
    sweep.bn = args.bn.options(plan)?;
    if let Some(parts) = args.economy.as_deref().or(plan.economy.as_deref()) {
        sweep.economy = EconomyOptions::parse(parts)?;
    }
    Ok(options)
}

/// A SLURM job-array script: task i runs shard i/N into OUT/shard-i; a dependent job merges them.
fn slurm_script(job: &Job, args: &BatchArgs, n: usize) -> anyhow::Result<String> {
    anyhow::ensure!(n >= 1, "--emit-slurm needs at least 1 shard");
    anyhow::ensure!(
        job.options.sweep.economy.is_off(),
        "--economy decides each step with all its runs at hand; it cannot run as --emit-slurm shards"
    );
    let exe = std::env::current_exe().context("cannot locate the lineage executable")?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let quote = |p: &Path| shell_quote(&abs(p).display().to_string());
    let sweep = &job.options.sweep;
    let named = |name: &str, path: &Path| shell_quote(&format!("{name}={}", abs(path).display()));
    let mut data = match &sweep.data_name {
        Some(name) => format!("--data {}", named(name, &job.data)),
        None => format!("--data {}", quote(&job.data)),
    };
    for set in &sweep.more_sets {
        data.push_str(&format!(" --data {}", named(&set.name, &set.path)));
    }
    if sweep.paths_on_all {
        data.push_str(" --paths-on all");
    }
    let mut common = format!("{data} --alphas {} --cache {}", sweep.alphas, quote(&sweep.cache_dir));
    if !job.options.sweep.pairs.seeds {
        common.push_str(" --no-seeds");
    }
    if !job.options.sweep.pairs.to_final {
        common.push_str(" --no-to-final");
    }
    if job.options.sweep.align {
        common.push_str(" --align");
    }
    common.push_str(&format!(
        " --bootstrap {} --bootstrap-seed {}",
        sweep.bootstrap, sweep.bootstrap_seed
    ));
    common.push_str(&selection_flags(&job.options.sweep.selection));
    common.push_str(&bn_flags(&sweep.bn));
    let default_device = AnalysisOptions::default().device;
    if job.options.device != default_device {
        common.push_str(&format!(" --device {}", job.options.device));
    }
    let matmul_flag = if job.options.matmul != AnalysisOptions::default().matmul {
        format!(" --matmul {}", job.options.matmul.name())
    } else {
        String::new()
    };
    common.push_str(&matmul_flag);
    let mut basin_flags = format!(
        " --cluster {} --barrier {}",
        job.options.basins.method.name(),
        job.options.basins.barrier.name()
    );
    if let Some(eps) = args.basins.eps.or(job.options.basins.method.eps()) {
        basin_flags.push_str(&format!(" --eps {eps}"));
    }
    if let Some(k) = args.basins.k {
        basin_flags.push_str(&format!(" --k {k}"));
    }
    // The merge computes the views of the whole zoo (shards do not), with the same flags.
    let mut merge_flags = basin_flags.clone();
    match &job.options.representations {
        None => merge_flags.push_str(" --no-views"),
        Some(views) => {
            if let Some(layer) = views.layer {
                merge_flags.push_str(&format!(" --layer {layer}"));
            }
            if !views.probes {
                merge_flags.push_str(" --no-probes");
            }
        }
    }
    if job.options.device != default_device {
        merge_flags.push_str(&format!(" --device {}", job.options.device));
    }
    merge_flags.push_str(&matmul_flag);
    let out = abs(&job.out);
    let shards: Vec<String> = (1..=n).map(|i| format!("'{}/shard-{i}'", out.display())).collect();
    Ok(format!(
        "#!/bin/bash\n\
         # Written by `lineage batch --emit-slurm {n}`: {n} shards of the analysis of {zoo}.\n\
         # Submit: sbatch {out}/slurm.sbatch   (then the merge job runs after all shards).\n\
         #SBATCH --job-name=lineage\n\
         #SBATCH --array=1-{n}\n\
         #SBATCH --cpus-per-task=4\n\
         #SBATCH --output={out}/shard-%a.log\n\
         set -euo pipefail\n\
         if [ -z \"${{LINEAGE_MERGE:-}}\" ]; then\n\
         \x20 '{exe}' batch {zoo_q} {common}{basin_flags} --out '{out}/shard-'\"$SLURM_ARRAY_TASK_ID\" --shard \"$SLURM_ARRAY_TASK_ID\"/{n}\n\
         \x20 if [ \"$SLURM_ARRAY_TASK_ID\" = 1 ]; then\n\
         \x20   sbatch --dependency=afterok:\"$SLURM_ARRAY_JOB_ID\" --array=1 --export=ALL,LINEAGE_MERGE=1 '{out}/slurm.sbatch'\n\
         \x20 fi\n\
         else\n\
         \x20 '{exe}' merge {shards}{merge_flags} --out '{out}'\n\
         fi\n",
        zoo = abs(&job.zoo).display(),
        zoo_q = quote(&job.zoo),
        out = out.display(),
        exe = exe.display(),
        shards = shards.join(" "),
    ))
}

/// `s` single-quoted for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command-line flags giving `selection` (empty for the default), each value shell-quoted.
/// The BatchNorm flags of `bn` (all of them when one differs from the defaults).
fn bn_flags(bn: &BnOptions) -> String {
    if *bn == BnOptions::default() {
        return String::new();
    }
    let mut flags = format!(
        " --bn {} --bn-examples {} --bn-batch {}",
        bn.mode.name(),
        bn.examples,
        bn.batch
    );
    if let Some(data) = &bn.data {
        let data = std::path::absolute(data).unwrap_or_else(|_| data.clone());
        flags.push_str(&format!(" --bn-data {}", shell_quote(&data.display().to_string())));
    }
    flags
}

fn selection_flags(selection: &SelectionOptions) -> String {
    let mut flags = String::new();
    let mut add = |flag: &str, value: &str| flags.push_str(&format!(" --{flag} {}", shell_quote(value)));
    selection.runs.iter().for_each(|p| add("runs", p));
    selection.steps.iter().for_each(|s| add("steps", s));
    selection.every.iter().for_each(|k| add("every", &k.to_string()));
    selection
        .max_examples
        .iter()
        .for_each(|n| add("max-examples", &n.to_string()));
    selection.include.iter().for_each(|p| add("include", p));
    selection.exclude.iter().for_each(|p| add("exclude", p));
    flags
}
