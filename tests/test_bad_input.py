"""Input that cannot hurt (issue 4, item 5): each bad input stops ``rdmd`` with one line
``rdmd: error: ...`` saying what and where, exit status 2, and every file already written (the
run being resumed, the teacher, the data) is left byte for byte as it was.

Other bad inputs are tested where their code lives: non-finite losses in test_training.py
(``test_non_finite_loss_*``), bad ``.npy`` arrays in test_data.py and test_cli.py, unknown keys
in config files in test_config.py. Timing: ~10 s in all.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.cli import main

torch.set_num_threads(1)

TINY = ["--set", "batch_size=32", "--set", "n_train=100", "--set", "n_test=50",
        "--set", "floor_pairs=1", "--set", "ckpt_every=2", "--device", "cpu", "--no-progress",
        "--set", "lr_schedule=constant"]  # resumed below with more steps


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


def _error_line(capsys: pytest.CaptureFixture, rc: int, *needles: str) -> str:
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("rdmd: error: "), err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def _teacher(out: Path, **kw: object) -> Path:
    return rdmd.train_teacher("8gaussians", out, steps=20, batch_size=32, n_train=100,
                              n_test=50, sample_steps=2, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def vec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A teacher, a second teacher of another architecture, and a 4-step run of each."""
    d = tmp_path_factory.mktemp("bad")
    t = _teacher(d / "teacher")
    t2 = _teacher(d / "teacher_small", encoder=[8, 8])
    runs = {}
    for name, teacher in (("run", t), ("run_small", t2)):
        runs[name] = d / name
        assert main(["distill", "--source", "gaussian", "--teacher", str(teacher), "--out",
                     str(runs[name]), "--steps", "4", *TINY]) == 0
    return {"teacher": t, "teacher_small": t2, **runs}


@pytest.fixture
def run(vec: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the 4-step run, to break and then resume."""
    return Path(shutil.copytree(vec["run"], tmp_path / "run"))


@pytest.fixture(scope="module")
def image_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1x8x8 (grey digits) teacher."""
    return rdmd.train_teacher("digits:class=3", tmp_path_factory.mktemp("img") / "t", steps=2,
                              batch_size=16, sample_steps=2, device="cpu", progress=False)


def _resume(run: Path) -> int:
    return main(["distill", "--out", str(run), "--resume", "--steps", "6", "--no-progress"])


class _Trap:
    """Unpickling this writes a marker file: the proof that a file was unpickled."""

    marker: Path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "unpickled!"))


def _pickle_trap(path: Path, marker: Path) -> None:
    trap = _Trap()
    trap.marker = marker
    path.write_bytes(pickle.dumps({"weights": trap}))


# -- config -----------------------------------------------------------------------------------

def test_unknown_key_on_the_command_line(vec: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    out, before = tmp_path / "r", _snapshot(vec["teacher"])
    rc = main(["distill", "--source", "gaussian", "--teacher", str(vec["teacher"]), "--out",
               str(out), "--set", "lamda=0.1", *TINY])
    line = _error_line(capsys, rc, "unknown config key 'lamda'")
    print(line)
    assert not out.exists() and _snapshot(vec["teacher"]) == before


def test_unknown_key_in_a_saved_run(run: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["ema_generator"] = 0.999
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    line = _error_line(capsys, _resume(run), "config.json", "unknown config key "
                                                             "'ema_generator'")
    print(line)
    assert _snapshot(run) == before


# -- checkpoints and weights --------------------------------------------------------------------

def test_checkpoint_of_another_architecture(vec: dict[str, Path], run: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """The newest checkpoint in the folder comes from a run with a smaller network."""
    other = ckpt.latest_checkpoint(vec["run_small"] / "checkpoints")
    shutil.copytree(other, run / "checkpoints" / "step_00000005")
    before = _snapshot(run)
    line = _error_line(capsys, _resume(run), "step_00000005", "belongs to another run",
                       "backbone")
    print(line)
    assert _snapshot(run) == before
    # without the run signature (an older checkpoint) the weights themselves are checked
    state = json.loads((run / "checkpoints" / "step_00000005" / ckpt.STATE).read_text())
    del state["run"]
    (run / "checkpoints" / "step_00000005" / ckpt.STATE).write_text(json.dumps(state))
    before = _snapshot(run)
    line = _error_line(capsys, _resume(run), "step_00000005", "does not fit module "
                                                              "'generator'")
    print(line)
    assert _snapshot(run) == before


def test_checkpoint_of_another_resolution(image_teacher: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """A UNet's weights fit any resolution, so the checkpoint's run signature catches it."""
    run = tmp_path / "r"
    assert main(["distill", "--source", "digits:class=2", "--teacher", str(image_teacher),
                 "--out", str(run), "--steps", "2", "--set", "batch_size=8", "--set",
                 "ckpt_every=1", "--device", "cpu", "--no-progress"]) == 0
    p = ckpt.latest_checkpoint(run / "checkpoints") / ckpt.STATE
    state = json.loads(p.read_text())
    state["run"]["data_shape"] = [1, 16, 16]  # as written by a 16x16 run
    p.write_text(json.dumps(state))
    before = _snapshot(run)
    rc = main(["distill", "--out", str(run), "--resume", "--steps", "3", "--no-progress"])
    print(_error_line(capsys, rc, "belongs to another run", "1x16x16", "1x8x8"))
    assert _snapshot(run) == before


def test_teacher_weights_of_another_architecture(vec: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    teacher = Path(shutil.copytree(vec["teacher"], tmp_path / "teacher"))
    shutil.copy(vec["teacher_small"] / "model.safetensors", teacher / "model.safetensors")
    before, out = _snapshot(teacher), tmp_path / "r"
    rc = main(["distill", "--source", "gaussian", "--teacher", str(teacher), "--out", str(out),
               *TINY])
    print(_error_line(capsys, rc, "model.safetensors", "does not fit the architecture"))
    assert not out.exists() and _snapshot(teacher) == before


def test_pickles_are_never_unpickled(vec: dict[str, Path], run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    """A checkpoint or teacher whose weights file is a pickle is refused unread; the error
    names the previous checkpoint to fall back to."""
    marker = tmp_path / "UNPICKLED"
    _pickle_trap(run / "checkpoints" / "step_00000004" / ckpt.TENSORS, marker)
    before = _snapshot(run)
    line = _error_line(capsys, _resume(run), "step_00000004", "not a valid safetensors file",
                       "resume from step_00000002")
    print(line)
    assert _snapshot(run) == before and not marker.exists()

    teacher = Path(shutil.copytree(vec["teacher"], tmp_path / "teacher"))
    _pickle_trap(teacher / "model.safetensors", marker)
    before, out = _snapshot(teacher), tmp_path / "r2"
    rc = main(["distill", "--source", "gaussian", "--teacher", str(teacher), "--out", str(out),
               *TINY])
    print(_error_line(capsys, rc, "model.safetensors", "not a valid safetensors file"))
    assert not out.exists() and _snapshot(teacher) == before and not marker.exists()


def test_damaged_checkpoint_state(run: Path, capsys: pytest.CaptureFixture) -> None:
    (run / "checkpoints" / "step_00000004" / ckpt.STATE).write_text('{"step": 4, "optim')
    before = _snapshot(run)
    print(_error_line(capsys, _resume(run), "state.json", "invalid JSON",
                      "resume from step_00000002"))
    assert _snapshot(run) == before


# -- images -------------------------------------------------------------------------------------

def _folder(path: Path, n: int, size: int, mode: str) -> Path:
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
            path / f"img_{i}.png")
    return path


def test_image_that_cannot_be_decoded(image_teacher: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    folder = _folder(tmp_path / "data", 4, 8, "L")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    before, out = _snapshot(folder), tmp_path / "t"
    rc = main(["train-teacher", "--target", str(folder), "--out", str(out), "--steps", "2",
               "--set", "image_channels=1", "--set", "image_size=8", "--device", "cpu",
               "--no-progress"])
    print(_error_line(capsys, rc, "broken.png", "cannot decode image"))
    assert not out.exists() and _snapshot(folder) == before
    rc = main(["distill", "--source", str(folder), "--teacher", str(image_teacher), "--out",
               str(out), "--steps", "2", "--device", "cpu", "--no-progress"])
    print(_error_line(capsys, rc, "broken.png", "cannot decode image"))
    assert not out.exists()


# One folder policy (rdmd.data.folders): a colour source for a grey teacher is converted and
# counted (tests/test_own_folders.py); images upscaled more than 2x are refused.
@pytest.mark.parametrize(("size", "mode", "needles"), [
    (3, "L", ("4 of 4 images are too small for the 8x8 of the teacher", "img_0.png is 3x3")),
])
def test_source_folder_that_does_not_fit_the_teacher(image_teacher: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture, size: int,
                                                     mode: str, needles: tuple[str, ...]
                                                     ) -> None:
    folder = _folder(tmp_path / "src", 4, size, mode)
    before, out = _snapshot(folder, image_teacher), tmp_path / "r"
    rc = main(["distill", "--source", str(folder), "--teacher", str(image_teacher), "--out",
               str(out), "--steps", "2", "--device", "cpu", "--no-progress"])
    print(_error_line(capsys, rc, str(folder), *needles))
    assert not out.exists() and _snapshot(folder, image_teacher) == before


def test_larger_source_images_are_resized_down(image_teacher: Path, tmp_path: Path) -> None:
    """Larger images of the teacher's kind are the normal case (AFHQ 512 px -> 64 px)."""
    folder = _folder(tmp_path / "src", 6, 20, "L")
    run = tmp_path / "r"
    assert main(["distill", "--source", str(folder), "--teacher", str(image_teacher), "--out",
                 str(run), "--steps", "1", "--set", "batch_size=4", "--device",
                 "cpu", "--no-progress"]) == 0
    # trained and saved at the teacher's 1x8x8, not the folder's 20x20
    assert json.loads((run / "model.json").read_text())["data_shape"] == [1, 8, 8]
    written = rdmd.translate_folder(run, folder, tmp_path / "out", progress=False)
    assert len(written) == 6
    for f in written:
        with Image.open(f) as img:
            assert (img.size, img.mode) == ((8, 8), "L")


# -- arrays -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("array", "needles"), [
    (np.zeros((40, 3)), ("has samples of shape 3", "trained on 2")),
    (np.zeros((40, 2, 2)), ("expected an N x d array, got shape (40, 2, 2)",)),
    ("nan", ("non-finite values (first in row 13)",)),
])
def test_npy_of_the_wrong_shape_or_with_nan(vec: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture, array: object,
                                            needles: tuple[str, ...]) -> None:
    if isinstance(array, str):
        array = np.random.default_rng(0).normal(size=(40, 2))
        array[13, 1] = np.nan
    src = tmp_path / "x.npy"
    np.save(src, array)
    before, out = _snapshot(tmp_path, vec["teacher"]), tmp_path / "r"
    rc = main(["distill", "--source", str(src), "--teacher", str(vec["teacher"]), "--out",
               str(out), *TINY])
    print(_error_line(capsys, rc, "x.npy", *needles))
    assert not out.exists() and _snapshot(tmp_path, vec["teacher"]) == before


def test_translate_precision_is_checked_and_defaults_by_hardware(
        capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """``precision``: bf16 for images on a CPU with bf16 arithmetic, fp32 on one without
    (emulated bf16 was 14x slower), unless told; a bad value is one line from the API and a
    usage error (exit 2) from the CLI, before anything is written."""
    from rdmd import precision
    from rdmd.errors import RdmdError
    from rdmd.translators import make_translator

    gen = Path(rdmd.__file__).parent / "pretrained" / "cmnist" / "rdmd_lam1"
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_bf16_native", lambda native=native: native)
        assert make_translator("rdmd", gen).resolved_precision == expected
    assert make_translator("rdmd", gen, precision="fp32").resolved_precision == "fp32"
    with pytest.raises(RdmdError, match="precision must be one of"):
        make_translator("rdmd", gen, precision="fp16")
    with pytest.raises(SystemExit) as e:
        main(["translate", "--model", str(gen), "--input", "in", "--output", "out",
              "--precision", "fp16"])
    assert e.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err
