//! `tms reproduce correlated`: the paper's section on correlated and anticorrelated features
//! ("Superposition and correlated features"), four regimes of the ReLU output model with equal
//! importances, each over a density sweep with restarts (m = 2 is finicky: figures and tables use
//! the best restart of each density by evaluation loss):
//! - `correlated-pairs`: n = 4, m = 2, two correlated pairs, 1 − S from 0.05 to 0.0025: the paper
//!   finds the members of a pair orthogonal and the two pairs antipodal to each other;
//! - `anticorrelated-pairs`: n = 4, m = 2, two anticorrelated pairs, 1 − S from 0.32 to 0.1: each
//!   pair antipodal;
//! - `collapse`: n = 6, m = 2, three correlated pairs over 1 − S from 0.02 to 0.7: sets collapse
//!   into their principal component as the density grows ([`collapsed`] defines it);
//! - `sets-n20`: n = 20, m = 10, two sets of ten correlated features at S = 0.99: a local
//!   almost-orthogonal basis within each set, the sets in superposition with each other.
//!
//! Figures: W's columns as arrows in the plane, coloured by set (one panel per density) for the
//! three m = 2 regimes, and the WᵀW heat map of the n = 20 case.

use super::intro::arrow;
use super::{best_instances, training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::error::UsageError;
use crate::experiment::{log_grid, Experiment, Settings};
use crate::figures::{colour_bar, diverging, draw_title, save, text, Figure, LABEL_PX, TICK_PX};
use crate::store::results::{InstanceResult, Results};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Restarts per density unless --restarts says otherwise.
const DEFAULT_RESTARTS: u32 = 10;

/// A pair is collapsed into its principal component when both columns are learned (norm above
/// this) and point the same way (cosine above [`COLLAPSED_COS`]): the model then stores only the
/// pair's sum, one direction for two features.
const COLLAPSED_NORM: f64 = 0.3;
const COLLAPSED_COS: f64 = 0.9;

/// One regime: its run directory, model size, feature sets and densities.
struct Regime {
    name: &'static str,
    features: usize,
    hidden: usize,
    sets: &'static str,
    densities: Vec<f64>,
}

fn regimes() -> Vec<Regime> {
    vec![
        Regime {
            name: "correlated-pairs",
            features: 4,
            hidden: 2,
            sets: "correlated:2,correlated:2",
            densities: log_grid(0.05, 0.0025, 5),
        },
        Regime {
            name: "anticorrelated-pairs",
            features: 4,
            hidden: 2,
            sets: "anticorrelated:2,anticorrelated:2",
            densities: log_grid(0.32, 0.1, 4),
        },
        Regime {
            name: "collapse",
            features: 6,
            hidden: 2,
            sets: "correlated:2,correlated:2,correlated:2",
            densities: vec![0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7],
        },
        Regime {
            name: "sets-n20",
            features: 20,
            hidden: 10,
            sets: "correlated:10,correlated:10",
            densities: vec![0.01],
        },
    ]
}

/// `tms reproduce correlated`.
pub struct Correlated;

impl Reproduction for Correlated {
    fn name(&self) -> &'static str {
        "correlated"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        let steps = options.steps.unwrap_or(10_000);
        regimes()
            .into_iter()
            .map(|regime| {
                let exp = Settings {
                    features: Some(regime.features),
                    hidden: Some(regime.hidden),
                    importance_decay: Some(1.0),
                    density: Some(regime.densities.clone()),
                    feature_sets: Some(regime.sets.into()),
                    restarts: Some(options.restarts.unwrap_or(DEFAULT_RESTARTS)),
                    steps: Some(steps),
                    log_every: Some((steps / 100).max(1)),
                    ..Default::default()
                }
                .resolve()?;
                Ok((regime.name, exp))
            })
            .collect()
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = vec![];
        for (regime, (_, results)) in regimes().iter().zip(runs) {
            let stem = out.join(regime.name);
            let written = if regime.hidden == 2 {
                save(&PlaneFigure { regime, results }, &stem)?
            } else {
                save(&GramFigure { regime, results }, &stem)?
            };
            files.extend(written);
        }
        Ok(files)
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        Ok(summary_markdown(runs))
    }
}

/// The sets of a regime as ranges of features.
fn set_ranges(regime: &Regime) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    regime
        .sets
        .split(',')
        .map(|set| {
            let size: usize = set
                .split(':')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            start += size;
            start - size..start
        })
        .collect()
}

/// Column `i` of W (its m entries).
fn column(inst: &InstanceResult, i: usize) -> Vec<f64> {
    inst.w.iter().map(|row| f64::from(row[i])).collect()
}

/// ‖W_i‖.
pub fn norm(inst: &InstanceResult, i: usize) -> f64 {
    column(inst, i).iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// The cosine between columns `i` and `j` (0 when either is zero).
pub fn cosine(inst: &InstanceResult, i: usize, j: usize) -> f64 {
    let dot: f64 = column(inst, i)
        .iter()
        .zip(column(inst, j))
        .map(|(a, b)| a * b)
        .sum();
    let norms = norm(inst, i) * norm(inst, j);
    if norms > 0.0 {
        dot / norms
    } else {
        0.0
    }
}

/// Whether the pair (i, j) is collapsed into its principal component (see [`COLLAPSED_COS`]).
pub fn collapsed(inst: &InstanceResult, i: usize, j: usize) -> bool {
    norm(inst, i) > COLLAPSED_NORM
        && norm(inst, j) > COLLAPSED_NORM
        && cosine(inst, i, j) > COLLAPSED_COS
}

/// The most negative cosine between a column of `a` and one of `b`, for each column of `a`: −1 when
/// each member of `a` has an antipodal partner in `b`.
fn partners(inst: &InstanceResult, a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> f64 {
    a.clone()
        .map(|i| b.clone().map(|j| cosine(inst, i, j)).fold(1.0, f64::min))
        .fold(-1.0, f64::max)
}

/// Markdown of the whole reproduction: one section per regime, with the paper's words.
fn summary_markdown(runs: &[RunFiles]) -> String {
    let mut out = String::from(
        "# Correlated and anticorrelated features\n\n\
         The ReLU output model with equal importances (I_i = 1) on feature sets (`--feature-sets`); \
         anticorrelated sets in the paper's mode (the set is active with probability 1 − S, then one \
         member uniformly). Each row is the best of the restarts of one density by evaluation loss \
         (all restarts are in each run's `results.json`). cos(i, j) is the cosine between columns W_i \
         and W_j; a feature counts as learned when ‖W_i‖ > 0.5.\n\n",
    );
    let _ = writeln!(out, "Trained on {}.\n", training_line(&runs[0].0));
    let regimes = regimes();
    for (regime, (_, results)) in regimes.iter().zip(runs) {
        let sets = set_ranges(regime);
        let best = best_instances(results);
        let restarts = results
            .instances
            .iter()
            .map(|i| i.restart + 1)
            .max()
            .unwrap_or(1);
        let _ = writeln!(
            out,
            "## {}: n = {}, m = {}, `{}`, {restarts} restarts\n",
            regime.name, regime.features, regime.hidden, regime.sets
        );
        match regime.name {
            "correlated-pairs" => correlated_pairs(&mut out, &best, &sets),
            "anticorrelated-pairs" => anticorrelated_pairs(&mut out, &best, &sets),
            "collapse" => collapse(&mut out, &best, &sets),
            _ => local_basis(&mut out, &best, &sets),
        }
        let figure = if regime.hidden == 2 {
            "W's columns"
        } else {
            "WᵀW"
        };
        let _ = writeln!(out, "\n![{figure}]({}.png)\n", regime.name);
    }
    out
}

fn learned(inst: &InstanceResult) -> usize {
    (0..inst.importance.len())
        .filter(|&i| norm(inst, i) > 0.5)
        .count()
}

/// The pair regimes' table: per density, whether each pair's two members are learned and how they
/// sit (cos within each pair, then `across`: a figure of how the pairs sit to each other, headed
/// `across_header`), counting the densities that `is_match` accepts for the closing sentence.
fn pairs_table(
    out: &mut String,
    best: &[&InstanceResult],
    across_header: &str,
    across: impl Fn(&InstanceResult) -> f64,
    is_match: impl Fn(f64, f64, f64) -> bool,
    conclusion: impl FnOnce(usize, usize) -> String,
) {
    let _ = writeln!(
        out,
        "| 1 − S | learned | cos(0, 1) | cos(2, 3) | {across_header} | eval loss |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    let mut matches = 0;
    for inst in best {
        let (within_a, within_b) = (cosine(inst, 0, 1), cosine(inst, 2, 3));
        let across = across(inst);
        if is_match(within_a, within_b, across) && learned(inst) == 4 {
            matches += 1;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {within_a:.2} | {within_b:.2} | {across:.2} | {:.3e} |",
            three_digits(inst.density),
            learned(inst),
            inst.eval_loss.unwrap_or(f64::NAN)
        );
    }
    let _ = writeln!(out, "\n{}", conclusion(matches, best.len()));
}

fn correlated_pairs(out: &mut String, best: &[&InstanceResult], sets: &[std::ops::Range<usize>]) {
    pairs_table(
        out,
        best,
        "worst antipodal partner across pairs",
        |inst| partners(inst, &sets[0], &sets[1]).max(partners(inst, &sets[1], &sets[0])),
        |within_a, within_b, across| within_a.abs() < 0.2 && within_b.abs() < 0.2 && across < -0.9,
        |matches, total| {
            format!(
                "The paper: the members of a correlated pair are orthogonal (they occur together, so \
                 interference between them would cost on every active sample), and the two pairs sit \
                 antipodally to each other, four features in two dimensions. Here {matches} of {total} densities \
                 show exactly that (|cos| within each pair < 0.2, every member with a partner of the other \
                 pair at cos < −0.9, all four learned)."
            )
        },
    );
}

fn anticorrelated_pairs(
    out: &mut String,
    best: &[&InstanceResult],
    sets: &[std::ops::Range<usize>],
) {
    pairs_table(
        out,
        best,
        "largest |cos| across pairs",
        |inst| {
            sets[0]
                .clone()
                .flat_map(|i| sets[1].clone().map(move |j| (i, j)))
                .map(|(i, j)| cosine(inst, i, j).abs())
                .fold(0.0, f64::max)
        },
        |within_a, within_b, _| within_a < -0.9 && within_b < -0.9,
        |matches, total| {
            format!(
                "The paper: anticorrelated features never occur together, so the model puts each pair \
                 antipodally (their interference is never paid). Here {matches} of {total} densities have both \
                 pairs antipodal (cos < −0.9, all four learned)."
            )
        },
    );
}

fn collapse(out: &mut String, best: &[&InstanceResult], sets: &[std::ops::Range<usize>]) {
    let _ = writeln!(
        out,
        "A pair counts as **collapsed** into its principal component when both its columns have \
         ‖W_i‖ > {COLLAPSED_NORM} and cos(W_i, W_j) > {COLLAPSED_COS}: the model stores the pair's \
         sum in one direction instead of each member on its own.\n"
    );
    let _ = writeln!(
        out,
        "| 1 − S | learned | cos within pairs | collapsed pairs | eval loss |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---:|");
    let mut counts = vec![];
    for inst in best {
        let cosines: Vec<String> = sets
            .iter()
            .map(|s| format!("{:.2}", cosine(inst, s.start, s.start + 1)))
            .collect();
        let count = sets
            .iter()
            .filter(|s| collapsed(inst, s.start, s.start + 1))
            .count();
        counts.push((inst.density, count));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {count} | {:.3e} |",
            inst.density,
            learned(inst),
            cosines.join(", "),
            inst.eval_loss.unwrap_or(f64::NAN)
        );
    }
    let range = |keep: &dyn Fn(usize) -> bool| {
        let densities: Vec<String> = counts
            .iter()
            .filter(|(_, c)| keep(*c))
            .map(|(d, _)| d.to_string())
            .collect();
        if densities.is_empty() {
            "none".to_string()
        } else {
            densities.join(", ")
        }
    };
    // The lowest density from which on at least `k` pairs stay collapsed.
    let onset = |k: usize| {
        let from = counts
            .iter()
            .rposition(|&(_, c)| c < k)
            .map_or(0, |i| i + 1);
        counts
            .get(from)
            .map_or("never".to_string(), |(d, _)| d.to_string())
    };
    let _ = writeln!(
        out,
        "\nThe paper: no set collapses below 1 − S = 0.05, one set collapses between 0.05 and 0.15, \
         two between 0.15 and 0.2, and above 0.5 the solution is mostly PCA-like. Here no pair \
         collapses at 1 − S = {}; one at {}; two at {}; all three at {}. At least one, two and \
         three pairs are collapsed at every density from {}, {} and {} on (the paper: about \
         0.05, 0.15 and 0.5).",
        range(&|c| c == 0),
        range(&|c| c == 1),
        range(&|c| c == 2),
        range(&|c| c == 3),
        onset(1),
        onset(2),
        onset(3)
    );
}

fn local_basis(out: &mut String, best: &[&InstanceResult], sets: &[std::ops::Range<usize>]) {
    let Some(inst) = best.first() else {
        return;
    };
    let mean_abs = |pairs: &mut dyn Iterator<Item = (usize, usize)>| {
        let (sum, count) = pairs.fold((0.0, 0), |(s, c), (i, j)| {
            (s + cosine(inst, i, j).abs(), c + 1)
        });
        sum / f64::from(count.max(1))
    };
    let within = mean_abs(&mut sets.iter().flat_map(|s| {
        s.clone()
            .flat_map(move |i| s.clone().filter(move |&j| j > i).map(move |j| (i, j)))
    }));
    let across = mean_abs(
        &mut sets[0]
            .clone()
            .flat_map(|i| sets[1].clone().map(move |j| (i, j))),
    );
    let norms: Vec<f64> = (0..inst.importance.len()).map(|i| norm(inst, i)).collect();
    let _ = writeln!(
        out,
        "At 1 − S = {}: {} of {} features learned (‖W_i‖ from {:.2} to {:.2}); mean |cos| between \
         two features of the same set {within:.3}, between features of different sets {across:.3}; \
         evaluation loss {:.3e}.\n",
        inst.density,
        learned(inst),
        norms.len(),
        norms.iter().copied().fold(f64::INFINITY, f64::min),
        norms.iter().copied().fold(0.0, f64::max),
        inst.eval_loss.unwrap_or(f64::NAN)
    );
    let _ =
        writeln!(
        out,
        "The paper: correlated features prefer to be orthogonal to each other, forming a local \
         almost-orthogonal basis, while features of different sets share the dimensions in \
         superposition. Here the features of one set are {} (mean |cos| {within:.3}) and those of \
         different sets {} (mean |cos| {across:.3}).",
        if within < 0.1 { "nearly orthogonal" } else { "not orthogonal" },
        if across > 2.0 * within { "overlap far more" } else { "do not overlap more" }
    );
}

/// `value` with three significant digits (the log grid's densities are long decimals).
fn three_digits(value: f64) -> String {
    let decimals = (2 - value.abs().log10().floor() as i32).max(0) as usize;
    format!("{value:.decimals$}")
}

/// The colour of set `k`.
fn set_colour(k: usize) -> RGBColor {
    const COLOURS: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    COLOURS[k % COLOURS.len()]
}

/// One panel per density: W's columns as arrows in the hidden plane, coloured by set, each tip
/// labelled with its feature.
struct PlaneFigure<'a> {
    regime: &'a Regime,
    results: &'a Results,
}

impl PlaneFigure<'_> {
    const PANEL: i32 = 280;
    const COLUMNS: usize = 5;
    const TOP: i32 = 110;
    const LABEL: i32 = 56;
}

impl Figure for PlaneFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let panels = best_instances(self.results).len().max(1);
        let rows = panels.div_ceil(Self::COLUMNS) as i32;
        let columns = panels.clamp(3, Self::COLUMNS) as i32;
        (
            (columns * Self::PANEL) as u32,
            (Self::TOP + rows * (Self::PANEL + Self::LABEL) + 40) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let regime = self.regime;
        draw_title(
            root,
            &format!(
                "{}: columns W_i (n = {}, m = 2, {}), best of the restarts",
                regime.name, regime.features, regime.sets
            ),
        )?;
        let best = best_instances(self.results);
        let sets = set_ranges(regime);
        let radius = best
            .iter()
            .flat_map(|inst| (0..regime.features).map(|i| norm(inst, i)))
            .fold(1.0, f64::max);
        let scale = f64::from(Self::PANEL / 2 - 30) / radius;
        for (k, inst) in best.iter().enumerate() {
            let (row, col) = ((k / Self::COLUMNS) as i32, (k % Self::COLUMNS) as i32);
            let (x0, y0) = (
                col * Self::PANEL,
                Self::TOP + row * (Self::PANEL + Self::LABEL),
            );
            let centre = (x0 + Self::PANEL / 2, y0 + Self::PANEL / 2);
            let diverged = if inst.diverged { " (diverged)" } else { "" };
            root.draw_text(
                &format!("1 − S = {}{diverged}", three_digits(inst.density)),
                &text(TICK_PX, HPos::Center, VPos::Bottom),
                (centre.0, y0 + 4),
            )?;
            let grey = RGBColor(200, 200, 200);
            root.draw(&Circle::new(
                centre,
                scale.round() as i32,
                grey.stroke_width(1),
            ))?;
            for (s, set) in sets.iter().enumerate() {
                for i in set.clone() {
                    let (x, y) = (f64::from(inst.w[0][i]), f64::from(inst.w[1][i]));
                    let tip = (
                        centre.0 + (x * scale).round() as i32,
                        centre.1 - (y * scale).round() as i32,
                    );
                    arrow(root, centre, tip, set_colour(s))?;
                    let length = x.hypot(y).max(1e-9);
                    let label = (
                        tip.0 + (14.0 * x / length).round() as i32,
                        tip.1 - (14.0 * y / length).round() as i32,
                    );
                    if length * scale >= 16.0 {
                        root.draw_text(
                            &i.to_string(),
                            &text(TICK_PX, HPos::Center, VPos::Center).color(&set_colour(s)),
                            label,
                        )?;
                    }
                }
            }
            let collapsed_sets = sets
                .iter()
                .filter(|s| collapsed(inst, s.start, s.start + 1))
                .count();
            root.draw_text(
                &format!("{} learned, {collapsed_sets} collapsed", learned(inst)),
                &text(TICK_PX, HPos::Center, VPos::Top),
                (centre.0, y0 + Self::PANEL - 4),
            )?;
        }
        let (_, height) = self.size();
        let legend: Vec<String> = sets
            .iter()
            .map(|s| format!("features {}–{}", s.start, s.end - 1))
            .collect();
        for (s, label) in legend.iter().enumerate() {
            let x = 20 + 220 * s as i32;
            let y = height as i32 - 24;
            root.draw(&PathElement::new(
                vec![(x, y), (x + 36, y)],
                set_colour(s).stroke_width(5),
            ))?;
            root.draw_text(
                label,
                &text(LABEL_PX, HPos::Left, VPos::Center),
                (x + 46, y),
            )?;
        }
        Ok(())
    }
}

/// WᵀW of the best instance as a heat map, the sets' blocks outlined.
struct GramFigure<'a> {
    regime: &'a Regime,
    results: &'a Results,
}

impl GramFigure<'_> {
    const CELL: i32 = 30;
    const LEFT: i32 = 60;
    const TOP: i32 = 110;
}

impl Figure for GramFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let side = Self::CELL * self.regime.features as i32;
        (
            (Self::LEFT + side + 260) as u32,
            (Self::TOP + side + 60) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let regime = self.regime;
        let Some(inst) = best_instances(self.results).into_iter().next() else {
            return Ok(());
        };
        draw_title(
            root,
            &format!(
                "{}: WᵀW (n = {}, m = {}, {}, 1 − S = {})",
                regime.name, regime.features, regime.hidden, regime.sets, inst.density
            ),
        )?;
        let n = regime.features;
        let gram = |i: usize, j: usize| -> f64 {
            column(inst, i)
                .iter()
                .zip(column(inst, j))
                .map(|(a, b)| a * b)
                .sum()
        };
        let limit = (0..n).map(|i| gram(i, i)).fold(1e-9, f64::max);
        let cell = |i: usize| Self::CELL * i as i32;
        for i in 0..n {
            for j in 0..n {
                let (x, y) = (Self::LEFT + cell(j), Self::TOP + cell(i));
                root.draw(&Rectangle::new(
                    [(x, y), (x + Self::CELL, y + Self::CELL)],
                    diverging(gram(i, j) / limit).filled(),
                ))?;
            }
            root.draw_text(
                &i.to_string(),
                &text(TICK_PX, HPos::Right, VPos::Center),
                (Self::LEFT - 6, Self::TOP + cell(i) + Self::CELL / 2),
            )?;
        }
        for set in set_ranges(regime) {
            let (a, b) = (cell(set.start), cell(set.end));
            root.draw(&Rectangle::new(
                [
                    (Self::LEFT + a, Self::TOP + a),
                    (Self::LEFT + b, Self::TOP + b),
                ],
                BLACK.stroke_width(2),
            ))?;
        }
        let side = cell(n);
        colour_bar(
            root,
            (Self::LEFT + side + 40, Self::TOP + 30),
            side - 60,
            |t| diverging(2.0 * t - 1.0),
            &[
                (0.0, format!("{:.2}", -limit)),
                (0.5, "0".into()),
                (1.0, format!("{limit:.2}")),
            ],
            "WᵀW",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::instance_in_plane as instance;

    #[test]
    fn collapsed_means_one_direction_for_both_learned_members() {
        let inst = instance(&[
            (0.7, 0.1),
            (0.68, 0.12),
            (1.0, 0.0),
            (0.0, 1.0),
            (0.2, 0.0),
            (0.19, 0.01),
        ]);
        assert!(collapsed(&inst, 0, 1));
        assert!(!collapsed(&inst, 2, 3), "orthogonal members");
        assert!(!collapsed(&inst, 4, 5), "members not learned");
        let antipodal = instance(&[(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]);
        let (a, b) = (0..2, 2..4);
        assert!((partners(&antipodal, &a, &b) + 1.0).abs() < 1e-9);
    }
}
