"""``rdmd serve``: a local web page to translate images, turn ``lambda`` and compare baselines.

The page's logic lives in :mod:`rdmd.serve.core` as plain functions (tested without a
browser); :mod:`rdmd.serve.app` puts them behind a Gradio page. Gradio is an optional extra
(``pip install -e ".[ui]"``): nothing here imports it until :func:`rdmd.serve.app.launch`
is called, so the core package never needs it.
"""

from __future__ import annotations

from rdmd.serve.core import (
    MAX_IMAGES,
    MAX_UPLOAD_MB,
    Catalog,
    Family,
    load_catalog,
    prepare_uploads,
    translate_images,
)

__all__ = ["MAX_IMAGES", "MAX_UPLOAD_MB", "Catalog", "Family", "load_catalog",
           "prepare_uploads", "translate_images"]
