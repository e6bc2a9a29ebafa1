//! `lineage inspect DIR [--json]`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use lineage_loaders::discover;
use lineage_loaders::inspect::{Inspection, inspect_zoo_with};

use crate::options::{Plan, SelectionArgs};

/// Arguments of `lineage inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Zoo folder (runs of checkpoints, in any supported layout).
    pub dir: PathBuf,
    /// Print the stable JSON report instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also read every tensor's values and report NaN or infinite ones (`non_finite`); reads the
    /// whole zoo, where the default reads headers only.
    #[arg(long)]
    pub scan: bool,
    #[command(flatten)]
    pub select: SelectionArgs,
}

/// Runs the command. Exit code 1 when no readable checkpoint was found.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.options(None, &Plan::default())?;
    let (zoo, warnings) = selection.select(&discover(&args.dir))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let inspection = inspect_zoo_with(zoo, args.scan, &selection.tensors()?);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", render(&inspection));
    }
    Ok(if inspection.summary.n_checkpoints == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Human-readable report.
fn render(ins: &Inspection) -> String {
    let mut out = String::new();
    let s = &ins.summary;
    let _ = writeln!(
        out,
        "zoo {}: {} runs, {} checkpoints, {} distinct steps, {} parameters each, {} on disk, logs for {} run(s)",
        ins.root.display(),
        s.n_runs,
        s.n_checkpoints,
        s.steps.len(),
        s.n_params.map_or("?".into(), group_thousands),
        human_bytes(s.total_bytes),
        s.runs_with_logs,
    );
    let width = ins.runs.iter().map(|r| r.name.len()).max().unwrap_or(3).max(3);
    let _ = writeln!(
        out,
        "\n{:width$}  {:>5}  {:13}  {:8}  {:>10}  {:>9}  steps",
        "run", "ckpts", "format", "dtype", "params", "size"
    );
    for run in &ins.runs {
        let mut formats: Vec<&str> = run.steps.iter().map(|s| s.format.as_str()).collect();
        formats.dedup();
        let mut dtypes: Vec<&str> = run.steps.iter().map(|s| s.dtype.as_str()).collect();
        dtypes.dedup();
        let steps: Vec<String> = run.steps.iter().map(|s| s.step.to_string()).collect();
        let _ = writeln!(
            out,
            "{:width$}  {:>5}  {:13}  {:8}  {:>10}  {:>9}  {}",
            run.name,
            run.steps.len(),
            formats.join(","),
            dtypes.join(","),
            run.steps.first().map_or("-".into(), |s| group_thousands(s.n_params)),
            human_bytes(run.steps.iter().map(|s| s.bytes).sum()),
            abbreviate(&steps),
        );
    }
    if ins.problems.is_empty() {
        let _ = writeln!(out, "\nno problems found");
    } else {
        let _ = writeln!(out, "\n{} problem(s):", ins.problems.len());
        for p in &ins.problems {
            let kind = serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = writeln!(out, "  [{kind}] {}", p.message);
        }
    }
    out
}

/// `1234567` -> `1,234,567`.
fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a binary unit.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Shows at most 8 steps: the first 4, an ellipsis and the last 3.
fn abbreviate(steps: &[String]) -> String {
    if steps.len() <= 8 {
        steps.join(" ")
    } else {
        format!("{} ... {}", steps[..4].join(" "), steps[steps.len() - 3..].join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(group_thousands(26122), "26,122");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
    }
}
