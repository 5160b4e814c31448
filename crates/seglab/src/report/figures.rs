//! Report figures, drawn with plotters into SVG strings (text is laid out by the browser, so no fonts are needed here),
//! and the gallery's PNG tiles.
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use seglab_nn::record::EpochRecord;

use crate::experiment::{Experiment, GalleryCase};
use crate::stats;

/// A drawn figure: file name inside `figures/`, a title and a caption for the report.
#[derive(Clone, Debug)]
pub struct Figure {
    pub file_name: String,
    pub title: String,
    pub caption: String,
    pub svg: String,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 400;

/// Tableau-10: distinguishable, and the first colour (the baseline) is a strong blue.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour of a variant: by its position in the experiment, so it is the same in every figure.
pub fn variant_color(exp: &Experiment, name: &str) -> RGBColor {
    let i = exp
        .variants
        .iter()
        .position(|v| v.name == name)
        .unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// One per-epoch quantity of [`EpochRecord`].
#[derive(Clone, Copy)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub get: fn(&EpochRecord) -> f64,
    /// Draw on a log10 axis (for quantities spanning decades, like gradient norms).
    pub log: bool,
}

pub const VAL_LOSS: Metric = Metric {
    key: "val_loss",
    label: "validation loss (with the variant's threshold mode)",
    get: |e| e.val_loss,
    log: false,
};
pub const VAL_DICE: Metric = Metric {
    key: "val_dice",
    label: "validation Dice at 0.5",
    get: |e| e.val_dice,
    log: false,
};
pub const TRAIN_LOSS: Metric = Metric {
    key: "train_loss",
    label: "training loss",
    get: |e| e.train_loss,
    log: false,
};
pub const GRAD_NORM: Metric = Metric {
    key: "grad_norm",
    label: "gradient L2 norm (mean over steps)",
    get: |e| e.grad_norm,
    log: true,
};
pub const ZERO_GRAD: Metric = Metric {
    key: "zero_grad_fraction",
    label: "fraction of exactly-zero gradient entries",
    get: |e| e.zero_grad_fraction,
    log: false,
};

/// Mean and spread over seeds of one quantity, per epoch: `(epoch, mean, min, max)` over the runs that have a finite
/// value at that epoch (a diverged run contributes its epochs before the NaN).
pub fn seed_band(
    exp: &Experiment,
    variant: &str,
    get: fn(&EpochRecord) -> f64,
) -> Vec<(f64, f64, f64, f64)> {
    let runs: Vec<&[EpochRecord]> = exp
        .runs_of(variant)
        .map(|r| r.outcome.epochs.as_slice())
        .collect();
    let max_epoch = runs
        .iter()
        .flat_map(|e| e.iter().map(|r| r.epoch))
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for epoch in 0..=max_epoch {
        let vals: Vec<f64> = runs
            .iter()
            .filter_map(|rs| rs.iter().find(|r| r.epoch == epoch))
            .map(get)
            .filter(|v| v.is_finite())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.push((epoch as f64, stats::mean(&vals), lo, hi));
    }
    out
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure failed: {e:?}")
}

/// A tick label with about two significant digits: 0.25, 3.1, 1.6e-3.
pub fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if (0.01..1000.0).contains(&a) {
        let decimals = (1 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.1e}")
    }
}

/// A padded axis range that is never empty.
fn axis_range(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = (lo.abs() * 0.1).max(0.05);
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Mean-over-seeds curves of `metric` for `variants`, with a band from the minimum to the maximum over seeds. On a log
/// axis, values <= 0 (an all-zero gradient series) are drawn at a floor two decades below the smallest positive value,
/// and the caption says so: the series stays visible instead of vanishing.
pub fn curve_figure(
    exp: &Experiment,
    variants: &[&str],
    metric: Metric,
    file_name: &str,
    title: &str,
) -> Result<Figure> {
    let bands: Vec<(&str, Vec<(f64, f64, f64, f64)>)> = variants
        .iter()
        .map(|v| (*v, seed_band(exp, v, metric.get)))
        .collect();
    let all = || {
        bands
            .iter()
            .flat_map(|(_, b)| b.iter().flat_map(|p| [p.1, p.2, p.3]))
    };
    let mut caption = format!(
        "{}: mean over seeds (line) and min-max over seeds (band), per epoch.",
        metric.label
    );
    let (floor, transform): (f64, Box<dyn Fn(f64) -> f64>) = if metric.log {
        let min_pos = all().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let floor = if min_pos.is_finite() {
            min_pos / 10.0
        } else {
            1e-8
        };
        if all().any(|v| v <= 0.0) {
            caption.push_str(&format!(
                " Log scale; values of exactly 0 are drawn at the floor {floor:.0e} (bottom of the axis)."
            ));
        } else {
            caption.push_str(" Log scale.");
        }
        (floor, Box::new(move |v: f64| v.max(floor).log10()))
    } else {
        (0.0, Box::new(|v: f64| v))
    };
    let ys: Vec<f64> = all().map(&transform).collect();
    let (mut y0, y1) = axis_range(
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if metric.log {
        y0 = y0.min(floor.log10());
    }
    let max_epoch = bands
        .iter()
        .flat_map(|(_, b)| b.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (x0, x1) = if max_epoch <= 1.0 {
        (0.5, 1.5)
    } else {
        (1.0, max_epoch)
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        let log = metric.log;
        let y_fmt = move |v: &f64| {
            if log {
                sig(10f64.powf(*v))
            } else {
                format!("{v:.3}")
            }
        };
        let n_epochs = (x1 - x0).round() as usize + 1;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(if metric.log {
                format!("{} (log10)", metric.key)
            } else {
                metric.key.to_string()
            })
            .y_label_formatter(&y_fmt)
            .x_labels(n_epochs.min(12))
            .x_label_formatter(&|v| {
                // Epochs are whole numbers: label only the ticks that fall on one.
                if (v - v.round()).abs() < 1e-6 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(draw_err)?;
        for (name, band) in &bands {
            let color = variant_color(exp, name);
            if band.is_empty() {
                continue;
            }
            if band.iter().any(|p| p.3 > p.2) {
                let mut poly: Vec<(f64, f64)> =
                    band.iter().map(|p| (p.0, transform(p.3))).collect();
                poly.extend(band.iter().rev().map(|p| (p.0, transform(p.2))));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        poly,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(draw_err)?;
            }
            let width = if *name == exp.baseline { 3 } else { 2 };
            let line: Vec<(f64, f64)> = band.iter().map(|p| (p.0, transform(p.1))).collect();
            let label = if *name == exp.baseline {
                format!("{name} (baseline)")
            } else {
                name.to_string()
            };
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(width)))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            // Markers make a one-epoch series (or a single surviving point) visible too.
            chart
                .draw_series(line.iter().map(|p| Circle::new(*p, 2, color.filled())))
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Figure {
        file_name: file_name.to_string(),
        title: title.to_string(),
        caption,
        svg,
    })
}

/// Histogram of validation probabilities inside vs outside lesions for one variant, summed over its runs and
/// normalised per class (each class's bars sum to 1), with the 0.5 threshold marked.
pub fn histogram_figure(exp: &Experiment, variant: &str) -> Result<Figure> {
    let sum = |get: fn(&crate::experiment::RunResult) -> &Vec<u64>| {
        let mut acc: Vec<u64> = Vec::new();
        for r in exp.runs_of(variant) {
            let h = get(r);
            if acc.len() < h.len() {
                acc.resize(h.len(), 0);
            }
            for (a, b) in acc.iter_mut().zip(h) {
                *a += b;
            }
        }
        acc
    };
    let lesion = sum(|r| &r.outcome.prob_hist_lesion);
    let background = sum(|r| &r.outcome.prob_hist_background);
    histogram(
        variant,
        &lesion,
        &background,
        "validation pixels",
        "summed over seeds",
        0.5,
    )
}

/// Probabilities inside vs outside lesions, each class normalised to 1, with `threshold` marked: `pixels` says
/// which pixels ("validation pixels"), `pooled` how the counts were pooled ("summed over seeds").
pub fn histogram(
    name: &str,
    lesion: &[u64],
    background: &[u64],
    pixels: &str,
    pooled: &str,
    threshold: f64,
) -> Result<Figure> {
    let variant = name;
    let frac = |h: &[u64]| {
        let t: u64 = h.iter().sum();
        h.iter()
            .map(|c| if t == 0 { 0.0 } else { *c as f64 / t as f64 })
            .collect::<Vec<f64>>()
    };
    let (fl, fb) = (frac(&lesion), frac(&background));
    let ymax = fl.iter().chain(&fb).copied().fold(0.0, f64::max).max(0.05) * 1.1;
    let title = format!("{variant}: predicted probabilities on {pixels}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (480, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..1.0, 0.0..ymax)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("probability")
            .y_desc("fraction of class pixels")
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()
            .map_err(draw_err)?;
        let series = [
            ("outside lesions", &fb, RGBColor(127, 127, 127)),
            ("inside lesions", &fl, RGBColor(214, 39, 40)),
        ];
        for (label, f, color) in series {
            let n = f.len().max(1) as f64;
            chart
                .draw_series(f.iter().enumerate().map(|(i, v)| {
                    Rectangle::new(
                        [(i as f64 / n, 0.0), ((i + 1) as f64 / n, *v)],
                        color.mix(0.45).filled(),
                    )
                }))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.45).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                vec![(threshold, 0.0), (threshold, ymax)],
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(draw_err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperMiddle)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let caption = if lesion.iter().sum::<u64>() + background.iter().sum::<u64>() == 0 {
        format!("{variant}: no probability histogram was recorded.")
    } else {
        format!(
            "{variant}: {} bins on [0, 1], {pooled}, each class normalised to 1; the line marks the threshold {threshold}.",
            lesion.len().max(background.len())
        )
    };
    Ok(Figure {
        file_name: format!("hist_{}.svg", file_stem(variant)),
        title,
        caption,
        svg,
    })
}

/// Curves over a common x axis (one per named series, colours in series order, the first drawn thicker), each point
/// marked; `marks` adds one marker per series (e.g. a chosen threshold).
pub fn lines_figure(
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[Option<(f64, f64)>],
    x_desc: &str,
    y_desc: &str,
    title: &str,
    file_name: &str,
    caption: &str,
) -> Result<Figure> {
    let pts = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let (x0, x1) = axis_range(
        pts().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = axis_range(
        pts()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min),
        pts()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max),
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .x_label_formatter(&|v| format!("{v:.2}"))
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(draw_err)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let line: Vec<(f64, f64)> =
                points.iter().copied().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(
                    line.clone(),
                    color.stroke_width(if i == 0 { 3 } else { 2 }),
                ))
                .map_err(draw_err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            chart
                .draw_series(line.iter().map(|p| Circle::new(*p, 2, color.filled())))
                .map_err(draw_err)?;
            if let Some(Some(m)) = marks.get(i) {
                chart
                    .draw_series(std::iter::once(Circle::new(*m, 7, color.stroke_width(2))))
                    .map_err(draw_err)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::LowerMiddle)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Figure {
        file_name: file_name.to_string(),
        title: title.to_string(),
        caption: caption.to_string(),
        svg,
    })
}

/// A variant name made safe for a file name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn encode_png(
    width: usize,
    height: usize,
    data: &[u8],
    color: image::ExtendedColorType,
) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf).write_image(
        data,
        width as u32,
        height as u32,
        color,
    )?;
    Ok(buf)
}

/// The grayscale image as PNG.
pub fn gallery_image_png(case: &GalleryCase) -> Result<Vec<u8>> {
    encode_png(
        case.width,
        case.height,
        &case.image,
        image::ExtendedColorType::L8,
    )
}

/// The ground truth as a white-on-black PNG.
pub fn gallery_mask_png(case: &GalleryCase) -> Result<Vec<u8>> {
    let px: Vec<u8> = case
        .ground_truth
        .iter()
        .map(|v| if *v > 0 { 255 } else { 0 })
        .collect();
    encode_png(case.width, case.height, &px, image::ExtendedColorType::L8)
}

pub const TP_RGB: [u8; 3] = [255, 255, 255];
pub const FP_RGB: [u8; 3] = [230, 60, 60];
pub const FN_RGB: [u8; 3] = [70, 130, 255];

/// A thresholded prediction coloured against the ground truth: true positives white, false positives red, false
/// negatives blue, background black.
pub fn gallery_prediction_png(case: &GalleryCase, pred: &[u8]) -> Result<Vec<u8>> {
    let mut px = Vec::with_capacity(pred.len() * 3);
    for (p, t) in pred.iter().zip(&case.ground_truth) {
        let c = match (*p > 0, *t > 0) {
            (true, true) => TP_RGB,
            (true, false) => FP_RGB,
            (false, true) => FN_RGB,
            (false, false) => [0, 0, 0],
        };
        px.extend_from_slice(&c);
    }
    encode_png(case.width, case.height, &px, image::ExtendedColorType::Rgb8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::synthetic_experiment;

    /// The text contents of an SVG's `<text>` elements, trimmed.
    pub fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let start = t.find('>')? + 1;
                let end = t.find("</text>")?;
                Some(t[start..end].trim().to_string())
            })
            .collect()
    }

    #[test]
    fn tick_labels_have_two_significant_digits() {
        assert_eq!(sig(0.25), "0.25");
        assert_eq!(sig(3.24159), "3.2");
        assert_eq!(sig(123.4), "123");
        assert_eq!(sig(0.0016), "1.6e-3");
    }

    #[test]
    fn band_spans_seeds_and_skips_diverged_nan() {
        let exp = synthetic_experiment();
        let band = seed_band(&exp, "soft", |e| e.val_dice);
        assert_eq!(band.len(), 6);
        let last = band[5];
        // Final Dice per seed 0.81, 0.82, 0.83.
        assert!(
            (last.1 - 0.82).abs() < 1e-12
                && (last.2 - 0.81).abs() < 1e-12
                && (last.3 - 0.83).abs() < 1e-12
        );
        // power seed 1 has NaN train loss at epoch 4: that epoch's mean uses the two finite seeds.
        let p = seed_band(&exp, "power", |e| e.train_loss);
        let e4 = p.iter().find(|p| p.0 == 4.0).unwrap();
        assert!(e4.1.is_finite());
    }

    #[test]
    fn all_zero_series_is_drawn_on_log_axis() {
        let exp = synthetic_experiment();
        let f = curve_figure(&exp, &["hard"], GRAD_NORM, "g.svg", "grad").unwrap();
        assert!(
            f.caption
                .contains("values of exactly 0 are drawn at the floor"),
            "{}",
            f.caption
        );
        // The hard series (legend + line) is in the SVG.
        assert!(
            svg_texts(&f.svg).contains(&"hard".to_string()),
            "legend missing"
        );
        assert!(f.svg.contains("<polyline"), "no line drawn");
        let f = curve_figure(&exp, &["soft", "hard"], GRAD_NORM, "g.svg", "grad").unwrap();
        let t = svg_texts(&f.svg);
        assert!(
            t.contains(&"soft (baseline)".to_string()) && t.contains(&"hard".to_string()),
            "{t:?}"
        );
    }

    #[test]
    fn histogram_and_gallery_tiles_encode() {
        let exp = synthetic_experiment();
        let h = histogram_figure(&exp, "soft").unwrap();
        assert!(
            svg_texts(&h.svg).contains(&"inside lesions".to_string()) && h.svg.contains("<rect")
        );
        let case = &exp.gallery[0];
        let png = gallery_prediction_png(case, &exp.runs[0].gallery_predictions[0]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (8, 8));
        // Column 4 of row 0: gt yes (4 > 3), pred no (4 > 4 false) -> false negative.
        assert_eq!(img.get_pixel(4, 0).0, FN_RGB);
        assert_eq!(img.get_pixel(5, 0).0, TP_RGB);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert!(gallery_image_png(case).is_ok() && gallery_mask_png(case).is_ok());
    }
}
