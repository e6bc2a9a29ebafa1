//! `lineage batch DIR --data FILE --out OUT`: the headless analysis for papers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lineage_core::evaluator_on;
use lineage_core::methods::basins::ClusterMethod;
use lineage_core::models::transformer::device;
use lineage_core::output::report::{BasinSummary, Report};
use lineage_core::pipeline::basins_over_time::{BarrierKind, BasinAnalysis, BasinOptions, analyse_basins};
use lineage_core::pipeline::plan::PairSets;
use lineage_core::pipeline::sweep::{BatchOptions, BatchResult, Shard, run_batch};
use lineage_loaders::discover;

use crate::outputs::write_outputs;
use crate::terminal_progress::TerminalProgress;

/// Arguments of `lineage batch`. Every option can also come from `--plan plan.toml` (flags win).
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Zoo folder (runs of checkpoints, in any supported layout).
    pub dir: Option<PathBuf>,
    /// Eval data: .safetensors / .npz (`inputs`, `labels`) or .parquet (`inputs`/`input_ids`, `labels`).
    #[arg(long)]
    pub data: Option<PathBuf>,
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
    pub basins: BasinArgs,
    #[command(flatten)]
    pub views: super::views::ViewArgs,
    /// Where the transformer families run: cpu, cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`) [default: cpu]. The mlp family always runs on the CPU.
    #[arg(long)]
    pub device: Option<String>,
    /// Compute only share K of N (1-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/16`; combine with `lineage merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Write a SLURM job-array script running this batch as N shards (to OUT/slurm.sbatch) and exit.
    #[arg(long, value_name = "N")]
    pub emit_slurm: Option<usize>,
    /// TOML file holding every option (zoo, data, out, alphas, cache, pairs, align, cluster, eps, k, barrier),
    /// so a paper's figures are one reproducible command.
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

/// Basin clustering options, shared by `batch` and `merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct BasinArgs {
    /// Clustering method for basins: threshold, average-linkage or spectral [default: threshold].
    #[arg(long)]
    pub cluster: Option<String>,
    /// Barrier below which two seeds share a basin [default: 0.1 x mean endpoint loss of the step].
    #[arg(long)]
    pub eps: Option<f64>,
    /// Number of basins for spectral clustering [default: 2].
    #[arg(long)]
    pub k: Option<usize>,
    /// Loss barrier used as the distance between seeds [default: segment].
    #[arg(long, value_enum)]
    pub barrier: Option<BarrierArg>,
}

/// `--barrier` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarrierArg {
    /// Largest bump above the chord of any sub-segment (Juneja et al. 2023).
    Segment,
    /// Bump above the chord between the endpoints (Frankle et al. 2020).
    Endpoint,
}

impl From<BarrierArg> for BarrierKind {
    fn from(arg: BarrierArg) -> Self {
        match arg {
            BarrierArg::Segment => Self::Segment,
            BarrierArg::Endpoint => Self::Endpoint,
        }
    }
}

/// The `--plan` file: the same options as the command line.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    zoo: Option<PathBuf>,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    alphas: Option<usize>,
    cache: Option<PathBuf>,
    pairs: Option<PairSets>,
    align: Option<bool>,
    cluster: Option<String>,
    eps: Option<f64>,
    k: Option<usize>,
    barrier: Option<BarrierArg>,
    layer: Option<usize>,
    views: Option<bool>,
    device: Option<String>,
}

impl Plan {
    /// Reads a plan; relative paths in it are relative to the plan file.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read plan", path.display()))?;
        let mut plan: Plan = toml::from_str(&text).with_context(|| format!("{}: invalid plan", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut plan.zoo, &mut plan.data, &mut plan.out, &mut plan.cache]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(plan)
    }
}

impl BasinArgs {
    /// The basin options, flags first, then the plan, then defaults.
    pub fn options(&self, plan: &Plan) -> anyhow::Result<BasinOptions> {
        let method = self
            .cluster
            .as_deref()
            .or(plan.cluster.as_deref())
            .unwrap_or("threshold");
        Ok(BasinOptions {
            method: ClusterMethod::from_name(method, self.eps.or(plan.eps), self.k.or(plan.k), None)?,
            barrier: self.barrier.or(plan.barrier).unwrap_or(BarrierArg::Segment).into(),
        })
    }
}

/// The default result cache folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LINEAGE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("lineage").join("results")
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
    let mut pairs = plan.pairs.unwrap_or_default();
    pairs.seeds &= !args.no_seeds;
    pairs.to_final &= !args.no_to_final;
    let cache_dir = args
        .cache
        .clone()
        .or(plan.cache.clone())
        .unwrap_or_else(default_cache_dir);
    let job = Analysis {
        zoo: required(args.dir.as_ref(), plan.zoo.as_ref(), "the zoo folder")?,
        data: required(args.data.as_ref(), plan.data.as_ref(), "--data")?,
        out: required(args.out.as_ref(), plan.out.as_ref(), "--out")?,
        views: args.views.options(plan.layer, plan.views, pairs, &cache_dir),
        options: BatchOptions {
            alphas: args.alphas.or(plan.alphas).unwrap_or(11),
            pairs,
            cache_dir,
            align: args.align || plan.align.unwrap_or(false),
            shard: args.shard.as_deref().map(Shard::parse).transpose()?,
        },
        basins: args.basins.options(&plan)?,
        device: args.device.clone().or(plan.device).unwrap_or_else(|| "cpu".into()),
    };
    if let Some(n) = args.emit_slurm {
        let script = slurm_script(&job, args, n)?;
        std::fs::create_dir_all(&job.out).with_context(|| format!("{}: cannot create", job.out.display()))?;
        let path = job.out.join("slurm.sbatch");
        std::fs::write(&path, script).with_context(|| format!("{}: cannot write", path.display()))?;
        println!("wrote {} (submit with `sbatch {}`)", path.display(), path.display());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", analyse(&job)?);
    Ok(ExitCode::SUCCESS)
}

/// A SLURM job-array script: task i runs shard i/N into OUT/shard-i; a dependent job merges them.
fn slurm_script(job: &Analysis, args: &BatchArgs, n: usize) -> anyhow::Result<String> {
    anyhow::ensure!(n >= 1, "--emit-slurm needs at least 1 shard");
    let exe = std::env::current_exe().context("cannot locate the lineage executable")?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let quote = |p: &Path| format!("'{}'", abs(p).display().to_string().replace('\'', "'\\''"));
    let mut common = format!(
        "--data {} --alphas {} --cache {}",
        quote(&job.data),
        job.options.alphas,
        quote(&job.options.cache_dir)
    );
    if !job.options.pairs.seeds {
        common.push_str(" --no-seeds");
    }
    if !job.options.pairs.to_final {
        common.push_str(" --no-to-final");
    }
    if job.options.align {
        common.push_str(" --align");
    }
    if job.device != "cpu" {
        common.push_str(&format!(" --device {}", job.device));
    }
    let mut basin_flags = format!(
        " --cluster {} --barrier {}",
        job.basins.method.name(),
        job.basins.barrier.name()
    );
    if let Some(eps) = args.basins.eps.or(job.basins.method.eps()) {
        basin_flags.push_str(&format!(" --eps {eps}"));
    }
    if let Some(k) = args.basins.k {
        basin_flags.push_str(&format!(" --k {k}"));
    }
    // The merge computes the views of the whole zoo (shards do not), with the same flags.
    let mut merge_flags = basin_flags.clone();
    match &job.views {
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
    if job.device != "cpu" {
        merge_flags.push_str(&format!(" --device {}", job.device));
    }
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

/// One analysis: a zoo, its eval data, where to write, and how.
pub struct Analysis {
    /// Zoo folder.
    pub zoo: PathBuf,
    /// Eval data file.
    pub data: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Interpolation options.
    pub options: BatchOptions,
    /// Basin options.
    pub basins: BasinOptions,
    /// Representation and dynamics views (None: skipped; never computed for a shard).
    pub views: Option<lineage_core::pipeline::representations::ViewOptions>,
    /// Device of the transformer families: `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

/// Discovers the zoo, computes (or reuses) every evaluation, finds the basins and writes tables and
/// report.json; warnings go to stderr. Returns the summary to print.
pub fn analyse(job: &Analysis) -> anyhow::Result<String> {
    let zoo = discover(&job.zoo);
    for problem in &zoo.problems {
        eprintln!("warning: {problem}");
    }
    let evaluators = evaluator_on(device(&job.device)?);
    let progress = TerminalProgress::new();
    let started = std::time::Instant::now();
    let result = run_batch(&zoo, &job.data, &job.options, &evaluators, &progress)?;
    // A shard holds only part of the pairs: basins are found after `lineage merge`.
    let basins = match job.options.shard {
        None => Some(analyse_basins(&result, &job.basins)?),
        Some(_) => None,
    };
    let elapsed = started.elapsed();
    let basin_summary = basins.as_ref().map(|b| BasinSummary::new(&job.basins, b));
    let mut report = Report::new(&job.zoo, &job.data, &job.options, &result, basin_summary, elapsed);
    for warning in result.warnings.iter().skip(zoo.problems.len()) {
        eprintln!("warning: {warning}");
    }
    // A shard holds only part of the checkpoints: views are computed on whole zoos.
    let views = match job.views.as_ref().filter(|_| job.options.shard.is_none()) {
        Some(options) => Some(super::views::compute_into_report(
            &zoo,
            &job.data,
            options,
            &evaluators,
            &result.evals,
            &progress,
            &mut report,
        )?),
        None => None,
    };
    write_outputs(&job.out, &result, basins.as_ref(), &report)?;
    let mut text = summary(&result, basins.as_ref(), &job.out, elapsed);
    if let Some(views) = &views {
        text += &super::views::write(&job.out, views)?;
    }
    Ok(text)
}

/// The stdout summary: per step, the seed-pair barriers and the basins found; commitment per run.
pub fn summary(
    result: &BatchResult,
    basins: Option<&BasinAnalysis>,
    out: &Path,
    elapsed: std::time::Duration,
) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} checkpoints, {} interpolation paths ({} units computed, {} from cache) in {:.2} s with {}",
        result.checkpoints.len(),
        result.barriers.iter().filter(|b| !b.aligned).count() / 2,
        result.computed,
        result.cached,
        elapsed.as_secs_f64(),
        result.evaluator
    );
    let Some(basins) = basins else {
        let _ = writeln!(
            text,
            "shard tables and report.json written to {}; combine shards with `lineage merge`",
            out.display()
        );
        return text;
    };
    let _ = writeln!(
        text,
        "\n{:>8}  {:>7}  {:>9}  {:>9}  {:>9}  {:>6}  {:>7}  basins: members",
        "step", "seed", "mean loss", "max loss", "max error", "basins", "eps"
    );
    let _ = writeln!(
        text,
        "{:>8}  {:>7}  {:>9}  {:>9}  {:>9}",
        "", "pairs", "barrier", "barrier", "barrier"
    );
    for tracked in &basins.history.steps {
        let step = tracked.step;
        let rows: Vec<_> = result
            .barriers
            .iter()
            .filter(|b| b.pair == "seeds" && b.kind == "endpoint" && b.step == step && !b.aligned)
            .collect();
        let mean = rows.iter().map(|b| b.loss_barrier).sum::<f64>() / rows.len().max(1) as f64;
        let max_loss = rows.iter().map(|b| b.loss_barrier).fold(0.0, f64::max);
        let max_err = rows.iter().map(|b| b.error_barrier).fold(0.0, f64::max);
        let eps = tracked.method.eps().map_or("-".to_string(), |e| format!("{e:.4}"));
        let members: Vec<String> = tracked
            .basins
            .iter()
            .map(|b| format!("#{} {}", b.id, b.members.join(" ")))
            .collect();
        let _ = writeln!(
            text,
            "{step:>8}  {:>7}  {mean:>9.4}  {max_loss:>9.4}  {max_err:>9.4}  {:>6}  {eps:>7}  {}",
            rows.len(),
            tracked.basins.len(),
            members.join(" | ")
        );
    }
    let aligned: Vec<String> = basins
        .history
        .steps
        .iter()
        .filter_map(|tracked| {
            let rows: Vec<f64> = result
                .barriers
                .iter()
                .filter(|b| b.pair == "seeds" && b.kind == "endpoint" && b.step == tracked.step && b.aligned)
                .map(|b| b.loss_barrier)
                .collect();
            (!rows.is_empty()).then(|| {
                let mean = rows.iter().sum::<f64>() / rows.len() as f64;
                format!("{} {mean:.4}", tracked.step)
            })
        })
        .collect();
    if !aligned.is_empty() {
        let _ = writeln!(
            text,
            "\nmean seed-pair loss barrier after permutation alignment (step barrier): {}",
            aligned.join(", ")
        );
    }
    let committed: Vec<String> = basins
        .commitment
        .iter()
        .map(|(run, step)| format!("{run} {}", step.map_or("never".to_string(), |s| s.to_string())))
        .collect();
    if !committed.is_empty() {
        let _ = writeln!(
            text,
            "\ncommitment step (from then on connected to its own final checkpoint): {}",
            committed.join(", ")
        );
    }
    let _ = writeln!(text, "\ntables, figures and report.json written to {}", out.display());
    text
}
