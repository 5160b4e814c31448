"""Diagnostic: seglab train's kvasir recipe re-implemented in PyTorch, to tell whether a validation Dice gap comes from
the recipe or from seglab's trainer. Same U-Net as shared/bench/torch_unet_step.py (RGB in), per-image per-channel
z-score at 128x128, flips + 90-degree rotations + intensity jitter 0.1, AdamW (lr 1e-3, wd 1e-4), 1 warm-up epoch then
cosine to 1e-5, soft Tversky (0.3, 0.7, smooth 1, batch sums, from logits) [+ BCE], 30 epochs, val Dice per image at
p >= 0.5 (both empty = 1), 2 threads.

Usage: python tools/torch_kvasir_recipe.py DATA SPLIT_JSON [tversky|tversky+bce] [BATCH]
  DATA: a folder with images/ and masks/ (PNG); SPLIT_JSON: the split.json of a seglab run (same cases).
"""
import sys, json, math, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
torch.set_num_threads(2); torch.manual_seed(0); rng = np.random.default_rng(0)
src, split = sys.argv[1], json.load(open(sys.argv[2]))
LOSS = sys.argv[3] if len(sys.argv) > 3 else "tversky"; BS = int(sys.argv[4]) if len(sys.argv) > 4 else 4
def load(c):
    im = np.asarray(Image.open(f"{src}/images/{c}.png").convert("RGB").resize((128, 128), Image.BILINEAR), np.float32)
    x = np.stack([(im[..., k] - im[..., k].mean()) / (im[..., k].std() + 1e-6) for k in range(3)])
    m = np.asarray(Image.open(f"{src}/masks/{c}.png").convert("L").resize((128, 128), Image.BILINEAR), np.float32) / 255.0
    return x, (m >= 0.5).astype(np.float32)
tr = [load(c) for c in split["train"]]; va = [load(c) for c in split["val"]]
class Block(nn.Module):
    def __init__(s, a, b):
        super().__init__()
        s.net = nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                              nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())
    def forward(s, x): return s.net(x)
class UNet(nn.Module):
    def __init__(s):
        super().__init__(); w = [16, 32, 64, 128]
        s.enc = nn.ModuleList([Block(i, o) for i, o in zip([3] + w[:-1], w)]); s.bott = Block(128, 256)
        s.ups = nn.ModuleList([nn.ConvTranspose2d(c * 2, c, 2, stride=2) for c in reversed(w)])
        s.dec = nn.ModuleList([Block(c * 2, c) for c in reversed(w)]); s.head = nn.Conv2d(16, 1, 1)
    def forward(s, x):
        sk = []
        for i, b in enumerate(s.enc):
            if i > 0: x = F.max_pool2d(x, 2)
            x = b(x); sk.append(x)
        x = s.bott(F.max_pool2d(x, 2))
        for u, d, k in zip(s.ups, s.dec, reversed(sk)): x = d(torch.cat([u(x), k], 1))
        return s.head(x)
def tversky(z, t, a=0.3, b=0.7, s=1.0):
    p = torch.sigmoid(z); tp = (p * t).sum(); fp = (p * (1 - t)).sum(); fn = ((1 - p) * t).sum()
    return 1 - (tp + s) / (tp + a * fp + b * fn + s)
def loss_fn(z, t):
    l = tversky(z, t)
    return l + F.binary_cross_entropy_with_logits(z, t) if LOSS == "tversky+bce" else l
def aug(x, m):
    if rng.random() < .5: x, m = x[:, ::-1], m[::-1]
    if rng.random() < .5: x, m = x[:, :, ::-1], m[:, ::-1]
    k = rng.integers(4); x, m = np.rot90(x, k, (1, 2)), np.rot90(m, k)
    return x * (1 + rng.uniform(-.1, .1)) + rng.uniform(-.1, .1), m
net = UNet(); opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
E = 30; spe = len(tr) // BS; total = E * spe; warm = spe
def lr_at(s): return 1e-3 * (s + 1) / warm if s < warm else 1e-5 + (1e-3 - 1e-5) * .5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
step = 0; best = 0; t0 = time.time()
for ep in range(E):
    net.train(); order = rng.permutation(len(tr)); tl = []
    for s in range(spe):
        xs, ms = zip(*[aug(*tr[i]) for i in order[s * BS:(s + 1) * BS]])
        x = torch.tensor(np.stack(xs).copy()); t = torch.tensor(np.stack(ms).copy())[:, None]
        for g in opt.param_groups: g["lr"] = lr_at(step)
        opt.zero_grad(); l = loss_fn(net(x), t); l.backward(); opt.step(); step += 1; tl.append(l.item())
    net.eval(); d = []
    with torch.no_grad():
        for x, m in va:
            p = (torch.sigmoid(net(torch.tensor(x)[None]))[0, 0].numpy() >= .5); g = m > .5
            den = p.sum() + g.sum(); d.append(1.0 if den == 0 else 2 * (p & g).sum() / den)
    best = max(best, np.mean(d))
    print(f"epoch {ep+1} train_loss {np.mean(tl):.4f} val_dice {np.mean(d):.4f} best {best:.4f} {time.time()-t0:.0f}s", flush=True)
