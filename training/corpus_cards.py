"""Keep the gold-label figures of the per-corpus data cards true to the label files.

Each card in ``data_cards/<corpus>.md`` says how many of the corpus's rows carry gold
labels, how many per staged file and how the levels are spread; new label files change
all three. This rewrites those figures from the label files and leaves the rest of each
card as it is::

    python -m zhenping.training.corpus_cards            # rewrite the cards
    python -m zhenping.training.corpus_cards --check    # list what differs; exit 1 if anything does
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from zhenping.model.axes import AXES

CARDS_DIR = Path(__file__).resolve().parents[1] / "data_cards"

_TOTAL = re.compile(r"^(- \*\*Gold labels\*\*: )([\d,]+)( rows of this corpus carry gold labels)", re.M)
_FILE_ROW = re.compile(r"^\| `(?P<file>[^`]+)` \|(?P<middle>.*)\| (?P<count>[\d,]+) \|$", re.M)
_LEVEL_ROW = re.compile(r"^\| (?P<axis>" + "|".join(AXES) + r") \| [\d,]+ \| [\d,]+ \| [\d,]+ \| [\d,]+ \|$", re.M)


@dataclass
class CorpusCounts:
    """Gold labels of one corpus: in all, per staged file, and per axis and level."""

    total: int = 0
    files: Counter = field(default_factory=Counter)
    levels: dict[str, Counter] = field(default_factory=lambda: {a: Counter() for a in AXES})


def gold_counts(records: Iterable[dict]) -> dict[str, CorpusCounts]:
    """Count label records (``{"id": "<corpus>/<file>:<row>", axis: level, ...}``) by corpus."""
    out: dict[str, CorpusCounts] = defaultdict(CorpusCounts)
    for rec in records:
        corpus, _, rest = rec["id"].partition("/")
        c = out[corpus]
        c.total += 1
        c.files[rest.rsplit(":", 1)[0]] += 1
        for a in AXES:
            c.levels[a][int(rec[a])] += 1
    return dict(out)


def refresh_card(text: str, counts: CorpusCounts) -> str:
    """``text`` (one corpus card) with its gold-label total, per-file column and level table
    set from ``counts``; a card without those parts is returned unchanged."""
    text = _TOTAL.sub(lambda m: f"{m.group(1)}{counts.total:,}{m.group(3)}", text)
    text = _FILE_ROW.sub(lambda m: f"| `{m.group('file')}` |{m.group('middle')}| {counts.files[m.group('file')]:,} |",
                         text)
    return _LEVEL_ROW.sub(lambda m: "| {} | {} |".format(
        m.group("axis"), " | ".join(str(counts.levels[m.group("axis")][k]) for k in range(4))), text)


def stale_cards(cards_dir: Path, counts: dict[str, CorpusCounts]) -> dict[Path, str]:
    """Cards whose gold-label figures differ from ``counts``, each with its refreshed text."""
    out = {}
    for card in sorted(cards_dir.glob("*.md")):
        old = card.read_text(encoding="utf-8")
        if not _TOTAL.search(old):
            continue  # not a corpus card with gold labels (labels.md, README.md, unlabelled corpora)
        new = refresh_card(old, counts.get(card.stem, CorpusCounts()))
        if new != old:
            out[card] = new
    return out


def cards_without_figures(cards_dir: Path, counts: dict[str, CorpusCounts]) -> dict[Path, int]:
    """Corpus cards that state no gold-label figures although rows of their corpus now
    carry gold labels (a card written when the corpus had none), with that number: the
    figures have to be added by hand before they can be kept up to date."""
    out = {}
    for card in sorted(cards_dir.glob("*.md")):
        labelled = counts.get(card.stem)
        if labelled is not None and labelled.total and not _TOTAL.search(card.read_text(encoding="utf-8")):
            out[card] = labelled.total
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from zhenping.training.labels import gold_files, read_gold

    ap = argparse.ArgumentParser(prog="python -m zhenping.training.corpus_cards", description=__doc__.splitlines()[0])
    ap.add_argument("--cards", default=str(CARDS_DIR), help="folder of the corpus cards")
    ap.add_argument("--check", action="store_true", help="only list the cards that differ (exit 1 if any)")
    args = ap.parse_args(argv)
    cards = Path(args.cards)
    if not cards.is_dir():
        print(f"error: {cards} is not a folder of data cards", file=sys.stderr)
        return 2
    try:
        records = read_gold(gold_files())
    except (OSError, ValueError) as exc:  # no label folder, or a bad line (file and line named)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = gold_counts(records)
    stale = stale_cards(cards, counts)
    missing = cards_without_figures(cards, counts)
    for card, n in missing.items():
        print(f"{card}: {n:,} rows of this corpus carry gold labels, but the card states no gold-label figures; "
              "add its '- **Gold labels**: N rows of this corpus carry gold labels' line, the gold-labels column "
              "of its files table and a level table (as in the other cards), then run this again", file=sys.stderr)
    for card, text in stale.items():
        if args.check:
            print(f"{card}: gold-label figures differ from the label files")
        else:
            card.write_text(text, encoding="utf-8")
            print(f"rewrote {card}")
    if args.check and stale:
        print("run `python -m zhenping.training.corpus_cards` to rewrite them", file=sys.stderr)
        return 1
    if missing:
        return 1
    if not stale:
        print("every corpus card matches the label files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
