"""The teacher's hue augmentation (``augment = "hue"``): coloured MNIST's 400 training 3s
stop being 400 fixed colours, while the distribution the teacher models stays the same (one
uniform random hue per image). A hue rotation that also changed the shape, the brightness or
the single-hue structure of an image would change that distribution; so would rotating data
whose hues are not uniform, which is refused."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from test_images_e2e import DEV, assert_ok, assert_user_error, run_cli

from rdmd.classifier import rgb_to_hsv
from rdmd.data import load_domain
from rdmd.training.runtime import augmented, batches

torch.set_num_threads(1)


def test_hue_rotation_keeps_shape_brightness_and_one_hue_per_image() -> None:
    dom = load_domain("cmnist3", seed=0)
    x = dom.train[:64]
    rng = torch.Generator().manual_seed(1)
    y = next(augmented(iter([x]), "hue", dom, rng))
    grey = lambda t: ((t + 1) / 2).amax(dim=1)  # noqa: E731 (HSV value: the digit's stroke)
    assert torch.allclose(grey(y), grey(x), atol=1e-5)
    # every lit pixel of an output carries the same colour (rgb / value), as in the data
    rgb, v = (y + 1) / 2, grey(y)
    lit = v > 0.3
    for i in range(len(y)):
        c = rgb[i][:, lit[i]] / v[i][lit[i]]
        assert (c - c.mean(dim=1, keepdim=True)).abs().max() < 1e-3
    # and that colour is new: the mean colour of most images moved
    moved = ((rgb - (x + 1) / 2).abs().amax(dim=(1, 2, 3)) > 0.1).float().mean()
    assert moved > 0.8


def test_rotated_hues_stay_uniform() -> None:
    """Over many draws the new hues cover the circle evenly (a rotation by a non-uniform
    angle, or a clamp, would bunch them): each of 6 bins holds 1/6 of them within 3%."""
    dom = load_domain("cmnist3", seed=0)
    rng = torch.Generator().manual_seed(2)
    hues = []
    for y in augmented(batches(dom.train, 256, torch.Generator().manual_seed(0)), "hue", dom,
                       rng):
        rgb = ((y + 1) / 2).flatten(2)
        v = rgb.amax(dim=1)
        idx = v.argmax(dim=1)  # the brightest pixel: its colour is the image's hue
        c = rgb[torch.arange(len(y)), :, idx] / v[torch.arange(len(y)), idx][:, None]
        hues.append(rgb_to_hsv(c[:, None, None, :])[:, 0, 0, 0])
        if sum(len(h) for h in hues) >= 6000:
            break
    h = torch.cat(hues)
    share = torch.histc(h, bins=6, min=0.0, max=1.0) / len(h)
    assert (share - 1 / 6).abs().max() < 0.03, share


def test_hue_augmentation_is_refused_where_it_would_change_the_data(tmp_path: Path) -> None:
    out = tmp_path / "t"
    assert_user_error(run_cli(["train-teacher", "--target", "digits:class=3", "--set",
                               "augment=hue", "--steps", "2", *DEV, "--out", str(out)]),
                      "augment 'hue'", "coloured MNIST")
    assert not out.exists() or not any(out.iterdir())
    assert_user_error(run_cli(["train-teacher", "--target", "cmnist3", "--set",
                               "augment=colour", "--steps", "2", *DEV, "--out", str(out)]),
                      "augment")


def test_a_hue_augmented_teacher_trains_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "t"
    args = ["train-teacher", "--target", "cmnist3", "--set", "augment=hue", "--set",
            "backbone=unet:tiny8", "--set", "batch_size=8", "--set", "sample_steps=2",
            "--set", "n_test=16", "--set", "warmup_steps=1", *DEV]
    """The hue draws come from the run generator, which checkpoints carry: 3 steps and a
    resume to 5 end bit for bit like 5 steps straight."""
    assert_ok(run_cli([*args, "--steps", "3", "--set", "ckpt_every=3", "--set",
                       "lr_schedule=constant", "--out", str(out)]))
    assert json.loads((out / "config.json").read_text())["config"]["augment"] == "hue"
    assert_ok(run_cli(["train-teacher", "--out", str(out), "--resume", "--steps", "5", *DEV]))
    ref = tmp_path / "ref"
    assert_ok(run_cli([*args, "--steps", "5", "--set", "ckpt_every=3", "--set",
                       "lr_schedule=constant", "--out", str(ref)]))
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
