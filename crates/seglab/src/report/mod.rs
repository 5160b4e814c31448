//! The report of `seglab compare`: `index.html` (self-contained: inline CSS, figures and gallery inlined as base64 data
//! URIs, no network), `summary.json`, `curves.csv`, `figures/*.svg` and `gallery/*.png`, all written atomically (each
//! file through a temporary file and a rename; `index.html` last, so its presence means the report is complete).
pub mod figures;
pub mod html;
pub mod predictions;
pub mod verdict;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::experiment::{analyze, summary_json, write_curves_csv, Analysis, Experiment};
use figures::{curve_figure, file_stem, histogram_figure, Figure};
use seglab_metrics::io::write_bytes_atomic as write_atomic;

/// The files a report consists of.
#[derive(Clone, Debug)]
pub struct ReportFiles {
    pub index: PathBuf,
    pub summary: PathBuf,
    pub curves: PathBuf,
    pub figures: Vec<PathBuf>,
    pub gallery: Vec<PathBuf>,
}

/// A gallery tile: file name in `gallery/`, PNG bytes.
pub struct Tile {
    pub file_name: String,
    pub png: Vec<u8>,
}

/// One gallery row: the case id and its tiles (image, ground truth, one per variant or None where no run saved one).
pub struct GalleryRow {
    pub id: String,
    pub image: Tile,
    pub ground_truth: Tile,
    pub predictions: Vec<(String, Option<(u64, Tile)>)>,
}

/// All figures of the report, in display order: validation loss of each variant against the baseline, then validation
/// Dice, training loss, gradient norm and zero-gradient fraction for all variants, then one probability histogram per
/// variant.
pub fn build_figures(exp: &Experiment) -> Result<(Vec<Figure>, Vec<Figure>)> {
    let names: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
    let mut curves = Vec::new();
    for v in names.iter().filter(|v| **v != exp.baseline) {
        curves.push(curve_figure(
            exp,
            &[exp.baseline.as_str(), v],
            figures::VAL_LOSS,
            &format!("val_loss_{}.svg", file_stem(v)),
            &format!("Validation loss: {v} vs {}", exp.baseline),
        )?);
    }
    if names.len() == 1 {
        curves.push(curve_figure(
            exp,
            &names,
            figures::VAL_LOSS,
            "val_loss.svg",
            "Validation loss",
        )?);
    }
    for (metric, title) in [
        (figures::VAL_DICE, "Validation Dice at 0.5"),
        (figures::TRAIN_LOSS, "Training loss"),
        (figures::GRAD_NORM, "Gradient norm"),
        (figures::ZERO_GRAD, "Fraction of exactly-zero gradients"),
    ] {
        curves.push(curve_figure(
            exp,
            &names,
            metric,
            &format!("{}.svg", metric.key),
            title,
        )?);
    }
    let hists = names
        .iter()
        .map(|v| histogram_figure(exp, v))
        .collect::<Result<_>>()?;
    Ok((curves, hists))
}

/// Gallery rows: every gallery case with each variant's prediction from the first seed (in seed order) that saved one.
pub fn build_gallery(exp: &Experiment) -> Result<Vec<GalleryRow>> {
    let mut rows = Vec::new();
    for (i, case) in exp.gallery.iter().enumerate() {
        let stem = format!("{i:02}_{}", file_stem(&case.id));
        let mut predictions = Vec::new();
        for v in &exp.variants {
            let run = exp
                .seeds
                .iter()
                .filter_map(|s| exp.run(&v.name, *s))
                .find(|r| !r.gallery_predictions.is_empty());
            let tile = match run {
                Some(r) => Some((
                    r.seed,
                    Tile {
                        file_name: format!("{stem}_{}.png", file_stem(&v.name)),
                        png: figures::gallery_prediction_png(case, &r.gallery_predictions[i])?,
                    },
                )),
                None => None,
            };
            predictions.push((v.name.clone(), tile));
        }
        rows.push(GalleryRow {
            id: case.id.clone(),
            image: Tile {
                file_name: format!("{stem}_image.png"),
                png: figures::gallery_image_png(case)?,
            },
            ground_truth: Tile {
                file_name: format!("{stem}_gt.png"),
                png: figures::gallery_mask_png(case)?,
            },
            predictions,
        });
    }
    Ok(rows)
}

/// Everything derived from an experiment, before writing.
pub struct Report {
    pub analysis: Analysis,
    pub verdict: Vec<String>,
    pub summary: serde_json::Value,
    pub curves_csv: Vec<u8>,
    pub curve_figures: Vec<Figure>,
    pub histograms: Vec<Figure>,
    pub gallery: Vec<GalleryRow>,
    pub html: String,
}

pub fn build_report(exp: &Experiment) -> Result<Report> {
    let analysis = analyze(exp)?;
    let verdict = verdict::verdict(exp, &analysis);
    let summary = summary_json(exp, &analysis, &verdict);
    let mut curves_csv = Vec::new();
    write_curves_csv(exp, &mut curves_csv)?;
    let (curve_figures, histograms) = build_figures(exp)?;
    let gallery = build_gallery(exp)?;
    let html = html::render(
        exp,
        &analysis,
        &verdict,
        &curve_figures,
        &histograms,
        &gallery,
    );
    Ok(Report {
        analysis,
        verdict,
        summary,
        curves_csv,
        curve_figures,
        histograms,
        gallery,
        html,
    })
}

/// Builds the report and writes it into `out` (created if needed). Files are written atomically, `index.html` last.
pub fn write_report(exp: &Experiment, out: &Path) -> Result<ReportFiles> {
    let report = build_report(exp)?;
    let fig_dir = out.join("figures");
    let gal_dir = out.join("gallery");
    for d in [out, &fig_dir, &gal_dir] {
        std::fs::create_dir_all(d)
            .with_context(|| format!("{}: cannot create folder", d.display()))?;
    }
    let summary = out.join("summary.json");
    write_atomic(&summary, &serde_json::to_vec_pretty(&report.summary)?)?;
    let curves = out.join("curves.csv");
    write_atomic(&curves, &report.curves_csv)?;
    let mut figure_paths = Vec::new();
    for f in report.curve_figures.iter().chain(&report.histograms) {
        let p = fig_dir.join(&f.file_name);
        write_atomic(&p, f.svg.as_bytes())?;
        figure_paths.push(p);
    }
    let mut gallery_paths = Vec::new();
    for row in &report.gallery {
        let tiles = [&row.image, &row.ground_truth].into_iter().chain(
            row.predictions
                .iter()
                .filter_map(|(_, t)| t.as_ref().map(|(_, t)| t)),
        );
        for t in tiles {
            let p = gal_dir.join(&t.file_name);
            write_atomic(&p, &t.png)?;
            gallery_paths.push(p);
        }
    }
    let index = out.join("index.html");
    write_atomic(&index, report.html.as_bytes())?;
    Ok(ReportFiles {
        index,
        summary,
        curves,
        figures: figure_paths,
        gallery: gallery_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::synthetic_experiment;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn write_report_creates_all_files_and_leaves_no_temp_files() {
        let exp = synthetic_experiment();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reports/synthetic");
        let files = write_report(&exp, &out).unwrap();
        assert!(files.index.is_file() && files.summary.is_file() && files.curves.is_file());
        // 3 val-loss panels, 4 shared curves, 4 histograms; gallery: image, gt, 4 predictions.
        assert_eq!(files.figures.len(), 11);
        assert_eq!(files.gallery.len(), 6);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files.summary).unwrap()).unwrap();
        assert_eq!(summary["baseline"], "soft");
        let leftovers: Vec<_> = walk(&out)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Writing again over an existing report works (resume, re-render).
        write_report(&exp, &out).unwrap();
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// Renders index.html in headless Chromium (Debian's `chromium`, installed by `.ci/run`) and checks what a reader
    /// would see: the tables, the verdict, and every image decoded (the page's script counts them after load).
    #[test]
    fn report_renders_in_headless_chromium() {
        let chromium = Path::new("/usr/bin/chromium");
        if !chromium.exists() {
            // CI installs Chromium and sets SEGLAB_REQUIRE_BROWSER: there a missing browser is a failure.
            assert!(
                std::env::var_os("SEGLAB_REQUIRE_BROWSER").is_none(),
                "/usr/bin/chromium not found but SEGLAB_REQUIRE_BROWSER is set"
            );
            println!("notice: /usr/bin/chromium not found; skipping the headless rendering test (apt-get install chromium)");
            return;
        }
        let exp = synthetic_experiment();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report");
        let files = write_report(&exp, &out).unwrap();
        let profile = dir.path().join("chromium-profile");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--virtual-time-budget=10000",
            ])
            // Own profile: parallel test runs (or other users) must not share Chromium's singleton lock.
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", files.index.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let start = Instant::now();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!("chromium did not finish within 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let dom = reader.join().unwrap();
        assert!(
            dom.contains("id=\"final-table\""),
            "no final table in rendered DOM"
        );
        assert!(dom.contains("id=\"comparison-table\""));
        assert!(dom.contains("id=\"gallery\""));
        // 11 SVG figures + 6 gallery PNGs, all decoded.
        assert!(
            dom.contains("data-images-loaded=\"17\""),
            "images not all loaded: {}",
            &dom[..dom.len().min(400)]
        );
        assert!(dom.contains("data-images-broken=\"0\""));
        assert!(dom.contains("hard: gradients were exactly zero in every step"));
        for v in ["soft", "hard", "ste", "power"] {
            assert!(
                dom.contains(&format!("<td class=\"name\">{v}</td>")),
                "{v} row missing"
            );
        }
    }

    /// Writes the synthetic report to $SEGLAB_DEMO_REPORT for looking at it by eye.
    #[test]
    #[ignore]
    fn demo_report() {
        let out = std::env::var("SEGLAB_DEMO_REPORT").expect("set SEGLAB_DEMO_REPORT");
        write_report(&synthetic_experiment(), Path::new(&out)).unwrap();
    }
}
