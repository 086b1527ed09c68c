"""Your own image folders, right the first time (issue 12, the data side).

The issue's scenario end to end, on folders this test writes (grey 28x28 PNGs, grey JPEGs of
other sizes, one colour PNG, a grey WebP, a text file): train-teacher, train-classifier,
distill, translate and evaluate run with no flags beyond the paths and short runs, every
command prints the resolved shape and what it converted, and they all agree on it. Around
it: the folder policy's pieces (formats, ``--recursive``, skipped files, the shape from the
data, refusal of far-too-small images), translate's outputs (no silent overwrite, the umask's
mode, ``--keep-size``), KID against its direct formula, and UNet sizes that do not divide.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rdmd.cli import main
from rdmd.data.folders import (
    AUTO_MAX_SIZE,
    Header,
    load_image_folder,
    resolve_shape,
    scan_folder,
)
from rdmd.errors import RdmdError
from rdmd.metrics.image import kid_unbiased

torch.set_num_threads(1)
DEV = ["--device", "cpu", "--no-progress"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def ok(argv: list[str]) -> str:
    rc, out, err = run_cli(argv)
    assert rc == 0, f"exit {rc}; stderr: {err!r}; stdout: {out[-2000:]!r}"
    return out


def user_error(argv: list[str], *needles: str) -> str:
    rc, out, err = run_cli(argv)
    assert rc == 2, f"exit {rc}; stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdmd: error: "), err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def blob(rng: np.random.Generator, h: int, w: int, vertical: bool) -> np.ndarray:
    """A grey picture with some structure: a bright bar (vertical or horizontal) on dark."""
    a = rng.integers(0, 40, (h, w)).astype(np.uint8)
    if vertical:
        c = int(rng.integers(w // 4, 3 * w // 4))
        a[:, max(0, c - w // 8):c + w // 8] = 220
    else:
        c = int(rng.integers(h // 4, 3 * h // 4))
        a[max(0, c - h // 8):c + h // 8, :] = 220
    return a


def write_user_folder(root: Path, n: int, vertical: bool, seed: int) -> Path:
    """What a real folder holds: n grey 28x28 PNGs, grey JPEGs of other sizes, one colour PNG,
    one grey WebP, a stray text file."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(blob(rng, 28, 28, vertical), "L").save(root / f"img_{i:03d}.png")
    Image.fromarray(blob(rng, 40, 40, vertical), "L").save(root / "big.jpg")
    Image.fromarray(blob(rng, 80, 100, vertical), "L").save(root / "wide.jpeg")
    rgb = np.stack([blob(rng, 28, 28, vertical)] * 3, -1)
    rgb[..., 0] //= 2
    Image.fromarray(rgb, "RGB").save(root / "colour.png")
    Image.fromarray(blob(rng, 28, 28, vertical), "L").save(root / "web.webp")
    (root / "notes.txt").write_text("not an image")
    return root


N_PNG = 30
N_IMAGES = N_PNG + 4  # + 2 JPEGs, 1 colour PNG, 1 WebP


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """train-teacher, train-classifier and distill on two written folders, paths only."""
    old = os.umask(0o022)
    d = tmp_path_factory.mktemp("own")
    src = write_user_folder(d / "sneakers", N_PNG, vertical=False, seed=1)
    tgt = write_user_folder(d / "boots", N_PNG, vertical=True, seed=2)
    out: dict[str, Any] = {"dir": d, "src": src, "tgt": tgt}
    out["teacher_out"] = ok(["train-teacher", "--target", str(tgt), "--out", str(d / "t"),
                             "--steps", "2", *DEV])
    out["clf_out"] = ok(["train-classifier", "--folder", str(src), "--folder", str(tgt),
                         "--out", str(d / "clf"), "--epochs", "2", "--no-progress"])
    out["distill_out"] = ok(["distill", "--source", str(src), "--teacher", str(d / "t"),
                             "--out", str(d / "r"), "--steps", "2", *DEV])
    out.update(teacher=d / "t", clf=d / "clf", rdmd=d / "r")
    yield out
    os.umask(old)


SHAPE_LINE = f"{N_IMAGES} images -> 1x28x28"


def test_one_shape_from_the_data_printed_and_stored(chain: dict[str, Any]) -> None:
    # the teacher resolved 1x28x28 from the grey 28x28 majority and said what it converted
    line = next(ln for ln in chain["teacher_out"].splitlines() if "target folder" in ln)
    assert SHAPE_LINE + " (from the data)" in line, line
    assert "2 converted from RGB" in line  # the colour PNG and the WebP (stored as RGB)
    assert "2 resized (1 centre-cropped)" in line  # the 40x40 and the 100x80 JPEGs
    assert "skipped 1 file (1 not an image format Pillow reads)" in line
    run = json.loads((chain["teacher"] / "config.json").read_text())
    assert run["config"]["image_size"] == 28 and run["config"]["image_channels"] == 1
    meta = json.loads((chain["teacher"] / "model.json").read_text())
    assert meta["data_shape"] == [1, 28, 28]
    pol = meta["target_info"]["policy"]
    assert (pol["images"], pol["converted_from_rgb"], pol["resized"]) == (N_IMAGES, 2, 2)
    assert (chain["teacher"] / "plots" / "teacher_samples.png").is_file()  # grid, always
    # distillation accepts what the teacher accepted: the same folders at the same shape
    out = chain["distill_out"]
    for role in ("source folder", "target folder"):
        line = next(ln for ln in out.splitlines() if role in ln)
        assert SHAPE_LINE + f" (as the teacher in {chain['teacher']} takes)" in line, line
        assert "2 converted from RGB" in line
    gmeta = json.loads((chain["rdmd"] / "model.json").read_text())
    assert gmeta["data_shape"] == [1, 28, 28]
    assert gmeta["folder_policy"]["source"]["converted_from_rgb"] == 2
    clf = json.loads((chain["clf"] / "classifier.json").read_text())
    assert (clf["in_channels"], clf["size"], clf["n_classes"]) == (1, 28, 2)
    assert clf["name"] == "cnn_sneakers_boots"
    assert "class 0 folder" in chain["clf_out"] and "class 1 folder" in chain["clf_out"]


def test_translate_webp_no_overwrite_umask_keep_size(chain: dict[str, Any]) -> None:
    d, model = chain["dir"], str(chain["rdmd"])
    outp = d / "translated"
    out = ok(["translate", "--model", model, "--input", str(chain["src"]), "--output",
              str(outp), "--no-progress"])
    assert SHAPE_LINE + f" (as the model in {model} takes)" in out, out
    names = sorted(p.name for p in outp.iterdir())
    assert len(names) == N_IMAGES and "web.png" in names  # the WebP was translated
    for p in outp.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # umask 022, not mkstemp's 0600
        with Image.open(p) as im:
            assert (im.size, im.mode) == ((28, 28), "L")

    # a folder that already holds a same-named file: refused, untouched; then --overwrite
    busy = d / "busy"
    busy.mkdir()
    (busy / "img_000.png").write_bytes(b"mine")
    user_error(["translate", "--model", model, "--input", str(chain["src"]), "--output",
                str(busy), "--no-progress"], "img_000.png", "--overwrite")
    assert (busy / "img_000.png").read_bytes() == b"mine"
    assert sorted(p.name for p in busy.iterdir()) == ["img_000.png"]
    ok(["translate", "--model", model, "--input", str(chain["src"]), "--output", str(busy),
        "--overwrite", "--no-progress"])
    assert (busy / "img_000.png").read_bytes() != b"mine"
    assert len(list(busy.iterdir())) == N_IMAGES

    # --keep-size: each output at its input's size (the 100x80 JPEG included)
    keep = d / "keep"
    out = ok(["translate", "--model", model, "--input", str(chain["src"]), "--output",
              str(keep), "--keep-size", "--no-progress"])
    with Image.open(keep / "wide.png") as im:
        assert im.size == (100, 80)
    with Image.open(keep / "big.png") as im:
        assert im.size == (40, 40)
    assert "1 non-square input" in out


def test_translate_npy_refuses_to_overwrite(chain: dict[str, Any], tmp_path: Path) -> None:
    """A vector model is not needed for the refusal: it comes before anything is computed."""
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.zeros((2, 3), np.float32))
    y.write_bytes(b"precious")
    user_error(["translate", "--model", str(chain["rdmd"]), "--input", str(x), "--output",
                str(y)], "already exists", "--overwrite")
    assert y.read_bytes() == b"precious"


def test_evaluate_own_folders(chain: dict[str, Any], tmp_path: Path) -> None:
    d, model, clf = chain["dir"], str(chain["rdmd"]), str(chain["clf"])
    outp = tmp_path / "translated"
    ok(["translate", "--model", model, "--input", str(chain["src"]), "--output", str(outp),
        "--no-progress"])
    # 1. the model's held-out split, with the folder classifier: FD and KID with floors
    m1 = tmp_path / "m1.json"
    ok(["evaluate", "--model", model, "--classifier", clf, "--json", str(m1)])
    r1 = json.loads(m1.read_text())
    for k in ("l2", "psnr", "ssim", "fd_cnn_sneakers_boots", "fd_cnn_sneakers_boots_floor",
              "kid_cnn_sneakers_boots", "kid_cnn_sneakers_boots_floor"):
        assert k in r1, k
    # 2. --model with --input FOLDER: every image of the folder translated and scored
    m2 = tmp_path / "m2.json"
    out = ok(["evaluate", "--model", model, "--input", str(chain["src"]), "--classifier", clf,
              "--target-class", "1", "--json", str(m2)])
    assert "input folder" in out and SHAPE_LINE in out
    r2 = json.loads(m2.read_text())
    assert r2["n_eval"] == N_IMAGES and 0 <= r2["target_accuracy"] <= 1
    # 3. written translations against their inputs (paired by name) and the target folder
    m3 = tmp_path / "m3.json"
    out = ok(["evaluate", "--input", str(chain["src"]), "--translated", str(outp),
              "--target", str(chain["tgt"]), "--classifier", clf, "--json", str(m3)])
    assert "translated folder" in out and "target folder" in out
    r3 = json.loads(m3.read_text())
    assert r3["n_eval"] == N_IMAGES and r3["shape"] == [1, 28, 28]
    # the same images as in 2 (written as 8-bit PNGs, so close, not equal)
    assert r3["l2"] == pytest.approx(r2["l2"], rel=0.02)
    assert r3["fd_cnn_sneakers_boots"] == pytest.approx(r2["fd_cnn_sneakers_boots"], rel=0.05)
    # a translation without its input is refused, not silently dropped
    Image.fromarray(np.zeros((28, 28), np.uint8), "L").save(outp / "stray.png")
    user_error(["evaluate", "--input", str(chain["src"]), "--translated", str(outp),
                "--target", str(chain["tgt"])], "stray", "no input")
    del d


def test_distill_converts_a_colour_source_for_a_grey_teacher(chain: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """Formerly refused ("is colour but the teacher takes grey"): now converted and counted."""
    folder = tmp_path / "colour"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), "RGB").save(
            folder / f"c{i}.bmp")
    out = ok(["distill", "--source", str(folder), "--teacher", str(chain["teacher"]),
              "--out", str(tmp_path / "r"), "--steps", "1", "--set", "batch_size=4", *DEV])
    assert "6 images -> 1x28x28" in out and "6 converted from RGB, 6 resized" in out


# -- the policy's pieces -------------------------------------------------------------------------

def _save(path: Path, size: tuple[int, int], mode: str = "L", fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    a = np.random.default_rng(0).integers(0, 255, (size[1], size[0], bands), dtype=np.uint8)
    Image.fromarray(a[..., 0] if bands == 1 else a, mode).save(path, format=fmt)


def test_every_pillow_format_recursive_and_skipped_counts(tmp_path: Path) -> None:
    root = tmp_path / "f"
    for name in ("a.png", "b.JPG", "c.webp", "d.bmp", "e.tif", "f.tiff", "g.gif"):
        _save(root / name, (16, 16))
    frames = [Image.new("L", (16, 16), v) for v in (200, 10)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    _save(root / "sub" / "deep.png", (16, 16))
    _save(root / ".hidden.png", (16, 16))
    (root / "notes.txt").write_text("x")
    (root / "data.csv").write_text("1,2")
    listing = scan_folder(root)
    assert listing.names() == ["a.png", "anim.gif", "b.JPG", "c.webp", "d.bmp", "e.tif",
                               "f.tiff", "g.gif"]
    assert dict(listing.skipped) == {"not an image format Pillow reads": 2, "hidden": 1,
                                     "in subfolders (pass --recursive)": 1}
    assert "skipped 4 files" in listing.skipped_text()
    rec = scan_folder(root, recursive=True)
    assert "sub/deep.png" in rec.names() and "in subfolders (pass --recursive)" not in \
        rec.skipped
    dom = load_image_folder(root)
    assert dom.shape == (1, 16, 16) and len(dom.train) + len(dom.test) == 8
    assert dom.info["policy"]["first_frame"] == 1
    i = dom.info["files"].index("anim.gif")
    x = torch.cat([dom.train, dom.test])[i]
    assert x.mean() > 0.5  # the first frame (bright), not the second (dark)


def test_empty_folder_says_what_was_skipped(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("x")
    with pytest.raises(RdmdError, match="no images .* in folder .*skipped 1 file"):
        scan_folder(tmp_path / "f")


def _h(w: int, h: int, grey: bool = True) -> Header:
    return Header(w, h, grey, False, 1)


def test_resolve_shape_from_the_data_unless_set() -> None:
    hs = [_h(28, 28)] * 5 + [_h(40, 40), _h(100, 80), _h(28, 28, grey=False)]
    p = resolve_shape(hs)
    assert (p.channels, p.size, p.chosen) == (1, 28, "data")
    p = resolve_shape([_h(28, 28, False)] * 3 + [_h(28, 28)] * 2)
    assert p.channels == 3
    p = resolve_shape([_h(512, 512, False)] * 3)
    assert (p.size, p.chosen) == (AUTO_MAX_SIZE, "capped")
    p = resolve_shape(hs, channels=3, size=32)
    assert (p.channels, p.size, p.chosen) == (3, 32, "set")
    for h in hs:
        p.count(h)
    assert (p.converted_from_grey, p.resized, p.upscaled, p.cropped) == (7, 8, 6, 1)


def test_far_too_small_images_are_refused_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "f"
    for i in range(3):
        _save(root / f"ok{i}.png", (32, 32))
    _save(root / "tiny.png", (12, 10))
    with pytest.raises(RdmdError, match=r"1 of 4 images are too small for the 32x32 .*"
                                        r"tiny.png is 12x10.*at most 2x"):
        load_image_folder(root, size=32, channels=1)
    assert load_image_folder(root, size=20, channels=1).shape == (1, 20, 20)  # 2x: fine


def test_colour_with_alpha_and_grey_to_rgb_are_counted(tmp_path: Path) -> None:
    root = tmp_path / "f"
    _save(root / "a.png", (16, 16), "RGBA")
    _save(root / "b.png", (16, 16), "RGB")
    _save(root / "c.png", (16, 16), "L")
    dom = load_image_folder(root)
    pol = dom.info["policy"]
    assert dom.shape == (3, 16, 16)
    assert (pol["converted_from_grey"], pol["alpha_dropped"], pol["resized"]) == (1, 1, 0)


# -- KID ------------------------------------------------------------------------------------------

def test_kid_matches_the_direct_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 5)), rng.normal(0.3, 1.2, size=(7, 5))

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return float((x @ y / 5 + 1) ** 3)

    xx = sum(k(a[i], a[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    yy = sum(k(b[i], b[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(a[i], b[j]) for i in range(9) for j in range(7)) / (9 * 7)
    assert kid_unbiased(a, b) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    assert kid_unbiased(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(
        xx + yy - 2 * xy, rel=1e-10)
    # blocked sums give the same value
    from rdmd.metrics import image

    big_a, big_b = rng.normal(size=(50, 4)), rng.normal(size=(40, 4))
    full = kid_unbiased(big_a, big_b)
    old = image._poly_kernel_sum.__defaults__
    image._poly_kernel_sum.__defaults__ = (7,)
    try:
        assert kid_unbiased(big_a, big_b) == pytest.approx(full, rel=1e-12)
    finally:
        image._poly_kernel_sum.__defaults__ = old


def test_kid_is_unbiased_where_fd_is_not() -> None:
    """Two samples of one distribution: KID averages to 0 (the FD stays clearly above)."""
    from rdmd.metrics.image import frechet_distance

    rng = np.random.default_rng(1)
    kids, fds = [], []
    for _ in range(40):
        a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
        kids.append(kid_unbiased(a, b))
        fds.append(frechet_distance(a, b))
    kids_a = np.array(kids)
    assert abs(kids_a.mean()) < 3 * kids_a.std() / np.sqrt(len(kids))
    assert np.mean(fds) > 10 * abs(kids_a.mean())
    assert kid_unbiased(rng.normal(size=(30, 8)), rng.normal(2.0, 1.0, size=(30, 8))) > 0.5


# -- UNet sizes that do not divide ---------------------------------------------------------------

def test_unet_pads_sizes_it_cannot_take() -> None:
    from rdmd.backbones.unet import UNetBackbone

    torch.manual_seed(0)
    net = UNetBackbone(1, 30, "small32")
    x, c = torch.randn(2, 1, 30, 30), torch.zeros(2)
    assert net(x, c).shape == (2, 1, 30, 30)
    # a size that divides runs exactly as before (no padding)
    net28 = UNetBackbone(1, 28, "small32")
    x28 = torch.randn(2, 1, 28, 28)
    assert torch.equal(net28(x28, c), net28.unet(x28, c).sample)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    """Pillow's own convert("L") clips 16-bit values at 255: every pixel above 1/256 of the
    range came out white."""
    root = tmp_path / "f"
    root.mkdir()
    ramp = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)
    for n in ("a.png", "b.png"):
        Image.fromarray(ramp).save(root / n)
    x = load_image_folder(root).train[0, 0]
    want = torch.from_numpy(np.arange(256).reshape(16, 16) / 127.5 - 1.0).float()
    assert torch.allclose(x, want, atol=1e-6)


def test_translate_recursive_keeps_the_layout(chain: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "in"
    _save(src / "top.png", (28, 28))
    _save(src / "a" / "b" / "deep.webp", (30, 30), "RGB", "WEBP")
    model = str(chain["rdmd"])
    out = ok(["translate", "--model", model, "--input", str(src), "--output",
              str(tmp_path / "flat"), "--no-progress"])
    assert "1 image -> 1x28x28" in out and "skipped 1 file (1 in subfolders" in out
    assert [p.name for p in (tmp_path / "flat").iterdir()] == ["top.png"]
    out = ok(["translate", "--model", model, "--input", str(src), "--output",
              str(tmp_path / "deep"), "--recursive", "--no-progress"])
    assert "2 images -> 1x28x28" in out and "1 converted from RGB" in out
    assert (tmp_path / "deep" / "a" / "b" / "deep.png").is_file()


def test_evaluate_refuses_a_classifier_of_another_shape(chain: dict[str, Any],
                                                        tmp_path: Path) -> None:
    from rdmd.classifier import SmallConvNet, save_classifier

    rgb = save_classifier(SmallConvNet(3, 2, 28), tmp_path / "rgb", {"name": "cnn_rgb"})
    user_error(["evaluate", "--model", str(chain["rdmd"]), "--classifier", str(rgb)],
               "3x28x28", "1x28x28")


def test_run_files_get_the_umask_mode(tmp_path: Path) -> None:
    """model.json, config.json and weights are the user's files too: not mkstemp's 0600."""
    import os
    import stat

    import torch

    from rdmd.checkpoint import atomic_save_tensors, atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "m.json", {"a": 1})
        atomic_save_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("m.json", "w.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
