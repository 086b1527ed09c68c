"""Image data: built-in sets have the shapes, counts, ranges and colours they promise; folders
of user images load at the requested shape and every bad input is a one-line RdmdError that
names the offending file; written PNGs round-trip and are written atomically."""

from __future__ import annotations

import colorsys
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rdmd.data import images as im
from rdmd.data.domain import Domain
from rdmd.data.images import (
    check_image_compat,
    image_grid,
    is_image_spec,
    list_images,
    load_image_domain,
    load_image_file,
    load_image_folder,
    save_image,
)
from rdmd.errors import RdmdError

torch.set_num_threads(1)


# -- coloured MNIST ---------------------------------------------------------------------------

def test_mnist_5k_layout() -> None:
    images, labels = im.mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


@pytest.mark.parametrize(("spec", "digit"), [("cmnist2", 2), ("cmnist3", 3),
                                             ("cmnist:digit=7", 7)])
def test_cmnist_shapes_counts_range(spec: str, digit: int) -> None:
    d = load_image_domain(spec, seed=0)
    _, labels = im.mnist_5k()
    assert d.kind == "image" and d.sampler is None and d.name == spec
    assert d.train.shape[1:] == (3, 32, 32) and d.test.shape[1:] == (3, 32, 32)
    assert d.train.dtype == torch.float32
    assert len(d.train) + len(d.test) == int((labels == digit).sum())
    assert len(d.test) == round(0.2 * int((labels == digit).sum()))
    for x in (d.train, d.test):
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert x.min() == -1.0 and x.max() > 0.9  # black background, bright strokes
    assert d.info["digit"] == digit
    assert len(d.info["hue_train"]) == len(d.train) and len(d.info["hue_test"]) == len(d.test)


def _dominant_hue(x: torch.Tensor) -> float:
    """Hue of the mean colour of the bright stroke pixels of one (3, H, W) image."""
    rgb = (x + 1) / 2
    mask = rgb.max(0).values > 0.5
    mean = rgb[:, mask].mean(1).tolist()
    return colorsys.rgb_to_hsv(*mean)[0]


def test_cmnist_hues_vary_and_match_info() -> None:
    d = load_image_domain("cmnist2", seed=0)
    got = np.array([_dominant_hue(x) for x in d.train[:100]])
    want = np.array(d.info["hue_train"][:100])
    circ = np.abs((got - want + 0.5) % 1.0 - 0.5)
    assert circ.max() < 1e-3
    # hues spread over the circle: most of 12 bins are hit by 100 images
    assert len(np.unique((got * 12).astype(int))) >= 10
    assert got.std() > 0.2


def test_cmnist_reproducible_per_seed() -> None:
    a, b = load_image_domain("cmnist3", seed=5), load_image_domain("cmnist3", seed=5)
    c = load_image_domain("cmnist3", seed=6)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.info["hue_train"] == b.info["hue_train"]
    assert not torch.equal(a.train, c.train)
    # the split and the digit shapes do not depend on the seed: max over channels is the grey
    assert torch.allclose(a.train.max(1).values, c.train.max(1).values, atol=1e-6)
    assert torch.allclose(a.test.max(1).values, c.test.max(1).values, atol=1e-6)
    # train and test hues come from different streams
    assert a.info["hue_train"][:10] != a.info["hue_test"][:10]


def test_hue_to_rgb_primaries() -> None:
    h = torch.tensor([0.0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6], dtype=torch.float64)
    want = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]],
                        dtype=torch.float64)
    assert torch.allclose(im.hue_to_rgb(h), want, atol=1e-9)


# -- digits and Fashion-MNIST -----------------------------------------------------------------

def test_digits_shapes() -> None:
    d = load_image_domain("digits")
    assert d.train.shape[1:] == (1, 8, 8) and len(d.train) + len(d.test) == 1797
    assert d.train.min() == -1.0 and d.train.max() == 1.0
    three = load_image_domain("digits:class=3")
    assert three.train.shape[1:] == (1, 8, 8)
    assert len(three.train) + len(three.test) == 183
    assert len(three.test) == round(0.2 * 183)
    # split is fixed, independent of the run seed
    assert torch.equal(load_image_domain("digits", seed=3).test, d.test)


@pytest.mark.needs_fashion_mnist
@pytest.mark.parametrize(("spec", "cls"), [("fmnist-sneaker", 7), ("fmnist-boot", 9),
                                           ("fmnist:class=7", 7)])
def test_fmnist_shapes_counts(spec: str, cls: int) -> None:
    d = load_image_domain(spec)
    assert d.train.shape == (6000, 1, 32, 32)
    assert d.test.shape == (1000, 1, 32, 32)
    assert d.info["class"] == cls
    assert d.train.min() >= -1.0 and d.train.max() <= 1.0 and d.train.max() > 0.9


@pytest.mark.needs_fashion_mnist
def test_fmnist_classes_differ() -> None:
    a, b = load_image_domain("fmnist-sneaker"), load_image_domain("fmnist-boot")
    # ankle boots cover more of the frame than sneakers on average
    assert (b.train > -0.5).float().mean() > (a.train > -0.5).float().mean()


def test_fmnist_missing_package_and_bad_idx(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    im.fashion_mnist.cache_clear()
    monkeypatch.setattr(im, "FASHION_MNIST_DIR", tmp_path)
    try:
        with pytest.raises(RdmdError, match="install the Debian package dataset-fashion-mnist"):
            load_image_domain("fmnist-boot")
        bad = tmp_path / "train-images-idx3-ubyte.gz"
        with gzip.open(bad, "wb") as f:
            f.write(b"\x00\x00\x08\x01" + b"\x00" * 20)
        with pytest.raises(RdmdError, match="train-images-idx3-ubyte.gz: not an IDX") as e:
            load_image_domain("fmnist-boot")
        assert "\n" not in str(e.value)
    finally:
        im.fashion_mnist.cache_clear()


@pytest.mark.parametrize(("spec", "msg"), [
    ("cmnist:digit=12", "digit must be an integer in 0..9"),
    ("cmnist", "needs a digit"),
    ("fmnist:class=3;foo=1", "unknown parameter"),
    ("cmnist2:digit=3", "already fixes digit"),
    ("nosuchset", "neither an existing image folder nor a built-in"),
])
def test_bad_specs(spec: str, msg: str) -> None:
    with pytest.raises(RdmdError, match=msg):
        load_image_domain(spec)


# -- folders ----------------------------------------------------------------------------------

def _write_folder(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    names = []
    for name, (w, h), mode in [("a.png", (40, 30), "RGB"), ("b.PNG", (64, 64), "L"),
                               ("c.jpg", (50, 80), "RGB"), ("d.JPEG", (33, 33), "RGB"),
                               ("e.png", (20, 45), "RGBA")]:
        arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
        Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode).save(folder / name)
        names.append(name)
    (folder / "notes.txt").write_text("not an image")
    return names


@pytest.mark.parametrize("corruption", ["truncated", "text"])
def test_folder_corrupt_then_ok(tmp_path: Path, corruption: str) -> None:
    folder = tmp_path / "imgs"
    names = _write_folder(folder)
    bad = folder / "broken.png"
    if corruption == "truncated":
        Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:60])
    else:
        bad.write_text("this is not a PNG\n")
    with pytest.raises(RdmdError, match="broken.png") as e:
        load_image_folder(folder)
    assert "\n" not in str(e.value)
    bad.unlink()
    for channels in (1, 3):
        d = load_image_domain(str(folder), size=16, channels=channels)
        assert d.kind == "image"
        assert d.train.shape[1:] == (channels, 16, 16) and d.test.shape[1:] == (channels, 16, 16)
        assert len(d.train) + len(d.test) == len(names)
        assert len(d.test) == 1 and d.info["n_train"] == len(d.train)
        assert sorted(d.info["files"]) == sorted(names)
        assert d.train.min() >= -1.0 and d.train.max() <= 1.0
    # files are listed in train-then-test order: the test image is the last name's file
    d = load_image_folder(folder, size=16, channels=3)
    last = load_image_file(folder / d.info["files"][-1], 16, 3)
    assert torch.allclose(d.test[0], last)


def test_folder_resize_keeps_aspect_and_crops_centre(tmp_path: Path) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    arr = np.zeros((32, 96, 3), np.uint8)
    arr[:, 32:64] = 255  # white centre square, black sides
    for n in ("x.png", "y.png"):
        Image.fromarray(arr).save(folder / n)
    x = load_image_file(folder / "x.png", size=16, channels=3)
    assert x.shape == (3, 16, 16)
    assert x[:, :, 2:-2].min() > 0.95  # only the centre (white) survives the crop


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    names = _write_folder(folder)
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "sub.png").mkdir()
    assert [p.name for p in list_images(folder)] == sorted(names)


def test_empty_and_missing_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(RdmdError, match=f"no images .* in folder {empty}"):
        load_image_folder(empty)
    missing = tmp_path / "nope"
    with pytest.raises(RdmdError, match=f"image folder not found: {missing}"):
        load_image_folder(missing)
    with pytest.raises(RdmdError, match="image folder not found"):
        load_image_domain(str(missing))


def test_bad_channels(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _write_folder(folder)
    with pytest.raises(RdmdError, match="channels must be 1 .* or 3"):
        load_image_folder(folder, channels=2)


def test_is_image_spec(tmp_path: Path) -> None:
    assert is_image_spec("cmnist2") and is_image_spec("fmnist:class=3")
    assert is_image_spec("digits") and is_image_spec(str(tmp_path))
    assert not is_image_spec("gaussian:d=8") and not is_image_spec(str(tmp_path / "nope"))


# -- compatibility ------------------------------------------------------------------------------

def test_check_image_compat() -> None:
    grey = Domain("g", torch.zeros(2, 1, 32, 32), torch.zeros(1, 1, 32, 32), "image")
    check_image_compat(grey, (1, 32, 32), "x")  # same shape: no error
    with pytest.raises(RdmdError) as e:
        check_image_compat(grey, (3, 32, 32),
                           "source images are {a} but the teacher was trained on {b}")
    assert str(e.value) == "source images are 1x32x32 but the teacher was trained on 3x32x32"
    with pytest.raises(RdmdError, match="target: 3x16x16 vs 3x32x32"):
        check_image_compat((3, 16, 16), (3, 32, 32), "target")
    with pytest.raises(RdmdError, match="expected images"):
        check_image_compat((8,), (8,), "vectors")


# -- writing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_save_image_round_trip(tmp_path: Path, channels: int) -> None:
    x = torch.rand(channels, 12, 10) * 2 - 1
    x[:, 0, 0] = -1.0
    x[:, 0, 1] = 1.0
    p = tmp_path / "out" / "img.png"
    save_image(x, p)
    with Image.open(p) as f:
        assert f.format == "PNG" and f.size == (10, 12)
        a = np.asarray(f, dtype=np.float32).reshape(12, 10, channels)
    back = torch.from_numpy(a / 127.5 - 1).permute(2, 0, 1)
    assert (back - x).abs().max() <= 1 / 127.5
    assert back[:, 0, 0].eq(-1).all() and back[:, 0, 1].eq(1).all()


def test_save_image_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        save_image(torch.zeros(3, 4, 4), tmp_path / f"{i}.png")
    save_image(torch.ones(3, 4, 4), tmp_path / "0.png")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(RdmdError, match="cannot write image .*3.png"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "3.png")
    with pytest.raises(RdmdError, match="cannot write image .*0.png"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "0.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]
    monkeypatch.undo()
    with Image.open(tmp_path / "0.png") as f:  # the failed overwrite kept the old image
        assert np.asarray(f).min() == 255


def test_image_grid() -> None:
    g = image_grid(torch.zeros(5, 3, 8, 8), nrow=3, padding=2)
    assert g.mode == "RGB" and g.size == (3 * 10 + 2, 2 * 10 + 2)
    a = np.asarray(g)
    assert a[2, 2].tolist() == [128, 128, 128] and a[0, 0].tolist() == [255, 255, 255]
    assert image_grid(torch.zeros(2, 1, 8, 8), nrow=4).mode == "L"
