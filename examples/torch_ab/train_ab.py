#!/usr/bin/env python3
"""Issue 17's example: model A (soft Tversky) and model B (the same loss behind a straight-through threshold) trained
in PyTorch, then compared by seglab with the engine `seglab evaluate` uses.

1. `seglab synth` writes 200 phantoms (64x64 PNG images and masks).
2. Cases split by name: 120 train, 20 validation (each model's threshold is chosen there), 60 test (reported).
3. Both models: the same small U-Net (3 levels, base width 8, batch norm), the same initial weights and batches
   (seed 0), Adam at 3e-3, batch 8, EPOCHS epochs on CPU; only the loss path differs:
   A: Tversky(alpha 0.3, beta 0.7) on sigmoid probabilities;
   B: the same on p + (1[p >= 0.5] - p).detach() (forward hard, backward identity).
4. Probability maps of the 80 validation and test cases as float32 NPY, then
   `seglab compare --predictions soft=... --predictions ste=... --gt ... --val-cases ... --images ...`.

Usage: python examples/torch_ab/train_ab.py [--seglab target/release/seglab] [--work work/torch_ab] [--epochs 15]
Needs torch, numpy and pillow. A few minutes on 2 CPU cores.
"""
import argparse
import os
import shutil
import subprocess
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, width=8, depth=3):
        super().__init__()
        chans = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = 1
        for c in chans:
            self.down.append(block(cin, c))
            cin = c
        self.bottom = block(chans[-1], chans[-1] * 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = chans[-1] * 2
        for c in reversed(chans):
            self.up.append(nn.ConvTranspose2d(cin, c, 2, stride=2))
            self.dec.append(block(2 * c, c))
            cin = c
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.head(x)


def tversky(p, t, alpha=0.3, beta=0.7, smooth=1.0):
    tp = (p * t).sum()
    fp = (p * (1 - t)).sum()
    fn = ((1 - p) * t).sum()
    return 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def load(data, stems):
    xs, ts = [], []
    for s in stems:
        x = np.array(Image.open(os.path.join(data, "images", s + ".png")).convert("L"), dtype=np.float32)
        xs.append((x - x.mean()) / (x.std() + 1e-6))
        ts.append((np.array(Image.open(os.path.join(data, "masks", s + ".png"))) > 0).astype(np.float32))
    return torch.tensor(np.stack(xs))[:, None], torch.tensor(np.stack(ts))[:, None]


def train(name, x, t, epochs):
    torch.manual_seed(0)
    model = UNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x) - 7, 8):
            idx = order[i:i + 8]
            p = torch.sigmoid(model(x[idx]))
            if name == "ste":
                p = p + ((p >= 0.5).float() - p).detach()
            loss = tversky(p, t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"{name} epoch {epoch + 1:>2} train loss {total / (len(x) // 8):.4f}", flush=True)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seglab", default="target/release/seglab")
    ap.add_argument("--work", default="work/torch_ab")
    ap.add_argument("--epochs", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(2)
    data = os.path.join(a.work, "data")
    if not os.path.isdir(data):
        subprocess.run([a.seglab, "synth", data, "--count", "200", "--size", "64", "--seed", "0"], check=True)
    stems = sorted(f[:-4] for f in os.listdir(os.path.join(data, "images")))
    train_stems, val_stems, test_stems = stems[:120], stems[120:140], stems[140:]
    x, t = load(data, train_stems)
    # Ground truth of the cases the models are scored on (validation + test), and the validation list.
    gt = os.path.join(a.work, "gt")
    os.makedirs(gt, exist_ok=True)
    for s in val_stems + test_stems:
        shutil.copy(os.path.join(data, "masks", s + ".png"), os.path.join(gt, s + ".png"))
    with open(os.path.join(a.work, "val.txt"), "w") as f:
        f.write("\n".join(val_stems) + "\n")
    xe, _ = load(data, val_stems + test_stems)
    started = time.time()
    for name in ("soft", "ste"):
        model = train(name, x, t, a.epochs)
        model.eval()
        out = os.path.join(a.work, f"pred_{name}")
        os.makedirs(out, exist_ok=True)
        with torch.no_grad():
            p = torch.sigmoid(model(xe)).numpy()[:, 0]
        for s, pi in zip(val_stems + test_stems, p):
            np.save(os.path.join(out, s + ".npy"), pi.astype(np.float32))
    print(f"trained both models in {time.time() - started:.0f} s")
    cmd = [a.seglab, "compare",
           "--predictions", f"soft={os.path.join(a.work, 'pred_soft')}",
           "--predictions", f"ste={os.path.join(a.work, 'pred_ste')}",
           "--gt", gt, "--val-cases", os.path.join(a.work, "val.txt"),
           "--images", os.path.join(data, "images"), "--out", os.path.join(a.work, "report")]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
