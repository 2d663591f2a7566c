"""zhenping (真评): warmth, substance and template-likeness scores for Chinese comments.

The public Python API, importable under the project's own name::

    >>> from zhenping import Scorer
    >>> scorer = Scorer.from_pretrained()  # the shipped model  # doctest: +SKIP
    >>> scorer.score(["谢谢分享,挺有用的"])[0].levels  # doctest: +SKIP
    {'warmth': 3, 'substance': 1, 'template': 0}

The code lives in three subpackages, kept in the repository as the top-level
folders ``model/``, ``api/`` and ``training/``: ``zhenping.model`` (inference: the
scorer, the model store's read side, campaign detection), ``zhenping.api`` (the
HTTP service) and ``zhenping.training`` (data, training, evaluation, promotion). Imports point one way,
``api → model ← training``; this package re-exports what callers use and holds
the ``zhenping`` command's root (:mod:`zhenping.cli`).
"""

# In the installed package the code sits in zhenping/model, zhenping/api and zhenping/training
# (pyproject.toml maps the repository's top-level folders there). In a checkout that was not
# installed (the tests, ``python -m zhenping.training.gpu_teacher`` on a bare machine) those
# folders sit beside this one: look for the subpackages there too.
def _checkout_root() -> str | None:
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if os.path.isdir(os.path.join(here, "model")):
        return None  # an installed copy
    if all(os.path.isfile(os.path.join(root, pkg, "__init__.py")) for pkg in ("model", "api", "training")):
        return root
    return None


if (_root := _checkout_root()) is not None and _root not in __path__:
    __path__.append(_root)
del _root, _checkout_root

from zhenping.model.axes import AXES
from zhenping.model.scorer import DEFAULT_MODEL_DIR, Backend, CommentScores, ModelLoadError, Scorer, parity
from zhenping.model.store import StoreError, resolve_model_dir

__all__ = [
    "AXES",
    "DEFAULT_MODEL_DIR",
    "Backend",
    "CommentScores",
    "ModelLoadError",
    "Scorer",
    "StoreError",
    "parity",
    "resolve_model_dir",
]
