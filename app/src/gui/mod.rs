//! The desktop app (egui / eframe): open a checkpoint folder and explore its basins as an
//! evolutionary tree. A thin view over `lineage_core`, in the manner of rerun's viewer: the
//! [`session`] holds plain data, [`job`] runs every long computation on a worker thread with
//! progress and cancel, and [`views`] only draw.

mod app;
mod job;
mod recent;
mod session;
mod views;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use lineage_core::AnalysisOptions;

pub use app::LineageApp;

/// Window size on first start.
const INITIAL_SIZE: [f32; 2] = [1400.0, 880.0];

/// Whether a desktop session is there to open a window on (on Linux: an X11 `DISPLAY`, which
/// Wayland desktops provide through XWayland).
pub fn display_available() -> bool {
    !cfg!(target_os = "linux") || std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
}

/// Opens the app; with `dir`, that folder is opened (and analysed when eval data is found or given)
/// with `analysis` options (result store, device; the app's toggles change them).
pub fn run(dir: Option<PathBuf>, data: Option<PathBuf>, analysis: AnalysisOptions) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("lineage")
            .with_inner_size(INITIAL_SIZE)
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "lineage",
        options,
        Box::new(move |cc| {
            let recent = recent::RecentFolders::load(cc.storage);
            let mut app = LineageApp::new(cc.egui_ctx.clone(), analysis, recent);
            if let Some(dir) = dir {
                app.open_folder(&dir, data);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the desktop app ({e}); on a machine without a display use the headless \
             commands (`lineage demo --no-gui`, `lineage batch`)"
        )
    })
}
