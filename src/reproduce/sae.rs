//! `tms reproduce sae`: sparse autoencoders on toy models, where the true features are known.
//!
//! - `pentagon`: ARENA's base model (n = 5, m = 2, 1 − S = 0.025, equal importance, Adam), and SAEs of
//!   5 latents on it: L1 (λ = 0.2) with and without dead-latent resampling, Top-K (k = 1) and JumpReLU
//!   (λ = 0.1), 20,000 steps (ARENA's), several restarts each; the figure draws each kind's decoder rows
//!   against the true feature directions in the plane.
//! - with `--larger`, `n100` (n = 100, m = 20) and `n400` (n = 400, m = 30), uniform importance, at
//!   several densities: L1 SAEs of 1×, 2× and 4× n latents; the figure draws MMCS against latents
//!   per feature, one line per model and density. These SAEs train on the CPU with fewer steps than
//!   ARENA's 20,000 (the summary says how many).

use super::{training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::error::UsageError;
use crate::experiment::{Experiment, OptimizerKind, Settings};
use crate::figures::{draw_title, inferno, save, text, Figure, LABEL_PX, TICK_PX};
use crate::sae::model::SaeKind;
use crate::sae::{read_sae_file, train_into, SaeFile, SaeOptions, SaeResult};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// `tms reproduce sae`'s own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SaeReproduction {
    /// Also the n = 100, m = 20 and n = 400, m = 30 models with L1 SAEs of 1×, 2× and 4× n latents
    /// (long on a CPU: about 10 CPU-minutes at the default steps).
    #[arg(long)]
    pub larger: bool,
    /// L1 coefficient λ of the larger models' SAEs (their hidden vectors are smaller per dimension
    /// than the pentagon's, whose SAEs take ARENA's 0.2).
    #[arg(long, value_name = "X", default_value_t = 0.01)]
    pub larger_l1: f64,
    /// SAE training steps for the larger models.
    #[arg(long, value_name = "T", default_value_t = 2_000)]
    pub sae_steps: u32,
    /// SAE training steps on the pentagon (ARENA: 20,000).
    #[arg(long, value_name = "T", default_value_t = 20_000)]
    pub pentagon_sae_steps: u32,
    /// The pentagon's and the larger models' sae.json files, read once for the figures and the
    /// summary.
    #[arg(skip)]
    files: std::sync::OnceLock<SaeFiles>,
}

/// Labelled sae.json files: the pentagon's families, then the larger models'.
type SaeFiles = (Vec<(&'static str, SaeFile)>, Vec<(&'static str, SaeFile)>);

/// The larger models: name, n, m, densities.
const LARGER: [(&str, usize, usize, &[f64]); 2] = [
    ("n100", 100, 20, &[0.1, 0.03, 0.01]),
    ("n400", 400, 30, &[0.03, 0.01]),
];

/// Latents per feature of the larger models' SAEs.
const MULTIPLES: [usize; 3] = [1, 2, 4];

/// The SAE directories of the pentagon: (directory, label, kind, resampling).
const PENTAGON_SAES: [(&str, &str, SaeKind, bool); 4] = [
    ("sae-l1", "L1, resampling", SaeKind::L1, true),
    (
        "sae-l1-no-resampling",
        "L1, no resampling",
        SaeKind::L1,
        false,
    ),
    ("sae-topk", "Top-K (k = 1)", SaeKind::Topk, true),
    ("sae-jumprelu", "JumpReLU", SaeKind::Jumprelu, true),
];

const PENTAGON_RESTARTS: u32 = 4;

impl Reproduction for SaeReproduction {
    fn name(&self) -> &'static str {
        "sae"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        if !(self.larger_l1.is_finite() && self.larger_l1 >= 0.0) {
            return Err(UsageError::invalid(
                "--larger-l1",
                self.larger_l1,
                "a finite number ≥ 0",
            ));
        }
        for (flag, steps) in [
            ("--sae-steps", self.sae_steps),
            ("--pentagon-sae-steps", self.pentagon_sae_steps),
        ] {
            if steps == 0 || steps > 1 << 24 {
                return Err(UsageError::invalid(flag, steps, "between 1 and 16777216"));
            }
        }
        let steps = options.steps.unwrap_or(10_000);
        let toy = |features, hidden, density: &[f64], kind| Settings {
            features: Some(features),
            hidden: Some(hidden),
            density: Some(density.to_vec()),
            importance_decay: Some(1.0),
            optimizer: Some(kind),
            weight_decay: Some(0.0),
            restarts: Some(options.restarts.unwrap_or(1)),
            steps: Some(steps),
            log_every: Some((steps / 100).max(1)),
            ..Default::default()
        };
        let mut runs = vec![(
            "pentagon",
            toy(5, 2, &[0.025], OptimizerKind::Adam).resolve()?,
        )];
        for &(name, n, m, densities) in self.larger_models() {
            runs.push((name, toy(n, m, densities, OptimizerKind::Adamw).resolve()?));
        }
        Ok(runs)
    }

    fn after_training(&self, out: &Path, options: &ReproduceOptions) -> anyhow::Result<()> {
        let pentagon = out.join("pentagon");
        for (dir, _, kind, resampling) in PENTAGON_SAES {
            train_into(&SaeOptions {
                kind: vec![kind],
                latents: Some(vec![5]),
                restarts: PENTAGON_RESTARTS,
                steps: self.pentagon_sae_steps,
                resample_every: if resampling { 2_500 } else { 0 },
                ..sae_options(&pentagon, &pentagon.join(dir), options)
            })?;
        }
        for (name, n, _, _) in self.larger_models() {
            let run = out.join(name);
            train_into(&SaeOptions {
                latents: Some(MULTIPLES.iter().map(|k| k * n).collect()),
                l1: self.larger_l1,
                steps: self.sae_steps,
                batch: 256,
                resample_every: (self.sae_steps / 4).max(1),
                eval_samples: 4096,
                ..sae_options(&run, &run.join("sae"), options)
            })?;
        }
        Ok(())
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let (pentagon, larger) = self.sae_files(out)?;
        let mut written = save(
            &PentagonFigure {
                w: &runs[0].1.instances[0].w,
                saes: pentagon,
            },
            &out.join("sae-pentagon"),
        )?
        .to_vec();
        if !larger.is_empty() {
            written.extend(save(&MmcsFigure { files: larger }, &out.join("sae-mmcs"))?);
        }
        Ok(written)
    }

    fn summary(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<String> {
        let (pentagon, larger) = self.sae_files(out)?;
        Ok(summary_markdown(runs, pentagon, larger))
    }
}

/// `tms sae`'s defaults (L1, λ = 0.2, batch 1024, lr 1e-3) for run `run` into `out`, on the
/// reproduction's backend.
fn sae_options(run: &Path, out: &Path, options: &ReproduceOptions) -> SaeOptions {
    SaeOptions {
        run: run.to_path_buf(),
        out: out.to_path_buf(),
        latents: None,
        kind: vec![SaeKind::L1],
        l1: 0.2,
        l0: 0.1,
        k: 1,
        steps: 20_000,
        batch: 1024,
        lr: 1e-3,
        restarts: 1,
        resample_every: 2_500,
        instances: None,
        seed: 0,
        eval_samples: 16_384,
        backend: options.backend,
        adapter: None,
        force: options.force,
    }
}

/// Each pentagon SAE family's label and file.
fn read_pentagon(out: &Path) -> anyhow::Result<Vec<(&'static str, SaeFile)>> {
    PENTAGON_SAES
        .iter()
        .map(|(dir, label, _, _)| Ok((*label, read_sae_file(&out.join("pentagon").join(dir))?)))
        .collect()
}

impl SaeReproduction {
    /// The larger models this reproduction trains (none without `--larger`).
    fn larger_models(&self) -> &'static [(&'static str, usize, usize, &'static [f64])] {
        if self.larger {
            &LARGER
        } else {
            &[]
        }
    }

    fn read_larger(&self, out: &Path) -> anyhow::Result<Vec<(&'static str, SaeFile)>> {
        self.larger_models()
            .iter()
            .map(|(name, ..)| Ok((*name, read_sae_file(&out.join(name).join("sae"))?)))
            .collect()
    }

    /// The sae.json files under `out` (after training: figures and summary come after it), read
    /// on first use.
    fn sae_files(&self, out: &Path) -> anyhow::Result<&SaeFiles> {
        if let Some(files) = self.files.get() {
            return Ok(files);
        }
        let files = (read_pentagon(out)?, self.read_larger(out)?);
        Ok(self.files.get_or_init(|| files))
    }
}

/// The restart of a family with the lowest final training loss: chosen without the ground truth,
/// as a researcher without it would.
fn best_restart(file: &SaeFile) -> &SaeResult {
    file.saes
        .iter()
        .min_by(|a, b| final_loss(a).total_cmp(&final_loss(b)))
        .expect("a family has at least one SAE")
}

fn final_loss(sae: &SaeResult) -> f32 {
    sae.loss_curve.last().map_or(f32::INFINITY, |&(_, l)| l)
}

/// The smallest best-match cosine over the represented features.
fn worst_match(sae: &SaeResult) -> f64 {
    sae.scores
        .best_match
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min)
}

/// Decoder rows of the best restart of each pentagon SAE family against the true features.
struct PentagonFigure<'a> {
    w: &'a [Vec<f32>],
    saes: &'a [(&'static str, SaeFile)],
}

impl PentagonFigure<'_> {
    const PANEL: i32 = 340;
    const TOP: i32 = 110;
    const BOTTOM: i32 = 120;
}

impl Figure for PentagonFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (
            (self.saes.len() as i32 * Self::PANEL) as u32,
            (Self::TOP + Self::PANEL + Self::BOTTOM) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        draw_title(
            root,
            "SAE decoder rows (colour) against the true features W_i (black), n = 5, m = 2, 1 − S = 0.025",
        )?;
        let n = self.w[0].len();
        let length = |i: usize| f64::from(self.w[0][i]).hypot(f64::from(self.w[1][i]));
        let radius = (0..n).map(length).fold(1.0, f64::max);
        let scale = f64::from(Self::PANEL / 2 - 30) / radius;
        for (k, (label, file)) in self.saes.iter().enumerate() {
            let x0 = k as i32 * Self::PANEL;
            let centre = (x0 + Self::PANEL / 2, Self::TOP + Self::PANEL / 2);
            let sae = best_restart(file);
            root.draw_text(
                label,
                &text(LABEL_PX, HPos::Center, VPos::Bottom),
                (centre.0, Self::TOP),
            )?;
            let grey = RGBColor(200, 200, 200);
            root.draw(&Circle::new(
                centre,
                scale.round() as i32,
                grey.stroke_width(1),
            ))?;
            let tip = |x: f64, y: f64, s: f64| {
                (
                    centre.0 + (x * s).round() as i32,
                    centre.1 - (y * s).round() as i32,
                )
            };
            for i in 0..n {
                let to = tip(f64::from(self.w[0][i]), f64::from(self.w[1][i]), scale);
                root.draw(&PathElement::new(vec![centre, to], BLACK.stroke_width(3)))?;
            }
            // Decoder rows are unit vectors: drawn at the length of the mean true feature.
            let mean = (0..n).map(length).sum::<f64>() / n as f64;
            for (j, row) in sae.w_dec.iter().enumerate() {
                let colour = inferno(0.15 + 0.7 * j as f64 / (sae.w_dec.len().max(2) - 1) as f64);
                let to = tip(f64::from(row[0]), f64::from(row[1]), scale * mean);
                root.draw(&PathElement::new(vec![centre, to], colour.stroke_width(3)))?;
                root.draw(&Circle::new(to, 6, colour.filled()))?;
            }
            let lines = [
                format!("MMCS {:.3}, worst {:.3}", sae.scores.mmcs, worst_match(sae)),
                format!(
                    "L0 {:.2}, FVE {:.2}, {} dead",
                    sae.scores.l0, sae.scores.fraction_variance_explained, sae.scores.dead_latents
                ),
            ];
            for (l, line) in lines.iter().enumerate() {
                root.draw_text(
                    line,
                    &text(TICK_PX, HPos::Center, VPos::Top),
                    (centre.0, Self::TOP + Self::PANEL + 10 + 32 * l as i32),
                )?;
            }
        }
        Ok(())
    }
}

/// MMCS against latents per feature, a line per (model, density).
struct MmcsFigure<'a> {
    files: &'a [(&'static str, SaeFile)],
}

impl Figure for MmcsFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (top, _) = root.split_vertically(80);
        draw_title(
            &top,
            "L1 SAEs on larger toy models: MMCS against latents per feature",
        )?;
        let area = root.margin(80, 20, 20, 40);
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(70)
            .y_label_area_size(90)
            .build_cartesian_2d((0.8f64..4.5f64).log_scale(), 0.0f64..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc("latents per feature (K / n)")
            .y_desc("MMCS")
            .axis_desc_style(("sans-serif", LABEL_PX))
            .label_style(("sans-serif", TICK_PX))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        let lines: Vec<(String, Vec<(f64, f64)>)> = self
            .files
            .iter()
            .flat_map(|(name, file)| {
                let mut densities: Vec<f64> = file.saes.iter().map(|s| s.density).collect();
                densities.dedup();
                densities.into_iter().map(move |d| {
                    let points = file
                        .saes
                        .iter()
                        .filter(|s| s.density == d)
                        .map(|s| (s.spec.latents as f64 / file.features as f64, s.scores.mmcs))
                        .collect();
                    (format!("{name}, 1 − S = {d}"), points)
                })
            })
            .collect();
        for (k, (label, points)) in lines.iter().enumerate() {
            let colour = inferno(0.1 + 0.75 * k as f64 / (lines.len().max(2) - 1) as f64);
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], colour.stroke_width(3))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", TICK_PX))
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    }
}

/// summary.md: the pentagon's SAE families and the larger models' MMCS, against ARENA and the
/// literature.
fn summary_markdown(
    runs: &[RunFiles],
    pentagon: &[(&str, SaeFile)],
    larger: &[(&str, SaeFile)],
) -> String {
    let mut s = String::from(
        "# Sparse autoencoders on toy models, scored against the true features

",
    );
    let _ = writeln!(
        s,
        "Toy models: {}.
",
        training_line(&runs[0].0)
    );
    let mmcs = if larger.is_empty() {
        ""
    } else {
        ", `sae-mmcs.png`"
    };
    let _ = writeln!(
        s,
        "Figures: `sae-pentagon.png` (the best restart of each family, by final training loss: chosen \
         without the ground truth){mmcs}. Every SAE's weights and scores: `*/sae*/sae.json`.\n"
    );
    let toy = &runs[0].1.instances[0];
    let _ = writeln!(
        s,
        "## The pentagon (n = 5, m = 2, 1 − S = 0.025; ARENA's SAE setting)\n\nToy model evaluation loss {:.5}. \
         SAEs: 5 latents, Adam lr 1e-3, batch 1024, {} steps, {PENTAGON_RESTARTS} restarts per family; L1 λ = 0.2, \
         JumpReLU λ = 0.1 (L0) with θ₀ = 0.1 and ε = 0.01, Top-K k = 1; resampling every 2,500 steps (window 500, scale 0.5).\n",
        toy.eval_loss.unwrap_or(f64::NAN),
        pentagon[0].1.steps
    );
    s.push_str("| family | MMCS (best restart) | worst feature | L0 | FVE | dead | restarts recovering all 5 (≥ 0.95) | latents resampled (all restarts) |\n|---|---|---|---|---|---|---|---|\n");
    for (label, file) in pentagon {
        let best = best_restart(file);
        let recovering = file.saes.iter().filter(|s| worst_match(s) >= 0.95).count();
        let _ = writeln!(
            s,
            "| {label} | {:.3} | {:.3} | {:.2} | {:.3} | {} | {recovering} of {} | {} |",
            best.scores.mmcs,
            worst_match(best),
            best.scores.l0,
            best.scores.fraction_variance_explained,
            best.scores.dead_latents,
            file.saes.len(),
            file.saes.iter().map(|s| s.resampled).sum::<usize>()
        );
    }
    let l1 = &pentagon[0].1;
    let all = l1.saes.iter().filter(|s| worst_match(s) >= 0.95).count();
    let _ = writeln!(
        s,
        "\nARENA's exercise expects the L1 SAE with resampling to find all five pentagon directions: here {all} of \
         {} restarts do (every best-match cosine ≥ 0.95). The paper's own SAE work came later (Towards \
         Monosemanticity); on this toy, whose true features are the pentagon's arms, MMCS reads the recovery off directly. \
         Where no latent dies, resampling never acts and the two L1 families train identically. Top-K and JumpReLU \
         align exactly when they succeed, but only some restarts do: the others settle with the decoder bias off \
         the origin and latents that do not point along features (the count of restarts above), which is why the \
         paper and ARENA keep the best of several runs.\n",
        l1.saes.len()
    );
    let Some((_, file)) = larger.first() else {
        s.push_str(
            "The larger models (n = 100, m = 20 and n = 400, m = 30, SAEs of 1× to 4× n latents) are \
             left out of this run: `tms reproduce sae --larger` trains them (long on a CPU).\n",
        );
        return s;
    };
    let _ = writeln!(
        s,
        "## Larger models: L1 SAEs of 1×, 2× and 4× n latents\n\nSAEs: λ = {}, Adam lr 1e-3, batch {}, {} steps \
         (fewer than ARENA's 20,000: these train on the CPU here), resampling every {} steps.\n",
        file.saes[0].spec.coefficient,
        file.batch,
        file.steps,
        file.resample_every.map_or("no".into(), |k| k.to_string())
    );
    s.push_str(
        "| model | 1 − S | latents | MMCS | L0 | FVE | dead |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, file) in larger {
        for sae in &file.saes {
            let _ = writeln!(
                s,
                "| {name} (n = {}, m = {}) | {} | {} | {:.3} | {:.2} | {:.3} | {} |",
                file.features,
                file.hidden,
                sae.density,
                sae.spec.latents,
                sae.scores.mmcs,
                sae.scores.l0,
                sae.scores.fraction_variance_explained,
                sae.scores.dead_latents
            );
        }
    }
    s.push_str(
        "\nSharkey et al.'s toy study (and ARENA after it) found MMCS rising with the dictionary size until it \
         exceeds the number of true features; the table shows whether these short CPU runs get there.\n",
    );
    s
}
