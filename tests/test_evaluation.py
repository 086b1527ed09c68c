"""One evaluation path: what a run's report says of a generator is what its written images
give (``rdmd translate``, the sweep), clamped to [-1, 1] like a saved image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rdmd.classifier import save_classifier, train_classifier
from rdmd.data import load_domain
from rdmd.data.images import labelled_image_set
from rdmd.evaluation import evaluate_image_translation, image_translation_metrics

torch.set_num_threads(1)


class Overshoot(nn.Module):
    """A generator whose outputs leave [-1, 1] (as an early generator's do)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.flip(-1) + 0.5


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clf")
    tx, ty, vx, vy = labelled_image_set("digits", 0)
    clf, stats = train_classifier(tx, ty, vx, vy, 1, 128, 2e-3, 0, progress=False)
    save_classifier(clf, d, {"name": "cnn_digits", "data": "digits", **stats})
    return d


def test_report_scores_the_images_as_written(classifier: Path) -> None:
    src, tgt = load_domain("digits:class=2"), load_domain("digits:class=3")
    gen = Overshoot()
    with torch.no_grad():
        raw = gen(src.test)
    assert raw.abs().max() > 1.5
    report = evaluate_image_translation(gen, src, tgt, str(classifier), 3)
    written = image_translation_metrics(src.test, raw.clamp(-1, 1), tgt, str(classifier), 3)
    unclamped = image_translation_metrics(src.test, raw, tgt, str(classifier), 3)
    assert report["fd_cnn_digits"] == pytest.approx(written["fd_cnn_digits"], rel=1e-9)
    assert report["target_accuracy"] == written["target_accuracy"]
    assert abs(unclamped["fd_cnn_digits"] - written["fd_cnn_digits"]) > 1e-3  # it matters
