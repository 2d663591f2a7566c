"""Behavioural tests of a scorer, in the spirit of CheckList (Ribeiro et al., 2020).

Hand-written cases (``training/behaviour_cases.jsonl``), written from the
annotation guidelines (``data_cards/labels.md``); they are not gold labels and
not a release gate, but a second look at a model beside the test metrics: does
it do the obvious things the guidelines ask for, and does it ignore what should
not matter? Three kinds of case:

* ``mft`` (minimum functionality): one text and the levels it must get, e.g.
  ``{"warmth": "<=0"}`` for an insult. Conditions: ``<=k``, ``>=k``, ``==k`` and
  ``~k`` (within one level of ``k``). Levels are read the way the scorer reads
  them (``CommentScores.levels``: calibrated cut points when the model has them).
* ``inv`` (invariance): a text and a variant that should score the same
  (traditional characters, a trailing emoji, full-width forms, another product
  name); passes when no axis's score moves by more than ``tolerance``.
* ``dir`` (directional): a text and a variant that should move one axis one way
  (an added insult lowers warmth); passes when ``axis`` moves by at least
  ``margin`` in ``direction`` (``up`` or ``down``).

Each line of a cases file is one JSON object::

    {"id": "hostile-001", "category": "mft_hostile", "kind": "mft", "text": "你脑子有病吧",
     "expect": {"warmth": "<=0"}}
    {"id": "inv-trad-001", "category": "inv_traditional", "kind": "inv", "text": "...",
     "variant": "...", "tolerance": 0.1}
    {"id": "dir-insult-001", "category": "dir_insult_lowers_warmth", "kind": "dir", "text": "...",
     "variant": "...", "axis": "warmth", "direction": "down", "margin": 0.02}

:func:`run_suite` scores every text once and returns pass rates per category and
the failures; ``zhenping behaviour --model DIR`` prints them and writes
``behaviour.json`` into the model folder, which the model card shows.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zhenping.model.axes import AXES, LEVELS

CASES_FILE = Path(__file__).resolve().parent / "behaviour_cases.jsonl"
BEHAVIOUR_FILE = "behaviour.json"
KINDS = ("mft", "inv", "dir")
DIRECTIONS = ("up", "down")
DEFAULT_TOLERANCE = 0.1  # inv: largest score change per axis that still counts as "the same"
DEFAULT_MARGIN = 0.02  # dir: smallest score change in the expected direction

# What each shipped category checks, for the printed table and the model card.
CATEGORY_DESCRIPTIONS = {
    "mft_hostile": "insults, slurs, contempt → warmth 0",
    "mft_filler": "filler, emoji and laughter walls → template 3, substance ≤ 1",
    "mft_ads": "contact drops and stock ad copy → template 3, substance ≤ 1",
    "mft_buzzword": "stacked buzzword boilerplate → template 3, substance ≤ 1",
    "mft_specific": "specific, detailed reviews → substance ≥ 2",
    "mft_warm": "heartfelt comfort, gratitude, self-disclosure → warmth 3",
    "mft_neutral": "neutral factual remarks → warmth 1",
    "inv_traditional": "traditional vs simplified characters: scores move ≤ tolerance",
    "inv_trailing": "an added trailing emoji or punctuation: scores move ≤ tolerance",
    "inv_width": "full-width vs half-width characters: scores move ≤ tolerance",
    "inv_name": "another product or person name: scores move ≤ tolerance",
    "dir_insult": "adding an insult lowers warmth",
    "dir_details": "adding concrete details raises substance",
    "dir_stock": "appending stock praise or filler raises template",
    "dir_comfort": "adding comfort raises warmth",
    "guideline": "every example of the annotation guidelines → within one level on each axis given",
}

_CONDITION = re.compile(r"^\s*(<=|>=|==|~)\s*([0-9])\s*$")


class CaseError(ValueError):
    """A behavioural case file line that cannot be used (file and line named)."""


@dataclass(frozen=True)
class Case:
    """One behavioural test case (see the module docstring for the fields)."""

    id: str
    category: str
    kind: str
    text: str
    expect: dict[str, str] = field(default_factory=dict)  # mft: axis -> condition
    variant: str | None = None  # inv, dir
    tolerance: float = DEFAULT_TOLERANCE  # inv
    axis: str | None = None  # dir
    direction: str | None = None  # dir
    margin: float = DEFAULT_MARGIN  # dir
    note: str = ""


def parse_condition(cond: str) -> tuple[str, int]:
    """``"<=0"`` → ``("<=", 0)``; ops ``<=``, ``>=``, ``==`` and ``~`` (within one level).

    Raises:
        ValueError: not one of those forms, or a level outside 0-3.
    """
    m = _CONDITION.match(cond) if isinstance(cond, str) else None
    if not m or not 0 <= int(m.group(2)) <= LEVELS:
        raise ValueError(f"a condition must be <=k, >=k, ==k or ~k with k in 0-{LEVELS}, got {cond!r}")
    return m.group(1), int(m.group(2))


def check_level(level: int, cond: str) -> bool:
    """Whether a level meets a condition such as ``"<=0"`` or ``"~2"``."""
    op, k = parse_condition(cond)
    return {"<=": level <= k, ">=": level >= k, "==": level == k, "~": abs(level - k) <= 1}[op]


def case_from_dict(obj: Any, axes: Sequence[str] = AXES) -> Case:
    """A :class:`Case` from one parsed JSON line, checked; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "category", "kind", "text"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ValueError(f"{key!r} must be a non-empty string, got {obj.get(key)!r}")
    kind = obj["kind"]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    known = {"id", "category", "kind", "text", "expect", "variant", "tolerance", "axis", "direction", "margin",
             "note"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ValueError(f"unknown fields {unknown}; expected some of {sorted(known)}")
    kw: dict[str, Any] = {k: obj[k] for k in ("id", "category", "kind", "text")}
    kw["note"] = str(obj.get("note", ""))
    if kind == "mft":
        expect = obj.get("expect")
        if not isinstance(expect, dict) or not expect:
            raise ValueError(f"an mft case needs 'expect': {{axis: condition}}, got {expect!r}")
        for axis, cond in expect.items():
            if axis not in axes:
                raise ValueError(f"expect names an unknown axis {axis!r}; axes are {list(axes)}")
            parse_condition(cond)
        kw["expect"] = dict(expect)
    else:
        if not isinstance(obj.get("variant"), str) or not obj["variant"]:
            raise ValueError(f"an {kind} case needs a non-empty 'variant' string, got {obj.get('variant')!r}")
        kw["variant"] = obj["variant"]
    if kind == "inv":
        tol = obj.get("tolerance", DEFAULT_TOLERANCE)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol <= 1:
            raise ValueError(f"tolerance must be a number in [0, 1], got {tol!r}")
        kw["tolerance"] = float(tol)
    if kind == "dir":
        if obj.get("axis") not in axes:
            raise ValueError(f"a dir case needs 'axis', one of {list(axes)}, got {obj.get('axis')!r}")
        if obj.get("direction") not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {obj.get('direction')!r}")
        margin = obj.get("margin", DEFAULT_MARGIN)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1 <= margin <= 1:
            raise ValueError(f"margin must be a number in [-1, 1], got {margin!r}")
        kw.update(axis=obj["axis"], direction=obj["direction"], margin=float(margin))
    return Case(**kw)


def load_cases(path: str | os.PathLike | None = None, axes: Sequence[str] = AXES) -> list[Case]:
    """Read a cases file (JSON lines; default: the shipped ``behaviour_cases.jsonl``).

    Raises:
        FileNotFoundError: the file does not exist.
        CaseError: a bad line (file, line number and reason), or a repeated id.
    """
    path = Path(path) if path is not None else CASES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"behavioural cases file {path} does not exist")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                case = case_from_dict(json.loads(line), axes)
            except json.JSONDecodeError as err:
                raise CaseError(f"{path}:{lineno}: not JSON ({err.msg})") from None
            except ValueError as err:
                raise CaseError(f"{path}:{lineno}: {err}") from None
            if case.id in seen:
                raise CaseError(f"{path}:{lineno}: id {case.id!r} already used on line {seen[case.id]}")
            seen[case.id] = lineno
            cases.append(case)
    if not cases:
        raise CaseError(f"{path} holds no cases")
    return cases


def _judge(case: Case, scores: dict, axes: Sequence[str]) -> tuple[bool, dict]:
    """Whether a case passes, and what was seen (for the failure list)."""
    a = scores[case.text]
    if case.kind == "mft":
        levels = a.levels
        got = {ax: {"level": levels[ax], "score": round(getattr(a, ax), 4)} for ax in case.expect}
        ok = all(check_level(levels[ax], cond) for ax, cond in case.expect.items())
        return ok, {"expected": dict(case.expect), "got": got}
    b = scores[case.variant]
    delta = {ax: round(getattr(b, ax) - getattr(a, ax), 4) for ax in axes}
    if case.kind == "inv":
        ok = all(abs(d) <= case.tolerance for d in delta.values())
        changed = [ax for ax in axes if a.levels[ax] != b.levels[ax]]
        return ok, {"expected": f"|change| <= {case.tolerance:g} on every axis", "got": delta,
                    "levels_changed": changed}
    d = delta[case.axis]
    ok = d >= case.margin if case.direction == "up" else d <= -case.margin
    sign = ">=" if case.direction == "up" else "<="
    return ok, {"expected": f"{case.axis} change {sign} {'' if case.direction == 'up' else '-'}{case.margin:g}",
                "got": {case.axis: d}}


def run_suite(scorer, cases: Sequence[Case] | None = None, batch_size: int = 64) -> dict:
    """Run behavioural cases against a scorer.

    Args:
        scorer: anything with ``axes`` and ``score(texts, batch_size=...)``
            returning objects with one float attribute per axis and ``levels``
            (a :class:`zhenping.Scorer`).
        cases: the cases (default: :func:`load_cases` of the shipped file).
        batch_size: texts per forward pass.

    Returns:
        ``{"cases", "passed", "pass_rate", "categories": {name: {"kind", "description",
        "cases", "passed", "pass_rate"}}, "failures": [{"id", "category", "kind",
        "text", "variant", "expected", "got", ...}]}``; categories in file order.

    Example:
        >>> report = run_suite(Scorer.from_pretrained())  # doctest: +SKIP
        >>> report["categories"]["mft_hostile"]["pass_rate"]  # doctest: +SKIP
        0.84
    """
    axes = tuple(getattr(scorer, "axes", AXES))
    cases = list(cases) if cases is not None else load_cases(axes=axes)
    texts = list(dict.fromkeys([c.text for c in cases] + [c.variant for c in cases if c.variant is not None]))
    scored = scorer.score(texts, batch_size=batch_size) if texts else []
    if len(scored) != len(texts):
        raise RuntimeError(f"scorer returned {len(scored)} results for {len(texts)} texts")
    by_text = dict(zip(texts, scored))
    categories: dict[str, dict] = {}
    failures: list[dict] = []
    for case in cases:
        cat = categories.setdefault(case.category, {
            "kind": case.kind, "description": CATEGORY_DESCRIPTIONS.get(case.category, ""),
            "cases": 0, "passed": 0})
        ok, seen = _judge(case, by_text, axes)
        cat["cases"] += 1
        cat["passed"] += int(ok)
        if not ok:
            fail = {"id": case.id, "category": case.category, "kind": case.kind, "text": case.text}
            if case.variant is not None:
                fail["variant"] = case.variant
            fail.update(seen)
            failures.append(fail)
    for cat in categories.values():
        cat["pass_rate"] = round(cat["passed"] / cat["cases"], 4)
    passed = sum(c["passed"] for c in categories.values())
    return {"cases": len(cases), "passed": passed, "pass_rate": round(passed / len(cases), 4) if cases else None,
            "categories": categories, "failures": failures}


def report_table(report: dict) -> str:
    """A Markdown table of pass rates per category."""
    lines = ["| category | kind | checks | cases | passed | pass rate |", "|---|---|---|---:|---:|---:|"]
    for name, c in report["categories"].items():
        lines.append(f"| {name} | {c['kind']} | {c['description'] or '–'} | {c['cases']} | {c['passed']} | "
                     f"{c['pass_rate']:.0%} |")
    lines.append(f"| **all** | | | {report['cases']} | {report['passed']} | {report['pass_rate']:.0%} |")
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike, scorer=None, cases_path: str | os.PathLike | None = None
                 ) -> Path:
    """Write a :func:`run_suite` report as JSON (atomically), with what was tested."""
    import hashlib

    path = Path(path)
    src = Path(cases_path) if cases_path is not None else CASES_FILE
    payload = {
        "model": {"id": getattr(scorer, "model_id", None), "version": getattr(scorer, "model_version", None),
                  "backend": getattr(scorer, "backend", None),
                  "level_mapping": "thresholds" if getattr(scorer, "level_thresholds", None) else "round"},
        "cases_file": src.name,
        "cases_sha1": hashlib.sha1(src.read_bytes()).hexdigest() if src.is_file() else None,
        **report,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def card_section(report: dict) -> str:
    """The model card's "Behavioural tests" section for a ``behaviour.json`` payload."""
    mapping = (report.get("model") or {}).get("level_mapping")
    how = ("calibrated level cut points" if mapping == "thresholds"
           else "round(score × 3)" if mapping == "round" else "the scorer's levels")
    return "\n".join([
        "## Behavioural tests",
        "",
        f"{report['cases']} hand-written behavioural cases in the spirit of CheckList "
        "(`training/behaviour_cases.jsonl`, written from the annotation guidelines; not gold labels and "
        "not a release gate): minimum functionality per axis and level (`mft`, levels read through "
        f"{how}), invariance to changes that should not matter (`inv`, each score within the case's "
        "tolerance) and directional changes (`dir`). Failures are listed in `behaviour.json`; rerun with "
        "`zhenping behaviour --model DIR`.",
        "",
        report_table(report),
        "",
    ])
