//! What the headless commands print after an analysis: warnings (stderr) and the summary (stdout):
//! per step, the seed-pair barriers and the basins found; commitment per run; the representations.

use std::fmt::Write as _;
use std::path::Path;

use lineage_core::Analysis;
use lineage_core::methods::interpolation::BarrierKind;
use lineage_core::pipeline::generalization::Generalization;
use lineage_core::pipeline::plan::PairKind;
use lineage_loaders::Zoo;

/// Prints every warning of `analysis` to stderr, except the zoo's own problems (printed when the zoo
/// was discovered, see [`print_zoo_problems`]).
pub fn print_warnings(analysis: &Analysis, zoo: Option<&Zoo>) {
    let already: Vec<&str> = zoo
        .map(|z| z.problems.iter().map(|p| p.message.as_str()).collect())
        .unwrap_or_default();
    for warning in analysis.warnings.iter().filter(|w| !already.contains(&w.as_str())) {
        eprintln!("warning: {warning}");
    }
}

/// Prints the problems found while discovering `zoo` to stderr.
pub fn print_zoo_problems(zoo: &Zoo) {
    for problem in &zoo.problems {
        eprintln!("warning: {problem}");
    }
}

/// The summary of `analysis`, written to `out`.
pub fn summary(analysis: &Analysis, out: &Path) -> String {
    let sweep = &analysis.sweep;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} checkpoints, {} interpolation paths ({} units computed, {} from cache) in {:.2} s with {}",
        sweep.checkpoints.len(),
        sweep.barriers.iter().filter(|b| !b.aligned).count() / 2,
        sweep.counts.computed,
        sweep.counts.cached,
        analysis.elapsed.as_secs_f64(),
        sweep.evaluator
    );
    let passes: u64 = sweep.work.values().map(|w| w.forward_passes).sum();
    let examples: u64 = sweep.work.values().map(|w| w.example_evaluations).sum();
    let mut work = format!("work: {passes} forward passes, {examples} example evaluations");
    let economy = analysis.options.sweep.economy;
    if economy.is_on() {
        work.push_str(&format!(
            " (--economy {}; {} seed pairs pruned)",
            economy.describe(),
            sweep.pruned.len()
        ));
    }
    let _ = writeln!(text, "{work}");
    let Some(basins) = &analysis.basins else {
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
    // Endpoint barriers of the seed pairs at `step`, raw or aligned.
    let seed_barriers = |step: u64, aligned: bool| {
        sweep
            .barriers
            .iter()
            .filter(move |b| b.pair == PairKind::Seeds && b.kind == BarrierKind::Endpoint)
            .filter(move |b| b.step == step && b.aligned == aligned)
    };
    for tracked in &basins.history.steps {
        let rows: Vec<_> = seed_barriers(tracked.step, false).collect();
        // A step without a seed pair (a single run) has no barrier to summarise.
        let shown = |value: f64| {
            if rows.is_empty() {
                "-".to_string()
            } else {
                format!("{value:.4}")
            }
        };
        let mean = shown(rows.iter().map(|b| b.loss_barrier).sum::<f64>() / rows.len().max(1) as f64);
        let max_loss = shown(rows.iter().map(|b| b.loss_barrier).fold(0.0, f64::max));
        let max_err = shown(rows.iter().map(|b| b.error_barrier).fold(0.0, f64::max));
        let eps = tracked.method.eps().map_or("-".to_string(), |e| format!("{e:.4}"));
        let members: Vec<String> = tracked
            .basins
            .iter()
            .map(|b| {
                let unsure = if basins.uncertain.contains(&(tracked.step, b.id)) {
                    "?"
                } else {
                    ""
                };
                format!("#{}{unsure} {}", b.id, b.members.join(" "))
            })
            .collect();
        let _ = writeln!(
            text,
            "{:>8}  {:>7}  {mean:>9}  {max_loss:>9}  {max_err:>9}  {:>6}  {eps:>7}  {}",
            tracked.step,
            rows.len(),
            tracked.basins.len(),
            members.join(" | ")
        );
    }
    if let Some(c) = basins.co_membership.first() {
        let note = if basins.uncertain.is_empty() {
            "every pair of runs is together, or apart, in more than 95% of them"
        } else {
            "#N? = a basin with a run that is with some other run in 5-95% of them (co_membership.parquet)"
        };
        let _ = writeln!(
            text,
            "bootstrap: {} resamples of the eval examples; {note}",
            c.resamples
        );
    }
    let aligned: Vec<String> = basins
        .history
        .steps
        .iter()
        .filter_map(|tracked| {
            let rows: Vec<f64> = seed_barriers(tracked.step, true).map(|b| b.loss_barrier).collect();
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
    if analysis.sweep.other_sets.is_empty() {
        // One eval set: the per-step table above says it all.
    } else if let Some(g) = &analysis.generalization {
        text.push_str(&generalization_table(g));
    }
    let _ = writeln!(text, "\ntables, figures and report.json written to {}", out.display());
    if let Some(r) = &analysis.representations {
        let layer = r.layer.map_or("-".to_string(), |l| l.to_string());
        let _ = writeln!(
            text,
            "views (layer {layer}): {} similarity rows, {} probes, {} trajectory points, {} runs with code lengths \
             ({} units computed, {} from cache)",
            r.similarity.len(),
            r.probes.len(),
            r.trajectories.len(),
            r.code_length.iter().filter(|c| c.prequential_bits.is_some()).count(),
            r.counts.computed,
            r.counts.cached
        );
    }
    text
}

/// Per basin at the last step with basins: its members' mean error (min-max) on each eval set, and
/// the permutation-test p-value of each pair of basins' difference.
fn generalization_table(g: &Generalization) -> String {
    let mut text = String::new();
    let Some(last) = g.basins.iter().map(|r| r.step).max() else {
        return text;
    };
    let _ = writeln!(
        text,
        "\ngeneralization at step {last} (error of each basin's members: mean [min, max]):"
    );
    let _ = writeln!(text, "{:>6}  {:>6}  {:<12}  error", "basin", "runs", "set");
    for r in g.basins.iter().filter(|r| r.step == last) {
        let _ = writeln!(
            text,
            "{:>6}  {:>6}  {:<12}  {:.4} [{:.4}, {:.4}]",
            r.basin, r.n_runs, r.set, r.mean_error, r.min_error, r.max_error
        );
    }
    for c in g.comparisons.iter().filter(|c| c.step == last) {
        let _ = writeln!(
            text,
            "basin {} vs {} on {}: error difference {:+.4}, permutation p = {:.3}",
            c.basin_a, c.basin_b, c.set, c.error_difference, c.p_value
        );
    }
    text
}
