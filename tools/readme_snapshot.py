#!/usr/bin/env python3
"""Copy a `seglab compare` report's figures into a docs folder and render its verdict and tables as a PNG, for the
README (which shows a report as images).

Usage: python3 tools/readme_snapshot.py REPORT_DIR OUT_DIR [--no-gallery]
(--no-gallery for data whose terms forbid redistribution, e.g. kvasir_seg_256: the gallery shows its images.)
Needs only python3 and Chromium (`chromium --headless`, as the report render test uses). Writes OUT_DIR/tables.png,
OUT_DIR/*.svg (the figures) and OUT_DIR/gallery_*.png (the first gallery case).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    report, out = sys.argv[1], sys.argv[2]
    with_gallery = "--no-gallery" not in sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    html = open(os.path.join(report, "index.html"), encoding="utf-8").read()
    head = re.search(r"<head>.*?</head>", html, re.S).group(0)
    # From the verdict to the comparison table: verdict, protocol, test results, answers (the README gives the Dice
    # comparison as a table of its own; the report lists every metric).
    end = html.find("<h2>Comparison against")
    body = html[html.index("<h2>Verdict</h2>"):end if end > 0 else html.index("<h2>Training curves")]
    # The report caps the page width and scrolls wide tables; a snapshot shows the whole table instead.
    wide = "<style>body{max-width:none !important;margin:1em 2em !important} .wide{overflow:visible !important}</style>"
    page = f"<!doctype html><html>{head}{wide}<body>{body}</body></html>"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "tables.html")
        with open(src, "w", encoding="utf-8") as f:
            f.write(page)
        png = os.path.abspath(os.path.join(out, "tables.png"))
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--screenshot={png}", "--window-size=1900,1500", "file://" + src],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figs = os.path.join(report, "figures")
    for name in sorted(os.listdir(figs)):
        if name.endswith(".svg"):
            shutil.copy(os.path.join(figs, name), os.path.join(out, name))
    # The first gallery case: its image, ground truth and every variant's thresholded prediction.
    gallery = os.path.join(report, "gallery")
    if with_gallery and os.path.isdir(gallery):
        first = sorted(n for n in os.listdir(gallery) if n.endswith(".png"))[:1]
        prefix = first[0].split("_")[0] + "_" if first else None
        for n in sorted(os.listdir(gallery)):
            if prefix and n.startswith(prefix):
                shutil.copy(os.path.join(gallery, n), os.path.join(out, "gallery_" + n[len(prefix):]))
    print("wrote", out)


if __name__ == "__main__":
    main()
