//! Figures written from small synthetic inputs: files exist, PNGs decode to the right size with
//! rendered text and colour, SVGs carry the expected labels.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use lineage_core::Named;
use lineage_core::methods::basins::{
    BarrierMatrix, BasinHistory, BasinTree, ClusterMethod, average_linkage, basin_history, basin_tree,
    matrices_from_rows,
};
use lineage_core::methods::interpolation::BarrierKind;
use lineage_core::output::figures::{self, FigureError, FigureInputs, FigureOptions};
use lineage_core::output::tables::{BarrierRow, EvalRow, InterpolationRow};
use lineage_core::pipeline::basins_over_time::basins_over_time;
use lineage_core::pipeline::options::BasinOptions;
use lineage_core::pipeline::plan::PairKind;
use lineage_core::pipeline::sweep::Sweep;

const STEPS: [u64; 4] = [0, 10, 100, 1000];

fn seeds(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("seed{i}")).collect()
}

/// Family of a run at a step: all one basin at step 0; `seed{i}` with i % 3 == 0 splits off at step
/// 10; three families at step 100; families 1 and 2 merge again at step 1000.
fn family(step: u64, i: usize) -> usize {
    match step {
        0 => 0,
        10 => usize::from(i.is_multiple_of(3)),
        100 => i % 3,
        _ => usize::from(i.is_multiple_of(3)),
    }
}

/// Synthetic seed-pair loss barrier.
fn barrier(step: u64, i: usize, j: usize) -> f64 {
    let jitter = ((i * 7 + j * 13) % 10) as f64 * 0.003;
    if family(step, i) == family(step, j) {
        0.01 + jitter
    } else {
        0.6 + 0.4 * (step as f64 + 1.0).log10() / 3.0 + jitter
    }
}

fn history(n: usize) -> (BasinHistory, BasinTree) {
    let runs = seeds(n);
    let mut rows = Vec::new();
    for step in STEPS {
        for i in 0..n {
            for j in i + 1..n {
                rows.push((step, runs[i].clone(), runs[j].clone(), barrier(step, i, j)));
            }
        }
    }
    let ms = matrices_from_rows(rows).unwrap();
    let h = basin_history(&ms, &ClusterMethod::Threshold { eps: Some(0.1) }, &BTreeMap::new()).unwrap();
    let t = basin_tree(&h);
    (h, t)
}

/// Width, height and RGB(A) pixels of a PNG (8-bit grey, RGB or RGBA; no interlace).
fn decode_png(path: &Path) -> (u32, u32, Vec<Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let (mut pos, mut idat) = (8, Vec::new());
    let (mut w, mut h, mut channels) = (0u32, 0u32, 0usize);
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    0 => 1,
                    2 => 3,
                    4 => 2,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = w as usize * channels;
    assert_eq!(raw.len(), (stride + 1) * h as usize);
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(h as usize);
    for y in 0..h as usize {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        let mut out = vec![0u8; stride];
        for x in 0..stride {
            let a = if x >= channels { out[x - channels] as i32 } else { 0 };
            let b = if y > 0 { rows[y - 1][x] as i32 } else { 0 };
            let c = if y > 0 && x >= channels {
                rows[y - 1][x - channels] as i32
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            out[x] = (line[x] as i32 + pred) as u8;
        }
        rows.push(out);
    }
    let pixels = rows
        .iter()
        .flat_map(|r| r.chunks(channels).map(|p| p.to_vec()))
        .collect();
    (w, h, pixels)
}

/// The output folder: a fresh temporary folder, or `$LINEAGE_FIGURES_OUT` to keep the figures and
/// look at them.
struct Out {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

fn out(name: &str) -> Out {
    match std::env::var_os("LINEAGE_FIGURES_OUT") {
        Some(d) => {
            let dir = PathBuf::from(d).join(name);
            let _ = std::fs::remove_dir_all(&dir);
            Out { dir, _tmp: None }
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            Out {
                dir: tmp.path().join(name),
                _tmp: Some(tmp),
            }
        }
    }
}

/// What a rendered PNG contains.
struct PngStats {
    distinct: usize,
    pixels: Vec<[u8; 3]>,
}

impl PngStats {
    /// Number of pixels of exactly this colour.
    fn count(&self, c: [u8; 3]) -> usize {
        self.pixels.iter().filter(|p| **p == c).count()
    }
}

/// Checks the pair of files of one figure (`[stem.svg, stem.png]`, both non-trivial, PNG 1200 x 800
/// with rendered text) and returns the SVG text and the PNG's statistics.
fn check_figure(paths: &[PathBuf], stem: &Path) -> (String, PngStats) {
    let svg_path = PathBuf::from(format!("{}.svg", stem.display()));
    let png_path = PathBuf::from(format!("{}.png", stem.display()));
    assert_eq!(paths, [svg_path.clone(), png_path.clone()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    assert!(svg.contains("width=\"1200\"") && svg.contains("height=\"800\""));
    assert!(svg.len() > 2_000, "SVG too small: {} bytes", svg.len());
    assert!(std::fs::metadata(&png_path).unwrap().len() > 10_000);
    let (w, h, px) = decode_png(&png_path);
    assert_eq!((w, h), (figures::SIZE.0, figures::SIZE.1));
    assert_eq!((w, h), (1200, 800));
    let pixels: Vec<[u8; 3]> = px
        .iter()
        .map(|p| if p.len() >= 3 { [p[0], p[1], p[2]] } else { [p[0]; 3] })
        .collect();
    let distinct: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let greys = distinct.iter().filter(|c| c[0] == c[1] && c[1] == c[2]).count();
    let non_white = pixels.iter().filter(|p| **p != [255, 255, 255]).count() as f64 / pixels.len() as f64;
    // Anti-aliased text leaves many grey levels; the figure is neither blank nor a solid block.
    assert!(greys > 30, "only {greys} grey levels: no rendered text?");
    assert!(non_white > 0.02 && non_white < 0.9, "non-white fraction {non_white}");
    (
        svg,
        PngStats {
            distinct: distinct.len(),
            pixels,
        },
    )
}

/// The contents of the SVG's `<text>` elements.
fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
        .collect()
}

fn assert_contains(svg: &str, labels: &[&str]) {
    for l in labels {
        assert!(svg.contains(l), "SVG lacks {l:?}");
    }
}

const ORANGE: [u8; 3] = [0xE6, 0x9F, 0x00];
const SKY_BLUE: [u8; 3] = [0x56, 0xB4, 0xE9];
const BLUISH_GREEN: [u8; 3] = [0x00, 0x9E, 0x73];
const VERMILLION: [u8; 3] = [0xD5, 0x5E, 0x00];

#[test]
fn basin_tree_on_a_log_axis_with_step_zero() {
    let (h, t) = history(9);
    let o = out("tree");
    let stem = o.dir.join("basin_tree");
    let paths = figures::basin_tree(&t, &h, &seeds(9), &Default::default(), &Default::default(), true, &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    let names = seeds(9);
    assert_contains(&svg, &names.iter().map(String::as_str).collect::<Vec<_>>());
    assert_contains(
        &svg,
        &[
            "Basins over training",
            "training step (log scale)",
            "basin 0",
            "basin 2",
        ],
    );
    let texts = svg_texts(&svg);
    for tick in ["0", "10", "100", "1000"] {
        assert!(texts.contains(&tick), "no tick label {tick:?} in {texts:?}");
    }
    // Threads in Okabe-Ito colours (seed0 orange, seed1 sky blue, seed2 bluish green).
    for c in [ORANGE, SKY_BLUE, BLUISH_GREEN] {
        assert!(png.count(c) > 200, "colour {c:?} drawn on {} pixels", png.count(c));
    }
    assert!(png.distinct > 100);
}

#[test]
fn basin_tree_on_a_linear_axis() {
    let (h, t) = history(5);
    let o = out("tree_linear");
    let stem = o.dir.join("tree.v2");
    let paths = figures::basin_tree(
        &t,
        &h,
        &seeds(5),
        &Default::default(),
        &Default::default(),
        false,
        &stem,
    )
    .unwrap();
    let (svg, _) = check_figure(&paths, &stem);
    assert!(svg.contains("training step") && !svg.contains("log scale"));
    assert!(o.dir.join("tree.v2.svg").exists());
}

#[test]
fn a_diverged_checkpoint_ends_its_thread_in_a_cross() {
    let (h, t) = history(5);
    let o = out("tree_diverged");
    let stem = o.dir.join("basin_tree");
    let plain = figures::basin_tree(
        &t,
        &h,
        &seeds(5),
        &Default::default(),
        &Default::default(),
        false,
        &stem,
    )
    .unwrap();
    let (_, before) = check_figure(&plain, &stem);
    let diverged = [(1000, "seed3".to_string())].into_iter().collect();
    let paths = figures::basin_tree(&t, &h, &seeds(5), &diverged, &Default::default(), false, &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    assert_contains(&svg, &["× 1 diverged checkpoint"]);
    const VERMILLION: [u8; 3] = [0xD5, 0x5E, 0x00];
    assert!(
        png.count(VERMILLION) > before.count(VERMILLION) + 20,
        "a cross drawn: {} vermillion pixels, {} without",
        png.count(VERMILLION),
        before.count(VERMILLION)
    );
}

#[test]
fn empty_history_gives_a_no_data_tree() {
    let h = basin_history(&[], &ClusterMethod::Threshold { eps: Some(0.1) }, &BTreeMap::new()).unwrap();
    let t = basin_tree(&h);
    let o = out("tree_empty");
    let stem = o.dir.join("basin_tree");
    let paths = figures::basin_tree(&t, &h, &[], &Default::default(), &Default::default(), true, &stem).unwrap();
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert_contains(&svg, &["Basins over training", "no data"]);
    let (w, hh, _) = decode_png(&paths[1]);
    assert_eq!((w, hh), (1200, 800));
}

fn matrix(step: u64, n: usize) -> BarrierMatrix {
    let runs = seeds(n);
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            pairs.push((runs[i].clone(), runs[j].clone(), barrier(step, i, j)));
        }
    }
    BarrierMatrix::from_pairs(step, pairs).unwrap()
}

#[test]
fn heatmap_in_dendrogram_order() {
    let m = matrix(100, 9);
    let order = average_linkage(&m).leaf_order();
    let o = out("heatmap");
    let stem = o.dir.join("barrier_heatmap_step100");
    let paths = figures::barrier_heatmap(&m, &order, "Seed-pair loss barrier (segment barrier)", &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    assert_contains(
        &svg,
        &[
            "Seed-pair loss barrier (segment barrier)",
            "loss barrier (nats)",
            "step 100",
            "seed8",
        ],
    );
    // Zero diagonal = the dark end of viridis, the largest barrier = its yellow end.
    assert!(png.count([0x44, 0x01, 0x54]) > 9 * 100, "diagonal cells missing");
    assert!(png.count([0xFD, 0xE7, 0x25]) > 100, "largest-barrier cell missing");
    assert!(png.distinct > 100, "colour bar gradient missing");
}

#[test]
fn heatmap_rejects_a_bad_order_and_draws_an_empty_matrix() {
    let m = matrix(10, 3);
    let o = out("heatmap_bad");
    for order in [vec![0, 1], vec![0, 1, 1], vec![0, 1, 3]] {
        let err = figures::barrier_heatmap(&m, &order, "t", &o.dir.join("h")).unwrap_err();
        assert!(matches!(err, FigureError::InvalidInput { .. }), "{err}");
        assert!(
            err.to_string().contains("not a permutation") && err.to_string().contains("/h"),
            "{err}"
        );
    }
    let empty = BarrierMatrix::new(7, vec![], vec![]).unwrap();
    let paths = figures::barrier_heatmap(&empty, &[], "Empty", &o.dir.join("empty")).unwrap();
    assert_contains(
        &std::fs::read_to_string(&paths[0]).unwrap(),
        &["Empty", "no data", "step 7"],
    );
    // A single run is a 1 x 1 matrix, not an error.
    let one = BarrierMatrix::from_pairs(3, [("solo", "solo", 0.0)]).unwrap();
    let paths = figures::barrier_heatmap(&one, &[0], "One run", &o.dir.join("one")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["solo"]);
}

/// Endpoint loss of a run at a step.
fn loss(step: u64, i: usize) -> f64 {
    2.3 / (1.0 + step as f64 / 50.0) + 0.05 + 0.01 * i as f64
}

fn curve(step: u64, a: usize, b: usize, barrier_height: f64, alphas: usize) -> Vec<(f64, f64, f64)> {
    (0..alphas)
        .map(|k| {
            let t = k as f64 / (alphas - 1) as f64;
            let l = (1.0 - t) * loss(step, a) + t * loss(step, b) + 4.0 * barrier_height * t * (1.0 - t);
            (t, l, (0.05 + 0.3 * l / 2.5).min(1.0))
        })
        .collect()
}

fn interpolation_rows(n: usize) -> Vec<InterpolationRow> {
    let runs = seeds(n);
    let mut rows = Vec::new();
    for step in STEPS {
        for i in 0..n {
            for j in i + 1..n {
                for (alpha, l, e) in curve(step, i, j, barrier(step, i, j), 11) {
                    rows.push(InterpolationRow {
                        step,
                        run_a: runs[i].clone(),
                        run_b: runs[j].clone(),
                        step_b: step,
                        pair: PairKind::Seeds,
                        alpha,
                        loss: l,
                        error: e,
                        aligned: false,
                        set: "eval".into(),
                    });
                }
            }
        }
    }
    rows
}

#[test]
fn interpolation_curves_few_pairs_coloured() {
    let o = out("interpolation");
    let stem = o.dir.join("interpolation_step100");
    let paths = figures::interpolation_curves(&interpolation_rows(4), 100, PairKind::Seeds, &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    assert_contains(
        &svg,
        &[
            "Linear interpolation at step 100",
            "interpolation coefficient α",
            "loss (nats, mean cross-entropy)",
            "error (%)",
            "seed0 – seed1",
            "seed2 – seed3",
            "chord (max pair)",
            "barrier 0.8",
        ],
    );
    assert!(png.count(ORANGE) > 200);
}

#[test]
fn interpolation_curves_many_pairs_highlight_extremes() {
    let o = out("interpolation_many");
    let stem = o.dir.join("interpolation_step1000");
    let paths = figures::interpolation_curves(&interpolation_rows(9), 1000, PairKind::Seeds, &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    assert_contains(
        &svg,
        &[
            "each pair (n = 36)",
            "mean over pairs",
            "largest barrier:",
            "smallest barrier:",
            "36 seed pairs",
        ],
    );
    assert!(png.count(VERMILLION) > 200);
    // Another step or pair kind: "no data", not an error.
    let paths = figures::interpolation_curves(&interpolation_rows(3), 5, PairKind::Seeds, &o.dir.join("none")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["no data", "step 5"]);
    let paths = figures::interpolation_curves(&[], 0, PairKind::Fork, &o.dir.join("none_fork")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["no data", "fork"]);
}

fn barrier_rows(n: usize) -> Vec<BarrierRow> {
    let runs = seeds(n);
    let last = *STEPS.last().unwrap();
    let mut rows = Vec::new();
    for &kind in BarrierKind::ALL {
        for step in STEPS {
            for i in 0..n {
                for j in i + 1..n {
                    let b = barrier(step, i, j) * if kind == BarrierKind::Segment { 1.1 } else { 1.0 };
                    rows.push(BarrierRow {
                        step,
                        run_a: runs[i].clone(),
                        run_b: runs[j].clone(),
                        step_b: step,
                        pair: PairKind::Seeds,
                        kind,
                        loss_barrier: b,
                        error_barrier: 0.1 * b,
                        aligned: false,
                        set: "eval".into(),
                        loss_barrier_lo: None,
                        loss_barrier_hi: None,
                        error_barrier_lo: None,
                        error_barrier_hi: None,
                    });
                }
                if step < last {
                    let b = 0.5 / (1.0 + step as f64 / 20.0) + 0.01 * i as f64;
                    rows.push(BarrierRow {
                        step,
                        run_a: runs[i].clone(),
                        run_b: runs[i].clone(),
                        step_b: last,
                        pair: PairKind::ToFinal,
                        kind,
                        loss_barrier: b,
                        error_barrier: 0.08 * b,
                        aligned: false,
                        set: "eval".into(),
                        loss_barrier_lo: None,
                        loss_barrier_hi: None,
                        error_barrier_lo: None,
                        error_barrier_hi: None,
                    });
                }
            }
        }
    }
    rows
}

#[test]
fn barrier_vs_step_mean_and_band() {
    let o = out("barrier_vs_step");
    for (kind, log_x) in [(BarrierKind::Segment, true), (BarrierKind::Endpoint, false)] {
        let stem = o.dir.join(format!("barrier_vs_step_{}", kind.name()));
        let paths = figures::barrier_vs_step(&barrier_rows(9), kind, log_x, &stem).unwrap();
        let (svg, png) = check_figure(&paths, &stem);
        assert_contains(
            &svg,
            &[
                "loss barrier (nats)",
                "error barrier (percentage points)",
                "seed pairs",
                "checkpoint-vs-final pairs",
                &format!("{} barrier", kind.name()),
                if log_x {
                    "training step (log scale)"
                } else {
                    "training step"
                },
            ],
        );
        assert!(png.count([0x00, 0x72, 0xB2]) > 200, "mean line (blue) missing");
        assert!(png.count(VERMILLION) > 100, "to_final line missing");
    }
    let paths = figures::barrier_vs_step(&[], BarrierKind::Endpoint, true, &o.dir.join("empty")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["no data"]);
}

fn eval_rows(n: usize) -> Vec<EvalRow> {
    let mut rows = Vec::new();
    for (i, run) in seeds(n).into_iter().enumerate() {
        for step in STEPS {
            let l = loss(step, i) * (1.0 + 0.05 * ((i * 7 + step as usize) % 5) as f64);
            rows.push(EvalRow {
                run: run.clone(),
                step,
                loss: l,
                error: 0.9 * l / 2.6,
                bits_per_example: l / 2f64.ln(),
                diverged: false,
                set: "eval".into(),
            });
        }
    }
    rows
}

#[test]
fn training_curves_per_run() {
    let o = out("training");
    let stem = o.dir.join("training_curves");
    let paths = figures::training_curves(&eval_rows(9), &seeds(9), true, &stem).unwrap();
    let (svg, png) = check_figure(&paths, &stem);
    assert_contains(
        &svg,
        &[
            "Training curves",
            "seed0",
            "seed8",
            "error (%)",
            "loss (nats, mean cross-entropy)",
        ],
    );
    assert!(png.count(SKY_BLUE) > 100);
    let paths = figures::training_curves(&[], &[], false, &o.dir.join("empty")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["no data"]);
}

#[test]
fn write_all_figures_writes_the_standard_set() {
    let sweep = Sweep {
        evals: eval_rows(6),
        interpolation: interpolation_rows(6),
        barriers: barrier_rows(6),
        ..Sweep::default()
    };
    let runs = seeds(6);
    let basins = basins_over_time(&sweep, &BasinOptions::default(), &runs).unwrap();
    assert_eq!(basins.steps(), STEPS);
    let inputs = FigureInputs::new(&sweep, &basins, &runs);
    let o = out("all");
    let dir = o.dir.join("figures");
    let written = figures::write_all_figures(&dir, &inputs, &FigureOptions::default()).unwrap();
    assert_eq!(figures::default_figure_steps(&STEPS), [0, 10, 1000]);
    let mut expected = vec!["basin_tree".to_string()];
    expected.extend([0, 10, 1000].iter().map(|s| format!("barrier_heatmap_step{s}")));
    expected.extend([0, 10, 1000].iter().map(|s| format!("interpolation_step{s}")));
    expected.extend(["barrier_vs_step".to_string(), "training_curves".to_string()]);
    let expected: Vec<PathBuf> = expected
        .iter()
        .flat_map(|stem| ["svg", "png"].map(|ext| dir.join(format!("{stem}.{ext}"))))
        .collect();
    assert_eq!(written, expected);
    for p in &written {
        assert!(std::fs::metadata(p).unwrap().len() > 2_000, "{}", p.display());
    }
    // Steps 0..1000 span more than two decades: log axes by default.
    let tree_svg = std::fs::read_to_string(dir.join("basin_tree.svg")).unwrap();
    assert!(tree_svg.contains("log scale"));
    // No temporary files left behind.
    assert!(
        std::fs::read_dir(&dir)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains("tmp"))
    );

    // Chosen steps; a step without a matrix gives a "no data" heatmap.
    let options = FigureOptions {
        steps: Some(vec![100, 555]),
        log_x: Some(false),
        ..FigureOptions::default()
    };
    let written = figures::write_all_figures(&o.dir.join("chosen"), &inputs, &options).unwrap();
    assert_eq!(written.len(), 2 * (1 + 2 + 2 + 2));
    let missing = std::fs::read_to_string(o.dir.join("chosen/barrier_heatmap_step555.svg")).unwrap();
    assert!(missing.contains("no data"));
}

#[test]
fn write_all_figures_with_nothing() {
    let sweep = Sweep::default();
    let basins = basins_over_time(&sweep, &BasinOptions::default(), &[]).unwrap();
    let inputs = FigureInputs::new(&sweep, &basins, &[]);
    let o = out("nothing");
    let written = figures::write_all_figures(&o.dir, &inputs, &FigureOptions::default()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "basin_tree.svg",
            "basin_tree.png",
            "barrier_vs_step.svg",
            "barrier_vs_step.png",
            "training_curves.svg",
            "training_curves.png"
        ]
    );
    assert!(!figures::auto_log_x([0, 10, 20]));
    assert!(figures::auto_log_x([0, 10, 1000]));
}

#[test]
fn unwritable_folder_is_an_io_error_naming_the_path() {
    let o = out("unwritable");
    std::fs::create_dir_all(&o.dir).unwrap();
    let file = o.dir.join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let (h, t) = history(3);
    let err = figures::basin_tree(
        &t,
        &h,
        &seeds(3),
        &Default::default(),
        &Default::default(),
        false,
        &file.join("sub/basin_tree"),
    )
    .unwrap_err();
    assert!(matches!(err, FigureError::Io { .. }), "{err}");
    assert!(err.to_string().contains("a_file"), "{err}");
}

#[test]
fn a_large_zoo_stays_readable() {
    // 40 runs in 4 families over 12 steps, with families splitting at different times.
    let n = 40;
    let runs: Vec<String> = (0..n).map(|i| format!("pythia-160m-seed{i:02}")).collect();
    let steps: Vec<u64> = (0..12).map(|k| if k == 0 { 0 } else { 1u64 << (k + 3) }).collect();
    let fam = |step: u64, i: usize| {
        if step < 64 {
            0
        } else if step < 2048 {
            i % 2
        } else {
            i % 4
        }
    };
    let mut rows = Vec::new();
    for &s in &steps {
        for i in 0..n {
            for j in i + 1..n {
                let b = if fam(s, i) == fam(s, j) {
                    0.01
                } else {
                    0.5 + (i + j) as f64 * 0.001
                };
                rows.push((s, runs[i].clone(), runs[j].clone(), b));
            }
        }
    }
    let ms = matrices_from_rows(rows).unwrap();
    let h = basin_history(&ms, &ClusterMethod::Threshold { eps: Some(0.1) }, &BTreeMap::new()).unwrap();
    let t = basin_tree(&h);
    let o = out("large");
    let stem = o.dir.join("basin_tree");
    let paths = figures::basin_tree(&t, &h, &runs, &Default::default(), &Default::default(), true, &stem).unwrap();
    let (svg, _) = check_figure(&paths, &stem);
    // Too many runs to tell apart by colour: threads are coloured by the basin they end in.
    assert_contains(
        &svg,
        &[
            "runs by final basin",
            "basin 0 (10 runs)",
            "basin 3 (10 runs)",
            "40 runs",
        ],
    );
    let last = ms.last().unwrap();
    let stem = o.dir.join("heatmap");
    let paths = figures::barrier_heatmap(last, &average_linkage(last).leaf_order(), "40 runs", &stem).unwrap();
    let (svg, _) = check_figure(&paths, &stem);
    // The common prefix is left out of the labels and named once.
    assert_contains(&svg, &["names after “pythia-160m-seed”"]);
    let texts = svg_texts(&svg);
    assert!(texts.contains(&"39") && texts.contains(&"00"), "{texts:?}");
}

#[test]
fn generalization_by_basin_has_a_panel_per_eval_set() {
    let sweep = Sweep {
        evals: eval_rows(6),
        interpolation: interpolation_rows(6),
        barriers: barrier_rows(6),
        set: "eval".into(),
        ..Sweep::default()
    };
    let runs = seeds(6);
    let basins = basins_over_time(&sweep, &BasinOptions::default(), &runs).unwrap();
    let rows = lineage_core::pipeline::generalization::generalization(&sweep, &basins).basins;
    assert!(!rows.is_empty() && rows.iter().all(|r| r.set == "eval"));
    // The same rows again as an out-of-distribution set with twice the error.
    let ood: Vec<_> = rows
        .iter()
        .map(|r| lineage_core::output::tables::GeneralizationRow {
            set: "ood".into(),
            mean_error: 2.0 * r.mean_error,
            min_error: 2.0 * r.min_error,
            max_error: 2.0 * r.max_error,
            ..r.clone()
        })
        .collect();
    let all: Vec<_> = rows.iter().chain(&ood).cloned().collect();
    let o = out("generalization");
    let stem = o.dir.join("generalization_by_basin");
    let paths = figures::generalization_by_basin(&all, &basins.layout.lanes, &["eval", "ood"], true, &stem).unwrap();
    let (svg, _) = check_figure(&paths, &stem);
    assert_contains(
        &svg,
        &[
            "Generalization by basin",
            "error on eval (%)",
            "error on ood (%)",
            "basin 0",
        ],
    );
    let paths = figures::generalization_by_basin(&[], &[], &[], false, &o.dir.join("empty")).unwrap();
    assert_contains(&std::fs::read_to_string(&paths[0]).unwrap(), &["no data"]);

    // write_all_figures draws it when given the rows.
    let mut inputs = FigureInputs::new(&sweep, &basins, &runs);
    inputs.generalization = &all;
    let written = figures::write_all_figures(&o.dir.join("all"), &inputs, &FigureOptions::default()).unwrap();
    assert!(written.contains(&o.dir.join("all/generalization_by_basin.svg")));
}
