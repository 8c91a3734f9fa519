#!/usr/bin/env python3
"""Check every tensor of MODEL_DIR/model.safetensors against a golden checkpoint-tensors.json."""
import hashlib, json, sys
from safetensors.numpy import load_file

model_dir, golden = sys.argv[1], sys.argv[2]
want = json.load(open(golden))["tensors"]
have = load_file(f"{model_dir}/model.safetensors")
bad = []
for name, w in want.items():
    t = have.get(name)
    if t is None:
        bad.append(f"{name}: missing"); continue
    h = hashlib.sha256(t.tobytes()).hexdigest()
    if str(t.dtype) != w["dtype"] or list(t.shape) != w["shape"] or h != w["sha256"]:
        bad.append(f"{name}: {t.dtype} {list(t.shape)} {h[:12]} != {w['dtype']} {w['shape']} {w['sha256'][:12]}")
extra = sorted(set(have) - set(want))
bad += [f"{n}: not in golden" for n in extra]
if bad:
    print(f"error: {len(bad)} tensor(s) differ from {golden}:", *bad[:10], sep="\n  ")
    sys.exit(1)
print(f"ok: all {len(want)} tensors match {golden}")
