//! `tms reproduce intro`: the paper's introductory figure. A ReLU output model with n = 5 features,
//! m = 2 hidden dimensions and I_i = 0.9^i over a density sweep, several restarts per density (m = 2
//! is finicky; the best by evaluation loss is drawn). The figure draws the five columns W_i as arrows
//! in the hidden plane, one panel per density (columns too short for an arrowhead are left out); summary.md names each panel's geometry: two
//! orthogonal features, antipodal pairs, or all five as a pentagon.

use super::{best_instances, training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::analysis::InstanceMetrics;
use crate::error::UsageError;
use crate::experiment::{Experiment, Settings};
use crate::figures::{density_title, draw_title, inferno, save, text, Figure, LABEL_PX, TICK_PX};
use crate::store::results::{InstanceResult, Results, RunConfig};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The densities 1 − S of the sweep.
const DENSITIES: [f64; 8] = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.01];
/// Restarts per density unless --restarts says otherwise.
const DEFAULT_RESTARTS: u32 = 5;

/// The geometry of a trained instance's columns W_i in the plane.
#[derive(Clone, Debug, PartialEq)]
pub enum Geometry {
    /// Two features, orthogonal, the others not learned.
    Orthogonal,
    /// Every feature in superposition belongs to an antipodal pair (D_i ≈ 1/2).
    Antipodal { pairs: usize },
    /// All five features, D_i ≈ 2/5.
    Pentagon,
    /// Anything else: how many features are represented.
    Other { represented: usize },
}

impl Geometry {
    /// Names the geometry of an instance from its metrics.
    pub fn of(inst: &InstanceResult) -> Geometry {
        let metrics = InstanceMetrics::of(inst);
        let represented = metrics.represented();
        let shared = metrics.shared();
        let near = |i: usize, fraction: f64| metrics.dimensionality_near(i, fraction);
        if represented.len() == 2 && shared.is_empty() {
            Geometry::Orthogonal
        } else if represented.len() == 5 && represented.iter().all(|&i| near(i, 0.4)) {
            Geometry::Pentagon
        } else if !shared.is_empty() && shared.iter().all(|&i| near(i, 0.5)) {
            Geometry::Antipodal {
                pairs: shared.len() / 2,
            }
        } else {
            Geometry::Other {
                represented: represented.len(),
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Geometry::Orthogonal => "two orthogonal features".into(),
            Geometry::Antipodal { pairs: 1 } => "one antipodal pair".into(),
            Geometry::Antipodal { pairs } => format!("{pairs} antipodal pairs"),
            Geometry::Pentagon => "pentagon".into(),
            Geometry::Other { represented } => format!("other ({represented} features)"),
        }
    }
}

/// `tms reproduce intro`.
pub struct Intro;

impl Reproduction for Intro {
    fn name(&self) -> &'static str {
        "intro"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        let steps = options.steps.unwrap_or(10_000);
        let exp = Settings {
            features: Some(5),
            hidden: Some(2),
            importance_decay: Some(0.9),
            density: Some(DENSITIES.to_vec()),
            restarts: Some(options.restarts.unwrap_or(DEFAULT_RESTARTS)),
            steps: Some(steps),
            log_every: Some((steps / 100).max(1)),
            ..Default::default()
        }
        .resolve()?;
        Ok(vec![("relu", exp)])
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let results = &runs[0].1;
        Ok(save(&IntroFigure { results }, &out.join("intro"))?.to_vec())
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        Ok(summary_markdown(&runs[0].0, &runs[0].1))
    }
}

/// summary.md: a row per density (the best restart's geometry) and a comparison with the paper.
fn summary_markdown(config: &RunConfig, results: &Results) -> String {
    let mut out = String::new();
    let restarts = results
        .instances
        .iter()
        .map(|i| i.restart + 1)
        .max()
        .unwrap_or(1);
    let _ = writeln!(
        out,
        "# Intro figure: n = 5 features, m = 2 hidden dimensions, I_i = 0.9^i\n"
    );
    let _ = writeln!(
        out,
        "Trained by `tms reproduce intro` on {}. ReLU output model, {restarts} restarts per density; each row is the best \
         restart by evaluation loss (all restarts are in `relu/results.json`).\n",
        training_line(config)
    );
    let _ = writeln!(out, "| density 1 − S | sparsity S | features represented | D_i (feature 0 … 4) | geometry | eval loss (best) | eval loss (worst restart) |");
    let _ = writeln!(out, "|---:|---:|---:|---|---|---:|---:|");
    let best = best_instances(results);
    for inst in &best {
        let metrics = InstanceMetrics::of(inst);
        let worst = results
            .instances
            .iter()
            .filter(|other| other.setting == inst.setting)
            .filter_map(|other| other.eval_loss)
            .fold(f64::NAN, f64::max);
        let dims = metrics
            .dimensionality
            .iter()
            .map(|d| format!("{d:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {:.0} % | {} | {dims} | {} | {:.3e} | {worst:.3e} |",
            inst.density,
            100.0 * (1.0 - inst.density),
            metrics.features_represented,
            Geometry::of(inst).describe(),
            inst.eval_loss.unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(out, "\n## Compared with the paper\n");
    let _ = writeln!(out, "{}\n", comparison(&best));
    let _ = writeln!(out, "## Figure\n\n![W_i per density](intro.png)");
    out
}

/// The paper: two orthogonal features at density 1, antipodal pairs around 80 % sparsity, a
/// pentagon around 90 %.
fn comparison(best: &[&InstanceResult]) -> String {
    let at = |keep: &dyn Fn(&Geometry) -> bool| {
        best.iter()
            .filter(|inst| keep(&Geometry::of(inst)))
            .map(|inst| format!("{:.0} %", 100.0 * (1.0 - inst.density)))
            .collect::<Vec<_>>()
    };
    let orthogonal = at(&|g| *g == Geometry::Orthogonal);
    let antipodal = at(&|g| matches!(g, Geometry::Antipodal { .. }));
    let pentagon = at(&|g| *g == Geometry::Pentagon);
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut text = format!(
        "The paper shows two orthogonal features at 0 % sparsity, antipodal pairs around 80 % and a pentagon around 90 %. \
         Here the best restarts give two orthogonal features at sparsity {}, antipodal pairs at {} and a pentagon at {}. ",
        list(&orthogonal),
        list(&antipodal),
        list(&pentagon)
    );
    text.push_str(if pentagon.is_empty() {
        "No density reached the pentagon."
    } else {
        "The sequence orthogonal → antipodal → pentagon appears as the features get sparser, as in the paper."
    });
    text
}

/// One panel per density (two rows): the columns W_i as arrows from the origin, coloured by
/// importance, on a faint unit circle, with the panel's geometry below.
struct IntroFigure<'a> {
    results: &'a Results,
}

impl IntroFigure<'_> {
    const PANEL: i32 = 300;
    const COLUMNS: usize = 4;
    const TOP: i32 = 120;
    const LABEL: i32 = 50;
    const RIGHT: i32 = 290;

    fn colour(feature: usize, features: usize) -> RGBColor {
        inferno(0.8 * feature as f64 / (features.max(2) - 1) as f64)
    }
}

impl Figure for IntroFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let panels = best_instances(self.results).len().max(1);
        let rows = panels.div_ceil(Self::COLUMNS) as i32;
        let columns = panels.min(Self::COLUMNS) as i32;
        (
            (columns * Self::PANEL + Self::RIGHT) as u32,
            (Self::TOP + rows * (Self::PANEL + Self::LABEL + 40)) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let best = best_instances(self.results);
        draw_title(
            root,
            &format!(
                "Columns W_i of the ReLU model (n = {}, m = {}, I_i = 0.9^i), best of the restarts",
                self.results.features, self.results.hidden
            ),
        )?;
        let radius = best
            .iter()
            .flat_map(|inst| InstanceMetrics::of(inst).norms)
            .fold(1.0, f64::max);
        let scale = f64::from(Self::PANEL / 2 - 20) / radius;
        let n = self.results.features;
        for (k, inst) in best.iter().enumerate() {
            let (row, column) = ((k / Self::COLUMNS) as i32, (k % Self::COLUMNS) as i32);
            let x0 = column * Self::PANEL;
            let y0 = Self::TOP + row * (Self::PANEL + Self::LABEL + 40);
            let centre = (x0 + Self::PANEL / 2, y0 + Self::PANEL / 2);
            root.draw_text(
                &format!(
                    "{} (S = {:.0} %)",
                    density_title(inst),
                    100.0 * (1.0 - inst.density)
                ),
                &text(TICK_PX, HPos::Center, VPos::Bottom),
                (centre.0, y0),
            )?;
            let grey = RGBColor(200, 200, 200);
            root.draw(&Circle::new(
                centre,
                scale.round() as i32,
                grey.stroke_width(1),
            ))?;
            for axis in [
                [(x0 + 10, centre.1), (x0 + Self::PANEL - 10, centre.1)],
                [(centre.0, y0 + 10), (centre.0, y0 + Self::PANEL - 10)],
            ] {
                root.draw(&PathElement::new(axis.to_vec(), grey))?;
            }
            // Least important first, so the important features are drawn on top.
            for i in (0..n).rev() {
                let tip = (
                    centre.0 + (f64::from(inst.w[0][i]) * scale).round() as i32,
                    centre.1 - (f64::from(inst.w[1][i]) * scale).round() as i32,
                );
                arrow(root, centre, tip, Self::colour(i, n))?;
            }
            root.draw_text(
                &Geometry::of(inst).describe(),
                &text(TICK_PX, HPos::Center, VPos::Top),
                (centre.0, y0 + Self::PANEL + 6),
            )?;
        }
        let (width, _) = self.size();
        let x = width as i32 - Self::RIGHT + 30;
        root.draw_text(
            "feature (I_i)",
            &text(LABEL_PX, HPos::Left, VPos::Center),
            (x, Self::TOP + 20),
        )?;
        for i in 0..n {
            let y = Self::TOP + 70 + 40 * i as i32;
            root.draw(&PathElement::new(
                vec![(x, y), (x + 40, y)],
                Self::colour(i, n).stroke_width(5),
            ))?;
            root.draw_text(
                &format!("{i} ({:.2})", 0.9f64.powi(i as i32)),
                &text(TICK_PX, HPos::Left, VPos::Center),
                (x + 52, y),
            )?;
        }
        Ok(())
    }
}

/// An arrow from `from` to `to` in pixels: a thick shaft and a filled triangular head.
pub(super) fn arrow<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    from: (i32, i32),
    to: (i32, i32),
    colour: RGBColor,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (dx, dy) = (f64::from(to.0 - from.0), f64::from(to.1 - from.1));
    let length = dx.hypot(dy);
    let (ux, uy) = (dx / length, dy / length);
    let head = 16.0;
    if length < head {
        return Ok(()); // too short to draw: a feature that is not learned
    }
    let base = (f64::from(to.0) - ux * head, f64::from(to.1) - uy * head);
    let point = |along: f64, across: f64| {
        (
            (base.0 + ux * along - uy * across).round() as i32,
            (base.1 + uy * along + ux * across).round() as i32,
        )
    };
    root.draw(&PathElement::new(
        vec![from, point(0.0, 0.0)],
        colour.stroke_width(4),
    ))?;
    root.draw(&Polygon::new(
        vec![to, point(0.0, 7.0), point(0.0, -7.0)],
        colour.filled(),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::instance_in_plane as instance;

    #[test]
    fn names_the_papers_three_geometries() {
        let orthogonal = [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)];
        assert_eq!(Geometry::of(&instance(&orthogonal)), Geometry::Orthogonal);
        let pairs = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0), (0.1, 0.0)];
        assert_eq!(
            Geometry::of(&instance(&pairs)),
            Geometry::Antipodal { pairs: 2 }
        );
        let pentagon: Vec<(f64, f64)> = (0..5)
            .map(|k| std::f64::consts::TAU * f64::from(k) / 5.0)
            .map(|a| (a.cos(), a.sin()))
            .collect();
        assert_eq!(Geometry::of(&instance(&pentagon)), Geometry::Pentagon);
        let triangle: Vec<(f64, f64)> = (0..3)
            .map(|k| std::f64::consts::TAU * f64::from(k) / 3.0)
            .map(|a| (a.cos(), a.sin()))
            .chain([(0.0, 0.0), (0.0, 0.0)])
            .collect();
        assert_eq!(
            Geometry::of(&instance(&triangle)),
            Geometry::Other { represented: 3 }
        );
    }
}
