"""Builders for tiny corpora and gold label files in the real registry's layout.

Files are named like registered ones (``waimai_10k/waimai_10k.csv.gz``...) so the
real :data:`zhenping.training.corpora.CORPORA` reads them; no monkeypatching needed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

# (text, warmth, substance, template): levels in the spirit of the guidelines.
EXAMPLES = [
    ("沙发", 1, 0, 3),
    ("顶顶顶", 1, 0, 3),
    ("默认好评", 1, 0, 3),
    ("此用户未填写评价内容", 1, 0, 3),
    ("好听", 1, 1, 2),
    ("哈哈哈哈哈哈哈", 1, 0, 3),
    ("👍👍👍", 1, 0, 3),
    ("转发微博", 1, 0, 3),
    ("加油加油!支持你!", 2, 0, 3),
    ("抱抱你,会好起来的", 3, 0, 1),
    ("你脑子有病吧", 0, 0, 1),
    ("呵呵,蠢货", 0, 0, 2),
    ("这种人就该滚出去", 0, 0, 1),
    ("谢谢分享,挺有用的", 2, 1, 2),
    ("店家人很好,下次还来", 2, 1, 2),
    ("外卖送到都凉了", 1, 1, 1),
    ("屏幕6.1寸,续航一天,拍照偏暗,不推荐给爱拍照的人", 1, 3, 0),
    ("住了两晚:房间干净但隔音差,早餐种类少;前台帮忙叫车很及时", 1, 3, 0),
    ("质量很好,物流很快,很满意,会回购的", 1, 1, 2),
    ("第二张图里那只橘猫是你家的吗?好胖好可爱", 2, 2, 0),
    ("兼职日结加微信abc123", 1, 0, 3),
    ("菜太咸了,米饭也是夹生的", 1, 2, 0),
    ("第三集的配乐用得好,和剧情很搭", 1, 2, 0),
    ("看完眼眶湿了,谢谢你把奶奶的故事写下来", 3, 1, 0),
]

WAIMAI = "waimai_10k/waimai_10k.csv.gz"
HC3 = "hc3plus_zh/val_hc3_QA.jsonl.gz"
NETEASE = "netease_music_comments/hot_comments.csv.gz"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def write_csv_gz(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with gzip.GzipFile(path, "wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return path


def write_jsonl_gz(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with gzip.GzipFile(path, "wb", mtime=0) as gz:
        gz.write(data.encode("utf-8"))
    return path


def corpus_texts(n_variants: int = 3) -> dict[str, list[tuple[str, int, int, int]]]:
    """Rows per staged file: each example, then numbered variants of it."""
    rows = []
    for k in range(n_variants):
        for text, w, s, t in EXAMPLES:
            rows.append((text if k == 0 else f"{text}{k}", w, s, t))
    third = len(rows) // 3
    return {WAIMAI: rows[:third], HC3: rows[third:2 * third], NETEASE: rows[2 * third:]}


def make_corpora(root: Path, n_variants: int = 3) -> dict[str, tuple[str, int, int, int]]:
    """Write three tiny staged files under ``root``; return ``{gold id: (text, w, s, t)}``."""
    out = {}
    files = corpus_texts(n_variants)
    write_csv_gz(root / WAIMAI, ["label", "review"], [["1", r[0]] for r in files[WAIMAI]])
    write_jsonl_gz(root / HC3, [{"text": r[0], "label": 0} for r in files[HC3]])
    write_csv_gz(
        root / NETEASE,
        ["commentid", "content", "likedcount"],
        [[str(i), r[0], "0"] for i, r in enumerate(files[NETEASE])],
    )
    for key, rows in files.items():
        for i, r in enumerate(rows):
            out[f"{key}:{i}"] = r
    return out


def gold_record(rid: str, text: str, w: int, s: int, t: int) -> dict:
    return {"id": rid, "sha1": sha1(text), "warmth": w, "substance": s, "template": t,
            "annotator": "t1"}


def write_gold(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def make_tiny(tmp_path: Path, n_variants: int = 3) -> tuple[Path, Path, dict]:
    """Corpora root, gold folder (one ``gold_v1.jsonl`` labelling every row) and the rows."""
    root = tmp_path / "corpora"
    rows = make_corpora(root, n_variants)
    gold = tmp_path / "gold"
    write_gold(gold / "gold_v1.jsonl", [gold_record(rid, *r) for rid, r in rows.items()])
    return root, gold, rows
