"""``rdmd serve`` in headless Chromium: slider release -> new output image, against the same
page running 18-step SDEdit; optionally a screenshot of each tab for the docs.

Starts ``rdmd serve`` (the shipped colored-MNIST models unless ``--model``), loads 16
held-out 32x32 images, drags the ``lambda`` slider ``--repeats`` times (each time to a new
position, alternately near its right and its left end) and
runs SDEdit (18 Heun steps, 35 network calls per image) from the Compare tab. Latencies are
taken inside the page (``performance.now()``, pointerup/click -> the frame where the new
image is loaded); the server's own translation time comes from the page's status line, and
the bare ``rdmd.translate`` call on the same 16 images is timed in this process for
comparison.

    python bench/serve_latency.py [--threads 2] [--repeats 9] [--json bench/results_serve.json]
    python bench/serve_latency.py --compare ...   # also the page before issue 17's latency
                                                  # work, releases interleaved with the new
    python bench/serve_latency.py --compare-precision ...   # also the page in fp32
                                                  # (rdmd serve --precision fp32), interleaved
    python bench/serve_latency.py --screenshots docs/figures   # also one PNG per tab

Needs the ``ui`` extra and the Debian packages chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import median, report

import rdmd
from rdmd.serve import browser, core


def server_ms(status: str) -> float:
    m = re.search(r"in ([0-9.]+) ms", status)
    return float(m.group(1)) if m else float("nan")


def _drags(pages: dict[str, browser.Page], repeats: int) -> dict[str, dict[str, list]]:
    """``repeats`` slider releases on each page, interleaved (A B, then B A, ...) so that both
    pages meet the same load; page latency and the server's own translate time per release.
    Each release lands on a new position, alternately in the right and the left part of the
    slider (0.97, 0.03, 0.91, 0.09, ... of its width): a new ``lambda``, so a new picture that
    the browser cannot take from its cache, as when a user explores the slider."""
    out: dict[str, dict[str, list]] = {k: {"page": [], "server": []} for k in pages}
    names = list(pages)
    for i in range(repeats):
        to = 0.97 - 0.06 * (i // 2) if i % 2 == 0 else 0.03 + 0.06 * (i // 2)
        for k in names if i % 2 == 0 else names[::-1]:
            r = pages[k].drag("rdmd-lambda", to)
            assert "16 image(s)" in r["status"], r["status"]
            out[k]["page"].append(r["latency_ms"])
            out[k]["server"].append(server_ms(r["status"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", help="model folders (default: the shipped ones)")
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    ap.add_argument("--repeats", type=int, default=9, help="slider releases to time")
    ap.add_argument("--sdedit-repeats", type=int, default=2)
    ap.add_argument("--compare", action="store_true",
                    help="also serve the page as it was before issue 17's latency work and "
                         "time both, releases interleaved, in this one run")
    ap.add_argument("--compare-precision", action="store_true",
                    help="also serve the page with --precision fp32 (the default is bf16 for "
                         "images) and time both, releases interleaved, in this one run")
    ap.add_argument("--screenshots", help="folder for serve_<tab>.png (docs/figures)")
    ap.add_argument("--json")
    a = ap.parse_args()
    why = browser.missing()
    if why:
        sys.exit(f"serve_latency: {why}")
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="rdmd-serve-bench-"))
    variants = {"after": (True, None), **({"before": (False, None)} if a.compare else {}),
                **({"fp32": (True, "fp32")} if a.compare_precision else {})}
    procs, drivers, pages = {}, {}, {}
    shots = Path(a.screenshots) if a.screenshots else None
    try:
        for k, (fast, precision) in variants.items():
            port = browser.free_port()
            procs[k] = browser.start_server(a.model, port, work / f"server_{k}.log",
                                            threads=a.threads, fast=fast, precision=precision)
            drivers[k] = browser.chrome(1300, 1500)
            pages[k] = browser.Page(drivers[k], port)
            ex = pages[k].examples()
            assert "16 image(s)" in ex["status"], ex["status"]
        page, driver = pages["after"], drivers["after"]
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shots / "serve_translate.png"))
        if a.compare:  # the two pages show the same pixels at both ends of the slider
            # (with --compare-precision: the fp32 page's differ by a few levels; not compared)
            for end in ("max", "min"):
                shown = [(p.drag("rdmd-lambda", end), p.image())[1] for p in pages.values()]
                assert all(np.array_equal(shown[0], im) for im in shown[1:]), end
        times = _drags(pages, a.repeats)
        for k in [k for k in pages if k != "after"]:  # the rest times one page at a time
            drivers.pop(k).quit()
            browser.stop_server(procs.pop(k))
        page.tab("Compare")
        if shots:  # all three baselines, for the picture
            cmp_all = page.click("rdmd-compare-run", "rdmd-compare", "rdmd-compare-status")
            assert "egsde" in cmp_all["status"], cmp_all["status"]
            driver.execute_script("window.scrollTo(0, 0);")
            driver.save_screenshot(str(shots / "serve_compare.png"))
        page.only_methods(["sdedit"])
        sd_ms = []
        for _ in range(a.sdedit_repeats):
            r = page.click("rdmd-compare-run", "rdmd-compare", "rdmd-compare-status")
            assert "sdedit(sigma_start=2, n_steps=18)" in r["status"], r["status"]
            assert "ilvr" not in r["status"] and "egsde" not in r["status"], r["status"]
            sd_ms.append(r["latency_ms"])
        if shots:
            page._arm("rdmd-2d-map", "rdmd-2d-status")  # before the click that draws it
            page.tab("2-D")
            page._result("rdmd-2d-map")
            driver.save_screenshot(str(shots / "serve_2d.png"))
            page.tab("Translate")
            bad = work / "notes.txt"
            bad.write_text("not an image\n")
            r = page.upload([bad])
            assert "cannot decode image" in r["status"], r["status"]
            driver.execute_script("window.scrollTo(0, 0);")
            driver.save_screenshot(str(shots / "serve_error.png"))
    finally:
        for d in drivers.values():
            d.quit()
        for p in procs.values():
            browser.stop_server(p)
    # the bare call, same images, same thread count, this process
    torch.set_num_threads(a.threads)
    fam = core.load_catalog(a.model).images[0]
    x, _ = core.held_out_examples(fam, 16)
    lam, model = fam.models[0][0], fam.models[0][1]
    kw = {"lam": lam} if fam.conditioned else {}  # a conditioned generator needs its lambda
    rdmd.translate(model, x, **kw)
    bare = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        rdmd.translate(model, x, **kw)
        bare.append(1000 * (time.perf_counter() - t0))
    page_ms, srv_ms = times["after"]["page"], times["after"]["server"]
    result = {
        "images": 16, "size": "3x32x32", "threads": a.threads, "family": fam.name,
        "page_release_to_image_ms": page_ms, "page_median_ms": median(page_ms),
        "server_translate_ms": srv_ms, "server_translate_median_ms": median(srv_ms),
        "bare_translate_ms": bare, "bare_translate_median_ms": median(bare),
        "sdedit18_click_to_image_ms": sd_ms, "sdedit18_median_ms": median(sd_ms),
        "sdedit_over_rdmd_page": median(sd_ms) / median(page_ms),
    }
    if a.compare:
        old_page, old_srv = times["before"]["page"], times["before"]["server"]
        result.update({
            "before_page_release_to_image_ms": old_page, "before_page_median_ms": median(old_page),
            "before_server_translate_ms": old_srv,
            "before_server_translate_median_ms": median(old_srv),
            "page_after_over_before": median(page_ms) / median(old_page),
            "page_after_over_before_paired": median([n / o for n, o in zip(page_ms, old_page,
                                                                          strict=True)]),
            "server_after_over_before": median(srv_ms) / median(old_srv),
        })
    if a.compare_precision:
        fp_page, fp_srv = times["fp32"]["page"], times["fp32"]["server"]
        result.update({
            "precision": "default (bf16 for images)",
            "fp32_page_release_to_image_ms": fp_page, "fp32_page_median_ms": median(fp_page),
            "fp32_server_translate_ms": fp_srv, "fp32_server_translate_median_ms": median(fp_srv),
            "page_default_over_fp32": median(page_ms) / median(fp_page),
            "page_default_over_fp32_paired": median([n / o for n, o in zip(page_ms, fp_page,
                                                                           strict=True)]),
        })
    result.update({"loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                   "command": "python " + " ".join(sys.argv)})
    report(result, a.json)


if __name__ == "__main__":
    main()
