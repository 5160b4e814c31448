"""Reference values for seglab_metrics::comparison (issues 16/17), computed with scipy and statsmodels.

Run: python gen_comparison_cases.py > comparison_cases.json (numpy, scipy, statsmodels; versions are recorded).
Scores are random but fixed (numpy seed 2026), continuous (no ties), `scores[case][seed]`.
"""
import json

import numpy as np
import scipy
import scipy.stats
import statsmodels
from statsmodels.stats.multitest import multipletests

rng = np.random.default_rng(2026)
families = []
for n_cases, n_seeds, shifts in [(12, 3, [0.0, 0.04, -0.08]), (30, 2, [0.01, 0.02, 0.03, -0.01]), (60, 1, [0.015, 0.0])]:
    base_case = rng.uniform(0.3, 0.9, n_cases)
    baseline = base_case[:, None] + rng.normal(0, 0.03, (n_cases, n_seeds))
    variants, p_values, case_diffs = [], [], []
    for s in shifts:
        v = base_case[:, None] + s + rng.normal(0, 0.05, (n_cases, n_seeds))
        d = (v - baseline).mean(axis=1)
        method = "exact" if n_cases <= 50 else "approx"
        p = scipy.stats.wilcoxon(d, zero_method="wilcox", method=method, correction=False).pvalue
        variants.append(v.tolist())
        p_values.append(float(p))
        case_diffs.append(d.tolist())
    holm = multipletests(p_values, method="holm")[1]
    families.append({
        "baseline": baseline.tolist(),
        "variants": variants,
        "case_differences": case_diffs,
        "difference": [float(np.mean(d)) for d in case_diffs],
        "p_value": p_values,
        "p_holm": [float(x) for x in holm],
    })
# Holm alone: ties, an adjusted value capped at 1, and the monotonicity step.
holm_only = [[0.01, 0.04, 0.03, 0.005], [0.02, 0.02, 0.5, 0.9], [0.3, 0.6, 0.45]]
print(json.dumps({
    "provenance": f"gen_comparison_cases.py; numpy {np.__version__}, scipy {scipy.__version__}, "
                  f"statsmodels {statsmodels.__version__}",
    "families": families,
    "holm": [{"p": p, "adjusted": [float(x) for x in multipletests(p, method="holm")[1]]} for p in holm_only],
}, indent=1))
