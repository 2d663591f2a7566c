"""The read side of a versioned model store: which model folder to serve.

Layout of a store folder (``$ZHENPING_MODEL_STORE``, default ``runs/store``)::

    versions/<version>/    one complete scorer folder per version (as `zhenping train` exports)
    current                symlink to versions/<version>: the model that is served
    history.jsonl          one line per promotion, refusal or rollback, oldest first

Serving only reads ``current``; adding, promoting and rolling back versions
(the write side) live in :mod:`zhenping.training.store`, which builds on this module.

Example:
    >>> resolve_model_dir("model/default")
    PosixPath('model/default')
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "ZHENPING_MODEL_STORE"
DEFAULT_STORE = Path("runs/store")
VERSIONS = "versions"
CURRENT = "current"
SCORER_CONFIG = "scorer_config.json"


class StoreError(ValueError):
    """The store cannot do what was asked; the message says why and what to do."""


def store_root(path: str | os.PathLike | None = None) -> Path:
    """The store folder: ``path``, else ``$ZHENPING_MODEL_STORE``, else ``runs/store``."""
    return Path(path or os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser()


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a model store (it has a ``versions`` folder) rather than a model folder."""
    p = Path(path)
    return (p / VERSIONS).is_dir() and not (p / SCORER_CONFIG).exists()


def current_version(root: str | os.PathLike) -> str | None:
    """The name of the store's current version, or ``None`` before the first promotion."""
    link = Path(root).expanduser() / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    target = Path(os.readlink(link)) if link.is_symlink() else link.resolve()
    return target.name


def current_dir(root: str | os.PathLike) -> Path:
    """The folder of the store's current version.

    Raises:
        StoreError: no version is current, or the link points at a missing folder.
    """
    root = Path(root).expanduser()
    name = current_version(root)
    if name is None:
        raise StoreError(
            f"model store {root} has no current version; promote one with "
            f"`zhenping promote MODEL_DIR --store {root}`"
        )
    path = root / VERSIONS / name
    if not path.is_dir():
        raise StoreError(f"model store {root}: current points at {name!r}, which is not in {root / VERSIONS}")
    return path


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A model folder for ``path``: the current version when ``path`` is a store, else ``path`` itself.

    Raises:
        StoreError: ``path`` is a store without a current version.

    Example:
        >>> resolve_model_dir("model/default")
        PosixPath('model/default')
    """
    p = Path(path)
    if not is_store(p):
        return p
    return current_dir(p)
