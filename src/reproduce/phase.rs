//! `tms reproduce phase`: the paper's phase diagrams of one "extra" feature. Every other feature has
//! importance 1; the extra one (the last) has relative importance r from 0.1 to 10, crossed with the
//! density p = 1 − S from 0.01 to 1 (log grids), several restarts per cell. The best restart of each
//! cell (lowest evaluation loss) is classified by [`classify`] as [`Phase::NotLearned`],
//! [`Phase::Dedicated`] or [`Phase::Superposition`].
//!
//! Two diagrams are trained: n = 2, m = 1 (in `OUT/n2-m1/`) and n = 3, m = 2 (in `OUT/n3-m2/`). For
//! n = 2, m = 1 the expected losses of the three candidate solutions have closed forms
//! ([`candidate_losses`]); the figure draws the boundary between their minima over the trained grid
//! and summary.md reports the share of cells where the trained and the analytic phase agree.
//!
//! The analytic losses use the notebook's loss, the mean over the two features of I_i (x_i − x'_i)²,
//! each x_i present with probability p and then uniform on [0, 1]:
//! - not learned, W = [1, 0]: x'_0 = x_0 exactly (b_0 = 0) and x'_1 = E x_1 = p/2 (b_1 = p/2), so
//!   L = r·V/2 with V = Var x_1 = p/3 − p²/4;
//! - dedicated, W = [0, 1]: symmetrically L = V/2;
//! - superposition, W = [1, −1] with the same bias b for both features (the loss is symmetric):
//!   x'_i = ReLU(x_i − x_j + b), L = (1 + r)·e(b)/2 with e(b) = E(x_0 − ReLU(x_0 − x_1 + b))²
//!   ([`antipodal_error`], piecewise polynomial in b), minimised over b ([`best_antipodal_bias`]).

use super::{best_instances, training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::analysis::{InstanceMetrics, REPRESENTED_NORM, SUPERPOSITION_THRESHOLD};
use crate::error::UsageError;
use crate::experiment::{log_grid, Experiment, Settings};
use crate::figures::{draw_title, save, text, Figure, LABEL_PX, TICK_PX};
use crate::store::results::{InstanceResult, Results, RunConfig};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What the extra feature does in a trained or candidate solution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// ‖W_extra‖ ≤ [`REPRESENTED_NORM`].
    NotLearned,
    /// Represented, alone in its direction.
    Dedicated,
    /// Represented, sharing its direction: Σ_{j≠extra} (Ŵ_extra·W_j)² > [`SUPERPOSITION_THRESHOLD`].
    Superposition,
}

const PHASES: [Phase; 3] = [Phase::NotLearned, Phase::Dedicated, Phase::Superposition];

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::NotLearned => "extra feature not learned",
            Phase::Dedicated => "dedicated dimension",
            Phase::Superposition => "superposition",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Phase::NotLearned => RGBColor(215, 215, 215),
            Phase::Dedicated => RGBColor(67, 147, 195),
            Phase::Superposition => RGBColor(239, 138, 98),
        }
    }
}

/// The phase of a trained instance's last feature (the extra one).
pub fn classify(inst: &InstanceResult) -> Phase {
    let metrics = InstanceMetrics::of(inst);
    let extra = metrics.norms.len() - 1;
    if metrics.norms[extra] <= REPRESENTED_NORM {
        Phase::NotLearned
    } else if metrics.superposition[extra] > SUPERPOSITION_THRESHOLD {
        Phase::Superposition
    } else {
        Phase::Dedicated
    }
}

/// Var x_i = p/3 − p²/4: the expected squared error of a feature replaced by its mean p/2.
fn variance(p: f64) -> f64 {
    p / 3.0 - p * p / 4.0
}

/// e(b) = E(x_0 − ReLU(x_0 − x_1 + b))² for b in [−1, 1], by which features are present:
/// - neither (probability (1 − p)²): error max(b, 0)²;
/// - x_0 alone (p(1 − p)): error b² where x_0 > −b, else x_0²: u² − 2u³/3 for u = −b ≥ 0, b² for b > 0;
/// - x_1 alone (p(1 − p)): x'_0 = ReLU(b − x_1): 0 for b ≤ 0, ∫_0^b (b − x)² dx = b³/3 for b > 0;
/// - both (p²): integrating over x_1 the two sides of x_0 = x_1 − b gives
///   1/6 + u/3 − u³/3 + u⁴/6 for u = −b ≥ 0, and b³/3 + (1 − b)³/3 − (1 − b)⁴/6 for b > 0.
pub fn antipodal_error(p: f64, b: f64) -> f64 {
    let q = 1.0 - p;
    if b <= 0.0 {
        let u = -b;
        p * q * (u * u - 2.0 * u.powi(3) / 3.0)
            + p * p * (1.0 / 6.0 + u / 3.0 - u.powi(3) / 3.0 + u.powi(4) / 6.0)
    } else {
        let w = 1.0 - b;
        q * q * b * b
            + p * q * (b * b + b.powi(3) / 3.0)
            + p * p * (b.powi(3) / 3.0 + w.powi(3) / 3.0 - w.powi(4) / 6.0)
    }
}

/// The bias in [−1, 1] that minimises [`antipodal_error`] at density p, and that error: a grid
/// search refined by golden sections.
pub fn best_antipodal_bias(p: f64) -> (f64, f64) {
    const GRID: usize = 200;
    let at = |k: usize| -1.0 + 2.0 * k as f64 / GRID as f64;
    let k = (0..=GRID)
        .min_by(|&a, &b| antipodal_error(p, at(a)).total_cmp(&antipodal_error(p, at(b))))
        .expect("a non-empty grid");
    let (mut lo, mut hi) = (at(k.saturating_sub(1)), at((k + 1).min(GRID)));
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (x1, x2) = (hi - golden * (hi - lo), lo + golden * (hi - lo));
        if antipodal_error(p, x1) < antipodal_error(p, x2) {
            hi = x2;
        } else {
            lo = x1;
        }
    }
    let b = (lo + hi) / 2.0;
    (b, antipodal_error(p, b))
}

/// Expected losses of the three candidate solutions of n = 2, m = 1 at density p with extra-feature
/// importance r, in the order not learned, dedicated, superposition (see the module doc).
pub fn candidate_losses(p: f64, r: f64) -> [f64; 3] {
    losses_given(p, r, best_antipodal_bias(p).1)
}

/// The candidate losses given the antipodal pair's least error `e` at density p.
fn losses_given(p: f64, r: f64, e: f64) -> [f64; 3] {
    [
        r * variance(p) / 2.0,
        variance(p) / 2.0,
        (1.0 + r) * e / 2.0,
    ]
}

/// The candidate with the lowest expected loss, given the candidate losses.
fn lowest(losses: [f64; 3]) -> Phase {
    let k = (0..3)
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .expect("three candidates");
    PHASES[k]
}

/// The analytically optimal phase of n = 2, m = 1 at density p and extra-feature importance r.
pub fn analytic_phase(p: f64, r: f64) -> Phase {
    lowest(candidate_losses(p, r))
}

/// The diagrams: directory name, n and m.
const DIAGRAMS: [(&str, usize, usize); 2] = [("n2-m1", 2, 1), ("n3-m2", 3, 2)];
/// Restarts per cell and training steps unless --restarts and --steps say otherwise: 2 × 20 × 20 cells
/// of 4 restarts at 5,000 steps take about 15 minutes on two CPU cores.
const DEFAULT_RESTARTS: u32 = 4;
const DEFAULT_STEPS: u32 = 5_000;
/// The axes: relative importance of the extra feature, and density.
const IMPORTANCE_RANGE: (f64, f64) = (0.1, 10.0);
const DENSITY_RANGE: (f64, f64) = (0.01, 1.0);

/// One cell of a diagram: its setting and the phase of its best restart (and the analytic phase for
/// n = 2, m = 1).
#[derive(Clone, Debug)]
struct Cell {
    density: f64,
    importance: f64,
    trained: Phase,
    analytic: Option<Phase>,
    /// The best restart's evaluation loss over the lowest analytic candidate loss (n = 2, m = 1).
    loss_ratio: Option<f64>,
}

/// A trained diagram.
struct Diagram {
    features: usize,
    hidden: usize,
    cells: Vec<Cell>,
    /// How many restarts of how many cells classify differently from their cell's best.
    restarts_disagreeing: (usize, usize),
}

impl Diagram {
    fn of(results: &Results) -> Diagram {
        let analytic = results.features == 2 && results.hidden == 1;
        let cells: Vec<Cell> = best_instances(results)
            .into_iter()
            .map(|inst| {
                let density = inst.density;
                let importance = f64::from(*inst.importance.last().expect("features"));
                let losses = analytic.then(|| candidate_losses(density, importance));
                Cell {
                    density,
                    importance,
                    trained: classify(inst),
                    analytic: losses.map(lowest),
                    loss_ratio: losses.and_then(|l| {
                        let best = l.iter().copied().fold(f64::INFINITY, f64::min);
                        inst.eval_loss.map(|e| e / best)
                    }),
                }
            })
            .collect();
        let best_phase = |setting: usize| {
            results
                .instances
                .iter()
                .find(|inst| inst.setting == setting && inst.best_of_setting)
                .map(classify)
        };
        let disagreeing = results
            .instances
            .iter()
            .filter(|inst| best_phase(inst.setting).is_some_and(|p| p != classify(inst)))
            .count();
        Diagram {
            features: results.features,
            hidden: results.hidden,
            cells,
            restarts_disagreeing: (disagreeing, results.instances.len()),
        }
    }

    fn title(&self) -> String {
        format!("n = {}, m = {}", self.features, self.hidden)
    }

    /// Share of cells whose trained phase is the analytic one (None without an analytic phase).
    fn agreement(&self) -> Option<f64> {
        let judged: Vec<&Cell> = self.cells.iter().filter(|c| c.analytic.is_some()).collect();
        (!judged.is_empty()).then(|| {
            judged
                .iter()
                .filter(|c| c.analytic == Some(c.trained))
                .count() as f64
                / judged.len() as f64
        })
    }
}

/// `tms reproduce phase`: the diagrams at `grid` × `grid` cells.
#[derive(clap::Args, Debug, Clone)]
pub struct PhaseDiagrams {
    /// Cells per axis of each diagram (importance × density).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub grid: usize,
}

impl Reproduction for PhaseDiagrams {
    fn name(&self) -> &'static str {
        "phase"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        if self.grid < 2 {
            return Err(UsageError::invalid("--grid", self.grid, "at least 2"));
        }
        let grid = self.grid;
        let densities = log_grid(DENSITY_RANGE.0, DENSITY_RANGE.1, grid);
        let importances = log_grid(IMPORTANCE_RANGE.0, IMPORTANCE_RANGE.1, grid);
        let steps = options.steps.unwrap_or(DEFAULT_STEPS);
        DIAGRAMS
            .iter()
            .map(|&(name, n, m)| {
                let exp = Settings {
                    features: Some(n),
                    hidden: Some(m),
                    importance_decay: Some(1.0),
                    density: Some(densities.clone()),
                    extra_importance: Some(importances.clone()),
                    restarts: Some(options.restarts.unwrap_or(DEFAULT_RESTARTS)),
                    steps: Some(steps),
                    log_every: Some((steps / 10).max(1)),
                    ..Default::default()
                }
                .resolve()?;
                Ok((name, exp))
            })
            .collect()
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let diagrams: Vec<Diagram> = runs.iter().map(|(_, r)| Diagram::of(r)).collect();
        let figure = PhaseFigure {
            diagrams: &diagrams,
        };
        Ok(save(&figure, &out.join("phase"))?.to_vec())
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        let diagrams: Vec<Diagram> = runs.iter().map(|(_, r)| Diagram::of(r)).collect();
        Ok(summary_markdown(&runs[0].0, &diagrams))
    }
}

/// summary.md: settings, the phase counts of each diagram, agreement with the analytic diagram, and
/// a comparison with the paper.
fn summary_markdown(config: &RunConfig, diagrams: &[Diagram]) -> String {
    let mut out = String::new();
    let exp = &config.experiment;
    let restarts = exp
        .instances
        .iter()
        .map(|i| i.restart + 1)
        .max()
        .unwrap_or(1);
    let grid = (exp.instances.len() / restarts as usize).isqrt();
    let _ = writeln!(out, "# Phase diagrams of one extra feature\n");
    let _ = writeln!(
        out,
        "Trained by `tms reproduce phase` on {}. ReLU output model; every feature has importance 1 except the last \
         (the extra feature), whose relative importance r runs over {grid} log-spaced values from {} to {}, crossed with {grid} \
         log-spaced densities 1 − S from {} to {}: {} cells, {restarts} restarts each. Each cell shows its best restart \
         (lowest evaluation loss).\n",
        training_line(config),
        IMPORTANCE_RANGE.0,
        IMPORTANCE_RANGE.1,
        DENSITY_RANGE.0,
        DENSITY_RANGE.1,
        grid * grid
    );
    let _ = writeln!(
        out,
        "The extra feature is *not learned* when ‖W_extra‖ ≤ {REPRESENTED_NORM}, in *superposition* when it is learned and \
         Σ_{{j≠extra}} (Ŵ_extra·W_j)² > {SUPERPOSITION_THRESHOLD}, and has a *dedicated dimension* otherwise.\n"
    );
    let _ = writeln!(out, "| diagram | not learned | dedicated dimension | superposition | restarts classified unlike their cell's best | agreement with the analytic diagram |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for d in diagrams {
        let count = |p: Phase| d.cells.iter().filter(|c| c.trained == p).count();
        let (off, all) = d.restarts_disagreeing;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {off} of {all} | {} |",
            d.title(),
            count(Phase::NotLearned),
            count(Phase::Dedicated),
            count(Phase::Superposition),
            d.agreement()
                .map_or("—".into(), |a| format!("{:.1} %", 100.0 * a))
        );
    }
    let _ = writeln!(out, "\n## Analytic diagram of n = 2, m = 1\n");
    let _ = writeln!(
        out,
        "Expected loss (mean over the two features of I_i (x_i − x'_i)², V = p/3 − p²/4 the variance of a feature at density p):\n\n\
         - extra feature not learned, W = [1, 0], b = [0, p/2]: L = r·V/2;\n\
         - dedicated dimension, W = [0, 1], b = [p/2, 0]: L = V/2;\n\
         - superposition, W = [1, −1], b = [β, β]: L = (1 + r)·e(β)/2 with e(β) = E(x_0 − ReLU(x_0 − x_1 + β))², a piecewise \
         polynomial in β (see `src/reproduce/phase.rs`), minimised numerically over β ∈ [−1, 1].\n"
    );
    let biases = [1.0, 0.1, 0.01]
        .iter()
        .map(|&p| format!("β = {:.3} at p = {p}", best_antipodal_bias(p).0))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "The best bias of the antipodal pair is never negative ({biases}): the interference of an antipodal partner is \
         negative, so the ReLU removes it without a negative bias. Superposition beats both single-feature solutions only where \
         (1 + r)·e(β*) < min(1, r)·V, which needs sparse features and r near 1.\n"
    );
    if let Some(d) = diagrams.first() {
        if let Some(agreement) = d.agreement() {
            let mut ratios: Vec<f64> = d.cells.iter().filter_map(|c| c.loss_ratio).collect();
            ratios.sort_by(f64::total_cmp);
            let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "The trained phase matches the analytic one in **{:.1} %** of the {} cells. The best restart's evaluation loss \
                 is {median:.3} × the lowest candidate loss in the median cell (below 1 where training finds a better \
                 scale or bias than the three idealised candidates, above 1 where it has not converged).\n",
                100.0 * agreement,
                d.cells.len()
            );
            let mismatches: Vec<String> = d
                .cells
                .iter()
                .filter(|c| c.analytic.is_some_and(|a| a != c.trained))
                .map(|c| {
                    format!(
                        "(r {:.2}, p {:.3}: trained {}, analytic {})",
                        c.importance,
                        c.density,
                        c.trained.label(),
                        c.analytic.map_or("", Phase::label)
                    )
                })
                .collect();
            if !mismatches.is_empty() && mismatches.len() <= 40 {
                let _ = writeln!(out, "Cells that disagree: {}.\n", mismatches.join(", "));
            }
        }
    }
    let _ = writeln!(out, "## Compared with the paper\n");
    for d in diagrams {
        let _ = writeln!(out, "{}\n", comparison(d));
    }
    let _ = writeln!(out, "## Figure\n\n![phase diagrams](phase.png)");
    out
}

/// Sentences on one diagram against the paper's: superposition for sparse features near r = 1, none
/// for dense ones, and outside superposition the more important feature wins the dimension.
fn comparison(d: &Diagram) -> String {
    let superposed = |cells: &[&Cell]| {
        let count = cells
            .iter()
            .filter(|c| c.trained == Phase::Superposition)
            .count();
        format!(
            "{count} of {} cells ({:.0} %)",
            cells.len(),
            100.0 * count as f64 / cells.len().max(1) as f64
        )
    };
    let sparse: Vec<&Cell> = d.cells.iter().filter(|c| c.density <= 0.1).collect();
    let dense: Vec<&Cell> = d.cells.iter().filter(|c| c.density >= 0.5).collect();
    let sparsest = d.cells.iter().map(|c| c.density).fold(1.0, f64::min);
    let band: Vec<f64> = d
        .cells
        .iter()
        .filter(|c| c.density == sparsest && c.trained == Phase::Superposition)
        .map(|c| c.importance)
        .collect();
    let band = if band.is_empty() {
        "in no cell".to_string()
    } else {
        format!(
            "for r from {:.2} to {:.2}",
            band.iter().copied().fold(f64::INFINITY, f64::min),
            band.iter().copied().fold(0.0, f64::max)
        )
    };
    let single: Vec<&Cell> = d
        .cells
        .iter()
        .filter(|c| c.trained != Phase::Superposition)
        .collect();
    let by_importance = single
        .iter()
        .filter(|c| (c.importance < 1.0) == (c.trained == Phase::NotLearned))
        .count();
    format!(
        "**{}.** The paper finds superposition only for sparse features with r near 1, in a band that widens as the features \
         get sparser. Here {} at density ≤ 0.1 and {} at density ≥ 0.5 are in superposition; at the sparsest density {sparsest} \
         the extra feature is in superposition {band}. Outside superposition, {by_importance} of {} cells follow the paper's rule \
         that the extra feature is dropped when r < 1 and learned when r > 1.",
        d.title(),
        superposed(&sparse),
        superposed(&dense),
        single.len()
    )
}

/// The diagrams side by side, cells coloured by phase, the analytic boundary of n = 2, m = 1 in black.
struct PhaseFigure<'a> {
    diagrams: &'a [Diagram],
}

impl PhaseFigure<'_> {
    const PANEL: (u32, u32) = (640, 620);
    const TOP: u32 = 70;
    const LEGEND: u32 = 110;
}

/// The cell edges of a log grid of centres: geometric midpoints, extended half a step at the ends.
fn log_edges(centres: &[f64]) -> Vec<f64> {
    let step = if centres.len() > 1 {
        (centres[1] / centres[0]).sqrt()
    } else {
        2.0
    };
    let mut edges: Vec<f64> = centres.iter().map(|c| c / step).collect();
    edges.push(centres.last().copied().unwrap_or(1.0) * step);
    edges
}

/// The sorted distinct values of a list.
fn distinct(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

impl Figure for PhaseFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (
            Self::PANEL.0 * self.diagrams.len() as u32,
            Self::TOP + Self::PANEL.1 + Self::LEGEND,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        draw_title(
            root,
            "Phase diagrams: what the extra feature does (best of the restarts per cell)",
        )?;
        let (_, rest) = root.split_vertically(Self::TOP);
        let (plots, legend) = rest.split_vertically(Self::PANEL.1);
        let panels = plots.split_evenly((1, self.diagrams.len()));
        for (d, panel) in self.diagrams.iter().zip(&panels) {
            let r_edges = log_edges(&distinct(d.cells.iter().map(|c| c.importance).collect()));
            let p_edges = log_edges(&distinct(d.cells.iter().map(|c| c.density).collect()));
            let x_range = r_edges[0]..*r_edges.last().expect("edges");
            let y_range = p_edges[0]..*p_edges.last().expect("edges");
            let mut chart = ChartBuilder::on(panel)
                .caption(d.title(), ("sans-serif", LABEL_PX))
                .margin(16)
                .x_label_area_size(70)
                .y_label_area_size(100)
                .build_cartesian_2d(x_range.clone().log_scale(), y_range.clone().log_scale())?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("relative importance r of the extra feature")
                .y_desc("density 1 − S")
                .label_style(("sans-serif", TICK_PX))
                .axis_desc_style(("sans-serif", TICK_PX))
                .x_label_formatter(&|v| format!("{v}"))
                .y_label_formatter(&|v| format!("{v}"))
                .draw()?;
            let edge = |edges: &[f64], v: f64| {
                let k = edges.partition_point(|&e| e < v).clamp(1, edges.len() - 1);
                (edges[k - 1], edges[k])
            };
            chart.draw_series(d.cells.iter().map(|c| {
                let (x0, x1) = edge(&r_edges, c.importance);
                let (y0, y1) = edge(&p_edges, c.density);
                Rectangle::new([(x0, y0), (x1, y1)], c.trained.colour().filled())
            }))?;
            if d.cells.iter().any(|c| c.analytic.is_some()) {
                chart.draw_series(
                    analytic_boundary(&x_range, &y_range, 500)
                        .into_iter()
                        .map(|point| Circle::new(point, 1, BLACK.filled())),
                )?;
            }
        }
        let mut x = 30;
        let y = 40;
        for phase in PHASES {
            legend.draw(&Rectangle::new(
                [(x, y - 12), (x + 24, y + 12)],
                phase.colour().filled(),
            ))?;
            legend.draw_text(
                phase.label(),
                &text(TICK_PX, HPos::Left, VPos::Center),
                (x + 32, y),
            )?;
            x += 32
                + legend
                    .estimate_text_size(phase.label(), &text(TICK_PX, HPos::Left, VPos::Center))?
                    .0 as i32
                + 40;
        }
        legend.draw(&PathElement::new(
            vec![(x, y), (x + 30, y)],
            BLACK.stroke_width(3),
        ))?;
        legend.draw_text(
            "analytic boundary",
            &text(TICK_PX, HPos::Left, VPos::Center),
            (x + 38, y),
        )?;
        Ok(())
    }
}

/// Points on the boundaries of the analytic n = 2, m = 1 diagram: a `resolution` × `resolution` log
/// grid over the ranges, keeping the points whose phase differs from the next point right or above.
fn analytic_boundary(
    x_range: &std::ops::Range<f64>,
    y_range: &std::ops::Range<f64>,
    resolution: usize,
) -> Vec<(f64, f64)> {
    let xs = log_grid(x_range.start, x_range.end, resolution);
    // Densities above 1 (the top half of the top row of cells) have no meaning.
    let ys = log_grid(y_range.start, y_range.end.min(1.0), resolution);
    let phases: Vec<Vec<Phase>> = ys
        .iter()
        .map(|&p| {
            let (_, e) = best_antipodal_bias(p);
            xs.iter().map(|&r| lowest(losses_given(p, r, e))).collect()
        })
        .collect();
    let mut points = vec![];
    for (j, row) in phases.iter().enumerate() {
        for (i, &phase) in row.iter().enumerate() {
            let right = row.get(i + 1).is_some_and(|&q| q != phase);
            let above = phases.get(j + 1).is_some_and(|next| next[i] != phase);
            if right || above {
                points.push((xs[i], ys[j]));
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Monte Carlo estimate of the notebook's loss of the n = 2, m = 1 ReLU model with W = `w`, bias
    /// `b` at density p with importances [1, r].
    fn monte_carlo_loss(w: [f64; 2], b: [f64; 2], p: f64, r: f64, samples: usize) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut feature = || {
            if rng.random::<f64>() < p {
                rng.random::<f64>()
            } else {
                0.0
            }
        };
        let importance = [1.0, r];
        let mut total = 0.0;
        for _ in 0..samples {
            let x = [feature(), feature()];
            let h = w[0] * x[0] + w[1] * x[1];
            for i in 0..2 {
                let out = (w[i] * h + b[i]).max(0.0);
                total += importance[i] * (x[i] - out).powi(2) / 2.0;
            }
        }
        total / samples as f64
    }

    fn assert_close(analytic: f64, estimate: f64, what: &str) {
        assert!(
            (analytic - estimate).abs() <= 0.02 * analytic + 2e-5,
            "{what}: analytic {analytic} vs Monte Carlo {estimate}"
        );
    }

    #[test]
    fn candidate_losses_match_monte_carlo() {
        for (p, r) in [(1.0, 0.5), (0.3, 2.0), (0.05, 1.0), (0.02, 3.0)] {
            let [not_learned, dedicated, superposition] = candidate_losses(p, r);
            let samples = 400_000;
            let (beta, _) = best_antipodal_bias(p);
            let context = format!("p {p}, r {r}");
            assert_close(
                not_learned,
                monte_carlo_loss([1.0, 0.0], [0.0, p / 2.0], p, r, samples),
                &format!("not learned, {context}"),
            );
            assert_close(
                dedicated,
                monte_carlo_loss([0.0, 1.0], [p / 2.0, 0.0], p, r, samples),
                &format!("dedicated, {context}"),
            );
            assert_close(
                superposition,
                monte_carlo_loss([1.0, -1.0], [beta, beta], p, r, samples),
                &format!("superposition, {context}"),
            );
        }
    }

    #[test]
    fn antipodal_error_matches_monte_carlo_on_both_sides_of_zero_bias() {
        for p in [1.0, 0.2] {
            for b in [-0.6, -0.2, 0.0, 0.15, 0.5] {
                // With r = 1 the loss is the mean of the two features' (equal) errors.
                let estimate = monte_carlo_loss([1.0, -1.0], [b, b], p, 1.0, 400_000);
                assert_close(antipodal_error(p, b), estimate, &format!("p {p}, b {b}"));
            }
        }
    }

    #[test]
    fn best_bias_is_a_minimum_and_positive() {
        for p in [1.0, 0.1, 0.01] {
            let (b, e) = best_antipodal_bias(p);
            assert!(b > 0.0, "p {p}: b {b}");
            for db in [-0.01, 0.01] {
                assert!(antipodal_error(p, b + db) >= e, "p {p}: not a minimum");
            }
        }
    }

    #[test]
    fn analytic_phases_follow_the_paper() {
        // Dense features: never superposition; the more important feature gets the dimension.
        assert_eq!(analytic_phase(1.0, 0.5), Phase::NotLearned);
        assert_eq!(analytic_phase(1.0, 2.0), Phase::Dedicated);
        assert_eq!(analytic_phase(1.0, 1.05), Phase::Dedicated);
        // Sparse features of similar importance: superposition; very different: the single feature.
        assert_eq!(analytic_phase(0.01, 1.0), Phase::Superposition);
        assert_eq!(analytic_phase(0.3, 1.0), Phase::Superposition);
        assert_eq!(analytic_phase(0.3, 0.1), Phase::NotLearned);
        assert_eq!(analytic_phase(0.3, 10.0), Phase::Dedicated);
    }

    /// An n = 2, m = 1 instance with W = `w`.
    fn instance(w: [f32; 2]) -> InstanceResult {
        let mut inst =
            crate::testing::toy_results(crate::experiment::ModelKind::Relu).instances[0].clone();
        inst.w = vec![w.to_vec()];
        inst.b = vec![0.0; 2];
        inst.importance = vec![1.0, 1.0];
        inst
    }

    #[test]
    fn classification_of_the_three_solutions() {
        assert_eq!(classify(&instance([1.0, 0.05])), Phase::NotLearned);
        assert_eq!(classify(&instance([0.1, 1.0])), Phase::Dedicated);
        assert_eq!(classify(&instance([0.9, -1.1])), Phase::Superposition);
        assert_eq!(classify(&instance([0.0, 0.0])), Phase::NotLearned);
    }

    #[test]
    fn boundary_separates_the_analytic_phases() {
        let points = analytic_boundary(&(0.1..10.0), &(0.01..1.0), 60);
        assert!(!points.is_empty());
        // The not learned / dedicated boundary at r = 1 runs through the dense half.
        assert!(points
            .iter()
            .any(|&(r, p)| (r - 1.0).abs() < 0.1 && p > 0.5));
        let grid = log_grid(0.1, 10.0, 3);
        assert!((grid[1] - 1.0).abs() < 1e-12 && (grid[2] - 10.0).abs() < 1e-12);
    }
}
