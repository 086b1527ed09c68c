"""The Gradio page of ``rdmd serve``: three tabs over :mod:`rdmd.serve.core`.

Gradio is imported here only, when the page is built, so the core package does not need it
(``pip install -e ".[ui]"`` adds it). Every handler turns an :class:`~rdmd.errors.RdmdError`
(bad upload, a model folder that does not load) into a message on the page; anything else
is a bug and reaches Gradio's own error display, and the server keeps serving either way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdmd.errors import RdmdError
from rdmd.serve import core

CSS = """
#rdmd-output .image-frame, #rdmd-compare .image-frame { width: 100%; }
#rdmd-output img, #rdmd-compare img {
  image-rendering: pixelated; width: 100% !important; height: auto !important;
  max-height: none !important; object-fit: contain;
}
#rdmd-status, #rdmd-compare-status, #rdmd-2d-status { min-height: 1.5em; }
"""
INTRO = ("One-step translation by **Regularized Distribution Matching Distillation**. Upload "
         "images (any size or mode: prepared exactly as `rdmd translate` prepares a folder) "
         "or load held-out examples, then turn `lambda`: small `lambda` fits the target, "
         "large `lambda` stays close to the input.")


def _require_gradio() -> Any:
    try:
        import gradio as gr
    except ImportError:
        raise RdmdError("rdmd serve needs Gradio: pip install -e \".[ui]\" (or pip install "
                        "gradio)") from None
    return gr


def _error(e: Exception) -> str:
    return f"**Error:** {e}"


def _status(tr: core.Translation, n: int, fam: core.Family) -> str:
    fixed = ("" if fam.conditioned is not None else
             f" (fixed-lambda models: {', '.join(f'{v:g}' for v in fam.lams)})")
    return (f"{n} image(s) translated by {tr.label}{fixed} in **{1000 * tr.seconds:.1f} ms** "
            f"({tr.ms_per_image:.2f} ms per image, {tr.nfe} network call per image); mean "
            f"L2 to the input {float(tr.l2.mean()):.3f}")


def build_app(catalog: core.Catalog, fast: bool = True) -> Any:
    """The page as a ``gradio.Blocks`` (not launched): for :func:`launch` and for tests.

    ``fast=False`` is the page before the latency work (issue 17), kept only so that
    ``bench/serve_latency.py --compare`` can time both in one run: every slider release goes
    through Gradio's queue, on whatever worker thread is free, with a PNG-encoded output."""
    gr = _require_gradio()
    # BMP: the same pixels as PNG, but no zlib encode on each release (~7 ms for 16 images)
    fmt = "bmp" if fast else "png"

    def family(name: str | None, kind: str = "image") -> core.Family:
        if not name:
            raise RdmdError("no model is loaded: load a model directory first")
        return catalog.get(name, kind)

    def slider_for(fam: core.Family, value: float | None = None) -> Any:
        lo, hi = fam.lam_bounds()
        step = 0.01 if fam.conditioned is None else max((hi - lo) / 100, 1e-4)
        v = lo if value is None else min(max(value, lo), hi)
        info = ("a lambda-conditioned generator: any value in its range" if fam.conditioned
                else "fixed-lambda generators: the nearest of " +
                ", ".join(f"{v:g}" for v in fam.lams))
        return gr.update(minimum=lo, maximum=hi if hi > lo else lo + 1, value=v, step=step,
                         info=info, interactive=hi > lo)

    def translated(fam: core.Family, x: Any, names: list[str], lam: float,
                   state: Any = None) -> tuple:
        if fast:  # one long-lived thread: its torch/OpenMP state and caches stay warm
            tr = core.on_worker(core.translate_images, fam, x, lam, frozen=True)
        else:
            tr = core.translate_images(fam, x, lam)
        grid = core.to_grid([x, tr.outputs])
        table = [[n, round(float(v), 3)] for n, v in zip(names, tr.l2, strict=True)]
        if state is None or not fast:
            state = {"x": x, "names": names, "family": fam.name}
        # the slider shows the lambda used; re-send it only where it moved (nearest model)
        moved = not fast or tr.lam is None or abs(float(tr.lam) - float(lam)) > 1e-9
        return (grid, table, _status(tr, len(x), fam), state,
                gr.update(value=tr.lam) if moved else gr.update())

    def on_upload(files: Sequence[str] | None, name: str, lam: float, state: Any) -> tuple:
        try:
            fam = family(name)
            x, names = core.prepare_uploads(files, fam.shape)
            return translated(fam, x, names, lam)
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e), state, gr.update()

    def on_examples(name: str, n: float, lam: float, state: Any) -> tuple:
        try:
            fam = family(name)
            x, names = core.held_out_examples(fam, int(n or core.N_EXAMPLES))
            return translated(fam, x, names, lam)
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e), state, gr.update()

    def on_lambda(lam: float, name: str, state: Any) -> tuple:
        try:
            fam = family(name)
            if not state or state.get("family") != name:
                raise RdmdError("upload images or load held-out examples first")
            return translated(fam, state["x"], state["names"], lam, state)
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e), state, gr.update()

    def on_family(name: str) -> tuple:
        try:
            fam = family(name)
        except RdmdError as e:
            return gr.update(), _error(e), None
        return slider_for(fam), f"model: {fam.name}", None

    def on_load_dir(path: str) -> tuple:
        try:
            added = catalog.add_dir(path)
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e)
        images = [f for f in added if f.kind == "image"]
        text = "loaded: " + "; ".join(f.name for f in added)
        if not images:
            return gr.update(), gr.update(choices=catalog.names("vector")), \
                text + " (2-D: see the 2-D tab)"
        return gr.update(choices=catalog.names("image"), value=images[0].name), gr.update(), text

    def on_compare(name: str, lam: float, state: Any, methods: list[str], sdedit: float,
                   ilvr: float, egsde: float, n_steps: float) -> tuple:
        try:
            fam = family(name)
            if not state or state.get("family") != name:
                raise RdmdError("upload images or load held-out examples in the Translate tab "
                                "first")
            x = state["x"]
            runs = [core.on_worker(core.translate_images, fam, x, lam, frozen=True) if fast
                    else core.translate_images(fam, x, lam)]  # the Translate tab's outputs
            values = {"sdedit": sdedit, "ilvr": ilvr, "egsde": egsde}
            for m in methods or []:
                runs.append(core.run_baseline(fam, m, x, values[m], int(n_steps)))
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e)
        grid = core.to_grid([x, *(r.outputs for r in runs)])
        labels = ", ".join(["input", *(r.label for r in runs)])
        total = 1000 * sum(r.seconds for r in runs)
        return grid, [r.row() for r in runs], (f"{len(x)} image(s), {total:.1f} ms in all; "
                                               f"rows, top to bottom in each block: {labels}")

    def on_2d(name: str, lam: float) -> tuple:
        try:
            fam = family(name, "vector")
            img, text = core.twod_map(fam, lam)
        except RdmdError as e:
            return gr.update(), _error(e), gr.update()
        return img, text, gr.update(value=fam.pick(lam)[1])

    def on_2d_family(name: str) -> tuple:
        try:
            fam = family(name, "vector")
        except RdmdError as e:
            return gr.update(), gr.update(), _error(e)
        img, text = core.twod_map(fam, fam.lams[0])
        return slider_for(fam, fam.lams[0]), img, text

    first = catalog.images[0] if catalog.images else None
    first2 = catalog.vectors[0] if catalog.vectors else None
    startup = "\n".join(f"- {m}" for m in catalog.messages)

    with gr.Blocks(title="rdmd serve", analytics_enabled=False) as demo:
        gr.Markdown("# rdmd: one-step unpaired translation\n" + INTRO)
        if startup:
            gr.Markdown("**Some model folders did not load:**\n" + startup,
                        elem_id="rdmd-startup")
        state = gr.State(None)
        with gr.Tab("Translate", id="translate"):
            with gr.Row():
                fam_dd = gr.Dropdown(catalog.names("image"), value=first and first.name,
                                     label="model", scale=3, elem_id="rdmd-model")
                model_dir = gr.Textbox(label="load another model directory", scale=2,
                                       placeholder="runs/rdmd (a distilled run, or a folder "
                                                   "of runs)", elem_id="rdmd-model-dir")
                load_btn = gr.Button("Load", scale=0, elem_id="rdmd-load")
            with gr.Row():
                files = gr.File(file_count="multiple", label=f"images (PNG/JPEG, at most "
                                f"{core.MAX_IMAGES}, {core.MAX_UPLOAD_MB} MB each)",
                                elem_id="rdmd-upload", scale=3)
                with gr.Column(scale=1):
                    n_ex = gr.Number(core.N_EXAMPLES, label="held-out examples", precision=0,
                                     minimum=1, maximum=core.MAX_IMAGES)
                    ex_btn = gr.Button("Load held-out examples", elem_id="rdmd-examples")
            lo, hi = first.lam_bounds() if first else (0.0, 1.0)
            lam = gr.Slider(lo, hi if hi > lo else lo + 1, value=lo, step=0.01,
                            label="lambda (re-translates on release)", elem_id="rdmd-lambda")
            status = gr.Markdown(startup and "Some model folders did not load (see above).",
                                 elem_id="rdmd-status")
            with gr.Row():
                out_img = gr.Image(label="inputs (top) and outputs (below) in blocks of "
                                         f"{core.GRID_COLUMNS}", type="numpy", format=fmt,
                                   interactive=False, elem_id="rdmd-output", scale=3)
                l2_table = gr.Dataframe(headers=["image", "L2 to input"], label="per image",
                                        interactive=False, elem_id="rdmd-l2", scale=1)
        with gr.Tab("Compare", id="compare"):
            gr.Markdown("The Translate tab's inputs through RDMD at its `lambda` and through "
                        "the multi-step baselines on the same teacher, each with its main "
                        f"parameter ({core.N_STEPS} Heun steps = 35 denoiser calls per image, "
                        "two networks each for an autoguided teacher).")
            with gr.Row():
                methods = gr.CheckboxGroup(list(core.BASELINE_PARAM), value=["sdedit", "ilvr",
                                           "egsde"], label="baselines", elem_id="rdmd-methods")
                sd_sigma = gr.Slider(0.5, 10, value=core.BASELINE_DEFAULT["sdedit"], step=0.5,
                                     label="SDEdit sigma_start")
                ilvr_down = gr.Dropdown([2, 4, 8, 16], value=core.BASELINE_DEFAULT["ilvr"],
                                        label="ILVR down-sampling factor")
                eg_sigma = gr.Slider(0.5, 10, value=core.BASELINE_DEFAULT["egsde"], step=0.5,
                                     label="EGSDE sigma_start")
                n_steps = gr.Number(core.N_STEPS, label="Heun steps", precision=0, minimum=1,
                                    maximum=200)
            cmp_btn = gr.Button("Run comparison", elem_id="rdmd-compare-run")
            cmp_status = gr.Markdown(elem_id="rdmd-compare-status")
            cmp_img = gr.Image(label="input and each method's outputs", type="numpy",
                               format="png", interactive=False, elem_id="rdmd-compare")
            cmp_table = gr.Dataframe(headers=core.ROW_HEADERS, interactive=False,
                                     elem_id="rdmd-compare-table")
        with gr.Tab("2-D", id="twod") as tab2d:
            with gr.Row():
                pair_dd = gr.Dropdown(catalog.names("vector"), value=first2 and first2.name,
                                      label="built-in pair", elem_id="rdmd-2d-model")
                lo2, hi2 = first2.lam_bounds() if first2 else (0.0, 1.0)
                lam2 = gr.Slider(lo2, hi2 if hi2 > lo2 else lo2 + 1, value=lo2, step=0.01,
                                 label="lambda", elem_id="rdmd-2d-lambda")
            map_status = gr.Markdown(elem_id="rdmd-2d-status")
            map_img = gr.Image(label="input -> output map (held-out points)", type="numpy",
                               format="png", interactive=False, elem_id="rdmd-2d-map")

        outs = [out_img, l2_table, status, state, lam]
        files.upload(on_upload, [files, fam_dd, lam, state], outs)
        ex_btn.click(on_examples, [fam_dd, n_ex, lam, state], outs)
        if fast:  # no queue round trip (join + event stream) for the one-call translation;
            # always_last: a release during a translation is answered after it, not dropped
            lam.release(on_lambda, [lam, fam_dd, state], outs, show_progress="hidden",
                        queue=False, trigger_mode="always_last")
        else:
            lam.release(on_lambda, [lam, fam_dd, state], outs, show_progress="hidden")
        fam_dd.change(on_family, [fam_dd], [lam, status, state])
        load_btn.click(on_load_dir, [model_dir], [fam_dd, pair_dd, status])
        cmp_btn.click(on_compare, [fam_dd, lam, state, methods, sd_sigma, ilvr_down, eg_sigma,
                                   n_steps], [cmp_img, cmp_table, cmp_status])
        lam2.release(on_2d, [pair_dd, lam2], [map_img, map_status, lam2])
        pair_dd.change(on_2d_family, [pair_dd], [lam2, map_img, map_status])
        tab2d.select(on_2d, [pair_dd, lam2], [map_img, map_status, lam2])
        if first is not None:
            demo.load(on_family, [fam_dd], [lam, status, state])
    return demo


def launch(model_dirs: Sequence[str | Path] | None = None, host: str = "127.0.0.1",
           port: int = 7860, block: bool = True, fast: bool = True,
           precision: str | None = None) -> Any:
    """Start the page on ``host:port`` (loopback by default: nothing outside this machine can
    reach it unless ``host`` says so). Returns the Blocks (``block=False``: for tests;
    ``fast=False``: the pre-issue-17 page, for the latency bench's comparison; ``precision``:
    as ``rdmd translate --precision``, None for its default)."""
    _require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, offline
    catalog = core.load_catalog(model_dirs, precision)
    if not catalog.images and not catalog.vectors:
        raise RdmdError("no model could be loaded: " + "; ".join(catalog.messages))
    for m in catalog.messages:
        print(f"rdmd serve: {m}")
    demo = build_app(catalog, fast)
    if fast:
        core.warm_graphs(catalog.images)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, max_file_size=f"{core.MAX_UPLOAD_MB}mb",
                prevent_thread_lock=not block, quiet=False, show_error=True, css=CSS,
                ssr_mode=False, footer_links=[])
    return demo
