"""A versioned model store with promotion and rollback.

Layout of a store folder (``$ZHENPING_MODEL_STORE``, default ``runs/store``)::

    versions/<version>/    one complete scorer folder per version (as `zhenping train` exports)
    current                symlink to versions/<version>: the model that is served
    history.jsonl          one line per promotion, refusal or rollback, oldest first
    .lock                  held while the store changes

The served model switches by renaming a new ``current`` link over the old one,
which is atomic: a reader sees the old version or the new one, never neither.
``zhenping serve --model <store>`` (or ``ZHENPING_MODEL_DIR=<store>``) serves
the current version; a switch takes effect when the service restarts.

Promotion scores the candidate and the current model on the same prepared
split (``test`` by default) with :func:`zhenping.training.evaluate.evaluate` and
promotes the candidate only if it is not worse: its mean Spearman ρ over the
axes is at most ``tolerance`` below the current model's, and no axis's ρ drops
by more than ``max_axis_drop``. Rollback returns to the version that was
current before the current one was promoted.

Version 0: the first promotion into a new store first adds the shipped model
(``model/default``, under its own version name) and makes it current, so the
first candidate is compared with it like every later one, and ``rollback``
(``--to 0``) can always go back to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The read side (which version is current, the folder to serve) is zhenping.model.store's;
# this module adds versions, promotes and rolls back.
from zhenping.model.store import (  # noqa: F401  (re-exported: callers import them from here too)
    CURRENT,
    DEFAULT_STORE,
    SCORER_CONFIG,
    STORE_ENV,
    VERSIONS,
    StoreError,
    current_dir,
    current_version,
    is_store,
    resolve_model_dir,
    store_root,
)

HISTORY = "history.jsonl"
LOCK = ".lock"

TOLERANCE = 0.005  # mean Spearman ρ the candidate may lose against the current model
MAX_AXIS_DROP = 0.02  # Spearman ρ any one axis may lose

_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def shipped_model_dir() -> Path | None:
    """The shipped model (``model/default``), version 0 of every new store; ``None`` if not installed."""
    from zhenping.model.scorer import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / SCORER_CONFIG).is_file() else None


def check_version_name(version: str) -> str:
    """Refuse names that are not a plain folder name (letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version in (".", ".."):
        raise StoreError(
            f"version name must be 1-100 letters, digits, '.', '_' or '-' and start with a letter or digit, "
            f"got {version!r}"
        )
    return version


@dataclass(frozen=True)
class VersionInfo:
    """One version in the store."""

    version: str
    path: Path
    current: bool
    added: str | None  # ISO time the version entered the store
    test_mean_spearman: float | None  # measured when it was promoted (or refused)
    status: str  # "current", "promoted earlier", "rolled back", "stored"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """A folder of model versions with one current version.

    Args:
        root: the store folder; created (with ``versions/``) by :meth:`add`.

    Example:
        >>> store = ModelStore("runs/store")  # doctest: +SKIP
        >>> store.add("runs/model")  # doctest: +SKIP
        'zhenping-20250101-120000'
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    # ------------------------------------------------------------------ reading

    def current(self) -> str | None:
        """The current version's name, or ``None`` before the first promotion."""
        return current_version(self.root)

    def current_dir(self) -> Path:
        """The current version's folder.

        Raises:
            StoreError: no version is current, or the link points at a missing folder.
        """
        return current_dir(self.root)

    def version_dir(self, version: str) -> Path:
        """The folder of ``version``; raises :class:`StoreError` naming the stored versions if absent."""
        path = self.versions_dir / check_version_name(version)
        if not path.is_dir():
            raise StoreError(f"model store {self.root} has no version {version!r}; it has {self.names()}")
        return path

    def names(self) -> list[str]:
        """Stored versions, oldest first (by the time they were added)."""
        if not self.versions_dir.is_dir():
            return []
        added = {e["version"]: i for i, e in enumerate(self.history()) if e.get("action") == "add"}
        dirs = [p for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return [p.name for p in sorted(dirs, key=lambda p: (added.get(p.name, len(added)), p.stat().st_mtime))]

    def history(self) -> list[dict]:
        """Every event, oldest first: ``{"time", "action", "version", ...}``."""
        path = self.root / HISTORY
        if not path.is_file():
            return []
        events = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
        return events

    def lineage(self) -> list[str]:
        """Versions that were made current and not rolled back, oldest first; the last is current."""
        stack: list[str] = []
        for e in self.history():
            if e.get("action") == "promote":
                stack.append(e["version"])
            elif e.get("action") == "rollback":
                while stack and stack[-1] != e["version"]:
                    stack.pop()
        current = self.current()
        if current is not None and (not stack or stack[-1] != current):
            stack.append(current)  # switched by hand: trust the link
        return stack

    def list(self) -> list[VersionInfo]:
        """Every stored version with its status, oldest first."""
        current = self.current()
        lineage = self.lineage()
        events = self.history()
        rolled_back = {e.get("from") for e in events if e.get("action") == "rollback"}
        added = {e["version"]: e["time"] for e in events if e.get("action") == "add"}
        score: dict[str, float | None] = {}
        for e in events:
            if e.get("action") in ("promote", "refuse") and e.get("comparison"):
                score[e["version"]] = e["comparison"].get("candidate_mean")
        out = []
        for name in self.names():
            if name == current:
                status = "current"
            elif name in lineage:
                status = "promoted earlier"
            elif name in rolled_back:
                status = "rolled back"
            else:
                status = "stored"
            out.append(VersionInfo(name, self.versions_dir / name, name == current, added.get(name),
                                   score.get(name), status))
        return out

    # ------------------------------------------------------------------ changing

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (other writers wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _record(self, event: dict) -> None:
        event = {"time": _now(), **event}
        with open(self.root / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add(self, model_dir: str | os.PathLike, version: str | None = None, progress: bool = True) -> str:
        """Copy a scorer folder into the store as a new version (not made current).

        Args:
            model_dir: an exported scorer folder.
            version: the version's name; default: the folder's ``model_version``. The stored
                copy's ``scorer_config.json`` carries this name as its ``model_version``, so
                the service's ``/info`` and responses show it.
            progress: show a progress bar while copying.

        Returns:
            The version name.

        Raises:
            StoreError: not a scorer folder, a bad or taken version name.
        """
        with self.locked():
            return self._add(Path(model_dir), version, progress)

    def _add(self, src: Path, version: str | None, progress: bool) -> str:
        cfg_path = src / SCORER_CONFIG
        if not cfg_path.is_file():
            raise StoreError(f"{src} is not an exported scorer folder (no {SCORER_CONFIG}); train one with `zhenping train`")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        version = check_version_name(version or str(cfg.get("model_version") or src.name))
        dst = self.versions_dir / version
        if dst.exists():
            raise StoreError(
                f"version {version!r} is already in model store {self.root}; give the new model another "
                "name (`zhenping train --version NAME`, or --version here)"
            )
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.versions_dir / f".incoming-{version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _copy_tree(src, tmp, progress=progress, desc=f"storing {version}")
            if cfg.get("model_version") != version:
                cfg["trained_as"] = cfg.get("model_version")
                cfg["model_version"] = version
                (tmp / SCORER_CONFIG).write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            os.rename(tmp, dst)
            _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._record({"action": "add", "version": version, "source": str(src.resolve())})
        return version

    def _switch(self, version: str) -> None:
        """Point ``current`` at ``version`` atomically (a new link renamed over the old)."""
        self.version_dir(version)
        tmp = self.root / f".{CURRENT}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(Path(VERSIONS) / version, tmp)
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)

    def make_current(self, version: str, comparison: dict | None = None, forced: bool = False) -> str | None:
        """Make a stored version current; returns the previously current version."""
        with self.locked():
            return self._make_current(version, comparison, forced)

    def _make_current(self, version: str, comparison: dict | None, forced: bool) -> str | None:
        previous = self.current()
        self._switch(version)
        event = {"action": "promote", "version": version, "from": previous}
        if comparison is not None:
            event["comparison"] = comparison
        if forced:
            event["forced"] = True
        self._record(event)
        return previous

    def rollback(self, to: str | None = None) -> tuple[str, str]:
        """Make the previous version current again.

        Args:
            to: roll back further, to this earlier version of the lineage; ``"0"``
                (when no version is named so) means the first one, version 0.

        Returns:
            ``(rolled_back_version, now_current_version)``.

        Raises:
            StoreError: nothing to roll back to, or ``to`` was never current before the current one.
        """
        with self.locked():
            lineage = self.lineage()
            if not lineage:
                raise StoreError(f"model store {self.root} has no current version; nothing to roll back")
            current = lineage[-1]
            earlier = lineage[:-1]
            if to == "0" and not (self.versions_dir / "0").is_dir() and earlier:
                to = lineage[0]  # version 0: the model the store started with (the shipped one)
            if to is None:
                if not earlier:
                    raise StoreError(
                        f"{current!r} is the first version promoted in {self.root}; there is no earlier one to roll back to"
                    )
                target = earlier[-1]
            elif to in earlier:
                target = to
            else:
                raise StoreError(
                    f"cannot roll back to {to!r}: the versions current before {current!r} are {earlier or 'none'}"
                )
            self._switch(target)
            self._record({"action": "rollback", "version": target, "from": current})
            return current, target


def _copy_tree(src: Path, dst: Path, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    files = [p for p in sorted(src.rglob("*")) if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, file=sys.stderr) as bar:
        for p in files:
            out = dst / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "rb") as fin, open(out, "wb") as fout:
                for chunk in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(chunk)
                    bar.update(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(p, out)


# --------------------------------------------------------------------- promotion


def evaluate_on_split(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Score a prepared split with a model and measure it with :func:`zhenping.training.evaluate.evaluate`.

    Returns:
        The metrics dict (``overall`` per-axis Spearman, Pearson, MAE, detection AUROCs, ``by_source``).
    """
    import numpy as np
    from tqdm import tqdm

    from zhenping.model.scorer import Scorer
    from zhenping.training.evaluate import evaluate
    from zhenping.training.prepare import load_split

    scorer = Scorer.from_pretrained(str(model_dir))
    axes = list(scorer.axes)
    data = load_split(data_dir, split, axes)
    chunk = max(batch_size * 4, 256)
    pred = []
    with tqdm(total=len(data), unit="comments", desc=desc or f"scoring {split}", disable=not progress,
              file=sys.stderr) as bar:
        for i in range(0, len(data), chunk):
            part = scorer.score(data.texts[i:i + chunk], batch_size=batch_size)
            pred.extend([getattr(s, a) for a in axes] for s in part)
            bar.update(len(part))
    metrics = evaluate(data.scores, np.asarray(pred, dtype=np.float64).reshape(len(data), len(axes)),
                       data.sources, axes)
    metrics["model"] = {"dir": str(model_dir), "version": scorer.model_version}
    metrics["split"] = split
    return metrics


@dataclass
class Comparison:
    """Candidate against current model on the same rows."""

    axes: list[str]
    candidate: dict[str, float | None]  # Spearman ρ per axis
    current: dict[str, float | None]
    candidate_mean: float | None
    current_mean: float | None
    n: int
    tolerance: float
    max_axis_drop: float
    accepted: bool
    reasons: list[str] = field(default_factory=list)  # why it was refused (empty when accepted)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A plain-text table of ρ per axis and the mean, candidate beside current."""

        def f(v):
            return "–" if v is None else f"{v:.3f}"

        def d(a, b):
            return "–" if a is None or b is None else f"{a - b:+.3f}"

        rows = [(a, self.candidate[a], self.current[a]) for a in self.axes]
        rows.append(("mean", self.candidate_mean, self.current_mean))
        lines = [f"Spearman ρ on {self.n:,} rows:", f"  {'':<10} {'candidate':>10} {'current':>10} {'change':>8}"]
        lines += [f"  {a:<10} {f(c):>10} {f(k):>10} {d(c, k):>8}" for a, c, k in rows]
        return "\n".join(lines)


def _spearman(metrics: dict, axes: list[str]) -> dict[str, float | None]:
    return {a: metrics["overall"][a]["spearman"] for a in axes}


def compare(
    candidate: dict,
    current: dict,
    tolerance: float = TOLERANCE,
    max_axis_drop: float = MAX_AXIS_DROP,
) -> Comparison:
    """Decide whether ``candidate`` is not worse than ``current`` (metrics of :func:`evaluate_on_split`).

    Not worse: the mean Spearman ρ over the axes defined for both is at most
    ``tolerance`` below the current one, and no axis loses more than
    ``max_axis_drop``. An axis the current model has a ρ for and the candidate
    does not (constant scores) counts as worse.

    Example:
        >>> m = lambda *r: {"n": 9, "overall": {a: {"spearman": v} for a, v in zip("xyz", r)}}
        >>> compare(m(.5, .5, .5), m(.5, .5, .53), max_axis_drop=.02).reasons
        ['z Spearman ρ: new 0.500 < current 0.530; allowed drop 0.020', 'mean Spearman ρ: new 0.500 < current 0.510; allowed drop 0.005']
    """
    if tolerance < 0 or max_axis_drop < 0:
        raise ValueError(f"tolerance and max_axis_drop must be >= 0, got {tolerance!r} and {max_axis_drop!r}")
    axes = list(candidate.get("axes") or [k for k in candidate["overall"] if "spearman" in candidate["overall"][k]])
    new, cur = _spearman(candidate, axes), _spearman(current, axes)
    reasons = []
    both = [a for a in axes if new[a] is not None and cur[a] is not None]
    for a in axes:
        if cur[a] is not None and new[a] is None:
            reasons.append(f"{a} Spearman ρ: new is undefined (constant scores), current {cur[a]:.3f}")
        elif a in both and new[a] < cur[a] - max_axis_drop - 1e-12:
            reasons.append(f"{a} Spearman ρ: new {new[a]:.3f} < current {cur[a]:.3f}; "
                           f"allowed drop {max_axis_drop:.3f}")
    new_mean = sum(new[a] for a in both) / len(both) if both else None
    cur_mean = sum(cur[a] for a in both) / len(both) if both else None
    if new_mean is not None and new_mean < cur_mean - tolerance - 1e-12:
        reasons.append(f"mean Spearman ρ: new {new_mean:.3f} < current {cur_mean:.3f}; "
                       f"allowed drop {tolerance:.3f}")
    return Comparison(axes, new, cur, new_mean, cur_mean, int(candidate.get("n", 0)), tolerance, max_axis_drop,
                      accepted=not reasons, reasons=reasons)


def _add_version_zero(store: ModelStore, echo: Callable[[str], None], progress: bool) -> str | None:
    """Put the shipped model into an empty store as version 0 and make it current (the lock is held)."""
    shipped = shipped_model_dir()
    if shipped is None:
        return None
    cfg = json.loads((shipped / SCORER_CONFIG).read_text(encoding="utf-8"))
    version = check_version_name(str(cfg.get("model_version") or "shipped"))
    echo(f"new model store {store.root}: adding the shipped model {version} as version 0 (current), "
         "so every promotion is compared and `zhenping rollback --to 0` returns to it")
    store._add(shipped, version, progress)
    store._switch(version)
    store._record({"action": "promote", "version": version, "from": None, "shipped": True})
    return version


@dataclass
class PromotionResult:
    """What :func:`promote` did."""

    version: str | None  # the candidate's version in the store (None when refused)
    promoted: bool
    previous: str | None  # the version current before
    comparison: Comparison | None  # None when there was no current model, or when forced without one


def promote(
    candidate_dir: str | os.PathLike,
    store: ModelStore | str | os.PathLike | None = None,
    data_dir: str | os.PathLike = "runs/data",
    split: str = "test",
    version: str | None = None,
    tolerance: float = TOLERANCE,
    max_axis_drop: float = MAX_AXIS_DROP,
    force: bool = False,
    batch_size: int = 64,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> PromotionResult:
    """Evaluate a candidate against the current version and promote it if it is not worse.

    An empty store first gets the shipped model as version 0 (current), so the
    first candidate is compared with it too; only where no shipped model is
    installed does the first candidate go in without comparison. A refused
    candidate is not added to the store; the refusal and its comparison are
    recorded in ``history.jsonl``.

    Args:
        candidate_dir: the new scorer folder.
        store: the store (default :func:`store_root`).
        data_dir: prepared split files; both models are scored on the same ``split``.
        version: the candidate's version name (default: its ``model_version``).
        tolerance: mean Spearman ρ it may lose.
        max_axis_drop: Spearman ρ any axis may lose.
        force: promote even if worse (the comparison is still run, printed and recorded).
        echo: where the comparison goes.

    Raises:
        StoreError: a bad candidate folder or a taken version name (checked before any scoring).

    Example:
        >>> result = promote("runs/model", "runs/store")  # doctest: +SKIP
        >>> result.promoted, result.previous  # doctest: +SKIP
        (True, 'zhenping-small-v1')
    """
    store = store if isinstance(store, ModelStore) else ModelStore(store_root(store))
    candidate_dir = Path(candidate_dir)
    if not (candidate_dir / SCORER_CONFIG).is_file():
        raise StoreError(f"{candidate_dir} is not an exported scorer folder (no {SCORER_CONFIG})")
    cfg = json.loads((candidate_dir / SCORER_CONFIG).read_text(encoding="utf-8"))
    name = check_version_name(version or str(cfg.get("model_version") or candidate_dir.name))
    with store.locked():
        if (store.versions_dir / name).exists():
            raise StoreError(f"version {name!r} is already in model store {store.root}; pass another --version")
        if store.current() is None and not store.names():
            _add_version_zero(store, echo, progress)
        previous = store.current()
        comparison = None
        evaluation = None
        if previous is not None:
            current_dir = store.current_dir()
            echo(f"comparing candidate {name} with current {previous} on the {split} split of {data_dir}")
            cand = evaluate_on_split(candidate_dir, data_dir, split, batch_size, progress, desc=f"candidate {name}")
            cur = evaluate_on_split(current_dir, data_dir, split, batch_size, progress, desc=f"current {previous}")
            comparison = compare(cand, cur, tolerance, max_axis_drop)
            echo(comparison.table())
            if not comparison.accepted:
                for reason in comparison.reasons:
                    echo(f"  worse: {reason}")
                if not force:
                    store._record({"action": "refuse", "version": name, "source": str(candidate_dir.resolve()),
                                   "current": previous, "comparison": comparison.as_dict()})
                    echo(f"not promoted: {name} is worse than {previous}; {previous} stays current "
                         "(--force promotes it anyway; --tolerance and --max-axis-drop set the allowed drops)")
                    return PromotionResult(None, False, previous, comparison)
                echo("promoting anyway (--force)")
        else:
            echo(f"model store {store.root} has no current version and no shipped model is installed to compare "
                 f"with: promoting {name} without comparison")
            if (Path(data_dir) / f"{split}.jsonl").is_file():
                cand = evaluate_on_split(candidate_dir, data_dir, split, batch_size, progress, desc=f"candidate {name}")
                evaluation = {"n": cand["n"], "candidate": _spearman(cand, list(cand["axes"]))}
                defined = [v for v in evaluation["candidate"].values() if v is not None]
                evaluation["candidate_mean"] = sum(defined) / len(defined) if defined else None
                echo(f"{name} on {cand['n']:,} {split} rows: " + ", ".join(
                    f"{a} ρ {'–' if v is None else f'{v:.3f}'}" for a, v in evaluation["candidate"].items()))
        store._add(candidate_dir, name, progress)
        store._make_current(name, comparison.as_dict() if comparison else evaluation,
                            forced=bool(force and comparison and not comparison.accepted))
        echo(f"promoted {name}" + (f" (was {previous})" if previous else "") + f"; current -> {store.root / CURRENT}")
        return PromotionResult(name, True, previous, comparison)
