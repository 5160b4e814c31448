//! The report of `seglab compare --predictions`: the same page parts as the trained compare's ([`super::html`]:
//! verdict, answers, case-level comparison table, figures, gallery), with a final table of `evaluate`'s summaries,
//! each model's threshold sweep and probability histogram. The verdict's rules, in order:
//!
//! 1. Thresholds: each model's threshold, and the validation cases it was chosen on (or that it was fixed).
//! 2. Each model's answer against the baseline on the primary metric (the first of `--metrics`): `better` / `worse`
//!    when Holm's adjusted Wilcoxon p is below 0.05 and the case-level bootstrap interval lies on that side of 0 (in
//!    the metric's direction), else `no evidence`; with the numbers.
//! 3. Soft vs thresholded Dice: for models with probability maps, a mean gap of at least
//!    [`super::verdict::GAP_TOLERANCE`] between Dice at the model's threshold and soft Dice is named (the concern that
//!    every p >= threshold counts as 1).
//! 4. The summary sentence: the models better and worse than the baseline, or that none differs.
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use seglab_metrics::comparison::Answer;

use super::figures::{self, file_stem, Figure};
use super::html::{self, escape};
use super::verdict::{f3, GAP_TOLERANCE};
use super::{GalleryRow, Tile};
use crate::predictions::{summary_json, PredictionAnalysis, PredictionExperiment};
use crate::stats;
use seglab_metrics::io::write_bytes_atomic as write_atomic;

fn word(a: Answer) -> &'static str {
    match a {
        Answer::Better => "better",
        Answer::Worse => "worse",
        Answer::NoEvidence => "no evidence",
        Answer::Inconclusive => "inconclusive",
    }
}

pub fn verdict(exp: &PredictionExperiment, a: &PredictionAnalysis) -> Vec<String> {
    let mut out = Vec::new();
    // Rule 1.
    let thresholds: Vec<String> = exp
        .models
        .iter()
        .map(|m| {
            if m.probabilistic {
                format!("{} {}", m.name, m.threshold)
            } else {
                format!("{} (masks)", m.name)
            }
        })
        .collect();
    if exp.val_cases.is_empty() {
        out.push(format!(
            "Thresholds: {} for every model with probability maps (--threshold; no --val-cases), on all {} cases: {}.",
            exp.models[0].threshold,
            exp.cases.len(),
            thresholds.join(", ")
        ));
    } else {
        out.push(format!(
            "Thresholds chosen on {} validation cases (the sweep's best mean Dice there): {}; every number below comes \
             from the other {} cases.",
            exp.val_cases.len(),
            thresholds.join(", "),
            exp.cases.len()
        ));
    }
    // Rule 2.
    for ans in &a.answers {
        out.push(format!(
            "{}: {} ({}).",
            ans.variant,
            word(ans.answer),
            ans.reason
        ));
    }
    // Rule 3.
    for m in exp.models.iter().filter(|m| m.probabilistic) {
        let (dice, soft) = m.dice_and_soft_dice();
        let g = dice - soft;
        if !g.is_finite() || g.abs() < GAP_TOLERANCE {
            continue;
        }
        if g > 0.0 {
            out.push(format!(
                "{}: Dice at its threshold ({}) is {} above its soft Dice ({}): the probabilities are far from 0 and \
                 1, which thresholding hides (every p >= {} counts as 1).",
                m.name,
                f3(dice),
                f3(g),
                f3(soft),
                m.threshold
            ));
        } else {
            out.push(format!(
                "{}: soft Dice ({}) is {} above its Dice at its threshold ({}): much of the lesion probability lies \
                 below {} and thresholding discards it.",
                m.name,
                f3(soft),
                f3(-g),
                f3(dice),
                m.threshold
            ));
        }
    }
    // Rule 4.
    let with = |w: Answer| -> Vec<&str> {
        a.answers
            .iter()
            .filter(|x| x.answer == w)
            .map(|x| x.variant.as_str())
            .collect()
    };
    let (better, worse) = (with(Answer::Better), with(Answer::Worse));
    let primary = &exp.metrics[0];
    let mut line = if better.is_empty() {
        format!(
            "Answer: no model is better than {} in {primary} on these cases",
            exp.baseline
        )
    } else {
        format!(
            "Answer: better than {} in {primary}: {}",
            exp.baseline,
            better.join(", ")
        )
    };
    if !worse.is_empty() {
        line.push_str(&format!("; worse: {}", worse.join(", ")));
    }
    line.push('.');
    out.push(line);
    out
}

/// The files of the report.
pub struct PredictionReportFiles {
    pub index: PathBuf,
    pub summary: PathBuf,
    pub figures: Vec<PathBuf>,
}

fn figures_of(exp: &PredictionExperiment) -> Result<(Vec<Figure>, Vec<Figure>)> {
    let series: Vec<(String, Vec<(f64, f64)>)> = exp
        .models
        .iter()
        .map(|m| {
            let label = if m.name == exp.baseline {
                format!("{} (baseline)", m.name)
            } else {
                m.name.clone()
            };
            let pts = m
                .sweep
                .points
                .iter()
                .map(|p| (p.threshold as f64, p.mean_dice.unwrap_or(f64::NAN)))
                .collect();
            (label, pts)
        })
        .collect();
    let marks: Vec<Option<(f64, f64)>> = exp
        .models
        .iter()
        .map(|m| {
            m.sweep
                .points
                .iter()
                .find(|p| p.threshold == m.threshold)
                .and_then(|p| Some((p.threshold as f64, p.mean_dice?)))
        })
        .collect();
    let sweep = figures::lines_figure(
        &series,
        &marks,
        "threshold",
        "mean Dice",
        "Threshold sweep on the reported cases",
        "sweep_dice.svg",
        "Mean per-case Dice at each threshold (0.05..0.95) on the reported cases; the ring marks each model's \
         threshold (chosen on the validation cases when --val-cases is given, so the curve's maximum on these cases is \
         an optimistic figure).",
    )?;
    let hists = exp
        .models
        .iter()
        .map(|m| {
            figures::histogram(
                &m.name,
                &m.hist_lesion,
                &m.hist_background,
                "the reported cases' voxels",
                "summed over cases",
                m.threshold as f64,
            )
        })
        .collect::<Result<_>>()?;
    Ok((vec![sweep], hists))
}

fn gallery_rows(exp: &PredictionExperiment) -> Result<Vec<GalleryRow>> {
    let mut rows = Vec::new();
    for (i, g) in exp.gallery.iter().enumerate() {
        let stem = format!("{i:02}_{}", file_stem(&g.case.id));
        let mut predictions = Vec::new();
        for (m, p) in exp.models.iter().zip(&g.predictions) {
            predictions.push((
                m.name.clone(),
                Some((
                    0,
                    Tile {
                        file_name: format!("{stem}_{}.png", file_stem(&m.name)),
                        png: figures::gallery_prediction_png(&g.case, p)?,
                    },
                )),
            ));
        }
        rows.push(GalleryRow {
            id: format!("{} ({})", g.case.id, g.why),
            image: Tile {
                file_name: format!("{stem}_image.png"),
                png: figures::gallery_image_png(&g.case)?,
            },
            ground_truth: Tile {
                file_name: format!("{stem}_gt.png"),
                png: figures::gallery_mask_png(&g.case)?,
            },
            predictions,
        });
    }
    Ok(rows)
}

pub fn render(
    exp: &PredictionExperiment,
    a: &PredictionAnalysis,
    verdict: &[String],
    curves: &[Figure],
    hists: &[Figure],
    gallery: &[GalleryRow],
) -> String {
    let e = escape;
    let mut h = html::page_start(&exp.title);
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>ground truth: <code>{}</code></span><span>baseline: <b>{}</b></span><span>{} \
         reported cases</span><span>{} validation cases</span><span>seglab {}</span></p>",
        e(&exp.gt),
        e(&exp.baseline),
        exp.cases.len(),
        exp.val_cases.len(),
        env!("CARGO_PKG_VERSION")
    );
    html::verdict_list(&mut h, verdict);

    let shown: Vec<&str> = {
        let mut v: Vec<&str> = exp.metrics.iter().map(String::as_str).collect();
        for extra in ["dice", "iou", "precision", "recall"] {
            if !v.contains(&extra) {
                v.push(extra);
            }
        }
        v
    };
    h.push_str(
        "<h2>Results</h2>\n<p>Every model scored by the same metrics engine with the same options (<code>seglab \
         evaluate</code>'s), on the reported cases: mean ± sd over cases (n: the cases where the metric is defined \
         under the empty-mask policy). Soft Dice: <code>2 Σpt / (Σp + Σt)</code> per case, before any threshold.</p>\n\
         <div class=\"wide\"><table id=\"final-table\">\n<tr><th class=\"name\">model</th><th class=\"name\">folder</th>\
         <th>threshold</th>",
    );
    for m in &shown {
        let _ = write!(h, "<th>{}</th>", e(m));
    }
    h.push_str("<th>soft Dice</th></tr>\n");
    for (m, s) in exp.models.iter().zip(&a.summaries) {
        let cls = if m.name == exp.baseline {
            " class=\"baseline\""
        } else {
            ""
        };
        let thr = if !m.probabilistic {
            "masks".to_string()
        } else if m.threshold_from_validation {
            format!("{} (val)", m.threshold)
        } else {
            m.threshold.to_string()
        };
        let _ = write!(
            h,
            "<tr{cls}><td class=\"name\">{}</td><td class=\"name\"><code>{}</code></td><td>{}</td>",
            e(&m.name),
            e(&m.folder),
            e(&thr)
        );
        for key in &shown {
            let cell = match s.metrics.get(*key) {
                Some(st) => match (st.mean, st.std) {
                    (Some(mean), Some(sd)) => {
                        format!("{mean:.3}<br><small>± {sd:.3} (n {})</small>", st.n)
                    }
                    (Some(mean), None) => format!("{mean:.3}"),
                    _ => "n/a".to_string(),
                },
                None => "n/a".to_string(),
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        let _ = writeln!(h, "<td>{}</td></tr>", f3(stats::mean(&m.soft_dice)));
    }
    h.push_str("</table></div>\n");

    html::answers_table(&mut h, &a.answers);
    html::comparison_table(
        &mut h,
        &a.comparisons,
        &exp.baseline,
        "reported cases",
        "one seed (a model trained elsewhere is one run)",
    );
    h.push_str("<h2>Threshold sweep</h2>\n<div class=\"figs\" id=\"curves\">\n");
    for f in curves {
        html::figure(&mut h, f);
    }
    h.push_str("</div>\n<h2>Predicted probabilities inside vs outside lesions (reported cases)</h2>\n<div class=\"hists\" id=\"histograms\">\n");
    for f in hists {
        html::figure(&mut h, f);
    }
    h.push_str("</div>\n");
    html::gallery_table(&mut h, gallery, "Reported cases with the largest Dice differences; each model's prediction at its threshold", false);
    h.push_str("<h2>Models</h2>\n<ul id=\"variants\">\n");
    for m in &exp.models {
        let _ = writeln!(
            h,
            "<li><b>{}</b>: <code>{}</code></li>",
            e(&m.name),
            e(&m.folder)
        );
    }
    h.push_str(
        "</ul>\n<p>Files next to this page: <a href=\"summary.json\">summary.json</a>, <code>figures/</code>, \
         <code>gallery/</code>.</p>\n",
    );
    html::page_end(&mut h);
    h
}

/// Builds the report and writes it into `out`: every file atomically, `index.html` last.
pub fn write_report(exp: &PredictionExperiment, out: &Path) -> Result<PredictionReportFiles> {
    let analysis = exp.analyze()?;
    let verdict = verdict(exp, &analysis);
    let summary = summary_json(exp, &analysis, &verdict);
    let (curves, hists) = figures_of(exp)?;
    let gallery = gallery_rows(exp)?;
    let page = render(exp, &analysis, &verdict, &curves, &hists, &gallery);
    let fig_dir = out.join("figures");
    let gal_dir = out.join("gallery");
    for d in [out, &fig_dir, &gal_dir] {
        std::fs::create_dir_all(d)
            .with_context(|| format!("{}: cannot create folder", d.display()))?;
    }
    let summary_path = out.join("summary.json");
    write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary)?)?;
    let mut figure_paths = Vec::new();
    for f in curves.iter().chain(&hists) {
        let p = fig_dir.join(&f.file_name);
        write_atomic(&p, f.svg.as_bytes())?;
        figure_paths.push(p);
    }
    for row in &gallery {
        let tiles = [&row.image, &row.ground_truth].into_iter().chain(
            row.predictions
                .iter()
                .filter_map(|(_, t)| t.as_ref().map(|(_, t)| t)),
        );
        for t in tiles {
            write_atomic(&gal_dir.join(&t.file_name), &t.png)?;
        }
    }
    let index = out.join("index.html");
    write_atomic(&index, page.as_bytes())?;
    Ok(PredictionReportFiles {
        index,
        summary: summary_path,
        figures: figure_paths,
    })
}
