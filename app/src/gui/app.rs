//! The app: menus, panels and background jobs around a [`Session`]. All computation happens in
//! `lineage_core` on worker threads; this file only wires the views to it.

use std::path::{Path, PathBuf};

use egui::{CentralPanel, CollapsingHeader, Panel, ProgressBar, Ui};

use super::job::Job;
use super::recent::RecentFolders;
use super::session::{Analysed, Session};
use super::views::filter::SelectionDraft;
use super::views::{self, Selection};
use lineage_core::AnalysisOptions;
use lineage_core::data::eval_sets::EvalSet;
use lineage_core::models::matmul::{MatmulPrecision, bf16x3_available};
use lineage_core::output::export::cluster_timeline;
use lineage_core::output::schema::{Table, write_parquet};
use lineage_core::output::tables::ClusterTimelineRow;

/// Tabs below the basin tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Training curves from the logs.
    Training,
    /// The barriers table at the selected step.
    Table,
    /// Representation similarity, probes and weight-space trajectories over training.
    Representations,
    /// How each basin's members do on each eval set.
    Generalization,
}

/// What a background job hands back.
enum Output {
    /// A folder was opened (zoo discovered, logs read).
    Opened(Box<Session>),
    /// The analysis finished, or failed with a message.
    Analysed(Result<Box<Analysed>, String>),
    /// An export finished: files written, or a message.
    Exported(Result<Vec<PathBuf>, String>),
}

/// The desktop app's state.
pub struct LineageApp {
    /// The open folder, if any.
    pub session: Option<Session>,
    /// The user's picks.
    pub selection: Selection,
    /// Steps on a log(1 + step) axis.
    pub log_x: bool,
    /// Tab below the tree.
    pub tab: Tab,
    /// Metric of the training-curves tab.
    pub metric: String,
    /// Recently opened folders.
    pub recent: RecentFolders,
    /// Last message for the status bar (errors included).
    pub status: String,
    /// Analyse as soon as a folder is opened (with eval data).
    pub auto_analyse: bool,
    /// Options of the analysis, as `lineage batch` takes them (result store shared with it, device;
    /// the align toggle sets `sweep.align`).
    pub options: AnalysisOptions,
    /// The selection editor's fields (applied into `options.sweep.selection`).
    pub selection_draft: SelectionDraft,
    job: Option<Job<Output>>,
    /// Used by jobs to ask for a repaint when they finish (the context of the latest frame).
    ctx: egui::Context,
    /// Whether the fallback font is installed in `ctx`.
    fonts_installed: bool,
}

impl LineageApp {
    /// A new app analysing with `options`; `recent` from the previous session.
    pub fn new(ctx: egui::Context, options: AnalysisOptions, recent: RecentFolders) -> Self {
        Self {
            session: None,
            selection: Selection::default(),
            log_x: true,
            tab: Tab::Training,
            metric: "loss".into(),
            recent,
            status: "Open a folder of checkpoints: File > Open folder…, or drop it here.".into(),
            auto_analyse: true,
            selection_draft: SelectionDraft::from_options(&options.sweep.selection),
            options,
            job: None,
            ctx,
            fonts_installed: false,
        }
    }

    /// Whether a background job is running.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Opens `dir` in the background; `data` overrides the eval data found next to it.
    pub fn open_folder(&mut self, dir: &Path, data: Option<PathBuf>) {
        if self.is_busy() {
            self.status = "Busy: cancel the running job first.".into();
            return;
        }
        self.recent.push(dir);
        let dir = dir.to_path_buf();
        self.spawn(format!("opening {}", dir.display()), move |_| {
            Output::Opened(Box::new(Session::open(&dir, data)))
        });
    }

    /// Uses `data` as the eval data of the open folder (and analyses it if asked to).
    pub fn set_eval_data(&mut self, data: PathBuf) {
        if let Some(session) = &mut self.session {
            session.data = Some(data);
            session.analysis = None;
            if self.auto_analyse {
                self.analyse();
            }
        }
    }

    /// Starts the analysis of the open folder (results come from the shared cache when present).
    pub fn analyse(&mut self) {
        if self.is_busy() {
            return;
        }
        let Some(session) = &self.session else { return };
        let Some(data) = session.data.clone() else {
            self.status = "Choose the eval data first (File > Choose eval data…).".into();
            return;
        };
        let zoo = session.zoo.clone();
        let options = self.options.clone();
        self.spawn("analysing", move |progress| {
            Output::Analysed(
                Analysed::compute(&zoo, &data, &options, progress)
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
            )
        });
    }

    /// Evaluates every checkpoint on the eval data at `file` too, as a set named after the file
    /// (made unique), and analyses again (cached results are reused).
    pub fn add_eval_set(&mut self, file: PathBuf) {
        let sweep = &mut self.options.sweep;
        let data = self.session.as_ref().and_then(|s| s.data.as_deref());
        let mut taken: Vec<String> = sweep.more_sets.iter().map(|s| s.name.clone()).collect();
        taken.extend(data.map(|d| sweep.data_set_name(d)));
        let mut set = EvalSet::unnamed(&file);
        let stem = set.name.clone();
        for i in 2.. {
            if !taken.contains(&set.name) {
                break;
            }
            set.name = format!("{stem}-{i}");
        }
        sweep.more_sets.push(set);
        self.reanalyse();
    }

    /// Drops the analysis of the open folder and analyses it again with the current options (cached
    /// results are reused); while a job runs, the status bar says so and nothing changes.
    fn reanalyse(&mut self) {
        if self.is_busy() {
            self.status = "Busy: the new options apply to the next analysis.".into();
            return;
        }
        if let Some(session) = &mut self.session {
            session.analysis = None;
        }
        self.analyse();
    }

    /// Analyses the runs, steps and examples the selection editor gives (cached results of the rest
    /// are reused); a field that cannot be used goes to the status bar.
    pub fn apply_selection(&mut self) {
        match self.selection_draft.to_options(&self.options.sweep.selection) {
            Ok(selection) if selection == self.options.sweep.selection => {}
            Ok(selection) => {
                self.options.sweep.selection = selection;
                self.reanalyse();
            }
            Err(message) => self.status = format!("Selection: {message}"),
        }
    }

    /// Writes the tables, report.json and figures of the analysis into `dir`, in the background.
    pub fn export_all(&mut self, dir: PathBuf) {
        self.export(move |analysed| Ok(analysed.write(&dir)?));
    }

    /// Writes the cluster timeline (the `lineage export` table) to `file`.
    pub fn export_timeline(&mut self, file: PathBuf) {
        self.export(move |analysed| {
            let rows = cluster_timeline(&analysed.basins().clusters, &analysed.basins().timeline)?;
            write_parquet(&file, &mut ClusterTimelineRow::frame(&rows)?)?;
            Ok(vec![file])
        });
    }

    fn export(&mut self, write: impl FnOnce(&Analysed) -> anyhow::Result<Vec<PathBuf>> + Send + 'static) {
        if self.is_busy() {
            return;
        }
        let Some(session) = &self.session else { return };
        let Some(analysed) = &session.analysis else {
            self.status = "Nothing to export yet: analyse the folder first.".into();
            return;
        };
        // The job owns a copy of what it writes, so the window stays live meanwhile.
        let analysed = analysed.clone();
        self.spawn("exporting", move |_| {
            Output::Exported(write(&analysed).map_err(|e| format!("{e:#}")))
        });
    }

    fn spawn(
        &mut self,
        label: impl Into<String>,
        work: impl FnOnce(&lineage_core::progress::SharedProgress) -> Output + Send + 'static,
    ) {
        let ctx = self.ctx.clone();
        self.job = Some(Job::spawn(label, move || ctx.request_repaint(), work));
    }

    /// Takes the output of a finished job.
    fn poll_job(&mut self) {
        let Some(job) = &self.job else { return };
        let Some(output) = job.poll() else { return };
        self.job = None;
        match output {
            Err(()) => self.status = "The background job failed unexpectedly.".into(),
            Ok(Output::Opened(session)) => {
                self.status = format!(
                    "Opened {}: {} runs, {} checkpoints, {} problems",
                    session.zoo.root.display(),
                    session.zoo.runs.len(),
                    session.zoo.n_checkpoints(),
                    session.zoo.problems.len()
                );
                self.selection = Selection::default();
                let ready = session.data.is_some() && session.zoo.n_checkpoints() > 0;
                self.session = Some(*session);
                if self.auto_analyse && ready {
                    self.analyse();
                }
            }
            Ok(Output::Analysed(Ok(analysed))) => {
                self.status = format!(
                    "Analysed in {:.1} s: {} units computed, {} from the cache",
                    analysed.analysis().elapsed.as_secs_f64(),
                    analysed.analysis().sweep.counts.computed,
                    analysed.analysis().sweep.counts.cached
                );
                self.selection.step = analysed.steps().last().copied();
                self.selection.pair = self.selection.step.and_then(|s| analysed.highest_barrier_pair(s));
                if let Some(session) = &mut self.session {
                    session.analysis = Some(*analysed);
                }
            }
            Ok(Output::Analysed(Err(message))) => self.status = format!("Analysis stopped: {message}"),
            Ok(Output::Exported(Ok(files))) => {
                let folder = files.first().and_then(|f| f.parent()).map(|p| p.display().to_string());
                self.status = format!("Exported {} files to {}", files.len(), folder.unwrap_or_default());
            }
            Ok(Output::Exported(Err(message))) => self.status = format!("Export failed: {message}"),
        }
    }

    /// Draws the whole window into `ui` (also used by the tests, without a native window).
    pub fn show(&mut self, ui: &mut Ui) {
        if !self.fonts_installed || !self.ctx.eq(ui.ctx()) {
            self.ctx = ui.ctx().clone();
            install_fallback_font(&self.ctx);
            self.fonts_installed = true;
        }
        self.poll_job();
        if self.is_busy() {
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.take_dropped_folder(ui);
        Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| self.menus(ui));
        });
        Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        let Some(session) = &self.session else {
            CentralPanel::default().show(ui, |ui| self.welcome(ui));
            return;
        };
        let selection = &self.options.sweep.selection;
        let more_sets = &self.options.sweep.more_sets;
        let draft = &mut self.selection_draft;
        let apply = Panel::left("zoo")
            .default_size(300.0)
            .show(ui, |ui| {
                ui.heading(shortened_root(session));
                views::grid::show(ui, session, selection, more_sets);
                CollapsingHeader::new("Selection")
                    .show(ui, |ui| views::filter::show(ui, draft))
                    .body_returned
            })
            .inner
            == Some(true);
        if apply {
            self.apply_selection();
            return;
        }
        let Some(analysed) = &session.analysis else {
            let can = session.data.is_some() && self.job.is_none();
            let clicked = CentralPanel::default()
                .show(ui, |ui| {
                    ui.heading("Not analysed yet");
                    ui.label(
                        "Analysis evaluates every checkpoint and interpolation path (results are cached \
                         and shared with `lineage batch`).",
                    );
                    ui.add_enabled(can, egui::Button::new("Analyse")).clicked()
                })
                .inner;
            if clicked {
                self.analyse();
            }
            return;
        };
        Panel::right("pair").default_size(440.0).show(ui, |ui| {
            ui.heading("Barrier heatmap");
            views::heatmap::show(ui, analysed, &mut self.selection);
            ui.separator();
            views::curves::show(ui, analysed, &self.selection, 150.0);
        });
        CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Basins over training");
                ui.checkbox(&mut self.log_x, "log steps");
            });
            let tree_height = (ui.available_height() * 0.5).max(180.0);
            views::tree::show(ui, analysed, &mut self.selection, self.log_x, tree_height);
            step_slider(ui, &analysed.steps(), &mut self.selection);
            ui.separator();
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Training, "Training curves");
                ui.selectable_value(&mut self.tab, Tab::Table, "Results table");
                ui.selectable_value(&mut self.tab, Tab::Representations, "Representations");
                ui.selectable_value(&mut self.tab, Tab::Generalization, "Generalization");
            });
            let height = ui.available_height().max(120.0);
            match self.tab {
                Tab::Training => views::training::show(ui, session, &mut self.metric, self.log_x, height - 30.0),
                Tab::Table => views::table::show(ui, analysed, &mut self.selection),
                Tab::Representations => views::representations::show(ui, session, analysed, self.log_x, height - 30.0),
                Tab::Generalization => {
                    views::generalization::show(ui, analysed, &self.selection, self.log_x, height - 30.0)
                }
            }
        });
    }

    fn menus(&mut self, ui: &mut Ui) {
        ui.menu_button("File", |ui| {
            if ui.button("Open folder…").clicked() {
                ui.close();
                if let Some(dir) = rfd::FileDialog::new()
                    .set_title("Open a checkpoint folder")
                    .pick_folder()
                {
                    self.open_folder(&dir, None);
                }
            }
            let has_session = self.session.is_some();
            if ui
                .add_enabled(has_session, egui::Button::new("Choose eval data…"))
                .clicked()
            {
                ui.close();
                if let Some(file) = pick_eval_file("Eval data (inputs, labels)") {
                    self.set_eval_data(file);
                }
            }
            if ui
                .add_enabled(has_session, egui::Button::new("Add eval set…"))
                .on_hover_text("Evaluate every checkpoint on another eval set too (e.g. out of distribution)")
                .clicked()
            {
                ui.close();
                if let Some(file) = pick_eval_file("Another eval set (inputs, labels)") {
                    self.add_eval_set(file);
                }
            }
            ui.menu_button("Recent folders", |ui| {
                if self.recent.folders().is_empty() {
                    ui.weak("none yet");
                }
                for dir in self.recent.folders().to_vec() {
                    if ui.button(dir.display().to_string()).clicked() {
                        ui.close();
                        self.open_folder(&dir, None);
                    }
                }
            });
            ui.separator();
            let has_analysis = self.session.as_ref().is_some_and(|s| s.analysis.is_some());
            if ui
                .add_enabled(has_analysis, egui::Button::new("Export tables, figures and report…"))
                .on_hover_text("Parquet tables, report.json and SVG/PNG figures, as `lineage batch` writes them")
                .clicked()
            {
                ui.close();
                if let Some(dir) = rfd::FileDialog::new().set_title("Export into folder").pick_folder() {
                    self.export_all(dir);
                }
            }
            if ui
                .add_enabled(has_analysis, egui::Button::new("Export cluster timeline (Parquet)…"))
                .clicked()
            {
                ui.close();
                if let Some(file) = rfd::FileDialog::new()
                    .set_file_name("cluster_timeline.parquet")
                    .add_filter("Parquet", &["parquet"])
                    .save_file()
                {
                    self.export_timeline(file);
                }
            }
            ui.separator();
            if ui.button("Quit").clicked() {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
        ui.menu_button("Analysis", |ui| {
            let can = self.session.as_ref().is_some_and(|s| s.data.is_some()) && !self.is_busy();
            if ui.add_enabled(can, egui::Button::new("Analyse")).clicked() {
                ui.close();
                self.analyse();
            }
            ui.checkbox(&mut self.auto_analyse, "Analyse when a folder opens");
            if ui
                .checkbox(&mut self.options.sweep.align, "Permutation-align pairs (Git Re-Basin)")
                .on_hover_text(
                    "Also interpolate after matching B's hidden units to A's; shown dashed beside the raw curves",
                )
                .changed()
                && self.session.as_ref().is_some_and(|s| s.analysis.is_some())
            {
                self.analyse();
            }
            let mut bf16x3 = self.options.matmul == MatmulPrecision::Bf16x3;
            let toggle = egui::Checkbox::new(&mut bf16x3, "bf16x3 products (faster transformers)");
            if ui
                .add_enabled(bf16x3_available(), toggle)
                .on_hover_text(
                    "Linear layers as three bf16 products on AMX tiles: about 4e-6 relative error per product \
                     instead of f32's 1e-7, 1.5-2x faster paths; results are cached apart (next analysis)",
                )
                .on_disabled_hover_text("Needs Intel AMX tiles (Sapphire Rapids or later, Linux)")
                .changed()
            {
                self.options.matmul = if bf16x3 {
                    MatmulPrecision::Bf16x3
                } else {
                    MatmulPrecision::F32
                };
            }
            ui.checkbox(&mut self.log_x, "Log-scale steps");
        });
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if let Some(job) = &self.job {
                let (fraction, line) = job.status();
                ui.add(ProgressBar::new(fraction).desired_width(240.0).show_percentage());
                ui.label(line);
                if ui.button("Cancel").clicked() {
                    job.progress.cancel();
                }
            } else {
                ui.label(&self.status);
            }
        });
    }

    fn welcome(&mut self, ui: &mut Ui) {
        ui.heading("lineage");
        ui.label("See when your training runs fall into different loss-surface basins.");
        ui.label("Open a folder of checkpoints from several seeds (File > Open folder…, or drop it on this window).");
        if !self.recent.folders().is_empty() {
            ui.separator();
            ui.strong("Recent folders");
            for dir in self.recent.folders().to_vec() {
                if ui.link(dir.display().to_string()).clicked() {
                    self.open_folder(&dir, None);
                }
            }
        }
    }

    /// Opens a folder dropped on the window (or the folder of a dropped file).
    fn take_dropped_folder(&mut self, ui: &Ui) {
        let dropped: Vec<PathBuf> = ui
            .ctx()
            .input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if let Some(path) = dropped.into_iter().next() {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or(path)
            };
            self.open_folder(&dir, None);
        }
    }
}

impl eframe::App for LineageApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.recent.save(storage);
    }
}

/// Adds the bundled DejaVu Sans after egui's fonts, for the symbols they lack (■ × → …); takes effect
/// from the next frame.
/// An eval data file chosen in the native file dialog titled `title`.
fn pick_eval_file(title: &str) -> Option<PathBuf> {
    rfd::FileDialog::new()
        .set_title(title)
        .add_filter("eval data", &["safetensors", "npz", "parquet"])
        .pick_file()
}

fn install_fallback_font(ctx: &egui::Context) {
    ctx.add_font(egui::epaint::text::FontInsert::new(
        "DejaVuSans",
        egui::FontData::from_static(lineage_core::output::figures::DEJAVU_SANS),
        [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
            .into_iter()
            .map(|family| egui::epaint::text::InsertFontFamily {
                family,
                priority: egui::epaint::text::FontPriority::Lowest,
            })
            .collect(),
    ));
}

/// The slider under the tree: steps with a barrier matrix.
fn step_slider(ui: &mut Ui, steps: &[u64], selection: &mut Selection) {
    if steps.is_empty() {
        return;
    }
    let mut index = selection
        .step
        .and_then(|s| steps.iter().position(|&x| x == s))
        .unwrap_or(steps.len() - 1);
    ui.horizontal(|ui| {
        ui.label("step");
        let label = steps[index].to_string();
        let slider = egui::Slider::new(&mut index, 0..=steps.len() - 1)
            .show_value(false)
            .text(label);
        if ui.add(slider).changed() {
            selection.step = Some(steps[index]);
        }
    });
}

fn shortened_root(session: &Session) -> String {
    let root = &session.zoo.root;
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}
