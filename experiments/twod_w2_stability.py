"""How stable is ``w2_over_floor_stable``? One generator, the estimate over several seeds (each
seed: fresh generated sets, fresh target pairs), beside the old single-set protocol's ratio.

    python experiments/twod_w2_stability.py --model RUN_DIR --seeds 1,2,3 --pairs 12
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from rdmd import evaluation, metrics
from rdmd.data import load_domain
from rdmd.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model)
    src = load_domain(model.meta["source"], 10, 10, 0)
    tgt = load_domain(model.meta["target"], 10, 10, 0)

    def make(m: int, rng: np.random.Generator) -> np.ndarray:
        xs = torch.from_numpy(src.sampler(m, rng)).float()
        return evaluation.apply_generator(model.net, model.normalizer, xs).numpy()

    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        st = evaluation.stable_w2(make, tgt, a.n, a.pairs, seed=1000 * seed)
        # the old protocol's ingredient: one generated set of 3000 against one target set
        rng = np.random.default_rng(seed)
        single = metrics.w2_squared(make(3000, rng), tgt.sampler(3000, rng)) / \
            metrics.w2_squared(tgt.sampler(3000, rng), tgt.sampler(3000, rng))
        rows.append({"seed": seed, "stable": st["w2_over_floor_stable"],
                     "stable_se": st["w2_over_floor_stable_se"], "single_set_ratio": single})
        print(json.dumps(rows[-1]), flush=True)
    r = np.array([x["stable"] for x in rows])
    s = np.array([x["single_set_ratio"] for x in rows])
    out = {"command": "python " + " ".join(sys.argv), "rows": rows,
           "stable_mean": float(r.mean()), "stable_spread": float(r.max() - r.min()),
           "single_mean": float(s.mean()), "single_spread": float(s.max() - s.min())}
    print(json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
