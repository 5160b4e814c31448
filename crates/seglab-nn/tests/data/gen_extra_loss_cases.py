#!/usr/bin/env python3
"""PyTorch references for the seglab losses and threshold modes that shared/golden does not cover:
soft Jaccard, BCE with logits, focal (torchvision's sigmoid_focal_loss formula), Lovasz hinge (Berman et al.'s
reference code), from_logits, the soft and power threshold modes, logit losses on probabilities and weighted sums.

Usage: /work/peers/bin/python gen_extra_loss_cases.py [outdir]   (default: ./extra_loss_cases)
Float64 math on the stored float32 inputs; gradients d(loss)/d(pred) stored as float32 NPY. Fixed seeds.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "extra_loss_cases")
LOGIT_EPS = 1e-7


# --- Berman et al., LovaszSoftmax/pytorch/lovasz_losses.py (MIT), binary part, unchanged in substance ---
def lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def lovasz_hinge_flat(logits, labels):
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    gt_sorted = labels[perm]
    grad = lovasz_grad(gt_sorted)
    return torch.dot(F.relu(errors_sorted), grad)


def lovasz_hinge(logits, labels, per_image=True):
    if per_image:
        return torch.stack([lovasz_hinge_flat(l.reshape(-1), t.reshape(-1)) for l, t in zip(logits, labels)]).mean()
    return lovasz_hinge_flat(logits.reshape(-1), labels.reshape(-1))


# --- torchvision.ops.sigmoid_focal_loss (BSD-3), reduction="mean" ---
def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


def tversky(q, t, a, b, s):
    tp = (q * t).sum(); fp = ((1 - t) * q).sum(); fn = (t * (1 - q)).sum()
    return 1 - (tp + s) / (tp + a * fp + b * fn + s)


def jaccard(q, t, s):
    tp = (q * t).sum()
    return 1 - (tp + s) / (q.sum() + t.sum() - tp + s)


def dice(q, t, s):
    return 1 - (2 * (q * t).sum() + s) / (q.sum() + t.sum() + s)


def soft(p, t, temperature):
    return torch.sigmoid((p - t) / temperature)


def power(p, t, k):
    d = p - t
    r = torch.where(d >= 0, torch.full_like(p, 1 - t), torch.full_like(p, t))
    # seglab's convention: distances below 1e-12 (p == t) get no gradient (torch would give 0 * inf = NaN)
    return t + torch.sign(d) * r * (d.abs().clamp_min(1e-12) / r) ** (1.0 / k)


def logit_st(q):
    """seglab's logit for logit losses on probabilities: clamp passes the gradient straight through."""
    lo = q + (q.clamp(LOGIT_EPS, 1 - LOGIT_EPS) - q).detach()
    c = 1 - q
    hi = c + (c.clamp(LOGIT_EPS, 1 - LOGIT_EPS) - c).detach()
    return torch.log(lo) - torch.log(hi)


def hard_ste(p, t=0.5):
    return p + ((p >= t).to(p.dtype) - p).detach()


# name -> (input kind, settings for the Rust side, fn(x, t) -> loss); x is logits or probabilities
VARIANTS = {
    "bce_with_logits": ("logits", {"loss": "bce-with-logits", "from_logits": True, "mode": "none"},
                        lambda z, t: F.binary_cross_entropy_with_logits(z, t)),
    "focal_g2_a0.25_logits": ("logits", {"loss": "focal", "gamma": 2.0, "alpha": 0.25, "from_logits": True, "mode": "none"},
                              lambda z, t: sigmoid_focal_loss(z, t, 0.25, 2.0)),
    "focal_g0.5_noalpha_logits": ("logits", {"loss": "focal", "gamma": 0.5, "alpha": None, "from_logits": True, "mode": "none"},
                                  lambda z, t: sigmoid_focal_loss(z, t, None, 0.5)),
    "lovasz_hinge_perimage": ("logits", {"loss": "lovasz-hinge", "from_logits": True, "mode": "none", "reduction": "per-image"},
                              lambda z, t: lovasz_hinge(z, t, True)),
    "lovasz_hinge_batch": ("logits", {"loss": "lovasz-hinge", "from_logits": True, "mode": "none", "reduction": "batch"},
                           lambda z, t: lovasz_hinge(z, t, False)),
    "tversky_a0.3_b0.7_s1_logits": ("logits", {"loss": "tversky", "alpha": 0.3, "beta": 0.7, "smooth": 1.0, "from_logits": True, "mode": "none"},
                                    lambda z, t: tversky(torch.sigmoid(z), t, 0.3, 0.7, 1.0)),
    "tversky_a0.3_b0.7_s1_logits_ste": ("logits", {"loss": "tversky", "alpha": 0.3, "beta": 0.7, "smooth": 1.0, "from_logits": True, "mode": "ste"},
                                        lambda z, t: tversky(hard_ste(torch.sigmoid(z)), t, 0.3, 0.7, 1.0)),
    "jaccard_s1": ("probs", {"loss": "jaccard", "smooth": 1.0, "mode": "none"}, lambda p, t: jaccard(p, t, 1.0)),
    "tversky_a0.3_b0.7_s1_soft_T0.1": ("probs", {"loss": "tversky", "alpha": 0.3, "beta": 0.7, "smooth": 1.0, "mode": "soft", "temperature": 0.1},
                                       lambda p, t: tversky(soft(p, 0.5, 0.1), t, 0.3, 0.7, 1.0)),
    "tversky_a0.3_b0.7_s1_soft_T0.02": ("probs", {"loss": "tversky", "alpha": 0.3, "beta": 0.7, "smooth": 1.0, "mode": "soft", "temperature": 0.02},
                                        lambda p, t: tversky(soft(p, 0.5, 0.02), t, 0.3, 0.7, 1.0)),
    "dice_s1_power_k3": ("probs", {"loss": "dice", "smooth": 1.0, "mode": "power", "k": 3.0},
                         lambda p, t: dice(power(p, 0.5, 3.0), t, 1.0)),
    "dice_s1_plus_half_bce": ("probs", {"loss": "dice+bce", "weights": [1.0, 0.5], "smooth": 1.0, "mode": "none"},
                              lambda p, t: dice(p, t, 1.0) + 0.5 * F.binary_cross_entropy(p, t)),
    "bce_with_logits_on_probs": ("probs", {"loss": "bce-with-logits", "mode": "none"},
                                 lambda p, t: F.binary_cross_entropy_with_logits(logit_st(p), t)),
    "bce_with_logits_on_probs_ste": ("probs", {"loss": "bce-with-logits", "mode": "ste"},
                                     lambda p, t: F.binary_cross_entropy_with_logits(logit_st(hard_ste(p)), t)),
    # Lovasz hinge's gradient depends on the sort order, so ties (the saturated entries of probs.npy) are avoided.
    "lovasz_hinge_on_probs": ("probs_untied", {"loss": "lovasz-hinge", "mode": "none", "reduction": "per-image"},
                              lambda p, t: lovasz_hinge(logit_st(p), t, True)),
}


def main():
    rng = np.random.default_rng(31)
    shape = (2, 1, 16, 16)
    target = (rng.random(shape) < 0.35).astype(np.float32)
    target[1, :, :8] = 0.0  # a mostly empty image
    logits = (2.5 * (2 * target - 1) + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    probs = (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    np.save(os.path.join(OUT, "probs_untied.npy"), probs)
    probs = probs.copy()
    # a few saturated and exactly-at-threshold probabilities
    probs.reshape(-1)[:6] = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5], np.float32)
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "logits.npy"), logits)
    np.save(os.path.join(OUT, "probs.npy"), probs)
    np.save(os.path.join(OUT, "target.npy"), target)
    doc = {"description": "seed 31, 2x1x16x16; logits = 2.5*(2t-1) + 2*N(0,1); probs_untied = sigmoid(logits); probs = the same "
                          "with its first 6 entries set to 0, 1, 0.5, 0, 1, 0.5; float64 math on the stored float32 values",
           "torch_version": torch.__version__, "threshold": 0.5, "variants": {}}
    for name, (kind, settings, fn) in VARIANTS.items():
        x = torch.from_numpy({"logits": logits, "probs": probs, "probs_untied": np.load(os.path.join(OUT, "probs_untied.npy"))}[kind].astype(np.float64)).requires_grad_(True)
        t = torch.from_numpy(target.astype(np.float64))
        loss = fn(x, t)
        loss.backward()
        g = x.grad.numpy()
        assert np.isfinite(g).all(), name
        np.save(os.path.join(OUT, f"grad_{name}.npy"), g.astype(np.float32))
        doc["variants"][name] = {"input": f"{kind}.npy", "settings": settings, "loss": loss.item(), "grad_file": f"grad_{name}.npy"}
        print(name, loss.item())
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
