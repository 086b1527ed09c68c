"""``rdmd serve``'s logic without a browser: the page shows what ``rdmd translate`` writes.

The browser test (tests/test_serve_browser.py) drives the same functions through the page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rdmd
from rdmd.cli import main
from rdmd.data.images import load_image_file, to_uint8
from rdmd.errors import RdmdError
from rdmd.precision import default_precision
from rdmd.serve import core

SHIPPED = Path(rdmd.__file__).parent / "pretrained" / "cmnist"
TWOD = Path(rdmd.__file__).parent / "pretrained" / "twod"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shipped generators with their teacher and domain classifier, as links: a small
    folder of runs, so the catalog loads two UNets instead of six."""
    d = tmp_path_factory.mktemp("runs") / "cmnist"
    d.mkdir()
    for name in ("rdmd_lam0.05", "rdmd_lam1", "teacher", "domain_classifier"):
        (d / name).symlink_to(SHIPPED / name)
    return d


@pytest.fixture(scope="module")
def family(runs: Path) -> core.Family:
    cat = core.load_catalog([runs])
    assert cat.names("image") == ["cmnist2 -> cmnist3: cmnist (lambda 0.05, 1)"]
    return cat.images[0]


def _write_inputs(folder: Path) -> list[Path]:
    """Images of other sizes and modes than the model's, as users upload them."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    ims = {"a.png": Image.fromarray(rng.integers(0, 255, (40, 50, 4), np.uint8), "RGBA"),
           "b.png": Image.fromarray(rng.integers(0, 255, (30, 20), np.uint8), "L"),
           "c.jpg": Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8), "RGB")}
    for name, im in ims.items():
        im.save(folder / name)
    return sorted(folder / n for n in ims)


def test_outputs_equal_rdmd_translate_for_the_same_inputs_and_lambda(
        family: core.Family, runs: Path, tmp_path: Path) -> None:
    files = _write_inputs(tmp_path / "in")
    x, names = core.prepare_uploads([str(f) for f in files], family.shape)
    assert names == ["a.png", "b.png", "c.jpg"]
    for f, xi in zip(files, x, strict=True):  # read as `rdmd translate` reads a folder
        assert torch.equal(xi, load_image_file(f, 32, 3))
    for lam, run in ((0.9, "rdmd_lam1"), (0.2, "rdmd_lam0.05")):  # the nearest model
        tr = core.translate_images(family, x, lam)
        assert tr.lam == float(run.removeprefix("rdmd_lam")) and run in tr.label
        out = tmp_path / f"out_{run}"
        assert main(["translate", "--model", str(runs / run), "--input", str(tmp_path / "in"),
                     "--output", str(out), "--no-progress"]) == 0
        for f, y in zip(files, tr.outputs, strict=True):
            cli = np.asarray(Image.open(out / f"{f.stem}.png"))
            assert np.array_equal(to_uint8(y), cli), f"{run}: {f.name} differs from the CLI's"
        expect = ((x.double() - tr.outputs.double()) / 2).flatten(1).norm(dim=1).numpy()
        np.testing.assert_allclose(tr.l2, expect, rtol=1e-6)
        assert tr.nfe == 1 and tr.seconds > 0
    assert not np.array_equal(core.translate_images(family, x, 0.05).outputs,
                              core.translate_images(family, x, 1.0).outputs)


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_frozen_path_gives_rdmd_translates_outputs_bit_for_bit(runs: Path,
                                                                precision: str | None) -> None:
    """The page's slider runs the generators on one worker thread, in fp32 as traced, frozen
    graphs (issue 17); in bf16 (images' default on bf16 hardware) eagerly, as a graph traced
    under autocast does not reproduce eager numbers. Either way the pixels must stay those of ``rdmd
    translate`` at the same precision, for every batch size and ``lambda``, for
    fixed-``lambda`` and conditioned generators."""
    family = core.load_catalog([runs], precision).images[0]
    cond = core.load_catalog([SHIPPED / "rdmd_cond"], precision).images[0]
    assert cond.conditioned is not None and cond.precision == family.precision == precision
    x_all, _ = core.held_out_examples(cond, 5)
    for fam, lams in ((family, (0.05, 1.0)), (cond, (cond.conditioned[0], 0.42, 1.0))):
        for n in (1, 5):  # one graph (traced on 2 images) serves every batch size
            x = x_all[:n]
            for lam in lams:
                fast = core.on_worker(core.translate_images, fam, x, lam, frozen=True)
                slow = core.translate_images(fam, x, lam)
                model = fam.pick(lam)[0]
                kw = ({"lam": lam} if fam.conditioned else {}) | (
                    {"precision": precision} if precision else {})
                assert torch.equal(fast.outputs, rdmd.translate(model, x, **kw)), (fam.name, n)
                assert torch.equal(fast.outputs, slow.outputs) and fast.label == slow.label
                np.testing.assert_array_equal(fast.l2, slow.l2)
            traced = core.cached_graph(fam.pick(lams[-1])[0])
            resolved = precision or default_precision(True, "cpu")
            assert (traced is not None) == (resolved == "fp32"), "traced iff fp32"
    a = core.on_worker(core.translate_images, cond, x_all, 0.05, frozen=True).outputs
    assert not torch.equal(a, core.translate_images(cond, x_all, 1.0, frozen=True).outputs)


def test_warm_graphs_traces_every_fp32_generator_of_a_family(
        runs: Path, family: core.Family, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "_GRAPHS", {})
    bf16 = core.load_catalog([runs], "bf16").images[0]
    core.warm_graphs([bf16]).join()  # bf16 runs eagerly: nothing to trace
    assert core._GRAPHS == {}
    fp32 = core.load_catalog([runs], "fp32").images[0]
    core.warm_graphs([fp32]).join()
    graphs = core._GRAPHS
    assert sorted(graphs) == sorted(id(m) for _, m, _ in fp32.models)
    assert all(core.cached_graph(m) is not None for _, m, _ in fp32.models)


def test_an_untraceable_generator_stays_eager(runs: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def no_trace(*a: object, **k: object) -> None:
        raise RuntimeError("this backbone does not trace")

    family = core.load_catalog([runs], "fp32").images[0]
    monkeypatch.setattr(torch.jit, "trace", no_trace)
    monkeypatch.setattr(core, "_GRAPHS", {})
    x, _ = core.held_out_examples(family, 2)
    tr = core.translate_images(family, x, 1.0, frozen=True)
    graphs = core._GRAPHS
    model = family.pick(1.0)[0]
    assert list(graphs) == [id(model)] and graphs[id(model)][0]() is model
    assert core.cached_graph(model) is None
    assert torch.equal(tr.outputs, rdmd.translate(model, x, precision="fp32"))


def test_a_reused_id_does_not_serve_another_models_graph(
        runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is keyed by id(model); a model loaded after another was freed can get its
    id. Seen as a flaky mismatch (the lambda 1 slider served lambda 0.05's graph)."""
    import weakref

    family = core.load_catalog([runs], "fp32").images[0]
    model, other = family.pick(1.0)[0], family.pick(0.05)[0]
    stale = object()
    monkeypatch.setattr(core, "_GRAPHS", {id(model): (weakref.ref(other), stale)})
    assert core.cached_graph(model) is None
    x, _ = core.held_out_examples(family, 2)
    tr = core.translate_images(family, x, 1.0, frozen=True)
    assert core._GRAPHS[id(model)][1] is not stale and core.cached_graph(model) is not None
    assert torch.equal(tr.outputs, rdmd.translate(model, x, precision="fp32"))


def test_fixed_lambda_family_slider_picks_the_nearest_shipped_model(
        family: core.Family) -> None:
    assert family.lams == [0.05, 1.0] and family.conditioned is None
    assert family.lam_bounds() == (0.05, 1.0)
    assert [family.pick(v)[1] for v in (0.0, 0.5, 0.53, 7)] == [0.05, 0.05, 1.0, 1.0]
    assert family.teacher_dir is not None and family.teacher_dir.name == "teacher"
    assert family.domain_classifier_dir is not None
    with pytest.raises(RdmdError, match="finite"):
        family.pick(float("nan"))


def test_conditioned_generator_is_served_at_any_lambda(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A model.json with lam_range (issue 13's conditioned generator) is one family whose
    slider spans the range, and rdmd.translate gets ``lam``; fixed models never get it."""
    d = tmp_path / "cond"
    shutil.copytree(SHIPPED / "rdmd_lam0.05", d)
    meta = json.loads((d / "model.json").read_text())
    meta.pop("lam")
    (d / "model.json").write_text(json.dumps({**meta, "lam_range": [0.01, 2.0]}))
    cat = core.load_catalog([d])
    assert not cat.messages or all("twod" in m for m in cat.messages)
    fam = cat.images[0]
    assert fam.conditioned == (0.01, 2.0) and fam.lam_bounds() == (0.01, 2.0)
    assert "lambda in [0.01, 2]" in fam.name
    seen: list[dict] = []

    def fake_translate(model: object, x: torch.Tensor, **kw: object) -> torch.Tensor:
        seen.append(kw)
        return x.clone()

    monkeypatch.setattr("rdmd.api.translate", fake_translate)
    x = torch.zeros(2, 3, 32, 32)
    assert core.translate_images(fam, x, 0.37).lam == 0.37
    assert core.translate_images(fam, x, 9.0).lam == 2.0  # clipped to the range
    assert seen == [{"lam": 0.37}, {"lam": 2.0}]
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    (bad / "model.json").write_text(json.dumps({**meta, "lam_range": [1, 0.5]}))
    with pytest.raises(RdmdError, match="lam_range"):
        core.Catalog().add_dir(bad)


def test_bad_uploads_are_one_line_messages(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (3, 32, 32)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(RdmdError, match=r"^notes\.txt: cannot decode image") as e:
        core.prepare_uploads([str(text)], shape)
    assert str(tmp_path) not in str(e.value) and "\n" not in str(e.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(RdmdError, match="empty.png: empty file"):
        core.prepare_uploads([str(empty)], shape)
    for nothing in (None, []):
        with pytest.raises(RdmdError, match="no images uploaded"):
            core.prepare_uploads(nothing, shape)
    png = _write_inputs(tmp_path / "in")[0]
    with pytest.raises(RdmdError, match=f"at most {core.MAX_IMAGES}"):
        core.prepare_uploads([str(png)] * (core.MAX_IMAGES + 1), shape)
    monkeypatch.setattr(core, "MAX_UPLOAD_MB", 1e-6)
    with pytest.raises(RdmdError, match="limited to"):
        core.prepare_uploads([str(png)], shape)


def test_model_dirs_that_do_not_load_become_messages(tmp_path: Path, runs: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    cat = core.load_catalog([tmp_path / "missing", broken, tmp_path])
    assert not cat.images
    assert any("model directory not found" in m for m in cat.messages)
    assert any(str(broken) in m for m in cat.messages)
    with pytest.raises(RdmdError, match="holds a teacher"):
        cat.add_dir(runs / "teacher")
    with pytest.raises(RdmdError, match="no model directory"):
        cat.add_dir("  ")


def test_baselines_run_on_the_teacher_as_rdmd_translate_does(family: core.Family) -> None:
    x = load_image_file(SHIPPED / "rdmd_lam1" / "plots" / "translation.png", 32, 3)[None]
    x = torch.cat([x, x.flip(-1)])
    for method, value in (("sdedit", 2.0), ("ilvr", 8), ("egsde", 2.0)):
        tr = core.run_baseline(family, method, x, value, n_steps=2)
        params = {core.BASELINE_PARAM[method]: value, "n_steps": 2}
        if method == "egsde":
            params["domain_classifier"] = str(family.domain_classifier_dir)
        ref = rdmd.translate(family.teacher_dir, x, method=method, **params)
        assert torch.equal(tr.outputs, ref), method
        # the shipped teacher is autoguided: its guide runs beside it at each of 3 calls
        assert tr.nfe == 6 and (tr.aux_evals > 0) == (method == "egsde")
        assert tr.row()[1].startswith("6")
    with pytest.raises(RdmdError, match="unknown baseline"):
        core.run_baseline(family, "rdmd", x)


def test_held_out_examples_are_the_source_test_split(family: core.Family) -> None:
    from rdmd.data import load_domain

    x, names = core.held_out_examples(family, 3)
    assert torch.equal(x, load_domain("cmnist2").test[:3]) and len(names) == 3


def test_grid_places_each_method_row_under_its_input() -> None:
    a = torch.full((10, 1, 4, 4), -1.0)
    b = torch.linspace(-1, 1, 10)[:, None, None, None].expand(10, 1, 4, 4)
    g = core.to_grid([a, b], columns=8, pad=2)
    assert g.shape == (2 * (2 * 6 + 2) + 2, 8 * 6 + 2, 3)
    assert (g[2:6, 2:6] == 0).all()  # input 0, black
    blk = 2 + 2 * 6 + 2  # second block: images 8, 9
    np.testing.assert_array_equal(g[blk + 6:blk + 10, 8:12, 0], to_uint8(b[9])[:, :, 0])


@pytest.mark.skipif(not (TWOD / "8gaussians_lam0.1" / "model.json").is_file(),
                    reason="the shipped 2-D models are not installed")
def test_twod_map_of_a_shipped_model() -> None:
    cat = core.load_catalog([TWOD])
    fam = cat.vectors[0]
    img, text = core.twod_map(fam, 0.12, n=300)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert "lambda 0.1 " in text and "300 held-out points" in text


def test_serve_without_gradio_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["serve", "--model", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdmd: error: rdmd serve needs Gradio") and err.count("\n") == 1


def test_core_package_does_not_import_gradio() -> None:
    code = ("import sys, rdmd, rdmd.cli, rdmd.serve, rdmd.serve.core, rdmd.serve.app; "
            "rdmd.cli.build_parser().parse_args(['serve']); "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_binds_loopback_by_default() -> None:
    from rdmd.cli import build_parser

    a = build_parser().parse_args(["serve", "--model", "a", "b", "--model", "c"])
    assert (a.host, a.port, a.model) == ("127.0.0.1", 7860, ["a", "b", "c"])
