#!/usr/bin/env bash
# Here, once, before bench/gpu_figures.sh runs on a lent GPU (the `device` tool): the
# device's Python (3.12, torch with CUDA) lacks some of rdmd's dependencies and the
# Fashion-MNIST files, and nothing can be fetched there. This puts them in two git-ignored
# folders that the run carries:
#   bash bench/gpu_prepare.sh
#   device run: command "bash bench/gpu_figures.sh", carry [".whl", ".gpudata"], timeout_s 590
set -euo pipefail
cd "$(dirname "$0")/.."
for d in .whl .gpudata; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
rm -rf .whl .gpudata && mkdir -p .whl .gpudata
# rdmd's dependencies the device image does not hold (docs: the device tool's KINDS.md),
# and what they need beyond it; torch itself is the device's own
PY=${PYTHON:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl pot==0.9.5 diffusers mlxtend importlib_metadata
# POT 0.9.5's wheel is 0.9 MB, 0.9.7's 33 MB: a call carries 64 MiB with the tree (41.5 MB).
# Fashion-MNIST cut to the pair's two classes, sneakers (7) and ankle boots (9), in their
# order in the official files (so "the first 500 test sneakers" and the seeded validation
# split stay the same images): 5 MB instead of 30
"$PY" - <<'PY'
import gzip
from pathlib import Path

import numpy as np

src, dst = Path("/usr/share/datasets/fashion-mnist"), Path(".gpudata/fashion-mnist")
dst.mkdir(parents=True, exist_ok=True)
for split in ("train", "t10k"):
    img = gzip.open(src / f"{split}-images-idx3-ubyte.gz").read()
    lab = gzip.open(src / f"{split}-labels-idx1-ubyte.gz").read()
    labels = np.frombuffer(lab, np.uint8, offset=8)
    images = np.frombuffer(img, np.uint8, offset=16).reshape(len(labels), 28, 28)
    keep = np.isin(labels, (7, 9))
    n = int(keep.sum()).to_bytes(4, "big")
    with gzip.open(dst / f"{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(img[:4] + n + img[8:16] + images[keep].tobytes())
    with gzip.open(dst / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(lab[:4] + n + labels[keep].tobytes())
PY
du -sh .whl .gpudata
