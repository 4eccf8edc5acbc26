//! The paper's figures of trained runs, drawn with plotters to SVG and PNG:
//! - `weights`: per sparsity level (columns) and model kind (rows) the WᵀW heat map, features ordered
//!   by importance, with b beside it as a one-column strip; diverging blue–white–red, WᵀW on one
//!   symmetric scale for the whole figure and b on its own (its values are a fraction of WᵀW's);
//! - `feature-bars`: per sparsity level and model kind, ‖W_i‖ as a horizontal bar per feature,
//!   coloured by its superposition Σ_{j≠i} (Ŵ_i·W_j)² (black: alone, yellow: shared);
//! - `loss`: the training loss curve of every instance, one panel per model kind, log y.
//!
//! [`load_runs`] reads a run directory, or a directory of run directories (as `tms reproduce`
//! writes them); [`draw_all`] draws every figure of those runs. Text uses the bundled DejaVu Sans
//! (assets/), so drawing needs no system fonts.

use crate::analysis::InstanceMetrics;
use crate::experiment::ModelKind;
use crate::store::results::{read_results, InstanceResult, Results};
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// One trained run to draw: its row label and results.
#[derive(Clone, Debug)]
pub struct Run {
    pub label: String,
    pub results: Results,
}

/// The short name of a model kind that labels rows and panels.
pub fn model_label(model: ModelKind) -> &'static str {
    match model {
        ModelKind::Linear => "linear",
        ModelKind::Relu => "ReLU",
        ModelKind::ReluHidden => "ReLU hidden",
        ModelKind::Abs => "|x|",
    }
}

/// The runs of `dir`: the run itself when it holds results.json, otherwise every subdirectory that
/// holds one (sorted by name, so linear/ comes before relu/).
pub fn load_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    let run = |results: Results| Run {
        label: model_label(results.model).to_string(),
        results,
    };
    if dir.join("results.json").exists() {
        return Ok(vec![run(read_results(dir)?)]);
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("results.json").exists())
        .collect();
    subdirs.sort();
    anyhow::ensure!(
        !subdirs.is_empty(),
        "{} is not a run directory and holds none (no results.json)",
        dir.display()
    );
    subdirs.iter().map(|d| read_results(d).map(run)).collect()
}

/// Draws every figure of `runs` into `out` as SVG and PNG; returns the paths written.
pub fn draw_all(runs: &[Run], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!runs.is_empty(), "no runs to draw");
    let mut written = vec![];
    written.extend(save(&WeightsFigure { runs }, &out.join("weights"))?);
    written.extend(save(
        &FeatureBarsFigure { runs },
        &out.join("feature-bars"),
    )?);
    written.extend(save(&LossFigure { runs }, &out.join("loss"))?);
    Ok(written)
}

/// A figure that can be drawn on any plotters backend.
pub(crate) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `figure` to `stem`.svg and `stem`.png.
pub(crate) fn save(figure: &impl Figure, stem: &Path) -> anyhow::Result<[PathBuf; 2]> {
    register_font();
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    {
        let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| Ok(root.present()?))
            .with_context(|| format!("cannot draw {}", svg.display()))?;
    }
    {
        let root = BitMapBackend::new(&png, figure.size()).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| Ok(root.present()?))
            .with_context(|| format!("cannot draw {}", png.display()))?;
    }
    Ok([svg, png])
}

/// Makes the bundled font the "sans-serif" family of plotters' text renderer.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        )
        .unwrap_or_else(|_| panic!("the bundled font is a valid TrueType file"));
    });
}

/// Text sizes in pixels, large enough to read with the figures shrunk to a README's width.
pub(crate) const TITLE_PX: f64 = 34.0;
pub(crate) const LABEL_PX: f64 = 28.0;
pub(crate) const TICK_PX: f64 = 22.0;

/// Text of `size` pixels anchored at `(h, v)`.
pub(crate) fn text(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(h, v))
}

/// Draws `title` centred at the top of `root`, shrunk until it fits a narrow figure.
pub(crate) fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (width, _) = root.dim_in_pixel();
    let mut size = TITLE_PX;
    while size > 12.0
        && root
            .estimate_text_size(title, &text(size, HPos::Center, VPos::Top))?
            .0
            + 20
            > width
    {
        size -= 2.0;
    }
    root.draw_text(
        title,
        &text(size, HPos::Center, VPos::Top),
        (width as i32 / 2, 14),
    )?;
    Ok(())
}

/// Linear interpolation through evenly spaced colour stops, t in [0, 1].
fn interpolate(stops: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let x = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let k = (x.floor() as usize).min(stops.len() - 2);
    let f = x - k as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (stops[k], stops[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Diverging blue–white–red for v in [−1, 1] (ColorBrewer RdBu).
pub(crate) fn diverging(v: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 7] = [
        (33, 102, 172),
        (103, 169, 207),
        (209, 229, 240),
        (255, 255, 255),
        (253, 219, 199),
        (239, 138, 98),
        (178, 24, 43),
    ];
    interpolate(&STOPS, (v + 1.0) / 2.0)
}

/// Black → purple → orange → yellow for t in [0, 1] (matplotlib's inferno, coarsely).
pub(crate) fn inferno(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 6] = [
        (0, 0, 4),
        (66, 10, 104),
        (147, 38, 103),
        (221, 81, 58),
        (252, 165, 10),
        (252, 255, 164),
    ];
    interpolate(&STOPS, t)
}

/// An instance's panel label: 1 − S = d, and "diverged" when its weights or loss stopped being
/// finite (its panel is then empty).
pub(crate) fn density_title(inst: &InstanceResult) -> String {
    let diverged = if inst.diverged { " (diverged)" } else { "" };
    format!("1 − S = {}{diverged}", inst.density)
}

/// A vertical colour bar at (x, y) of the given height, `colour(t)` for t from 0 (bottom) to 1 (top),
/// with tick labels (t, text) to its right and a caption above.
pub(crate) fn colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    height: i32,
    colour: impl Fn(f64) -> RGBColor,
    ticks: &[(f64, String)],
    caption: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    const WIDTH: i32 = 22;
    for k in 0..height {
        let t = 1.0 - f64::from(k) / f64::from(height - 1);
        root.draw(&Rectangle::new(
            [(x, y + k), (x + WIDTH, y + k + 1)],
            colour(t).filled(),
        ))?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + WIDTH, y + height)],
        BLACK.stroke_width(1),
    ))?;
    for (t, label) in ticks {
        let ty = y + ((1.0 - t) * f64::from(height - 1)).round() as i32;
        root.draw(&PathElement::new(
            vec![(x + WIDTH, ty), (x + WIDTH + 5, ty)],
            BLACK,
        ))?;
        root.draw_text(
            label,
            &text(TICK_PX, HPos::Left, VPos::Center),
            (x + WIDTH + 8, ty),
        )?;
    }
    root.draw_text(
        caption,
        &text(LABEL_PX, HPos::Left, VPos::Bottom),
        (x, y - 20),
    )?;
    Ok(())
}

/// The most features of any run: panels are sized for it.
fn most_features(runs: &[Run]) -> i32 {
    runs.iter()
        .map(|r| r.results.features)
        .max()
        .unwrap_or(1)
        .max(1) as i32
}

/// The run with the most instances: its densities title the columns.
fn widest(runs: &[Run]) -> &Run {
    runs.iter()
        .max_by_key(|r| r.results.instances.len())
        .expect("at least one run")
}

/// Layout shared by the two panel grids: a title, column titles, row labels on the left, a colour
/// bar on the right.
struct Grid {
    columns: usize,
    rows: usize,
    panel: (i32, i32),
    gap: (i32, i32),
    /// Room on the right for colour bars.
    right: i32,
}

impl Grid {
    const LEFT: i32 = 130;
    const TOP: i32 = 130;

    fn size(&self) -> (u32, u32) {
        let w = self.panels_end() + self.right;
        let h = Self::TOP + self.rows as i32 * (self.panel.1 + self.gap.1) + 10;
        (w as u32, h as u32)
    }

    /// The x just right of the last column.
    fn panels_end(&self) -> i32 {
        Self::LEFT + self.columns as i32 * (self.panel.0 + self.gap.0)
    }

    /// Top-left corner of panel (row, column).
    fn origin(&self, row: usize, column: usize) -> (i32, i32) {
        (
            Self::LEFT + column as i32 * (self.panel.0 + self.gap.0),
            Self::TOP + row as i32 * (self.panel.1 + self.gap.1),
        )
    }

    /// Title, column titles (densities of the run with the most instances) and row labels.
    fn frame<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        runs: &[Run],
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        draw_title(root, title)?;
        for (c, inst) in widest(runs).results.instances.iter().enumerate() {
            let (x, y) = self.origin(0, c);
            root.draw_text(
                &density_title(inst),
                &text(LABEL_PX, HPos::Center, VPos::Bottom),
                (x + self.panel.0 / 2, y - 12),
            )?;
        }
        for (r, run) in runs.iter().enumerate() {
            let (x, y) = self.origin(r, 0);
            root.draw_text(
                &run.label,
                &text(LABEL_PX, HPos::Right, VPos::Center),
                (x - 16, y + self.panel.1 / 2),
            )?;
        }
        Ok(())
    }
}

/// WᵀW and b per sparsity level and model kind.
struct WeightsFigure<'a> {
    runs: &'a [Run],
}

impl WeightsFigure<'_> {
    /// Pixels per matrix entry: 11, less for many features (heat maps of about 220 pixels).
    fn cell(&self) -> i32 {
        (220 / most_features(self.runs)).clamp(1, 11)
    }

    fn grid(&self) -> Grid {
        let n = most_features(self.runs);
        Grid {
            columns: widest(self.runs).results.instances.len(),
            rows: self.runs.len(),
            panel: (n * self.cell() + 8 + self.cell(), n * self.cell()),
            gap: (36, 60),
            right: 250,
        }
    }

    /// The symmetric colour limits of WᵀW (at least 1) and of b (at least 0.01): the largest
    /// magnitudes in the figure. b has its own scale: its values are a fraction of WᵀW's.
    fn limits(&self) -> (f64, f64) {
        let instances = || self.runs.iter().flat_map(|run| &run.results.instances);
        let gram = instances()
            .flat_map(|inst| crate::analysis::gram(&inst.w).into_iter().flatten())
            .map(f64::abs)
            .fold(1.0, f64::max);
        let bias = instances()
            .flat_map(|inst| &inst.b)
            .map(|&v| f64::from(v.abs()))
            .fold(0.01, f64::max);
        (gram, bias)
    }
}

impl Figure for WeightsFigure<'_> {
    fn size(&self) -> (u32, u32) {
        self.grid().size()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let grid = self.grid();
        let results = &self.runs[0].results;
        let title = format!(
            "WᵀW (features by importance) and b (strip, own colour scale), n = {}, m = {}",
            results.features, results.hidden
        );
        grid.frame(root, &title, self.runs)?;
        let (limit, b_limit) = self.limits();
        let cell = self.cell();
        for (r, run) in self.runs.iter().enumerate() {
            for (c, inst) in run.results.instances.iter().enumerate() {
                let (x0, y0) = grid.origin(r, c);
                let n = inst.b.len() as i32;
                for (i, row) in crate::analysis::gram(&inst.w).iter().enumerate() {
                    let y = y0 + i as i32 * cell;
                    for (j, &v) in row.iter().enumerate() {
                        let x = x0 + j as i32 * cell;
                        root.draw(&Rectangle::new(
                            [(x, y), (x + cell, y + cell)],
                            diverging(v / limit).filled(),
                        ))?;
                    }
                    let xb = x0 + n * cell + 8;
                    root.draw(&Rectangle::new(
                        [(xb, y), (xb + cell, y + cell)],
                        diverging(f64::from(inst.b[i]) / b_limit).filled(),
                    ))?;
                }
                let grey = RGBColor(150, 150, 150).stroke_width(1);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + n * cell, y0 + n * cell)],
                    grey,
                ))?;
                root.draw(&Rectangle::new(
                    [
                        (x0 + n * cell + 8, y0),
                        (x0 + n * cell + 8 + cell, y0 + n * cell),
                    ],
                    grey,
                ))?;
                root.draw_text(
                    "b",
                    &text(TICK_PX, HPos::Center, VPos::Top),
                    (x0 + n * cell + 8 + cell / 2, y0 + n * cell + 4),
                )?;
            }
        }
        let (_, top) = grid.origin(0, 0);
        let height = grid.origin(self.runs.len() - 1, 0).1 + grid.panel.1 - top;
        let ticks: Vec<(f64, String)> = (-4..=4)
            .map(|k| f64::from(k) * 0.5)
            .filter(|v| v.abs() <= limit)
            .map(|v| ((v / limit + 1.0) / 2.0, format!("{v}")))
            .collect();
        colour_bar(
            root,
            (grid.panels_end() + 20, top),
            height,
            |t| diverging(2.0 * t - 1.0),
            &ticks,
            "WᵀW",
        )?;
        let ticks: Vec<(f64, String)> = [-1.0, -0.5, 0.0, 0.5, 1.0]
            .iter()
            .map(|&v| ((v + 1.0) / 2.0, format!("{:.2}", v * b_limit)))
            .collect();
        colour_bar(
            root,
            (grid.panels_end() + 130, top),
            height,
            |t| diverging(2.0 * t - 1.0),
            &ticks,
            "b",
        )?;
        Ok(())
    }
}

/// ‖W_i‖ per feature, coloured by superposition, per sparsity level and model kind.
struct FeatureBarsFigure<'a> {
    runs: &'a [Run],
}

impl FeatureBarsFigure<'_> {
    /// Pixels per feature: 12, less for many features (panels of about 240 pixels).
    fn row(&self) -> i32 {
        (240 / most_features(self.runs)).clamp(1, 12)
    }
    /// Bar length of ‖W_i‖ = 1.
    const UNIT: f64 = 130.0;
    /// Superposition values at and above this get the brightest colour.
    const TOP: f64 = 1.0;

    fn grid(&self) -> Grid {
        let n = most_features(self.runs);
        Grid {
            columns: widest(self.runs).results.instances.len(),
            rows: self.runs.len(),
            panel: (Self::UNIT as i32 * 3 / 2, n * self.row()),
            gap: (36, 106),
            right: 200,
        }
    }
}

impl Figure for FeatureBarsFigure<'_> {
    fn size(&self) -> (u32, u32) {
        self.grid().size()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let grid = self.grid();
        grid.frame(
            root,
            "‖W_i‖ per feature (bar length; most important on top), coloured by superposition",
            self.runs,
        )?;
        let (width, height) = (grid.panel.0, grid.panel.1);
        let axis = RGBColor(90, 90, 90);
        for (r, run) in self.runs.iter().enumerate() {
            for (c, inst) in run.results.instances.iter().enumerate() {
                let (x0, y0) = grid.origin(r, c);
                let metrics = InstanceMetrics::of(inst);
                for (i, (&norm, &sup)) in
                    metrics.norms.iter().zip(&metrics.superposition).enumerate()
                {
                    let (y, row) = (y0 + i as i32 * self.row(), self.row());
                    let gap = if row >= 6 { 2 } else { 0 };
                    let length = ((norm * Self::UNIT).round() as i32).min(width);
                    root.draw(&Rectangle::new(
                        [(x0, y + gap), (x0 + length, y + row - gap / 2)],
                        inferno(sup / Self::TOP).filled(),
                    ))?;
                }
                root.draw(&PathElement::new(
                    vec![(x0, y0), (x0, y0 + height), (x0 + width, y0 + height)],
                    axis,
                ))?;
                for (tick, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
                    let tx = x0 + (tick * Self::UNIT).round() as i32;
                    root.draw(&PathElement::new(
                        vec![(tx, y0 + height), (tx, y0 + height + 5)],
                        axis,
                    ))?;
                    root.draw_text(
                        label,
                        &text(TICK_PX, HPos::Center, VPos::Top),
                        (tx, y0 + height + 7),
                    )?;
                }
                let counts = [
                    format!("{} represented", metrics.features_represented),
                    format!("{} superposed", metrics.represented_in_superposition),
                ];
                for (k, line) in counts.iter().enumerate() {
                    let y = y0 + height + 36 + 26 * k as i32;
                    root.draw_text(line, &text(TICK_PX, HPos::Left, VPos::Top), (x0, y))?;
                }
            }
        }
        let (_, top) = grid.origin(0, 0);
        let bar_height = grid.origin(self.runs.len() - 1, 0).1 + height - top;
        let ticks = vec![
            (0.0, "0 (alone)".to_string()),
            (0.5, "0.5".to_string()),
            (1.0, format!("≥ {}", Self::TOP)),
        ];
        colour_bar(
            root,
            (grid.panels_end() + 20, top),
            bar_height,
            inferno,
            &ticks,
            "superposition",
        )?;
        Ok(())
    }
}

/// Training loss curves, one panel per model kind.
struct LossFigure<'a> {
    runs: &'a [Run],
}

impl LossFigure<'_> {
    /// Width of the legend column on the right.
    const LEGEND: i32 = 230;
}

impl Figure for LossFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (640 * self.runs.len() as u32 + Self::LEGEND as u32, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let points = |run: &Run| {
            run.results
                .instances
                .iter()
                .flat_map(|inst| {
                    inst.loss_curve
                        .iter()
                        .filter_map(|&(_, l)| l.map(f64::from))
                })
                .filter(|l| *l > 0.0 && l.is_finite())
                .collect::<Vec<_>>()
        };
        let all: Vec<f64> = self.runs.iter().flat_map(points).collect();
        anyhow::ensure!(!all.is_empty(), "no positive losses to draw");
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min) / 1.5;
        let hi = all.iter().copied().fold(0.0, f64::max) * 1.5;
        let steps = self.runs.iter().map(|r| r.results.steps).max().unwrap_or(1);
        let (width, _) = self.size();
        let (plots, legend) = root.split_horizontally(width as i32 - Self::LEGEND);
        let panels = plots.margin(0, 0, 10, 0).split_evenly((1, self.runs.len()));
        let colour = |k: usize, count: usize| inferno(0.85 * k as f64 / (count.max(2) - 1) as f64);
        for (run, panel) in self.runs.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{} model: training loss", run.label),
                    ("sans-serif", LABEL_PX),
                )
                .margin(14)
                .x_label_area_size(70)
                .y_label_area_size(100)
                .build_cartesian_2d(0u32..steps, (lo..hi).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc("loss")
                .x_labels(6)
                .y_labels(8)
                .label_style(("sans-serif", TICK_PX))
                .axis_desc_style(("sans-serif", LABEL_PX))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            let count = run.results.instances.len();
            for (k, inst) in run.results.instances.iter().enumerate() {
                let curve = inst
                    .loss_curve
                    .iter()
                    .filter_map(|&(s, l)| l.map(|l| (s, f64::from(l))))
                    .filter(|p| p.1 > 0.0 && p.1.is_finite());
                chart.draw_series(LineSeries::new(curve, colour(k, count).stroke_width(2)))?;
            }
        }
        let instances = &widest(self.runs).results.instances;
        for (k, inst) in instances.iter().enumerate() {
            let y = 100 + 36 * k as i32;
            legend.draw(&PathElement::new(
                vec![(10, y), (40, y)],
                colour(k, instances.len()).stroke_width(3),
            ))?;
            legend.draw_text(
                &density_title(inst),
                &text(TICK_PX, HPos::Left, VPos::Center),
                (48, y),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::toy_results;

    #[test]
    fn colour_maps_hit_their_ends_and_middle() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(-1.0), RGBColor(33, 102, 172));
        assert_eq!(diverging(2.0), RGBColor(178, 24, 43));
        assert_eq!(inferno(0.0), RGBColor(0, 0, 4));
        assert_eq!(inferno(1.0), RGBColor(252, 255, 164));
    }

    #[test]
    fn draws_every_figure_of_a_directory_of_runs() {
        let dir = tempfile::tempdir().unwrap();
        for (name, model) in [("relu", ModelKind::Relu), ("linear", ModelKind::Linear)] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(
                dir.path().join(name).join("results.json"),
                serde_json::to_vec(&toy_results(model)).unwrap(),
            )
            .unwrap();
        }
        let runs = load_runs(dir.path()).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
            ["linear", "ReLU"]
        );
        let written = draw_all(&runs, dir.path()).unwrap();
        assert_eq!(written.len(), 6);
        for path in &written {
            let bytes = std::fs::read(path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("png") => assert!(bytes.starts_with(b"\x89PNG"), "{}", path.display()),
                _ => assert!(bytes.starts_with(b"<svg"), "{}", path.display()),
            }
        }
        assert_eq!(load_runs(&dir.path().join("relu")).unwrap().len(), 1);
        assert!(load_runs(&dir.path().join("relu").join("missing")).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(load_runs(empty.path())
            .unwrap_err()
            .to_string()
            .contains("no results.json"));
    }
}
