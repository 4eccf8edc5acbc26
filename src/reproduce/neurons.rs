//! Neurons of the models with a privileged hidden basis (`relu-hidden`, `abs`), shared by
//! `tms reproduce privileged` and `tms reproduce computation`: which features each neuron responds
//! to (the counts their summaries compare with the paper), and the figure of W as a heat map over
//! the paper's per-neuron stacked bars of feature weights, coloured by feature.

use crate::figures::{draw_title, inferno, text, Figure, LABEL_PX, TICK_PX};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// A neuron counts a feature as one of its own when the feature's weight into it is at least this
/// fraction of the largest weight magnitude of the whole W (so dead or faint weights are not
/// counted; the paper's bar plots make the same judgement by eye).
pub const ACTIVE_FRACTION: f64 = 0.2;

/// Who responds to whom in one W (m rows of n): `features_of[k]` are the features of neuron k.
#[derive(Clone, Debug, PartialEq)]
pub struct Neurons {
    pub features_of: Vec<Vec<usize>>,
    pub features: usize,
}

impl Neurons {
    /// The features of each neuron of `w`: those whose weight passes [`ACTIVE_FRACTION`] of the
    /// largest |weight|; with `signed`, a negative weight counts too (the abs model's inputs are
    /// signed, so a neuron with a negative weight fires for negative values of that feature);
    /// without, only positive weights can make a neuron fire on non-negative features.
    pub fn of(w: &[Vec<f64>], signed: bool) -> Neurons {
        let largest = w.iter().flatten().fold(0.0f64, |a, v| a.max(v.abs()));
        let cut = ACTIVE_FRACTION * largest;
        let counts = |v: f64| largest > 0.0 && if signed { v.abs() >= cut } else { v >= cut };
        Neurons {
            features_of: w
                .iter()
                .map(|row| (0..row.len()).filter(|&i| counts(row[i])).collect())
                .collect(),
            features: w.first().map_or(0, Vec::len),
        }
    }

    /// Neurons with exactly one feature.
    pub fn monosemantic(&self) -> usize {
        self.features_of.iter().filter(|f| f.len() == 1).count()
    }

    /// Neurons with two features or more.
    pub fn polysemantic(&self) -> usize {
        self.features_of.iter().filter(|f| f.len() >= 2).count()
    }

    /// How many neurons each feature is in.
    pub fn neurons_per_feature(&self) -> Vec<usize> {
        let mut count = vec![0; self.features];
        self.features_of
            .iter()
            .flatten()
            .for_each(|&i| count[i] += 1);
        count
    }

    /// Features in at least one neuron.
    pub fn represented(&self) -> usize {
        self.neurons_per_feature()
            .iter()
            .filter(|&&c| c > 0)
            .count()
    }

    /// Features that share a neuron with another feature.
    pub fn sharing(&self) -> usize {
        let mut shares = vec![false; self.features];
        for f in self.features_of.iter().filter(|f| f.len() >= 2) {
            f.iter().for_each(|&i| shares[i] = true);
        }
        shares.iter().filter(|&&s| s).count()
    }
}

/// One panel of a [`NeuronsFigure`]: its title and W (m rows of n).
pub struct Panel {
    pub title: String,
    pub w: Vec<Vec<f64>>,
}

/// One panel per W: the heat map of W (neurons as rows, features as columns, blue negative, red
/// positive) over the per-neuron stacked bars of its weights (positive up, negative down), each
/// feature its own colour.
pub struct NeuronsFigure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub columns: usize,
}

impl NeuronsFigure {
    const WIDTH: i32 = 320;
    const HEAT: i32 = 150;
    const BARS: i32 = 220;
    const GAP: (i32, i32) = (50, 110);
    const TOP: i32 = 80;
    const RIGHT: i32 = 230;

    /// Feature colours: matplotlib's ten categorical colours (tab10) for up to ten features, the
    /// inferno scale by importance rank beyond.
    fn colour(feature: usize, features: usize) -> RGBColor {
        const TAB10: [(u8, u8, u8); 10] = [
            (31, 119, 180),
            (255, 127, 14),
            (44, 160, 44),
            (214, 39, 40),
            (148, 103, 189),
            (140, 86, 75),
            (227, 119, 194),
            (127, 127, 127),
            (188, 189, 34),
            (23, 190, 207),
        ];
        match TAB10.get(feature) {
            Some(&(r, g, b)) if features <= TAB10.len() => RGBColor(r, g, b),
            _ => inferno(0.85 * feature as f64 / (features.max(2) - 1) as f64),
        }
    }

    fn panel_height() -> i32 {
        Self::HEAT + 30 + Self::BARS
    }

    fn origin(&self, k: usize) -> (i32, i32) {
        let (row, column) = ((k / self.columns) as i32, (k % self.columns) as i32);
        (
            20 + column * (Self::WIDTH + Self::GAP.0),
            Self::TOP + row * (Self::panel_height() + Self::GAP.1),
        )
    }

    /// The largest stacked height (positive or negative) of any neuron of any panel.
    fn largest_stack(&self) -> f64 {
        let sum = |row: &Vec<f64>, sign: f64| row.iter().map(|v| (sign * v).max(0.0)).sum::<f64>();
        self.panels
            .iter()
            .flat_map(|p| &p.w)
            .map(|row| sum(row, 1.0).max(sum(row, -1.0)))
            .fold(1e-9, f64::max)
    }
}

impl Figure for NeuronsFigure {
    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.columns).max(1) as i32;
        let columns = self.panels.len().clamp(1, self.columns) as i32;
        (
            (20 + columns * (Self::WIDTH + Self::GAP.0) + Self::RIGHT) as u32,
            (Self::TOP + rows * (Self::panel_height() + Self::GAP.1)) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        draw_title(root, &self.title)?;
        let stack = self.largest_stack();
        let mut features = 1;
        for (k, panel) in self.panels.iter().enumerate() {
            let (x0, y0) = self.origin(k);
            let (m, n) = (panel.w.len(), panel.w.first().map_or(0, Vec::len));
            features = features.max(n);
            root.draw_text(
                &panel.title,
                &text(TICK_PX, HPos::Left, VPos::Bottom),
                (x0, y0 - 6),
            )?;
            let largest = panel
                .w
                .iter()
                .flatten()
                .fold(1e-9f64, |a, v| a.max(v.abs()));
            let (cw, ch) = (
                f64::from(Self::WIDTH) / n.max(1) as f64,
                f64::from(Self::HEAT) / m.max(1) as f64,
            );
            for (r, row) in panel.w.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let (xa, ya) = (x0 + (c as f64 * cw) as i32, y0 + (r as f64 * ch) as i32);
                    let (xb, yb) = (
                        x0 + ((c + 1) as f64 * cw) as i32,
                        y0 + ((r + 1) as f64 * ch) as i32,
                    );
                    root.draw(&Rectangle::new(
                        [(xa, ya), (xb, yb)],
                        crate::figures::diverging(v / largest).filled(),
                    ))?;
                }
            }
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + Self::WIDTH, y0 + Self::HEAT)],
                RGBColor(120, 120, 120).stroke_width(1),
            ))?;
            // Stacked bars: one per neuron, zero line in the middle of the bar area.
            let top = y0 + Self::HEAT + 30;
            let zero = top + Self::BARS / 2;
            let scale = f64::from(Self::BARS / 2 - 4) / stack;
            let slot = f64::from(Self::WIDTH) / m.max(1) as f64;
            for (r, row) in panel.w.iter().enumerate() {
                let xa = x0 + (r as f64 * slot + 0.15 * slot) as i32;
                let xb = x0 + ((r + 1) as f64 * slot - 0.15 * slot) as i32;
                let (mut up, mut down) = (0.0, 0.0);
                for (i, &v) in row.iter().enumerate() {
                    let (from, to) = if v >= 0.0 {
                        up += v;
                        (up - v, up)
                    } else {
                        down += v;
                        (down - v, down)
                    };
                    let (ya, yb) = (
                        zero - (from * scale).round() as i32,
                        zero - (to * scale).round() as i32,
                    );
                    if ya != yb {
                        root.draw(&Rectangle::new(
                            [(xa, ya.min(yb)), (xb.max(xa + 1), ya.max(yb))],
                            Self::colour(i, n).filled(),
                        ))?;
                    }
                }
            }
            root.draw(&PathElement::new(
                vec![(x0, zero), (x0 + Self::WIDTH, zero)],
                RGBColor(90, 90, 90),
            ))?;
            root.draw_text(
                &format!("{m} neurons →"),
                &text(TICK_PX, HPos::Left, VPos::Top),
                (x0, top + Self::BARS + 4),
            )?;
        }
        // Legend: the feature colours, most important at the top.
        let (x, y) = (self.size().0 as i32 - Self::RIGHT + 20, Self::TOP);
        root.draw_text(
            "feature",
            &text(LABEL_PX, HPos::Left, VPos::Bottom),
            (x, y - 6),
        )?;
        let shown: Vec<usize> = if features <= 12 {
            (0..features).collect()
        } else {
            (0..features).step_by(features.div_ceil(10)).collect()
        };
        for (k, &i) in shown.iter().enumerate() {
            let ty = y + 30 * k as i32;
            root.draw(&Rectangle::new(
                [(x, ty), (x + 22, ty + 22)],
                Self::colour(i, features).filled(),
            ))?;
            root.draw_text(
                &format!("{i}"),
                &text(TICK_PX, HPos::Left, VPos::Top),
                (x + 30, ty),
            )?;
        }
        let note_y = y + 30 * shown.len() as i32 + 20;
        for (k, line) in [
            "top: W (rows neurons,",
            "columns features;",
            "red +, blue −);",
            "bottom: each neuron's",
            "weights stacked",
        ]
        .iter()
        .enumerate()
        {
            root.draw_text(
                line,
                &text(TICK_PX * 0.8, HPos::Left, VPos::Top),
                (x, note_y + 22 * k as i32),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_monosemantic_and_shared_neurons() {
        // Neuron 0: feature 0 alone; neuron 1: features 1 and 2; neuron 2: only a faint weight
        // (below 0.2 of the largest) and a negative one, so dead for non-negative inputs.
        let w = vec![
            vec![1.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.8, 0.5, 0.1],
            vec![0.1, 0.0, -0.9, 0.0],
        ];
        let neurons = Neurons::of(&w, false);
        assert_eq!(neurons.features_of, vec![vec![0], vec![1, 2], vec![]]);
        assert_eq!((neurons.monosemantic(), neurons.polysemantic()), (1, 1));
        assert_eq!((neurons.represented(), neurons.sharing()), (3, 2));
        assert_eq!(neurons.neurons_per_feature(), vec![1, 1, 1, 0]);
        // Signed inputs: the negative weight counts, feature 2 is in two neurons.
        let signed = Neurons::of(&w, true);
        assert_eq!(signed.features_of[2], vec![2]);
        assert_eq!(signed.neurons_per_feature(), vec![1, 1, 2, 0]);
    }
}
