//! The analysis flags shared by `lineage batch` and `lineage merge`, the `--plan` file, and their
//! translation into core's [`AnalysisOptions`]: flags win over the plan, the plan over core's
//! defaults (defined once, in `lineage_core::pipeline::options`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lineage_core::AnalysisOptions;
use lineage_core::Named;
use lineage_core::data::eval_sets::EvalSet;
use lineage_core::methods::basins::ClusterMethod;
use lineage_core::methods::interpolation::BarrierKind;
use lineage_core::models::cnn::{BnMode, BnOptions};
use lineage_core::models::matmul::MatmulPrecision;
use lineage_core::pipeline::options::{BasinOptions, RepresentationOptions};
use lineage_core::pipeline::plan::PairSets;
use lineage_core::pipeline::selection::SelectionOptions;

/// Basin clustering flags.
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

/// Flags of the representation and dynamics analyses (kept as `views` on the command line and in
/// `report.json`).
#[derive(Debug, Clone, clap::Args)]
pub struct RepresentationArgs {
    /// Hidden layer (0-based) for representation similarity and probes [default: the last hidden layer].
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,
    /// Skip the representation and dynamics views (similarity, probes, trajectories, code length, training map).
    #[arg(long)]
    pub no_views: bool,
    /// Skip the linear probes (one logistic regression per checkpoint).
    #[arg(long)]
    pub no_probes: bool,
}

/// BatchNorm flags: how the statistics of interpolated models with BatchNorm are obtained.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BnArgs {
    /// BatchNorm statistics of interpolated models: interpolate (blended like every tensor; biased
    /// by variance collapse), reset (recomputed in train-mode passes over the reset set) or repair
    /// (REPAIR: each channel's output mean and std blended from the endpoints', then reset). With
    /// reset and repair, checkpoints are evaluated with recomputed statistics too [default: reset].
    #[arg(long, value_name = "MODE")]
    pub bn: Option<String>,
    /// Images the BatchNorm statistics are computed on (a file like --data; labels unused)
    /// [default: the eval set].
    #[arg(long, value_name = "FILE")]
    pub bn_data: Option<PathBuf>,
    /// Number of reset images (the first N of the reset set) [default: 512].
    #[arg(long, value_name = "N")]
    pub bn_examples: Option<usize>,
    /// Images per train-mode pass of the reset [default: 128].
    #[arg(long, value_name = "N")]
    pub bn_batch: Option<usize>,
}

impl BnArgs {
    /// The BatchNorm options: flags, then the plan, then defaults.
    pub fn options(&self, plan: &Plan) -> anyhow::Result<BnOptions> {
        let defaults = BnOptions::default();
        let mode = match self.bn.as_deref().or(plan.bn.as_deref()) {
            Some(name) => BnMode::from_name(name).with_context(|| {
                let names: Vec<&str> = BnMode::ALL.iter().map(|m| m.name()).collect();
                format!("--bn {name}: expected one of {}", names.join(", "))
            })?,
            None => defaults.mode,
        };
        Ok(BnOptions {
            mode,
            data: self.bn_data.clone().or(plan.bn_data.clone()),
            examples: self.bn_examples.or(plan.bn_examples).unwrap_or(defaults.examples),
            batch: self.bn_batch.or(plan.bn_batch).unwrap_or(defaults.batch),
        })
    }
}

/// Which runs, steps and tensors to read (`lineage batch` and `lineage inspect`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectionArgs {
    /// Only runs whose name matches this glob (`*` matches any text, `?` one character); repeatable,
    /// a run is kept when any pattern matches.
    #[arg(long = "runs", value_name = "GLOB")]
    pub runs: Vec<String>,
    /// Only these steps: steps and ranges `start:stop[:stride]`, comma-separated, both ends included,
    /// `k`/`M`/`B` multipliers allowed, e.g. `0,1000:143000:10000` or `:20k`.
    #[arg(long, value_name = "LIST")]
    pub steps: Option<String>,
    /// Of the steps left, keep every K-th (and the last), the same steps for every run.
    #[arg(long, value_name = "K")]
    pub every: Option<u64>,
    /// Only tensors whose (normalised) name matches this regex; repeatable.
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Never read tensors whose name matches this regex (e.g. `^classifier\.`); repeatable.
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
}

impl SelectionArgs {
    /// The selection: each flag given replaces the plan's `[select]` value; `max_examples` comes
    /// from `lineage batch`'s own flag (or the plan).
    pub fn options(&self, max_examples: Option<usize>, plan: &Plan) -> anyhow::Result<SelectionOptions> {
        let planned = plan.select.clone().unwrap_or_default();
        let or_planned = |given: &[String], planned: Vec<String>| {
            if given.is_empty() { planned } else { given.to_vec() }
        };
        let selection = SelectionOptions {
            runs: or_planned(&self.runs, planned.runs),
            steps: self.steps.clone().or(planned.steps),
            every: self.every.or(planned.every),
            max_examples: max_examples.or(planned.max_examples),
            include: or_planned(&self.include, planned.include),
            exclude: or_planned(&self.exclude, planned.exclude),
        };
        selection.validate()?;
        Ok(selection)
    }
}

/// The `--plan` file: the same options as the command line.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Zoo folder.
    pub zoo: Option<PathBuf>,
    /// Eval data: a file, or a table of named sets `{ id = "...", ood = "..." }` (first = basins').
    pub data: Option<PlannedData>,
    /// Name of the eval set the barriers and basins are computed on (default: the first).
    pub basins_on: Option<String>,
    /// `basins` (default) or `all`: the eval sets interpolation paths are computed on.
    pub paths_on: Option<PathsOn>,
    /// Output folder.
    pub out: Option<PathBuf>,
    /// Number of alphas.
    pub alphas: Option<usize>,
    /// Result store folder.
    pub cache: Option<PathBuf>,
    /// Pair sets.
    pub pairs: Option<PairSets>,
    /// Permutation-aligned paths too.
    pub align: Option<bool>,
    /// Clustering method.
    pub cluster: Option<String>,
    /// Clustering threshold.
    pub eps: Option<f64>,
    /// Spectral clusters.
    pub k: Option<usize>,
    /// Barrier definition of the basins.
    pub barrier: Option<BarrierArg>,
    /// Hidden layer of the representations.
    pub layer: Option<usize>,
    /// Whether to compute the representations.
    pub views: Option<bool>,
    /// Device of the transformer and convolutional families.
    pub device: Option<String>,
    /// Precision of the transformers' CPU matrix products (`f32`, `bf16x3`).
    pub matmul: Option<String>,
    /// BatchNorm mode of interpolated models.
    pub bn: Option<String>,
    /// Reset set of the BatchNorm statistics.
    pub bn_data: Option<PathBuf>,
    /// Number of reset images.
    pub bn_examples: Option<usize>,
    /// Images per reset pass.
    pub bn_batch: Option<usize>,
    /// Most checkpoints of a step in memory at once.
    pub models_in_flight: Option<usize>,
    /// Bootstrap resamples (0: off).
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap resamples.
    pub bootstrap_seed: Option<u64>,
    /// Economy mode: `all` or some of `alphas,examples,pairs`.
    pub economy: Option<String>,
    /// `[select]`: runs, steps, every, max_examples, include, exclude.
    pub select: Option<SelectionOptions>,
}

/// The plan's `data`: one file, or named sets in order.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum PlannedData {
    /// `data = "eval.parquet"`.
    File(PathBuf),
    /// `data = { id = "mnli.parquet", ood = "hans.parquet" }`.
    Named(toml::Table),
}

impl PlannedData {
    /// The sets, in the plan's order (an unnamed file is named after itself).
    fn sets(&self) -> anyhow::Result<Vec<EvalSet>> {
        match self {
            Self::File(path) => Ok(vec![EvalSet::unnamed(path)]),
            Self::Named(table) => table
                .iter()
                .map(|(name, value)| {
                    let path = value
                        .as_str()
                        .with_context(|| format!("plan: data.{name} must be a file path"))?;
                    Ok(EvalSet {
                        name: name.clone(),
                        path: PathBuf::from(path),
                    })
                })
                .collect(),
        }
    }
}

/// `--paths-on` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathsOn {
    /// Only the eval set the basins are computed on.
    Basins,
    /// Every eval set.
    All,
}

impl Plan {
    /// Reads a plan; relative paths in it are relative to the plan file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read plan", path.display()))?;
        let mut plan: Plan = toml::from_str(&text).with_context(|| format!("{}: invalid plan", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        [&mut plan.zoo, &mut plan.out, &mut plan.cache, &mut plan.bn_data]
            .into_iter()
            .flatten()
            .for_each(absolute);
        match &mut plan.data {
            Some(PlannedData::File(p)) => absolute(p),
            Some(PlannedData::Named(table)) => {
                for (_, value) in table.iter_mut() {
                    if let Some(text) = value.as_str() {
                        let mut p = PathBuf::from(text);
                        absolute(&mut p);
                        *value = toml::Value::String(p.display().to_string());
                    }
                }
            }
            None => {}
        }
        Ok(plan)
    }
}

/// The eval sets of `lineage batch`: `--data [NAME=]FILE` flags (or the plan's `data`); the one named
/// by `--basins-on` (default: the first) gives barriers and basins. Returns its file, and the sweep
/// options naming it and listing the others.
pub fn eval_sets(
    given: &[String],
    basins_on: Option<&str>,
    plan: &Plan,
) -> anyhow::Result<(PathBuf, Option<String>, Vec<EvalSet>)> {
    let mut sets: Vec<EvalSet> = if given.is_empty() {
        match &plan.data {
            Some(data) => data.sets()?,
            None => anyhow::bail!("missing --data (give it on the command line or in --plan)"),
        }
    } else {
        given.iter().map(|text| EvalSet::parse(text)).collect()
    };
    // Named sets keep their names in the tables even alone; an unnamed file is named after itself.
    let named = if given.is_empty() {
        matches!(plan.data, Some(PlannedData::Named(_)))
    } else {
        // A `NAME=` was split off when the set's path is not the text given.
        given.iter().zip(&sets).any(|(t, s)| s.path != Path::new(t))
    };
    if let Some(name) = basins_on.or(plan.basins_on.as_deref()) {
        let index = sets.iter().position(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
            format!("--basins-on {name}: no eval set has that name ({})", names.join(", "))
        })?;
        let chosen = sets.remove(index);
        sets.insert(0, chosen);
    }
    let basins_set = sets.remove(0);
    let name = (named || !sets.is_empty()).then_some(basins_set.name);
    Ok((basins_set.path, name, sets))
}

impl BasinArgs {
    /// The basin options: flags, then the plan, then defaults.
    pub fn options(&self, plan: &Plan) -> anyhow::Result<BasinOptions> {
        let defaults = BasinOptions::default();
        let name = self.cluster.as_deref().or(plan.cluster.as_deref());
        let name = name.unwrap_or(defaults.method.name());
        Ok(BasinOptions {
            method: ClusterMethod::from_name(name, self.eps.or(plan.eps), self.k.or(plan.k), None)?,
            barrier: self
                .barrier
                .or(plan.barrier)
                .map_or(defaults.barrier, BarrierKind::from),
        })
    }
}

impl RepresentationArgs {
    /// The representation options, or None when skipped.
    pub fn options(&self, plan: &Plan) -> Option<RepresentationOptions> {
        if self.no_views || plan.views == Some(false) {
            return None;
        }
        let defaults = RepresentationOptions::default();
        Some(RepresentationOptions {
            layer: self.layer.or(plan.layer),
            probes: defaults.probes && !self.no_probes,
            ..defaults
        })
    }
}

/// Core's options from the basin and representation flags, the plan, and the compute flags.
pub fn analysis_options(
    basins: &BasinArgs,
    representations: &RepresentationArgs,
    compute: &ComputeArgs,
    plan: &Plan,
) -> anyhow::Result<AnalysisOptions> {
    let defaults = AnalysisOptions::default();
    let matmul = match (compute.matmul, plan.matmul.as_deref()) {
        (Some(flag), _) => flag,
        (None, Some(planned)) => parse_matmul(planned).map_err(|e| anyhow::anyhow!("matmul in the plan: {e}"))?,
        (None, None) => defaults.matmul,
    };
    Ok(AnalysisOptions {
        basins: basins.options(plan)?,
        representations: representations.options(plan),
        device: compute
            .device
            .clone()
            .or(plan.device.clone())
            .unwrap_or(defaults.device),
        matmul,
        sweep: defaults.sweep,
    })
}

/// Where and how the models are computed: the flags shared by the commands that evaluate them.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Where the transformer and convolutional families run: cpu, cuda or cuda:N (CUDA needs a
    /// build with `--features cuda`) [default: cpu]. The mlp family always runs on the CPU.
    #[arg(long)]
    pub device: Option<String>,
    /// How the transformers' CPU matrix products are computed: `f32`, or `bf16x3` (each operand
    /// split into two bf16 parts, three bf16 products accumulated in f32 on Intel AMX tiles: about
    /// 4e-6 relative error per product instead of f32's 1e-7, BERT-base paths about 1.5x and
    /// Pythia-160m's 1.7x faster; on a processor without AMX the products stay f32, with a
    /// warning). Results are cached apart from f32's [default: f32].
    #[arg(long, value_name = "PRECISION", value_parser = parse_matmul)]
    pub matmul: Option<MatmulPrecision>,
}

/// A `--matmul` value.
fn parse_matmul(name: &str) -> Result<MatmulPrecision, String> {
    MatmulPrecision::parse(name).ok_or_else(|| {
        format!(
            "unknown precision `{name}` (one of {})",
            MatmulPrecision::NAMES.join(", ")
        )
    })
}
