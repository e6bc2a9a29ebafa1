//! Which checkpoint pairs to interpolate (ARCHITECTURE.md, "Pairs").

use serde::{Deserialize, Serialize};

use lineage_loaders::Zoo;

use crate::error::CoreError;
use crate::names::Named;

/// Why two checkpoints are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairKind {
    /// Two runs (seeds) at the same step: the basin view.
    Seeds,
    /// A checkpoint and its own run's final checkpoint: commitment.
    ToFinal,
    /// A fork parent and its child at the same step (from a manifest).
    Fork,
}

impl Named for PairKind {
    const ALL: &'static [Self] = &[Self::Seeds, Self::ToFinal, Self::Fork];

    fn name(self) -> &'static str {
        match self {
            Self::Seeds => "seeds",
            Self::ToFinal => "to_final",
            Self::Fork => "fork",
        }
    }
}

/// A checkpoint reference: run name and step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointId {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
}

/// One interpolation to compute: theta(a) = (1-a) A + a B.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    /// Why the pair is compared.
    pub kind: PairKind,
    /// Endpoint at alpha = 0.
    pub a: CheckpointId,
    /// Endpoint at alpha = 1.
    pub b: CheckpointId,
}

impl Pair {
    /// The step the pair is reported under (the step of A).
    pub fn step(&self) -> u64 {
        self.a.step
    }
}

/// Which pair sets to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSets {
    /// All seed pairs at each step.
    pub seeds: bool,
    /// Each checkpoint vs its run's final checkpoint.
    pub to_final: bool,
    /// Fork parents vs children.
    pub forks: bool,
}

impl PairSets {
    /// No pair at all: checkpoint evaluations only.
    pub const NONE: Self = Self {
        seeds: false,
        to_final: false,
        forks: false,
    };
}

impl Default for PairSets {
    fn default() -> Self {
        Self {
            seeds: true,
            to_final: true,
            forks: true,
        }
    }
}

/// Plans every pair of the zoo, sorted by (step, kind, runs): deterministic for sharding and tables.
pub fn plan_pairs(zoo: &Zoo, sets: PairSets) -> Vec<Pair> {
    let id = |run: &str, step: u64| CheckpointId {
        run: run.to_string(),
        step,
    };
    let mut pairs = Vec::new();
    if sets.seeds {
        for step in zoo.steps() {
            let present: Vec<&str> = zoo
                .runs
                .iter()
                .filter(|r| r.at(step).is_some())
                .map(|r| r.name.as_str())
                .collect();
            for (i, a) in present.iter().enumerate() {
                for b in &present[i + 1..] {
                    pairs.push(Pair {
                        kind: PairKind::Seeds,
                        a: id(a, step),
                        b: id(b, step),
                    });
                }
            }
        }
    }
    if sets.to_final {
        for run in &zoo.runs {
            let Some(last) = run.last() else { continue };
            for c in run.checkpoints.iter().filter(|c| c.step < last.step) {
                pairs.push(Pair {
                    kind: PairKind::ToFinal,
                    a: id(&run.name, c.step),
                    b: id(&run.name, last.step),
                });
            }
        }
    }
    if sets.forks {
        for child in &zoo.runs {
            let Some(parent) = child.parent.as_ref().and_then(|p| zoo.run(&p.run)) else {
                continue;
            };
            for c in &child.checkpoints {
                if parent.at(c.step).is_some() {
                    pairs.push(Pair {
                        kind: PairKind::Fork,
                        a: id(&parent.name, c.step),
                        b: id(&child.name, c.step),
                    });
                }
            }
        }
    }
    pairs.sort_by(|x, y| (x.step(), x.kind, &x.a, &x.b).cmp(&(y.step(), y.kind, &y.a, &y.b)));
    pairs.dedup();
    pairs
}

/// Share `index` (0-based) of `count`: pairs and checkpoints whose position in the deterministic
/// plan is `index` modulo `count`. Shard outputs are combined by [`crate::pipeline::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` with 1 <= K <= N (1-based, as in SLURM array task ids).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidArgument(format!("shard `{text}`: expected K/N with 1 <= K <= N"));
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Self { index: k - 1, count: n })
    }

    /// True when item number `position` of the plan belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_loaders::formats::FileFormat;
    use lineage_loaders::zoo::{Checkpoint, ForkParent, Layout, Run};

    fn run(name: &str, steps: &[u64], parent: Option<(&str, u64)>) -> Run {
        Run {
            name: name.into(),
            dir: name.into(),
            checkpoints: steps
                .iter()
                .map(|s| Checkpoint {
                    step: *s,
                    files: vec![],
                    format: FileFormat::Safetensors,
                    layout: Layout::Manifest,
                    tokens: None,
                })
                .collect(),
            config: None,
            logs: vec![],
            parent: parent.map(|(r, s)| ForkParent { run: r.into(), step: s }),
        }
    }

    #[test]
    fn seeds_final_and_fork_pairs_on_a_ragged_zoo() {
        let zoo = Zoo {
            root: "z".into(),
            runs: vec![
                run("a", &[0, 10, 20], None),
                run("b", &[0, 20], None),
                run("c", &[10, 20], Some(("a", 10))),
            ],
            problems: vec![],
        };
        let pairs = plan_pairs(&zoo, PairSets::default());
        let seeds: Vec<(u64, &str, &str)> = pairs
            .iter()
            .filter(|p| p.kind == PairKind::Seeds)
            .map(|p| (p.step(), p.a.run.as_str(), p.b.run.as_str()))
            .collect();
        assert_eq!(
            seeds,
            [
                (0, "a", "b"),
                (10, "a", "c"),
                (20, "a", "b"),
                (20, "a", "c"),
                (20, "b", "c")
            ]
        );
        let finals = pairs.iter().filter(|p| p.kind == PairKind::ToFinal).count();
        assert_eq!(finals, 2 + 1 + 1);
        let forks: Vec<(u64, &str)> = pairs
            .iter()
            .filter(|p| p.kind == PairKind::Fork)
            .map(|p| (p.step(), p.b.run.as_str()))
            .collect();
        assert_eq!(forks, [(10, "c"), (20, "c")]);
        let steps: Vec<u64> = pairs.iter().map(Pair::step).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
    }
}
