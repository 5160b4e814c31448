#!/usr/bin/env python3
"""diff.py BEFORE AFTER: every file recorded by record.sh must be identical, except the wall-clock `seconds` fields
of JSON records and the run folders' absolute paths. Exit 1 on any difference."""
import json, os, sys

SKIP_DIRS = {"wl_a", "wl_b", "wl_c", "synth"}


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("seconds",)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def load(path, root):
    raw = open(path, "rb").read()
    if path.endswith(".ckpt") and raw[:8] == b"SEGLABCK":
        # magic, then three u64-length-prefixed sections: JSON meta (holds run times), model, optimizer. burn's
        # records carry a random id per parameter (two runs of one binary differ there), so only the meta is compared;
        # the weights are compared through what they produce: the resumed records and the predictions.
        out, at = [], 8
        for _ in range(3):
            n = int.from_bytes(raw[at:at + 8], "little")
            out.append(raw[at + 8:at + 8 + n])
            at += 8 + n
        return strip(json.loads(out[0]))
    if path.endswith(".csv"):
        rows = [l.split(",") for l in raw.decode().splitlines()]
        keep = [i for i, c in enumerate(rows[0]) if c != "seconds"] if rows else []
        return [[r[i] for i in keep if i < len(r)] for r in rows]
    if not (path.endswith(".json") or path.endswith(".jsonl")):
        return raw
    text = raw.decode().replace(root, "$ROOT")
    try:
        return strip(json.loads(text))
    except ValueError:
        return [strip(json.loads(l)) for l in text.splitlines() if l.strip()]


def files(root):
    out = set()
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.relpath(os.path.join(d, x), root) not in SKIP_DIRS]
        for f in fs:
            if f.endswith(".html") or f.endswith(".png") and "compare" in d and "figures" in d:
                continue
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


a, b = sys.argv[1], sys.argv[2]
fa, fb = files(a), files(b)
bad = 0
for f in sorted(fa ^ fb):
    print("only in one:", f)
    bad += 1
for f in sorted(fa & fb):
    if load(os.path.join(a, f), os.path.abspath(a)) != load(os.path.join(b, f), os.path.abspath(b)):
        print("differs:", f)
        bad += 1
print(f"{len(fa & fb)} files compared, {bad} differences")
sys.exit(1 if bad else 0)
