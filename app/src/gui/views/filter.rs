//! The selection editor under the zoo grid: which runs, steps and eval examples the analysis reads
//! (the `--runs`, `--steps`, `--every` and `--max-examples` of `lineage batch`). Applying it sends
//! the new selection to the app, which analyses again (cached results of the rest are reused).

use egui::{Grid, TextEdit, Ui};
use lineage_core::pipeline::selection::SelectionOptions;

/// The selection fields as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionDraft {
    /// Run globs, separated by commas or spaces.
    pub runs: String,
    /// Steps and ranges, as `--steps` takes them.
    pub steps: String,
    /// Every K-th step (empty: every step).
    pub every: String,
    /// First N eval examples (empty: all).
    pub max_examples: String,
}

impl SelectionDraft {
    /// The fields showing `options`.
    pub fn from_options(options: &SelectionOptions) -> Self {
        let text = |n: Option<String>| n.unwrap_or_default();
        Self {
            runs: options.runs.join(", "),
            steps: text(options.steps.clone()),
            every: text(options.every.map(|k| k.to_string())),
            max_examples: text(options.max_examples.map(|n| n.to_string())),
        }
    }

    /// The selection the fields give, with the tensor filter of `current` (not edited here); a
    /// message naming the field when one cannot be used.
    pub fn to_options(&self, current: &SelectionOptions) -> Result<SelectionOptions, String> {
        let number = |text: &str, what: &str| -> Result<Option<u64>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| format!("{what}: `{text}` is not a whole number"))
        };
        let steps = self.steps.trim();
        let options = SelectionOptions {
            runs: self
                .runs
                .split([',', ' '])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            steps: (!steps.is_empty()).then(|| steps.to_string()),
            every: number(&self.every, "every")?,
            max_examples: number(&self.max_examples, "first examples")?.map(|n| n as usize),
            ..current.clone()
        };
        options.validate().map_err(|e| e.to_string())?;
        Ok(options)
    }
}

/// Draws the editor; true when the user applies it.
pub fn show(ui: &mut Ui, draft: &mut SelectionDraft) -> bool {
    let field = |ui: &mut Ui, label: &str, hint: &str, text: &mut String| {
        ui.label(label);
        ui.add(TextEdit::singleline(text).hint_text(hint).desired_width(150.0))
            .on_hover_text(hint);
        ui.end_row();
    };
    Grid::new("selection").num_columns(2).show(ui, |ui| {
        field(ui, "runs", "globs, e.g. seed* (all)", &mut draft.runs);
        field(ui, "steps", "e.g. 0,1000:5000:500 (all)", &mut draft.steps);
        field(ui, "every", "K-th step (all)", &mut draft.every);
        field(ui, "examples", "first N (all)", &mut draft.max_examples);
    });
    ui.horizontal(|ui| {
        let apply = ui.button("Apply selection").clicked();
        let clear = ui.button("All").clicked();
        if clear {
            *draft = SelectionDraft::default();
        }
        apply || clear
    })
    .inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_bad_ones_are_named() {
        let options = SelectionOptions {
            runs: vec!["seed1*".into(), "seed2".into()],
            steps: Some("0,100:1k".into()),
            every: Some(2),
            max_examples: Some(512),
            exclude: vec!["^aux".into()],
            ..SelectionOptions::default()
        };
        let draft = SelectionDraft::from_options(&options);
        assert_eq!(draft.to_options(&options).unwrap(), options);
        let bad = SelectionDraft {
            every: "two".into(),
            ..draft.clone()
        };
        assert!(bad.to_options(&options).unwrap_err().contains("every"));
        let bad = SelectionDraft {
            steps: "5:x".into(),
            ..draft
        };
        assert!(bad.to_options(&options).unwrap_err().contains("5:x"));
        assert!(
            SelectionDraft::default()
                .to_options(&SelectionOptions::default())
                .unwrap()
                .is_everything()
        );
    }
}
