"""Held-out evaluation of teachers and generators, in the data's own units, with noise floors.

Protocol (written down so numbers can be reproduced): the generator maps the first ``n``
held-out source samples, ``n = min(n_test_source, n_test_target, 3000)``. The floor is W2^2
between ``floor_pairs`` pairs of independent target sets of size ``n`` (fresh draws for
built-in distributions, disjoint subsets of all target data for files). ``w2_sq`` is exact
W2^2 (POT) of the outputs to the first ``n`` held-out target samples and to the first set of
each floor pair, averaged (``w2_sq_test``: to the held-out set alone); ``w2_over_floor`` is
their ratio. For built-in targets ``*_stable`` values are computed on fresh draws: W2^2
against its floor over ``STABLE_PAIRS`` sets of ``STABLE_N`` (``w2_over_floor_stable``,
with a standard error), and the known-density measures on those same 12000 points
(``mode_outliers_stable``, ``log_density_stable``, ``off_curve_stable``, the shares with a
binomial standard error). The final weights are evaluated, unless the run chose its weights
on a validation split (``select = "best_val"``, :mod:`rdmd.training.select`): validation
scores the held-out training sources against target data the test never compares with
(:func:`validation_metrics`), so the test numbers of the chosen weights are not chosen on the
test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rdmd import metrics
from rdmd.checkpoint import atomic_write_json
from rdmd.data import Domain, Normalizer
from rdmd.distributed import gathered, is_main
from rdmd.errors import RdmdError
from rdmd.metrics.floor_cache import w2_floor_values
from rdmd.sampler import sample

N_EVAL_MAX = 3000
_FLOOR_CACHE: dict[tuple[str, int, int], tuple[list[Any], dict[str, Any]]] = {}
# bump when the protocol changes; experiments re-evaluate older results. 3: images are scored
# as written (clamped to [-1, 1]) and SSIM is the standard (valid-interior) value.
PROTOCOL = 3
FLOOR_SEED = 12345
STABLE_N = 1000
STABLE_PAIRS = 12
_STABLE_FLOOR: dict[tuple[str, int, int, int], list[tuple[np.ndarray, np.ndarray]]] = {}


def stable_w2(make_generated: Any, tgt: Domain, n: int | None = None,
              pairs: int | None = None, seed: int = FLOOR_SEED,
              density: bool = False) -> dict[str, Any]:
    """:func:`rdmd.metrics.w2_stable` for a built-in target: ``make_generated(n, rng)`` gives
    one fresh generated set per floor pair of fresh target sets (the pairs are drawn once per
    target, size and count, and reused for every model of a process).

    ``density`` adds :func:`stable_measures` of the same ``n * pairs`` generated points."""
    assert tgt.sampler is not None
    n, pairs = n or STABLE_N, pairs or STABLE_PAIRS
    key = (tgt.name, n, pairs, seed)
    if key not in _STABLE_FLOOR:
        _STABLE_FLOOR[key] = stable_floor_sets(tgt, n, pairs, seed)
    grng = np.random.default_rng(seed + 3)
    generated = [np.asarray(make_generated(n, grng)) for _ in range(pairs)]
    sets = _STABLE_FLOOR[key]
    out = metrics.w2_stable(generated, sets, w2_floor_values(sets))
    if density:
        out.update(stable_measures(np.concatenate(generated), tgt, seed))
    return out


def stable_floor_sets(tgt: Domain, n: int, pairs: int, seed: int = FLOOR_SEED
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stable estimate's fresh target pairs (a built-in's sampler, a fixed seed)."""
    assert tgt.sampler is not None
    frng = np.random.default_rng(seed + 2)
    return [(tgt.sampler(n, frng), tgt.sampler(n, frng)) for _ in range(pairs)]


def stable_measures(points: np.ndarray, tgt: Domain, seed: int = FLOOR_SEED
                    ) -> dict[str, Any]:
    """The known-density measures (off-mode share, log-density, off-curve share) of many
    fresh generated points (the stable W2's 12000) beside as many true ones, keys
    ``<name>_stable``, with the shares' binomial standard errors (``_stable_se``): on the
    3000 evaluation points a share near 2% has a standard error of 0.26 points, as large as
    the gap between the 1.5% target and the teacher (docs/twod.md); on 12000, 0.13."""
    out: dict[str, Any] = {}
    for k, v in metrics.known_measures_with_truth(points, tgt.info, tgt.sampler,
                                                  seed + 6).items():
        name, true = (k.removesuffix("_true"), "_true") if k.endswith("_true") else (k, "")
        out[f"{name}_stable{true}"] = v
    if not out:
        return {}
    n = len(points)
    for k in ("mode_outliers", "off_curve"):
        if f"{k}_stable" in out:
            p = out[f"{k}_stable"]
            out[f"{k}_stable_se"] = float(np.sqrt(p * (1 - p) / n))
    out["density_n"] = n
    return out


@torch.no_grad()
def apply_generator(generator: nn.Module, norm: Normalizer, x: torch.Tensor,
                    chunk: int = 512) -> torch.Tensor:
    """``G`` on data-unit inputs, in chunks, returning data units on the CPU."""
    device = next(generator.parameters()).device
    outs = []
    for part in torch.split(x, chunk):
        z = norm.encode(part.to(device).float())
        outs.append(norm.decode(generator(z)).float().cpu())
    return torch.cat(outs) if outs else x.new_zeros((0, *x.shape[1:]))


def noise_floor(tgt: Domain, n: int, pairs: int) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                           dict[str, Any]]:
    """The floor sets and their W2^2 floor, whose values come from the disk cache when it
    holds them for these very sets (:mod:`rdmd.metrics.floor_cache`)."""
    sets = floor_sets(tgt, n, pairs)
    return sets, metrics.w2_noise_floor(sets, w2_floor_values(sets))


def floor_sets(tgt: Domain, n: int, pairs: int, seed: int = FLOOR_SEED
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if tgt.sampler is not None:
        return [(tgt.sampler(n, rng), tgt.sampler(n, rng)) for _ in range(pairs)]
    pool = torch.cat([tgt.train, tgt.test]).reshape(-1, tgt.dim).numpy()
    n = min(n, len(pool) // 2)
    return metrics.floor_pairs_from_pool(pool, n, pairs, rng)


def gaussian_map(src: Domain, tgt: Domain) -> tuple[np.ndarray, np.ndarray] | None:
    """The closed-form OT map when both sides are built-in Gaussians (Theorem 3.1 check)."""
    if src.info.get("builtin") == "gaussian" and tgt.info.get("builtin") == "gaussian":
        return metrics.gaussian_ot_map(np.array(src.info["mean"]), np.array(src.info["cov"]),
                                       np.array(tgt.info["mean"]), np.array(tgt.info["cov"]))
    return None


def evaluate_translation(generator: nn.Module, norm: Normalizer, src: Domain, tgt: Domain,
                         cfg: Any, floor: bool = True) -> dict[str, Any]:
    """Metrics of ``G`` on held-out sources; see the module docstring for the protocol."""
    if src.kind == "image":
        return evaluate_image_translation(generator, src, tgt, cfg.classifier,
                                          cfg.target_class)
    n = min(len(src.test), len(tgt.test), N_EVAL_MAX)
    x = src.test[:n]
    gx = apply_generator(generator.eval(), norm, x)
    y = tgt.test[:n]
    fl, sets = None, []
    if floor:
        key = (tgt.name, n, cfg.floor_pairs)
        if key not in _FLOOR_CACHE:  # the same for every lambda of an experiment
            _FLOOR_CACHE[key] = noise_floor(tgt, n, cfg.floor_pairs)
        sets, fl = _FLOOR_CACHE[key]
    out = metrics.vector_metrics(x.numpy(), gx.numpy(), y.numpy(), floor=fl,
                                 gaussian_map=gaussian_map(src, tgt))
    out.update(metrics.known_measures_with_truth(gx.numpy(), tgt.info, tgt.sampler,
                                                 FLOOR_SEED))
    if sets:
        # W2 to one target set is as noisy as the floor itself (35-40% between sets of 3000
        # from 8 Gaussians); averaging over the floor's independent sets too steadies it.
        w2s = [out["w2_sq"]] + metrics.w2_many([(gx.numpy(), a) for a, _ in sets])
        out["w2_sq_test"] = out["w2_sq"]
        out["w2_sq"] = float(np.mean(w2s))
        out["w2_sq_std"] = float(np.std(w2s))
        out["w2_over_floor"] = out["w2_sq"] / fl["mean"]
        if src.sampler is not None and tgt.sampler is not None:
            def make(m: int, rng: np.random.Generator) -> np.ndarray:
                xs = torch.from_numpy(src.sampler(m, rng)).float()
                return apply_generator(generator, norm, xs).numpy()

            out.update(stable_w2(make, tgt, density=True))
    out["n_eval"] = n
    out["protocol"] = PROTOCOL
    return out


def evaluate_teacher(out_dir: Path, dom: Domain, n_steps: int = 32, pairs: int = 5,
                     classifier: str | None = None,
                     device: str | torch.device = "cpu") -> dict[str, Any]:
    """W2^2 of the teacher's own Heun samples to held-out target data, against the floor.

    Under torchrun every rank calls this: the sampling is split over the ranks and rank 0
    alone writes the files."""
    from rdmd.models import load_model

    model = load_model(out_dir, map_location=device)
    if dom.kind == "image":
        return evaluate_image_teacher(out_dir, model, dom, n_steps, classifier)
    den, churn = gathered(model.score()), model.churn
    n = min(len(dom.test), N_EVAL_MAX)
    g = torch.Generator().manual_seed(FLOOR_SEED)
    device = next(den.parameters()).device
    z = sample(lambda y, s: den(y, s), (n, *dom.shape), n_steps, g, device, churn=churn)
    ys = model.normalizer.decode(z).cpu().numpy()
    sets, fl = noise_floor(dom, n, pairs)
    # Same protocol as for generators: W2 to the held-out set and to each floor pair's first
    # set, averaged.
    w2s = metrics.w2_many([(ys, dom.test[:n].numpy())] + [(ys, a) for a, _ in sets])
    w2 = float(np.mean(w2s))
    res = {"w2_sq": w2, "w2_sq_std": float(np.std(w2s)), "w2_sq_test": w2s[0],
           "w2_floor_mean": fl["mean"], "w2_floor_std": fl["std"],
           "w2_over_floor": w2 / fl["mean"], "n_eval": n, "sampler_steps": n_steps,
           "nfe": _teacher_nfe(model, n_steps),
           "guidance": model.guidance, "sample_churn": float(model.meta.get("sample_churn", 0)),
           "protocol": PROTOCOL}
    res.update(metrics.known_measures_with_truth(ys, dom.info, dom.sampler, FLOOR_SEED))
    if dom.sampler is not None:
        def make(m: int, rng: np.random.Generator) -> np.ndarray:
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            z = sample(lambda y, s: den(y, s), (m, *dom.shape), n_steps, gen, device,
                       churn=churn)
            return model.normalizer.decode(z).cpu().numpy()

        res.update(stable_w2(make, dom, density=True))
    if not is_main():
        return res
    atomic_write_json(out_dir / "metrics.json", res)
    if dom.dim == 2:
        from rdmd.plots import plot_teacher_samples

        plot_teacher_samples(out_dir / "plots" / "teacher_samples.png", dom.test[:n].numpy(),
                             ys, (f"held-out target{_measures_line(res, True)}",
                                  f"teacher samples ({_sampler_name(model)})"
                                  f"{_measures_line(res)}"))
    return res


def _teacher_nfe(model: Any, n_steps: int) -> int:
    """Network evaluations per Heun sample, at most: a guided teacher runs two networks."""
    return (2 * n_steps - 1) * (2 if model.guidance != 1 else 1)


def _sampler_name(model: Any) -> str:
    """How a teacher's samples were drawn, for a plot title."""
    name = "stochastic Heun" if model.churn is not None else "Heun"
    return name + (f", autoguided w {model.guidance:g}" if model.guidance != 1 else "")


def _measures_line(res: dict[str, Any], true: bool = False) -> str:
    """A plot title's second line: the known-density measures of the outputs (or of true
    samples), so a picture carries the numbers that see its smear."""
    suffix = "_true" if true else ""
    parts = [f"{label} {100 * res[k + suffix]:.1f}%" for k, label in
             (("mode_outliers", "off-mode"), ("off_curve", "off-curve")) if k + suffix in res]
    if "log_density" + suffix in res:
        parts.append(f"log p {res['log_density' + suffix]:.2f}")
    return "\n" + ", ".join(parts) if parts else ""


def write_translation_report(out_dir: Path, generator: nn.Module, norm: Normalizer,
                             src: Domain, tgt: Domain, cfg: Any,
                             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.json`` (the held-out metrics, ``extra`` beside them) and the report plots."""
    res = evaluate_translation(generator, norm, src, tgt, cfg, floor=True)
    res["lam"] = cfg.lam
    res.update(extra or {})
    if is_main():
        atomic_write_json(out_dir / "metrics.json", res)
    if src.kind == "image":
        x = src.test[:IMAGE_GRID]
        gx = images_as_written(generator, x)
        if is_main():
            save_pair_grid(out_dir / "plots" / "translation.png", x, gx)
    if src.dim == 2:
        from rdmd.plots import plot_translation

        n = res["n_eval"]
        x = src.test[:n]
        gx = apply_generator(generator, norm, x)  # on every rank: a collective under torchrun
        if is_main():
            plot_translation(out_dir / "plots" / "translation.png", x.numpy(), gx.numpy(),
                             tgt.test[:n].numpy(),
                             title=f"lambda = {cfg.lam:g}{_measures_line(res)}")
    return res


# -- images ---------------------------------------------------------------------------------

IMAGE_GRID = 32  # inputs shown in report grids
FD_SEED = 2024


def _feature_fns(classifier: str | None) -> tuple[Any, Any, str | None]:
    if not classifier:
        return None, None, None
    from rdmd.classifier import fd_metric_name, load_classifier

    net, meta = load_classifier(classifier)
    return net.features, net, fd_metric_name(meta)


def _target_pool(tgt: Domain) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """Every target image, the fixed order the FD draws its reference sets in, and the
    generator that drew it."""
    pool = torch.cat([tgt.train, tgt.test])
    g = torch.Generator().manual_seed(FD_SEED)
    return pool, torch.randperm(len(pool), generator=g), g


def _fd_sets(generated: torch.Tensor, tgt: Domain) -> tuple[torch.Tensor, ...]:
    """Equal-size sets: ``n`` generated, and two disjoint ``n``-subsets of all target images
    (the floor). Frechet distances are biased by sample size, so all three share ``n``."""
    pool, perm, g = _target_pool(tgt)
    n = min(len(generated), len(pool) // 2)
    gen = generated[torch.randperm(len(generated), generator=g)[:n]]
    return gen, pool[perm[:n]], pool[perm[n:2 * n]]


def validation_reference(tgt: Domain, n_test: int) -> torch.Tensor:
    """The target images the test's Frechet distance never compares with (those outside its
    two reference sets for ``n_test`` outputs): what validation scores against, so choosing
    weights by it does not fit the test's references."""
    pool, perm, _ = _target_pool(tgt)
    n = min(n_test, len(pool) // 2)
    rest = pool[perm[2 * n:]]
    if len(rest) < 2:
        raise RdmdError(f"validation needs target images beyond the test's two reference sets "
                        f"of {n}: {tgt.name!r} has {len(pool)} in all")
    return rest


_VAL_FEATS: dict[tuple[Any, ...], torch.Tensor] = {}


def validation_metrics(generator: nn.Module, norm: Normalizer, x_val: torch.Tensor,
                       src: Domain, tgt: Domain, cfg: Any) -> dict[str, float]:
    """Scores of ``G`` on the sources held out of training (``val_size``), keys ``val_*``:
    images, the Frechet distance over the classifier's features to
    :func:`validation_reference` (with L2 and target accuracy); vectors, W2^2 to as many
    target training samples (the test uses the held-out ones). ``select = "best_val"``
    minimises :func:`validation_score_key`."""
    from rdmd.metrics.image import _batched, frechet_distance, l2_per_image, target_accuracy

    if src.kind != "image":
        gx = apply_generator(generator.eval(), norm, x_val).numpy()
        n = min(len(gx), len(tgt.train))
        return {"val_w2_sq": metrics.w2_squared(gx[:n], tgt.train[:n].numpy())}
    gx = images_as_written(generator, x_val)
    res = {"val_l2": float(l2_per_image(x_val, gx).mean())}
    feats, net, name = _feature_fns(cfg.classifier)
    if net is not None and cfg.target_class is not None:
        res["val_target_accuracy"] = target_accuracy(net, gx, cfg.target_class)
    if feats is not None:
        key = (str(cfg.classifier), tgt.name, len(tgt.train), len(tgt.test), len(src.test))
        if key not in _VAL_FEATS:  # the same reference at every evaluation of a run
            _VAL_FEATS.clear()
            _VAL_FEATS[key] = _batched(feats, validation_reference(tgt, len(src.test)))
        res[f"val_{name}"] = frechet_distance(_batched(feats, gx), _VAL_FEATS[key])
    return res


def validation_score_key(src: Domain, classifier: str | None) -> str | None:
    """The ``val_*`` key a best-validation run minimises (None: images without a
    classifier have no validation score)."""
    if src.kind != "image":
        return "val_w2_sq"
    return f"val_{_feature_fns(classifier)[2]}" if classifier else None


def _rename_fd(res: dict[str, Any], name: str | None, n: int) -> dict[str, Any]:
    """``fd``/``kid`` -> ``fd_<classifier>``/``kid_<classifier>`` (never FID or KID alone:
    the features are the project's classifier's, not Inception's)."""
    if name and "fd" in res:
        res[name] = res.pop("fd")
        res[f"{name}_floor"] = res.pop("fd_floor")
        res["fd_n"] = n
        if "kid" in res:
            kid = "kid_" + name.removeprefix("fd_")
            res[kid] = res.pop("kid")
            res[f"{kid}_floor"] = res.pop("kid_floor")
    return res


def images_as_written(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``G`` on images through the translator ``rdmd translate`` and the sweep use, so the
    numbers reported for a model are those of the images it writes (clamped to [-1, 1])."""
    from rdmd.data import Normalizer
    from rdmd.models import Model
    from rdmd.translators import make_translator

    meta = {"role": "generator", "normalizer": Normalizer.identity().to_dict(),
            "data_shape": list(x.shape[1:]), "kind": "image"}
    return make_translator("rdmd", Model(generator.eval(), meta)).translate(x)


def evaluate_image_translation(generator: nn.Module, src: Domain, tgt: Domain,
                               classifier: str | None = None,
                               target_class: int | None = None) -> dict[str, Any]:
    """Metrics of ``G`` on every held-out source image; see ``image_translation_metrics``."""
    x = src.test
    return image_translation_metrics(x, images_as_written(generator, x), tgt, classifier,
                                     target_class)


def image_translation_metrics(x: torch.Tensor, gx: torch.Tensor, tgt: Domain,
                              classifier: str | None = None,
                              target_class: int | None = None) -> dict[str, Any]:
    """L2 (EGSDE: mean per-image norm on [0, 1]), RMSE, PSNR, SSIM, hue difference of
    outputs ``gx`` against their inputs ``x``; with a classifier, a Frechet distance over its
    features (named ``fd_<classifier>``, never FID) with its floor, and the share of outputs
    it labels as ``target_class``. Every method (RDMD and the baselines) is scored here."""
    from rdmd.metrics.image import fd_kid_with_floor, image_metrics
    from rdmd.training.checks import check_classifier

    if classifier:  # a classifier of another shape: one line, not a crash in its convs
        check_classifier(classifier, tuple(x.shape[1:]), target_class)
    feats, net, name = _feature_fns(classifier)
    use_class = net is not None and target_class is not None
    res = image_metrics(x, gx, classifier=net if use_class else None,
                        target_class=target_class if use_class else None)
    res["n_eval"] = len(x)
    res["protocol"] = PROTOCOL
    if feats is None:
        return res
    gen, real_a, real_b = _fd_sets(gx, tgt)
    res.update(fd_kid_with_floor(feats, gen, real_a, real_b))
    return _rename_fd(res, name, len(gen))


def evaluate_image_teacher(out_dir: Path, model: Any, dom: Domain, n_steps: int,
                           classifier: str | None) -> dict[str, Any]:
    """A grid of the teacher's samples; with a classifier, their Frechet distance to real
    target images with its floor (as many samples as half the target set)."""
    den, churn = gathered(model.score()), model.churn
    device = next(den.parameters()).device
    feats, _, name = _feature_fns(classifier)
    pool = torch.cat([dom.train, dom.test])
    n = len(pool) // 2 if feats is not None else IMAGE_GRID
    g = torch.Generator().manual_seed(FLOOR_SEED)
    samples = torch.cat([
        sample(lambda y, s: den(y, s), (len(c), *dom.shape), n_steps, g, device,
               churn=churn).cpu()
        for c in torch.split(torch.arange(n), 256)]).clamp(-1, 1)
    res: dict[str, Any] = {"sampler_steps": n_steps, "nfe": _teacher_nfe(model, n_steps)}
    if feats is not None:
        from rdmd.metrics.image import fd_kid_with_floor

        gen, real_a, real_b = _fd_sets(samples, dom)
        res.update(fd_kid_with_floor(feats, gen, real_a, real_b))
        res = _rename_fd(res, name, len(gen))
    if not is_main():
        return res
    atomic_write_json(out_dir / "metrics.json", res)
    from rdmd.data.images import image_grid

    grid = out_dir / "plots" / "teacher_samples.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    image_grid(samples[:64], nrow=8).save(grid)
    return res


# -- your own folders ------------------------------------------------------------------------

def _say(role: str, folder: Any, policy: Any) -> None:
    if is_main():
        print(f"{role} {folder}: {policy.line()}", flush=True)


def pair_by_name(inputs: list[str], translated: list[str]) -> tuple[list[int], list[int]]:
    """Indices that pair each translated image with the input of the same relative name (the
    suffix aside: ``translate`` writes ``a.jpg`` as ``a.png``). Every translated image must
    have its input, and every input its translation: a metric over a silent subset is not
    the metric of the folder."""
    from rdmd.data.folders import stem
    from rdmd.errors import RdmdError

    ix = {stem(n): i for i, n in enumerate(inputs)}
    tx = {stem(n): i for i, n in enumerate(translated)}
    for what, a, b in (("translated images have no input", tx, ix),
                       ("inputs have no translation", ix, tx)):
        missing = sorted(set(a) - set(b))
        if missing:
            raise RdmdError(f"{len(missing)} {what} of the same name (e.g. {missing[0]}); "
                            "--input and --translated must hold the same names")
    keys = sorted(tx)
    return [ix[k] for k in keys], [tx[k] for k in keys]


def load_target_like(spec: str, shape: tuple[int, ...], recursive: bool = False,
                     purpose: str | None = None) -> Domain:
    """Target images at ``shape``: a folder by the folder policy, a built-in of that shape."""
    from rdmd.data import load_domain
    from rdmd.data.images import check_image_compat

    tgt = load_domain(spec, size=shape[-1], channels=shape[0], recursive=recursive,
                      purpose=purpose)
    if tgt.kind != "image":
        from rdmd.errors import RdmdError

        raise RdmdError(f"--target {spec}: images needed, got vectors")
    check_image_compat(tgt, shape, f"--target {spec} has images of {{a}}, the others are {{b}}")
    if isinstance(tgt.info.get("policy"), dict):
        from rdmd.data.folders import announce

        announce(tgt, "target folder")
    return tgt


def evaluate_folders(input_dir: str | Path, translated_dir: str | Path, target: str,
                     classifier: str | None = None, target_class: int | None = None,
                     recursive: bool = False) -> dict[str, Any]:
    """Metrics of translations already written: ``translated_dir`` against the inputs of the
    same names in ``input_dir`` (L2, RMSE, PSNR, SSIM) and, with a classifier, against the
    ``target`` images (Frechet distance and KID over its features, each with its floor).

    The shape is the translated images' own (the folder policy, from the data); the inputs
    and the target are brought to it by the same policy, every conversion printed."""
    from rdmd.data.folders import load_all

    t_names, gx, pol = load_all(translated_dir, recursive=recursive)
    _say("translated folder", translated_dir, pol)
    x_names, x, xpol = load_all(input_dir, pol.channels, pol.size, recursive,
                                purpose="the translated images")
    _say("input folder", input_dir, xpol)
    ii, ti = pair_by_name(x_names, t_names)
    tgt = load_target_like(target, pol.shape, recursive, "the translated images")
    res = image_translation_metrics(x[ii], gx[ti], tgt, classifier, target_class)
    res["shape"] = list(pol.shape)
    return res


def evaluate_model_on_folder(model: Any, input_dir: str | Path, tgt: Domain,
                             classifier: str | None = None, target_class: int | None = None,
                             recursive: bool = False, lam: float | None = None
                             ) -> dict[str, Any]:
    """A generator on every image of ``input_dir`` (no split: the folder as it is), scored
    like the held-out evaluation, the images as ``rdmd translate`` writes them."""
    from rdmd.data.folders import load_all
    from rdmd.translators import make_translator

    shape = tuple(int(s) for s in model.meta["data_shape"])
    _, x, pol = load_all(input_dir, shape[0], shape[-1], recursive, purpose="the model")
    _say("input folder", input_dir, pol)
    gx = make_translator("rdmd", model, lam=lam).translate(x)
    return image_translation_metrics(x, gx, tgt, classifier, target_class)


def evaluate_model_input(model: Any, inp: str | Path, tgt: Domain, cfg: Any,
                         recursive: bool = False, lam: float | None = None) -> dict[str, Any]:
    """``evaluate --model --input``: a folder of images (:func:`evaluate_model_on_folder`) or
    an ``.npy`` of vectors in data units, translated and scored against ``tgt``."""
    from rdmd.errors import RdmdError

    p = Path(inp)
    if not p.exists():
        raise RdmdError(f"--input not found: {p}")
    if tgt.kind == "image":
        if not p.is_dir():
            raise RdmdError(f"--input {p}: this model translates images; pass a folder")
        return evaluate_model_on_folder(model, p, tgt, cfg.classifier, cfg.target_class,
                                        recursive, lam=lam)
    if p.is_dir():
        raise RdmdError(f"--input {p}: this model translates vectors; pass an .npy file")
    from rdmd.data.vectors import read_npy
    from rdmd.translators import make_translator

    x = torch.from_numpy(np.asarray(read_npy(p), dtype=np.float32))
    if tuple(x.shape[1:]) != tgt.shape:
        raise RdmdError(f"--input {p} has samples of shape {tuple(x.shape[1:])}, the model "
                        f"expects {tgt.shape}")
    gx = make_translator("rdmd", model, lam=lam).translate(x)
    y = tgt.test.numpy() if tgt.sampler is not None else \
        np.concatenate([tgt.train.numpy(), tgt.test.numpy()])
    return metrics.vector_metrics(x.numpy(), gx.numpy(), y)


def save_pair_grid(path: Path, x: torch.Tensor, gx: torch.Tensor, nrow: int = 16) -> None:
    """Inputs above their outputs, row by row, so each translation sits under its source."""
    from rdmd.data.images import image_grid

    rows = []
    for i in range(0, len(x), nrow):
        rows += [x[i:i + nrow], gx[i:i + nrow]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    image_grid(torch.cat(rows), nrow=nrow).save(tmp)
    tmp.replace(path)
