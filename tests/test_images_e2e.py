"""Images end to end on scikit-learn's 8x8 digits, in well under a minute on one CPU thread.

The chain of the issue runs through the CLI in-process (``rdmd.cli.main``): train a teacher of
3s, train the feature classifier, distil 2s -> 3s with RDMD, translate a folder of PNGs and
evaluate. Around it: the Python API on tensors and PIL images, every transport cost on images,
bf16, exact resume of an image teacher, and the user errors of image runs (exit status 2, one
line ``rdmd: error: ...``, no run folder left behind).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import rdmd
from rdmd.classifier import SmallConvNet, save_classifier
from rdmd.cli import main
from rdmd.data import load_domain
from rdmd.data.images import load_image_file, pil_to_tensor, save_image, tensor_to_pil, to_uint8

torch.set_num_threads(1)

SOURCE, TARGET = "digits:class=2", "digits:class=3"
DEV = ["--device", "cpu", "--no-progress"]
TEACHER_ARGS = ["--steps", "40", "--set", "batch_size=32", "--set", "sample_steps=4",
                "--set", "warmup_steps=5", *DEV]
DISTILL_ARGS = ["--set", "batch_size=32", *DEV]
IMAGE_KEYS = {"l2", "rmse", "psnr", "ssim", "n_eval", "protocol"}
FD_KEYS = {"fd_cnn_digits", "fd_cnn_digits_floor", "fd_n", "target_accuracy"}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``rdmd`` in-process: exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_ok(res: tuple[int, str, str]) -> str:
    rc, out, err = res
    assert rc == 0, f"exit {rc}; stderr: {err!r}"
    return out


def assert_user_error(res: tuple[int, str, str], *needles: str) -> str:
    """Exit 2 with exactly one ``rdmd: error:`` line on stderr naming every needle.

    ``translate`` has no ``--no-progress``, so its tqdm bar (carriage-return lines) may
    precede the error; anything else on stderr is a failure."""
    rc, _, err = res
    lines = [ln for ln in err.replace("\r", "\n").strip().splitlines()
             if ln.strip() and not ln.startswith("translate: ")]
    assert rc == 2, f"exit {rc}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("rdmd: error: "), lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def assert_png(path: Path, mode: str | None = None) -> Image.Image:
    assert path.is_file(), f"{path} missing"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    im = Image.open(path)
    im.load()
    assert im.format == "PNG"
    if mode is not None:
        assert im.mode == mode, f"{path}: mode {im.mode}, expected {mode}"
    return im


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def parse_printed(out: str) -> dict[str, str]:
    """``  key: value`` lines as printed by the CLI."""
    res = {}
    for line in out.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() and " " not in k.strip():
            res[k.strip()] = v.strip()
    return res


def distill_args(teacher: Path, out: Path, steps: int, *extra: str,
                 source: str = SOURCE) -> list[str]:
    return ["distill", "--source", source, "--teacher", str(teacher), "--out", str(out),
            "--steps", str(steps), *DISTILL_ARGS, *extra]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """teacher -> classifier -> distill through the CLI, shared by the tests below."""
    d = tmp_path_factory.mktemp("e2e")
    paths = {"teacher": d / "teacher", "clf": d / "clf", "rdmd": d / "rdmd"}
    times: dict[str, float] = {}
    outs: dict[str, str] = {}

    t = time.perf_counter()
    outs["teacher"] = assert_ok(run_cli(["train-teacher", "--target", TARGET, "--out",
                                         str(paths["teacher"]), *TEACHER_ARGS]))
    times["train-teacher"] = time.perf_counter() - t

    t = time.perf_counter()
    outs["clf"] = assert_ok(run_cli(["train-classifier", "--data", "digits", "--out",
                                     str(paths["clf"]), "--epochs", "2", "--no-progress"]))
    times["train-classifier"] = time.perf_counter() - t

    t = time.perf_counter()
    outs["rdmd"] = assert_ok(run_cli(distill_args(
        paths["teacher"], paths["rdmd"], 15, "--lam", "0.05",
        "--set", f"classifier={paths['clf']}", "--set", "target_class=3")))
    times["distill"] = time.perf_counter() - t
    return {**paths, "times": times, "outs": outs, "dir": d}


def _write_inputs(folder: Path, n: int = 10) -> list[str]:
    """``n`` held-out 2s as PNGs, plus one as JPEG (its output is ``<stem>.png`` too)."""
    x = load_domain(SOURCE).test[:n + 1]
    names = []
    for i in range(n):
        save_image(x[i], folder / f"two_{i:02d}.png")
        names.append(f"two_{i:02d}")
    tensor_to_pil(x[n]).save(folder / "jpeg_input.jpg", quality=95)
    names.append("jpeg_input")
    return names


# -- 1. the chain of the issue -------------------------------------------------------------------

def test_cli_end_to_end(chain: dict[str, Any], tmp_path: Path,
                        capsys: pytest.CaptureFixture) -> None:
    teacher, clf, model = chain["teacher"], chain["clf"], chain["rdmd"]
    times = dict(chain["times"])

    # teacher: model files, a metrics.json and a grid of its samples
    assert "teacher written to" in chain["outs"]["teacher"]
    tmeta = json.loads((teacher / "model.json").read_text())
    assert tmeta["role"] == "teacher" and tmeta["data_shape"] == [1, 8, 8]
    assert tmeta["backbone"]["name"] == "unet"
    assert json.loads((teacher / "config.json").read_text())["config"]["backbone"] == "auto"
    assert json.loads((teacher / "metrics.json").read_text())["sampler_steps"] == 4
    grid = assert_png(teacher / "plots" / "teacher_samples.png", "L")
    assert grid.size[0] > 8 and grid.size[1] > 8

    # classifier: named so that its Frechet distance is fd_cnn_digits
    assert "test accuracy" in chain["outs"]["clf"]
    cmeta = json.loads((clf / "classifier.json").read_text())
    assert cmeta["name"] == "cnn_digits" and cmeta["in_channels"] == 1
    assert 0.0 <= cmeta["test_accuracy"] <= 1.0

    # distill: metrics of the final generator, with the classifier's FD and target accuracy
    assert "generator written to" in chain["outs"]["rdmd"]
    gmeta = json.loads((model / "model.json").read_text())
    assert gmeta["role"] == "generator" and gmeta["data_shape"] == [1, 8, 8]
    assert gmeta["lam"] == 0.05
    m = json.loads((model / "metrics.json").read_text())
    assert IMAGE_KEYS | FD_KEYS | {"lam"} <= set(m), sorted(m)
    assert "hue_difference" not in m  # grey images
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float)), m
    assert m["l2"] >= 0 and m["rmse"] >= 0
    assert m["ssim"] <= 1 and m["ssim"] >= -1
    assert 0 <= m["target_accuracy"] <= 1
    assert m["fd_cnn_digits"] >= 0 and m["fd_cnn_digits_floor"] >= 0
    assert m["n_eval"] == len(load_domain(SOURCE).test)
    assert m["lam"] == 0.05
    assert_png(model / "plots" / "translation.png", "L")
    rows = read_log(model / "log.csv")
    assert rows and rows[-1]["step"] == "15"
    assert all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k != "step")

    # translate a folder of PNGs (and one JPEG): one 8x8 grey PNG per input, same stem
    inp, outp = tmp_path / "in", tmp_path / "out"
    names = _write_inputs(inp)
    t = time.perf_counter()
    out = assert_ok(run_cli(["translate", "--model", str(model), "--input", str(inp),
                             "--output", str(outp)]))
    times["translate"] = time.perf_counter() - t
    assert f"translated {len(names)} images" in out
    assert sorted(p.name for p in outp.iterdir()) == sorted(f"{n}.png" for n in names)
    gen = rdmd.load_model(model)
    for n in names:
        im = assert_png(outp / f"{n}.png", "L")
        assert im.size == (8, 8)
        src = inp / (f"{n}.png" if (inp / f"{n}.png").exists() else f"{n}.jpg")
        want = to_uint8(rdmd.translate(gen, load_image_file(src, 8, 1)[None])[0])[:, :, 0]
        assert np.array_equal(np.asarray(im), want), n

    # evaluate --model: the same numbers as the run's own report
    t = time.perf_counter()
    out = assert_ok(run_cli(["evaluate", "--model", str(model), "--json",
                             str(tmp_path / "eval.json")]))
    times["evaluate"] = time.perf_counter() - t
    printed = parse_printed(out)
    for key in ("l2", "psnr", "ssim", "fd_cnn_digits", "fd_cnn_digits_floor",
                "target_accuracy"):
        assert key in printed, f"{key} not printed: {out!r}"
    ev = json.loads((tmp_path / "eval.json").read_text())
    for key in IMAGE_KEYS | FD_KEYS:
        assert ev[key] == pytest.approx(m[key], rel=1e-6, abs=1e-9), key
        assert float(printed[key]) == pytest.approx(m[key], rel=1e-4, abs=1e-6), key

    with capsys.disabled():
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
        print(f"\n[images e2e] chain {sum(times.values()):.1f}s ({parts})")


# -- 2. the Python API ---------------------------------------------------------------------------

def test_api_translate_tensors_and_pil(chain: dict[str, Any]) -> None:
    model = chain["rdmd"]
    x = load_domain(SOURCE).test[:7]
    y = rdmd.translate(model, x)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1
    assert not torch.equal(y, x)
    assert torch.equal(rdmd.translate(model, x), y)  # deterministic
    y_np = rdmd.translate(model, x.numpy())
    assert isinstance(y_np, np.ndarray) and y_np.shape == tuple(x.shape)
    np.testing.assert_allclose(y_np, y.numpy(), atol=1e-6)

    # PIL in, PIL out at the model's size and channels, whatever the input's size and mode
    rng = np.random.default_rng(0)
    rgb16 = Image.fromarray(rng.integers(0, 256, (16, 12, 3), dtype=np.uint8), "RGB")
    grey = tensor_to_pil(x[0])
    outs = rdmd.translate(model, [rgb16, grey])
    assert isinstance(outs, list) and len(outs) == 2
    for o in outs:
        assert isinstance(o, Image.Image) and o.size == (8, 8) and o.mode == "L"
    want = to_uint8(rdmd.translate(model, pil_to_tensor(grey, 8, 1)[None])[0])[:, :, 0]
    assert np.array_equal(np.asarray(outs[1]), want)

    for bad in (torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 16, 16), torch.zeros(2, 64)):
        with pytest.raises(rdmd.RdmdError, match=r"\(1, 8, 8\)"):
            rdmd.translate(model, bad)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(rdmd.RdmdError, match="NaN"):
        rdmd.translate(model, nan)
    with pytest.raises(rdmd.RdmdError, match="teacher"):
        rdmd.translate(chain["teacher"], x)


# -- 3. transport costs on images ----------------------------------------------------------------

@pytest.mark.parametrize("cost", ["l1", "lowpass:2", "feature:{clf}", "l2+0.5*lowpass:2"])
def test_costs_run_on_images(chain: dict[str, Any], tmp_path: Path, cost: str) -> None:
    cost = cost.format(clf=chain["clf"])
    out = tmp_path / "run"
    assert_ok(run_cli(distill_args(chain["teacher"], out, 4, "--lam", "0.5", "--cost", cost,
                                   "--set", "log_every=1")))
    assert json.loads((out / "config.json").read_text())["config"]["cost"] == cost
    assert json.loads((out / "model.json").read_text())["cost"] == cost
    rows = read_log(out / "log.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    for r in rows:
        assert math.isfinite(float(r["loss_cost"])) and float(r["loss_cost"]) >= 0
        assert all(math.isfinite(float(v)) for v in r.values())
    assert float(rows[0]["loss_cost"]) > 0  # G starts from the teacher, not the identity
    m = json.loads((out / "metrics.json").read_text())
    assert m["l2"] >= 0 and m["ssim"] <= 1
    y = rdmd.translate(out, load_domain(SOURCE).test[:3])
    assert y.shape == (3, 1, 8, 8) and torch.isfinite(y).all()


def _rgb_classifier(d: Path) -> Path:
    """An (untrained) 3-channel classifier: does not fit grey 8x8 digits."""
    return save_classifier(SmallConvNet(3, 10, 8), d / "rgb_clf", {"name": "cnn_rgb"})


@pytest.mark.parametrize("cost,needle", [
    ("lowpass:0", "lowpass"),
    ("lowpass:x", "'x'"),
    ("feature:/nonexistent", "/nonexistent"),
    # a pooling factor larger than the 8x8 image: must be refused before training
    # (currently a RuntimeError traceback from avg_pool2d after the run folder is written)
    ("lowpass:9", "lowpass"),
    # a feature classifier for RGB images on grey digits: must be refused before training
    # (currently a ValueError traceback from SmallConvNet.features at the first step)
    ("feature:{rgb}", ""),
    ("l2+10*chroma", "chroma cost needs RGB images"),  # grey digits have no hue
])
def test_bad_costs_are_refused_before_anything_is_written(
        chain: dict[str, Any], tmp_path: Path, cost: str, needle: str) -> None:
    cost = cost.format(rgb=_rgb_classifier(tmp_path)) if "{rgb}" in cost else cost
    out = tmp_path / "run"
    assert_user_error(run_cli(distill_args(chain["teacher"], out, 3, "--cost", cost)), needle)
    assert not out.exists(), f"{out} was created: {sorted(p.name for p in out.iterdir())}"


@pytest.mark.parametrize("job,which", [
    ("distill", "missing"), ("distill", "rgb"), ("distill", "class_out_of_range"),
    ("train-teacher", "missing"), ("train-teacher", "rgb")])
def test_bad_classifier_settings_are_refused_before_training(
        chain: dict[str, Any], tmp_path: Path, job: str, which: str) -> None:
    """The evaluation classifier is only used after the last step; a classifier that cannot
    be loaded, does not fit the images, or a ``target_class`` it does not have must be
    refused up front rather than after a whole training run (which also leaves a run folder
    that cannot be resumed with a corrected ``--set``)."""
    clf = {"missing": str(tmp_path / "nonexistent"), "rgb": str(_rgb_classifier(tmp_path)),
           "class_out_of_range": str(chain["clf"])}[which]
    out = tmp_path / "run"
    extra = ["--set", f"classifier={clf}"]
    if job == "distill":
        extra += ["--set", f"target_class={12 if which == 'class_out_of_range' else 3}"]
        argv = distill_args(chain["teacher"], out, 2, *extra)
    else:
        argv = ["train-teacher", "--target", TARGET, "--out", str(out), "--steps", "2",
                "--set", "batch_size=8", "--set", "sample_steps=2", *extra, *DEV]
    assert_user_error(run_cli(argv))
    assert not out.exists(), f"{out} was created: {sorted(p.name for p in out.iterdir())}"


# -- 4. bf16 -------------------------------------------------------------------------------------

def test_bf16_teacher_and_distill(chain: dict[str, Any], tmp_path: Path) -> None:
    t = tmp_path / "teacher"
    assert_ok(run_cli(["train-teacher", "--target", TARGET, "--out", str(t), "--steps", "6",
                       "--set", "batch_size=32", "--set", "sample_steps=2", "--set",
                       "precision=bf16", "--set", "log_every=1", *DEV]))
    assert json.loads((t / "config.json").read_text())["config"]["precision"] == "bf16"
    rows = read_log(t / "log.csv")
    assert [r["step"] for r in rows] == [str(i) for i in range(1, 7)]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    weights = load_file(str(t / "model.safetensors"))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())
    assert_png(t / "plots" / "teacher_samples.png", "L")

    r = tmp_path / "rdmd"
    assert_ok(run_cli(distill_args(chain["teacher"], r, 3, "--set", "precision=bf16",
                                   "--set", "log_every=1")))
    rows = read_log(r / "log.csv")
    assert len(rows) == 3
    assert all(math.isfinite(float(v)) for row in rows for v in row.values())
    y = rdmd.translate(r, load_domain(SOURCE).test[:4])
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


# -- 5. bad input --------------------------------------------------------------------------------

def test_source_of_another_shape_is_refused(chain: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_user_error(run_cli(distill_args(chain["teacher"], out, 2, source="cmnist2")),
                      "3x32x32", "1x8x8")
    assert not out.exists()
    assert_user_error(run_cli(distill_args(chain["teacher"], out, 2, "--target", "cmnist3")),
                      "3x32x32", "1x8x8")
    assert not out.exists()


def test_translate_refuses_its_input_folder_as_output(chain: dict[str, Any],
                                                      tmp_path: Path) -> None:
    inp = tmp_path / "in"
    _write_inputs(inp, 3)
    before = {p.name: p.read_bytes() for p in inp.iterdir()}
    assert_user_error(run_cli(["translate", "--model", str(chain["rdmd"]), "--input",
                               str(inp), "--output", str(inp)]), "--output")
    assert {p.name: p.read_bytes() for p in inp.iterdir()} == before
    # the same folder spelt differently is still the same folder
    assert_user_error(run_cli(["translate", "--model", str(chain["rdmd"]), "--input",
                               str(inp), "--output", str(inp / ".." / "in")]))
    assert {p.name: p.read_bytes() for p in inp.iterdir()} == before


def test_translate_names_a_corrupt_image(chain: dict[str, Any], tmp_path: Path) -> None:
    inp, outp = tmp_path / "in", tmp_path / "out"
    _write_inputs(inp, 3)
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    assert_user_error(run_cli(["translate", "--model", str(chain["rdmd"]), "--input",
                               str(inp), "--output", str(outp)]), "broken.png")
    assert not outp.exists() or not list(outp.iterdir())


def test_translate_and_evaluate_refuse_a_teacher(chain: dict[str, Any], tmp_path: Path) -> None:
    inp = tmp_path / "in"
    _write_inputs(inp, 2)
    assert_user_error(run_cli(["translate", "--model", str(chain["teacher"]), "--input",
                               str(inp), "--output", str(tmp_path / "out")]), "teacher")
    assert not (tmp_path / "out").exists()
    np.save(tmp_path / "x.npy", np.zeros((3, 64), dtype=np.float32))
    assert_user_error(run_cli(["translate", "--model", str(chain["teacher"]), "--input",
                               str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]),
                      "teacher")
    assert_user_error(run_cli(["evaluate", "--model", str(chain["teacher"])]), "teacher")


def test_translate_npy_of_vectors_with_an_image_model(chain: dict[str, Any],
                                                      tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 64), dtype=np.float32))
    assert_user_error(run_cli(["translate", "--model", str(chain["rdmd"]), "--input",
                               str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]),
                      "(1, 8, 8)")
    assert not (tmp_path / "y.npy").exists()


def test_mlp_backbone_for_images_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_user_error(run_cli(["train-teacher", "--target", TARGET, "--out", str(out),
                               "--steps", "2", "--set", "backbone=mlp", *DEV]), "mlp")
    assert not out.exists()


def test_evaluate_model_distilled_from_a_folder(chain: dict[str, Any], tmp_path: Path) -> None:
    """A generator distilled from a folder of 8x8 grey PNGs evaluates like any other: the
    folder must be loaded at the model's size and channels (currently ``evaluate --model``
    loads it at the 3x32x32 default and crashes with a RuntimeError in the UNet)."""
    folder = tmp_path / "twos"
    x = load_domain(SOURCE)
    for i, im in enumerate(torch.cat([x.train, x.test])[:40]):
        save_image(im, folder / f"two_{i:02d}.png")
    out = tmp_path / "run"
    assert_ok(run_cli(distill_args(chain["teacher"], out, 3, source=str(folder))))
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_eval"] == 8  # 20% of 40 files held out
    printed = parse_printed(assert_ok(run_cli(["evaluate", "--model", str(out)])))
    assert float(printed["l2"]) == pytest.approx(m["l2"], rel=1e-4)


# -- 6. resume -----------------------------------------------------------------------------------

def test_image_teacher_resume_is_exact(tmp_path: Path) -> None:
    """N steps in one go == N/2 steps, then ``--resume --steps N`` (constant learning rate
    after a warm-up that ends inside the first half: a cosine schedule depends on the total)."""
    base = ["--target", TARGET, "--set", "batch_size=32", "--set", "sample_steps=2",
            "--set", "warmup_steps=2", "--set", "lr_schedule=constant", "--set", "log_every=1",
            "--set", "ema_decay=0.9", *DEV]
    full, half = tmp_path / "full", tmp_path / "half"
    assert_ok(run_cli(["train-teacher", "--out", str(full), "--steps", "8", *base]))
    assert_ok(run_cli(["train-teacher", "--out", str(half), "--steps", "4", *base]))
    first = load_file(str(half / "model.safetensors"))
    assert_ok(run_cli(["train-teacher", "--target", TARGET, "--out", str(half), "--resume",
                       "--steps", "8", "--no-progress"]))
    a, b = load_file(str(full / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"weights differ after resume: {diff[:5]}"
    assert any(not torch.equal(first[k], b[k]) for k in b), "resume did not train"
    ca = load_file(str(full / "checkpoints" / "step_00000008" / "tensors.safetensors"))
    cb = load_file(str(half / "checkpoints" / "step_00000008" / "tensors.safetensors"))
    assert ca.keys() == cb.keys()
    assert not [k for k in ca if not torch.equal(ca[k], cb[k])]

    def losses(p: Path) -> list[tuple[str, str, str]]:
        return [(r["step"], r["loss"], r["lr"]) for r in read_log(p / "log.csv")]

    assert losses(full) == losses(half) and len(losses(full)) == 8
    assert json.loads((full / "config.json").read_text()) == \
        json.loads((half / "config.json").read_text())
