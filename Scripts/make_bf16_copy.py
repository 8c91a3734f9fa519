#!/usr/bin/env python3
"""Writes a BF16 copy of an HF checkpoint folder (every F16/F32 tensor rounded to bfloat16 by
torch, round to nearest even; config.json's torch_dtype/dtype set to bfloat16; the other files
copied). Used by Scripts/test.sh to run the exports on a BF16 source, the common case for users.

    make_bf16_copy.py SRC_DIR DST_DIR
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    src, dst = sys.argv[1], sys.argv[2]
    tmp = dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for f in os.listdir(src):
        if f.startswith("."):
            continue
        if f.endswith(".safetensors"):
            t = load_file(os.path.join(src, f))
            save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in t.items()},
                      os.path.join(tmp, f), metadata={"format": "pt"})
        elif f == "config.json":
            c = json.load(open(os.path.join(src, f)))
            for k in ("torch_dtype", "dtype"):
                if k in c:
                    c[k] = "bfloat16"
            json.dump(c, open(os.path.join(tmp, f), "w"), indent=1)
        else:
            shutil.copy(os.path.join(src, f), os.path.join(tmp, f))
    shutil.rmtree(dst, ignore_errors=True)
    os.rename(tmp, dst)


if __name__ == "__main__":
    main()
