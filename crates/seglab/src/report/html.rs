//! `index.html`: one self-contained page (inline CSS, images as base64 data URIs, no external resource).
use std::fmt::Write;

use base64::Engine;

use super::verdict::{f3, fmt_p, signed3, RULES};
use super::GalleryRow;
use crate::experiment::{
    Analysis, Experiment, MetricComparison, SeedStat, VariantAnswer, TEST_METRICS,
};
use crate::report::figures::Figure;
use crate::stats::WILCOXON_EXACT_MAX_N;
use seglab_metrics::comparison::{Answer, BOOTSTRAP_RESAMPLES};

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// "0.812" over "± 0.010" (sd on a second, smaller line; omitted with one seed).
fn pm(s: &SeedStat, digits: usize) -> String {
    if !s.mean.is_finite() {
        return "n/a".to_string();
    }
    if s.per_seed.len() < 2 {
        return format!("{:.*}", digits, s.mean);
    }
    format!(
        "{:.*}<br><small>± {:.*}</small>",
        digits, s.mean, digits, s.sd
    )
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1240px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555} .meta span{margin-right:1.2rem}
#verdict li{margin:.35rem 0} #verdict{background:#f6f8fa;border-left:4px solid #1f77b4;padding:.8rem 1rem .8rem 2rem}
table{border-collapse:collapse;font-size:.88rem;margin:.6rem 0} th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:right}
th{background:#f0f3f6} td.name,th.name{text-align:left} tr.baseline td{font-weight:600}
td.bad{color:#b00020} td{white-space:nowrap} td.status{white-space:normal;min-width:7rem} #final-table td small{color:#666} .wide{overflow-x:auto}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}
.hists{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1rem}
figure{margin:0} figure img{width:100%;height:auto;border:1px solid #eee} figcaption{font-size:.82rem;color:#555}
#gallery img{width:128px;height:128px;image-rendering:pixelated;display:block}
#gallery td{text-align:center;vertical-align:top} .sw{display:inline-block;width:.9em;height:.9em;border:1px solid #888;vertical-align:middle}
code{background:#f3f3f3;padding:0 .2rem}
"#;

/// Marks, after load, how many images decoded (`data-images-loaded`) and how many failed (`data-images-broken`), so a
/// headless browser test can check the figures really render.
const SCRIPT: &str = r#"
window.addEventListener('load',function(){var ok=0,bad=0;var im=document.images;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++}else{bad++}}
document.body.setAttribute('data-images-loaded',ok);document.body.setAttribute('data-images-broken',bad);});
"#;

pub fn render(
    exp: &Experiment,
    a: &Analysis,
    verdict: &[String],
    curves: &[Figure],
    hists: &[Figure],
    gallery: &[GalleryRow],
) -> String {
    let mut h = page_start(&exp.title);
    let e = escape;
    let seeds: Vec<String> = exp.seeds.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>data: <code>{}</code></span><span>preset: {}</span><span>epochs: {}</span>\
         <span>seeds: {}</span><span>baseline: <b>{}</b></span><span>seglab {}</span></p>",
        e(&exp.data),
        e(exp.preset.as_deref().unwrap_or("custom")),
        exp.epochs,
        e(&seeds.join(", ")),
        e(&exp.baseline),
        env!("CARGO_PKG_VERSION")
    );
    if !exp.notes.is_empty() {
        h.push_str("<ul class=\"notes\">");
        for n in &exp.notes {
            let _ = write!(h, "<li>{}</li>", e(n));
        }
        h.push_str("</ul>\n");
    }

    verdict_list(&mut h, verdict);

    // Protocol.
    let rule = match &exp.convergence {
        Some(c) => format!(
            "a run stops once its validation Dice, smoothed by an exponential moving average (weight {} on the previous \
             value), gained less than {} within the last {} epochs; the budget is {} epochs{}",
            c.smoothing,
            c.min_delta,
            c.patience,
            exp.epochs,
            exp.schedule_epochs
                .map(|s| format!(" and the learning-rate schedule spans {s} epochs (after that it stays at its end value)"))
                .unwrap_or_default()
        ),
        None => format!("no convergence rule: every run trains its {} epochs", exp.epochs),
    };
    let _ = writeln!(
        h,
        "<h2>Protocol</h2>\n<p id=\"protocol\">Cases split into <b>{}</b> train, <b>{}</b> validation and <b>{}</b> test \
         cases (by case, never by slice; <code>split.json</code> in this folder). Validation chooses each run's \
         checkpoint (the epoch with the highest validation Dice at 0.5) and its threshold (the one in 0.05..0.95 that \
         maximised that epoch's validation Dice); the test cases are scored once, with that choice. Convergence: {}. \
         Every table below says which split it shows.</p>",
        exp.split.train,
        exp.split.val,
        exp.split.test,
        e(&rule)
    );

    // Final table.
    h.push_str(
        "<h2>Test results</h2>\n<p>Held-out <b>test</b> cases, scored with each run's validation-selected checkpoint: per \
         seed the mean over test cases of the per-case score (a case's images pooled; both masks empty = 1), then mean \
         ± sd over completed seeds. \"@0.5\" at threshold 0.5, \"@val thr.\" at the run's validation-chosen threshold. \
         The last columns are <b>validation</b> figures: the selected epoch, the chosen threshold, the validation Dice \
         there, epochs to 90% of the best validation Dice (learning speed) and whether every seed converged.</p>\n\
         <div class=\"wide\"><table id=\"final-table\">\n<tr><th class=\"name\">variant</th><th>thr. before loss</th>\
         <th>status</th>",
    );
    for m in &TEST_METRICS {
        let _ = write!(h, "<th>{}</th>", e(m.label));
    }
    h.push_str(
        "<th>selected epoch (val)</th><th>val thr.</th><th>val Dice</th><th>epochs to 90% best (val)</th>\
         <th>converged</th><th>zero-grad fraction</th><th>wall time (s)</th></tr>\n",
    );
    for v in &a.variants {
        let status = if v.diverged.is_empty() {
            v.status().to_string()
        } else {
            let d: Vec<String> = v
                .diverged
                .iter()
                .map(|d| format!("seed {} epoch {}", d.seed, d.epoch))
                .collect();
            format!("{} ({})", v.status(), d.join("; "))
        };
        let cls = if v.name == exp.baseline {
            " class=\"baseline\""
        } else {
            ""
        };
        let zg = if v.all_gradients_zero {
            "<td class=\"bad\">1 (all zero)</td>".to_string()
        } else {
            format!("<td>{}</td>", pm(&v.zero_grad_fraction, 3))
        };
        let converged = match v.converged() {
            Some(true) => "<td>yes</td>".to_string(),
            Some(false) => {
                let not: Vec<String> = v
                    .seeds
                    .iter()
                    .filter(|p| p.converged == Some(false))
                    .map(|p| p.seed.to_string())
                    .collect();
                format!("<td class=\"bad\">no (seed {})</td>", not.join(", "))
            }
            None => "<td class=\"bad\">no rule</td>".to_string(),
        };
        let _ = write!(
            h,
            "<tr{cls}><td class=\"name\">{}</td><td>{}</td><td class=\"status{}\">{}</td>",
            e(&v.name),
            if v.thresholds_before_loss {
                "yes"
            } else {
                "no"
            },
            if v.diverged.is_empty() { "" } else { " bad" },
            e(&status),
        );
        for st in &v.test {
            let _ = write!(h, "<td>{}</td>", pm(st, 3));
        }
        let _ = writeln!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>{converged}{zg}<td>{}</td></tr>",
            pm(&v.selected_epoch, 1),
            pm(&v.threshold, 2),
            pm(&v.val_dice, 3),
            pm(&v.epochs_to_90, 1),
            pm(&v.seconds, 1),
        );
    }
    h.push_str("</table></div>\n");

    answers_table(&mut h, &a.answers);
    comparison_table(
        &mut h,
        &a.comparisons,
        &exp.baseline,
        "test cases",
        "the seeds where both completed",
    );

    let fig = |h: &mut String, f: &Figure| figure(h, f);
    h.push_str(
        "<h2>Training curves (training and validation)</h2>\n<div class=\"figs\" id=\"curves\">\n",
    );
    for f in curves {
        fig(&mut h, f);
    }
    h.push_str("</div>\n<h2>Predicted probabilities inside vs outside lesions (validation, last epoch)</h2>\n<div class=\"hists\" id=\"histograms\">\n");
    for f in hists {
        fig(&mut h, f);
    }
    h.push_str("</div>\n");

    gallery_table(
        &mut h,
        gallery,
        "Test cases; predictions are thresholded at 0.5 (validation-selected checkpoint of the seed named in the header)",
        true,
    );

    h.push_str("<h2>Variants</h2>\n<ul id=\"variants\">\n");
    for v in &exp.variants {
        let _ = writeln!(h, "<li><b>{}</b>: {}</li>", e(&v.name), e(&v.describe()));
    }
    h.push_str("</ul>\n<h2>How the verdict is generated</h2>\n<ol id=\"rules\">\n");
    for r in RULES {
        let _ = writeln!(h, "<li>{}</li>", e(r));
    }
    h.push_str(
        "</ol>\n<p>Files next to this page: <a href=\"summary.json\">summary.json</a>, <a href=\"curves.csv\">curves.csv</a> \
         (every epoch of every run), <code>figures/</code>, <code>gallery/</code>.</p>\n",
    );
    page_end(&mut h);
    h
}

/// The gallery: per row the case, its image, ground truth and each variant's (model's) prediction; `caption` says
/// which cases and predictions, `show_seed` names the seed of each column.
pub fn gallery_table(h: &mut String, gallery: &[GalleryRow], caption: &str, show_seed: bool) {
    let e = escape;
    if !gallery.is_empty() {
        let rgb = |c: [u8; 3]| format!("rgb({},{},{})", c[0], c[1], c[2]);
        let _ = write!(
        h,
        "<h2>Gallery</h2>\n<p>{}: <span class=\"sw\" style=\"background:{}\"></span> true positive, <span class=\"sw\" \
         style=\"background:{}\"></span> false positive, <span class=\"sw\" style=\"background:{}\"></span> false \
         negative.</p>\n<table id=\"gallery\">\n<tr><th class=\"name\">case</th><th>image</th><th>ground truth</th>",
        e(caption),
        rgb(super::figures::TP_RGB),
        rgb(super::figures::FP_RGB),
        rgb(super::figures::FN_RGB)
    );
        for (name, tile) in &gallery[0].predictions {
            match tile {
                Some((seed, _)) if show_seed => {
                    let _ = write!(h, "<th>{} (seed {seed})</th>", e(name));
                }
                _ => {
                    let _ = write!(h, "<th>{}</th>", e(name));
                }
            }
        }
        h.push_str("</tr>\n");
        for row in gallery {
            let img = |t: &super::Tile, alt: &str| {
                format!(
                    "<img alt=\"{}\" src=\"{}\">",
                    e(alt),
                    data_uri("image/png", &t.png)
                )
            };
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td>",
                e(&row.id),
                img(&row.image, "image"),
                img(&row.ground_truth, "ground truth")
            );
            for (name, tile) in &row.predictions {
                match tile {
                    Some((_, t)) => {
                        let _ = write!(h, "<td>{}</td>", img(t, name));
                    }
                    None => h.push_str("<td>not saved</td>"),
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
}

/// The page up to its title: doctype, inline CSS, `<h1>`.
pub fn page_start(title: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n",
        escape(title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(title));
    h
}

/// The image-count script and the closing tags.
pub fn page_end(h: &mut String) {
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
}

pub fn verdict_list(h: &mut String, verdict: &[String]) {
    h.push_str("<h2>Verdict</h2>\n<ul id=\"verdict\">\n");
    for v in verdict {
        let _ = writeln!(h, "<li>{}</li>", escape(v));
    }
    h.push_str("</ul>\n");
}

/// A figure inlined as a data URI, with its caption and a link to its SVG file.
pub fn figure(h: &mut String, f: &Figure) {
    let e = escape;
    let id = f.file_name.trim_end_matches(".svg");
    let _ = writeln!(
            h,
            "<figure id=\"fig-{}\"><img alt=\"{}\" src=\"{}\"><figcaption>{} <a href=\"figures/{}\">SVG</a></figcaption></figure>",
            e(id),
            e(&f.title),
            data_uri("image/svg+xml", f.svg.as_bytes()),
            e(&f.caption),
            e(&f.file_name)
        );
}

/// Each variant's (or model's) answer and its reason.
pub fn answers_table(h: &mut String, answers: &[VariantAnswer]) {
    let e = escape;
    let _ = write!(
        h,
        "<h2>Answers</h2>\n<table id=\"answer-table\">\n<tr><th class=\"name\">variant</th><th>answer</th>\
         <th class=\"name\">why</th></tr>\n"
    );
    for ans in answers {
        let _ = writeln!(
            h,
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"name status\">{}</td></tr>",
            e(&ans.variant),
            e(match ans.answer {
                Answer::Better => "better",
                Answer::Worse => "worse",
                Answer::NoEvidence => "no evidence",
                Answer::Inconclusive => "inconclusive",
            }),
            e(&ans.reason)
        );
    }
    h.push_str("</table>\n");
}

/// The case-level comparisons of every metric against the baseline. `cases` names what the cases are ("test
/// cases"), `seeds` which seeds enter ("the seeds where both completed").
pub fn comparison_table(
    h: &mut String,
    comparisons: &[MetricComparison],
    baseline: &str,
    cases: &str,
    seeds: &str,
) {
    let e = escape;
    let _ = write!(
        h,
        "<h2>Comparison against {} on the {}</h2>\n<p>The <b>case</b> is the unit: per test case the variant \
         − baseline difference averaged over {}. Difference: the mean over cases; 95% \
         interval: two-level percentile bootstrap (cases resampled, then seeds within each drawn case; \
         {BOOTSTRAP_RESAMPLES} resamples, fixed seed); p: two-sided Wilcoxon signed-rank test over the per-case \
         differences (zero differences dropped, mid-ranks for ties; exact up to {WILCOXON_EXACT_MAX_N} non-zero \
         differences, normal approximation with tie correction above); Holm p: Holm's step-down adjustment across the \
         variants, one family per metric. Per seed: the mean difference over the test cases in each seed (the seed-level \
         view). The answers use the first metric.</p>\n<div class=\"wide\"><table id=\"comparison-table\">\n<tr>\
         <th class=\"name\">metric</th><th class=\"name\">variant</th><th>cases</th><th>seeds</th><th>variant</th>\
         <th>baseline</th><th>difference</th><th>95% CI</th><th>Wilcoxon p</th><th>Holm p</th><th>per seed</th></tr>\n",
        e(baseline),
        e(cases),
        e(seeds)
    );
    for c in comparisons {
        match &c.result {
            Ok(cc) => {
                let per_seed: Vec<String> =
                    cc.seed_differences.iter().map(|d| signed3(*d)).collect();
                let _ = writeln!(
                    h,
                    "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>[{}, {}]</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(&c.metric.label),
                    e(&c.variant),
                    cc.n_cases,
                    cc.n_seeds,
                    f3(c.variant_mean),
                    f3(c.baseline_mean),
                    signed3(cc.difference),
                    signed3(cc.ci95[0]),
                    signed3(cc.ci95[1]),
                    fmt_p(cc.p_value),
                    fmt_p(cc.p_holm),
                    e(&per_seed.join(", "))
                );
            }
            Err(why) => {
                let _ = writeln!(
                    h,
                    "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td colspan=\"9\">{}</td></tr>",
                    e(&c.metric.label),
                    e(&c.variant),
                    e(why)
                );
            }
        }
    }
    h.push_str("</table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::synthetic_experiment;
    use crate::report::build_report;

    #[test]
    fn escape_handles_markup() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn page_is_self_contained_with_tables_figures_and_verdict() {
        let exp = synthetic_experiment();
        let r = build_report(&exp).unwrap();
        let h = &r.html;
        assert!(h.contains("id=\"final-table\"") && h.contains("id=\"comparison-table\""));
        // 3 val-loss panels + 4 all-variant curves + 4 histograms, each inlined.
        assert_eq!(h.matches("src=\"data:image/svg+xml;base64,").count(), 11);
        // Gallery: image + gt + 4 variants.
        assert_eq!(h.matches("src=\"data:image/png;base64,").count(), 6);
        for line in &r.verdict {
            assert!(h.contains(&escape(line)), "verdict line missing: {line}");
        }
        // Nothing is fetched from elsewhere.
        for bad in ["http://", "https://", "src=\"figures/", "<link"] {
            assert!(!h.contains(bad), "external reference {bad}");
        }
        assert!(h.contains("partly diverged (seed 1 epoch 4)"));
        assert!(h.contains("1 (all zero)"));
        // Final table: a header per column, each body row with as many cells.
        let table = &h[h.find("id=\"final-table\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        let rows: Vec<&str> = table.split("<tr").skip(1).collect();
        let columns = rows[0].matches("<th").count();
        for col in TEST_METRICS.iter().map(|m| m.label).chain([
            "selected epoch (val)",
            "val thr.",
            "converged",
            "epochs to 90% best (val)",
            "wall time (s)",
        ]) {
            assert_eq!(
                rows[0].matches(&format!(">{}</th>", escape(col))).count(),
                1,
                "{col}"
            );
        }
        assert_eq!(rows.len(), 1 + exp.variants.len());
        for r in &rows[1..] {
            assert_eq!(r.matches("<td").count(), columns, "{r}");
        }
        // The protocol and the split are stated; every comparison row is there, and each answer.
        assert!(
            h.contains("<b>36</b> train, <b>12</b> validation and <b>12</b> test"),
            "protocol"
        );
        let comparisons = &h[h.find("id=\"comparison-table\"").unwrap()..];
        let comparisons = &comparisons[..comparisons.find("</table>").unwrap()];
        assert_eq!(
            comparisons.matches("<tr>").count(),
            1 + r.analysis.comparisons.len()
        );
        let answers = &h[h.find("id=\"answer-table\"").unwrap()..];
        for v in ["hard", "ste", "power"] {
            assert!(
                answers.contains(&format!("<td class=\"name\">{v}</td>")),
                "{v}"
            );
        }
        assert!(answers.contains("<td>worse</td>") && answers.contains("<td>inconclusive</td>"));
    }
}
