//! `tms reproduce geometry`: uniform superposition. A ReLU output model with n features of equal
//! importance (default n = 400, m = 30 as in the paper) over a log sweep of densities, one instance
//! each, sampled more densely where 1/(1 − S) is between 2 and 6 (the narrow plateau at 1/2). The
//! figure plots dimensions per feature m / ‖W‖²_F against 1/(1 − S) with every feature's
//! dimensionality D_i behind it and the uniform polytopes' fractions as reference lines, and a
//! histogram of D_i where 1/(1 − S) ≤ 10; summary.md gives the plateaus and the share of D_i near each fraction.

use super::{best_instances, training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::analysis::{InstanceMetrics, REPRESENTED_NORM};
use crate::error::UsageError;
use crate::experiment::{log_grid, Experiment, Settings};
use crate::figures::{draw_title, save, text, Figure, LABEL_PX, TICK_PX};
use crate::store::results::{Results, RunConfig};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The fractions of a dimension that the paper's uniform polytopes give each feature: dedicated,
/// tetrahedron, triangle, antipodal pair, pentagon, square antiprism.
pub const FRACTIONS: [(f64, &str); 6] = [
    (1.0, "1"),
    (0.75, "3/4"),
    (2.0 / 3.0, "2/3"),
    (0.5, "1/2"),
    (0.4, "2/5"),
    (0.375, "3/8"),
];
/// A D_i within this of a fraction counts as that fraction.
pub const NEAR: f64 = 0.02;
/// Largest 1/(1 − S) of the sweep.
const MAX_INVERSE_DENSITY: f64 = 2000.0;
/// The interval of 1/(1 − S) sampled densely.
const DENSE: (f64, f64) = (2.0, 6.0);

/// The densities of a sweep of `count` instances: 3/5 of them log-spaced so that 1/(1 − S) runs from
/// 1 to [`MAX_INVERSE_DENSITY`], the rest log-spaced over [`DENSE`]; densest first.
pub fn sweep_densities(count: usize) -> Vec<f64> {
    let wide = (count * 3).div_ceil(5).max(1);
    let mut inverse = log_grid(1.0, MAX_INVERSE_DENSITY, wide);
    inverse.extend(log_grid(DENSE.0, DENSE.1, count - wide));
    inverse.sort_by(f64::total_cmp);
    inverse.iter().map(|x| 1.0 / x).collect()
}

/// Share of `values` within [`NEAR`] of each of [`FRACTIONS`], in that order.
pub fn shares_near_fractions(values: &[f64]) -> Vec<f64> {
    FRACTIONS
        .iter()
        .map(|&(f, _)| {
            values.iter().filter(|v| (*v - f).abs() < NEAR).count() as f64
                / values.len().max(1) as f64
        })
        .collect()
}

/// The smallest and largest 1/(1 − S) of the points (1/(1 − S), dimensions per feature) whose value
/// is within `tolerance` of `level`, and how many there are.
pub fn plateau(points: &[(f64, f64)], level: f64, tolerance: f64) -> Option<(f64, f64, usize)> {
    let on: Vec<f64> = points
        .iter()
        .filter(|p| (p.1 - level).abs() < tolerance)
        .map(|p| p.0)
        .collect();
    (!on.is_empty()).then(|| {
        (
            on.iter().copied().fold(f64::INFINITY, f64::min),
            on.iter().copied().fold(0.0, f64::max),
            on.len(),
        )
    })
}

/// A plateau of dimensions per feature counts within this of its level.
const PLATEAU_TOLERANCE: f64 = 0.03;
/// The sparsity range (1/(1 − S) up to this) where the paper's polytopes appear.
const POLYTOPE_REGIME: f64 = 10.0;

/// What the figure and the summary need of a run: per instance 1/(1 − S), dimensions per feature and
/// the D_i of its represented features.
struct Sweep {
    features: usize,
    hidden: usize,
    points: Vec<(f64, f64)>,
    dimensionalities: Vec<Vec<f64>>,
    metrics: Vec<InstanceMetrics>,
}

impl Sweep {
    fn of(results: &Results) -> Sweep {
        let metrics: Vec<InstanceMetrics> = best_instances(results)
            .into_iter()
            .map(InstanceMetrics::of)
            .collect();
        Sweep {
            features: results.features,
            hidden: results.hidden,
            points: metrics
                .iter()
                .map(|mt| (1.0 / mt.density, mt.dimensions_per_feature))
                .collect(),
            dimensionalities: metrics
                .iter()
                .map(|mt| {
                    mt.represented()
                        .iter()
                        .map(|&i| mt.dimensionality[i])
                        .collect()
                })
                .collect(),
            metrics,
        }
    }

    /// The D_i of the represented features of every instance with 1/(1 − S) ≤ `max_inverse_density`.
    fn dimensionalities_up_to(&self, max_inverse_density: f64) -> Vec<f64> {
        self.points
            .iter()
            .zip(&self.dimensionalities)
            .filter(|(p, _)| p.0 <= max_inverse_density)
            .flat_map(|(_, dims)| dims.iter().copied())
            .collect()
    }
}

/// `tms reproduce geometry`: the sizes of the sweep.
#[derive(clap::Args, Debug, Clone)]
pub struct UniformSuperposition {
    /// Number of features n.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub features: usize,
    /// Number of hidden dimensions m.
    #[arg(long, value_name = "M", default_value_t = 30)]
    pub hidden: usize,
    #[arg(long, value_name = "B", default_value_t = 1024)]
    pub batch: usize,
    /// Densities (instances) in the sweep.
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub instances: usize,
}

impl Reproduction for UniformSuperposition {
    fn name(&self) -> &'static str {
        "geometry"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        if self.instances < 2 {
            return Err(UsageError::invalid(
                "--instances",
                self.instances,
                "at least 2",
            ));
        }
        let steps = options.steps.unwrap_or(10_000);
        let exp = Settings {
            features: Some(self.features),
            hidden: Some(self.hidden),
            importance_decay: Some(1.0),
            density: Some(sweep_densities(self.instances)),
            restarts: Some(options.restarts.unwrap_or(1)),
            batch: Some(self.batch),
            steps: Some(steps),
            log_every: Some((steps / 100).max(1)),
            ..Default::default()
        }
        .resolve()?;
        Ok(vec![("relu", exp)])
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let sweep = Sweep::of(&runs[0].1);
        Ok(save(&GeometryFigure { sweep: &sweep }, &out.join("geometry"))?.to_vec())
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        Ok(summary_markdown(&runs[0].0, &Sweep::of(&runs[0].1)))
    }
}

/// "from 2.1 to 5.3 (7 instances)" or "nowhere".
fn describe_plateau(plateau: Option<(f64, f64, usize)>) -> String {
    plateau.map_or("at no density".into(), |(lo, hi, count)| {
        let plural = if count == 1 { "" } else { "s" };
        format!("for 1/(1 − S) from {lo:.2} to {hi:.2} ({count} instance{plural})")
    })
}

/// summary.md: the sweep's table, the plateaus, the shares of D_i near each fraction, and a
/// comparison with the paper.
fn summary_markdown(config: &RunConfig, sweep: &Sweep) -> String {
    let mut out = String::new();
    let (n, m) = (sweep.features, sweep.hidden);
    let _ = writeln!(
        out,
        "# Uniform superposition: n = {n} features, m = {m} hidden dimensions, I_i = 1\n"
    );
    let _ = writeln!(
        out,
        "Trained by `tms reproduce geometry` on {}. ReLU output model, {} densities (1/(1 − S) log-spaced from 1 to {}, \
         plus extra instances between {} and {}).\n",
        training_line(config),
        sweep.points.len(),
        MAX_INVERSE_DENSITY,
        DENSE.0,
        DENSE.1
    );
    if (n, m) != (400, 30) || config.experiment.steps != 10_000 {
        let _ = writeln!(
            out,
            "**Deviation from the paper:** the paper uses n = 400, m = 30; this run uses n = {n}, m = {m}, batch {}, {} steps \
             to fit the CPU time budget (n ≫ m still holds).\n",
            config.experiment.batch, config.experiment.steps
        );
    }
    let half = plateau(&sweep.points, 0.5, PLATEAU_TOLERANCE);
    let one = plateau(&sweep.points, 1.0, PLATEAU_TOLERANCE);
    let _ = writeln!(
        out,
        "## Plateaus of dimensions per feature (within ±{PLATEAU_TOLERANCE})\n"
    );
    let _ = writeln!(out, "- at 1: {}", describe_plateau(one));
    let _ = writeln!(out, "- at 1/2: {}\n", describe_plateau(half));
    let all = sweep.dimensionalities_up_to(f64::INFINITY);
    let polytopes = sweep.dimensionalities_up_to(POLYTOPE_REGIME);
    let spread = (
        m as f64 / n as f64,
        format!("m/n = {:.3}", m as f64 / n as f64),
    );
    let _ = writeln!(
        out,
        "## Feature dimensionalities D_i\n\nThe share of the represented features' D_i (‖W_i‖ > {REPRESENTED_NORM}) within ±{NEAR} \
         of each fraction, over all {} of them and over the {} of the instances with 1/(1 − S) ≤ {POLYTOPE_REGIME}, where the \
         paper's polytopes appear. In the sparsest instances every feature is represented with D_i near m/n: W spreads the \
         features evenly over the hidden space rather than into small polytopes.\n",
        all.len(),
        polytopes.len()
    );
    let _ = writeln!(
        out,
        "| fraction | polytope | share of all D_i | share at 1/(1 − S) ≤ {POLYTOPE_REGIME} |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|");
    let names = [
        "dedicated",
        "tetrahedron",
        "triangle",
        "antipodal pair",
        "pentagon",
        "square antiprism",
    ];
    let (shares, polytope_shares) = (
        shares_near_fractions(&all),
        shares_near_fractions(&polytopes),
    );
    for (((&(_, label), name), share), polytope_share) in FRACTIONS
        .iter()
        .zip(names)
        .zip(&shares)
        .zip(&polytope_shares)
    {
        let _ = writeln!(
            out,
            "| {label} | {name} | {:.1} % | {:.1} % |",
            100.0 * share,
            100.0 * polytope_share
        );
    }
    let near_spread = |values: &[f64]| {
        100.0
            * values
                .iter()
                .filter(|d| (*d - spread.0).abs() < NEAR)
                .count() as f64
            / values.len().max(1) as f64
    };
    let _ = writeln!(
        out,
        "| {} | spread evenly | {:.1} % | {:.1} % |",
        spread.1,
        near_spread(&all),
        near_spread(&polytopes)
    );
    let _ = writeln!(
        out,
        "| — | near none of these | {:.1} % | {:.1} % |\n",
        100.0 - 100.0 * shares.iter().sum::<f64>() - near_spread(&all),
        100.0 - 100.0 * polytope_shares.iter().sum::<f64>() - near_spread(&polytopes)
    );
    let _ = writeln!(out, "## Per instance\n");
    let _ = writeln!(out, "| 1/(1 − S) | density | dimensions per feature | features represented | mean D_i of represented | eval loss |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for (mt, &(x, dpf)) in sweep.metrics.iter().zip(&sweep.points) {
        let _ = writeln!(
            out,
            "| {x:.2} | {:.4} | {dpf:.3} | {} | {:.3} | {:.3e} |",
            mt.density,
            mt.features_represented,
            mt.mean_represented_dimensionality(),
            mt.eval_loss.unwrap_or(f64::NAN)
        );
    }
    let _ = writeln!(out, "\n## Compared with the paper\n");
    let _ = writeln!(
        out,
        "The paper finds dimensions per feature sticking at 1 for dense features and at 1/2 over a narrow range of \
         1/(1 − S) (roughly 2 to 6 for n = 400, m = 30), and feature dimensionalities clustering on the fractions above. Here \
         it stays at 1 {}, at 1/2 {}; up to 1/(1 − S) = {POLYTOPE_REGIME}, {:.0} % of the represented features' D_i lie \
         within ±{NEAR} of one of the fractions ({:.0} % at 1/2).\n",
        describe_plateau(one),
        describe_plateau(half),
        100.0 * polytope_shares.iter().sum::<f64>(),
        100.0 * polytope_shares[3]
    );
    let _ = writeln!(
        out,
        "## Figure\n\n![dimensions per feature and D_i](geometry.png)"
    );
    out
}

/// Dimensions per feature against 1/(1 − S) with D_i behind it, and a histogram of D_i.
struct GeometryFigure<'a> {
    sweep: &'a Sweep,
}

impl GeometryFigure<'_> {
    const TOP: u32 = 70;
    const SIZE: (u32, u32) = (1500, 660);
}

impl Figure for GeometryFigure<'_> {
    fn size(&self) -> (u32, u32) {
        Self::SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let sweep = self.sweep;
        draw_title(
            root,
            &format!(
                "Uniform superposition, n = {}, m = {}: dimensions per feature and feature dimensionality D_i",
                sweep.features, sweep.hidden
            ),
        )?;
        let (_, rest) = root.split_vertically(Self::TOP);
        let (left, right) = rest.split_horizontally(Self::SIZE.0 * 3 / 5);
        let x_max = sweep.points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.3;
        let mut chart = ChartBuilder::on(&left)
            .margin(16)
            .margin_right(70)
            .x_label_area_size(70)
            .y_label_area_size(90)
            .build_cartesian_2d((0.8..x_max).log_scale(), 0.0..1.1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("1/(1 − S)")
            .y_desc("dimensions per feature")
            .label_style(("sans-serif", TICK_PX))
            .axis_desc_style(("sans-serif", LABEL_PX))
            .x_label_formatter(&|v| format!("{v}"))
            .draw()?;
        let faint = RGBColor(160, 160, 160);
        for &(f, label) in &FRACTIONS {
            chart.draw_series(LineSeries::new(
                [(0.8, f), (x_max, f)],
                faint.stroke_width(1),
            ))?;
            let (px, py) = chart.backend_coord(&(x_max, f));
            // 2/5 and 3/8 are close: nudge their labels apart.
            let nudge = match label {
                "2/5" => -9,
                "3/8" => 9,
                _ => 0,
            };
            left.draw_text(
                label,
                &text(TICK_PX, HPos::Left, VPos::Center),
                (
                    px + 6 - left.get_base_pixel().0,
                    py + nudge - left.get_base_pixel().1,
                ),
            )?;
        }
        let dots = RGBColor(67, 147, 195).mix(0.25);
        for (&(x, _), dims) in sweep.points.iter().zip(&sweep.dimensionalities) {
            chart.draw_series(dims.iter().map(|&d| Circle::new((x, d), 2, dots.filled())))?;
        }
        chart.draw_series(LineSeries::new(
            sweep.points.iter().copied(),
            BLACK.stroke_width(2),
        ))?;
        chart.draw_series(
            sweep
                .points
                .iter()
                .map(|&p| Circle::new(p, 4, BLACK.filled())),
        )?;
        left.draw_text(
            "line: m / ‖W‖²_F; dots: D_i of represented features",
            &text(TICK_PX, HPos::Left, VPos::Top),
            (120, 24),
        )?;

        let all = sweep.dimensionalities_up_to(POLYTOPE_REGIME);
        const BINS: usize = 110;
        let mut counts = vec![0u32; BINS];
        for &d in &all {
            counts[((d * 100.0) as usize).min(BINS - 1)] += 1;
        }
        let top = f64::from(counts.iter().copied().max().unwrap_or(1).max(1)) * 1.1;
        let mut histogram = ChartBuilder::on(&right)
            .caption(
                format!("represented features, 1/(1 − S) ≤ {POLYTOPE_REGIME}"),
                ("sans-serif", TICK_PX),
            )
            .margin(16)
            .x_label_area_size(70)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..1.1, 0.0..top)?;
        histogram
            .configure_mesh()
            .disable_mesh()
            .x_desc("D_i")
            .y_desc("features")
            .label_style(("sans-serif", TICK_PX))
            .axis_desc_style(("sans-serif", LABEL_PX))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for &(f, _) in &FRACTIONS {
            histogram.draw_series(LineSeries::new([(f, 0.0), (f, top)], faint.stroke_width(1)))?;
        }
        histogram.draw_series(counts.iter().enumerate().map(|(k, &c)| {
            let x = k as f64 / 100.0;
            Rectangle::new(
                [(x, 0.0), (x + 0.01, f64::from(c))],
                RGBColor(67, 147, 195).filled(),
            )
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_reaches_a_thousand_and_is_dense_between_two_and_six() {
        let densities = sweep_densities(40);
        assert_eq!(densities.len(), 40);
        assert_eq!(densities[0], 1.0);
        assert!(1.0 / densities[39] >= 1000.0);
        let dense = densities
            .iter()
            .filter(|&&d| (2.0..=6.0).contains(&(1.0 / d)))
            .count();
        assert!(dense >= 16, "{dense}");
        assert!(densities.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn shares_and_plateaus() {
        let shares = shares_near_fractions(&[1.0, 0.99, 0.5, 0.51, 0.41, 0.2]);
        assert!((shares[0] - 2.0 / 6.0).abs() < 1e-12);
        assert!((shares[3] - 2.0 / 6.0).abs() < 1e-12);
        assert!((shares[4] - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(shares[1], 0.0);
        let points = [
            (1.0, 1.0),
            (1.5, 0.99),
            (2.0, 0.7),
            (3.0, 0.51),
            (4.0, 0.49),
            (10.0, 0.3),
        ];
        assert_eq!(plateau(&points, 0.5, 0.03), Some((3.0, 4.0, 2)));
        assert_eq!(plateau(&points, 1.0, 0.03), Some((1.0, 1.5, 2)));
        assert_eq!(plateau(&points, 0.75, 0.03), None);
    }
}
