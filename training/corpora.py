"""Registry of the public Chinese comment corpora zhenping uses, and their loader.

Each corpus lives in a root folder (``--corpora DIR``, the ``ZHENPING_CORPORA``
environment variable, or ``../shared/data/corpora`` beside the checkout when it
exists) as gzip'd UTF-8 CSV (header row) or JSONL files, one folder per corpus:
``<root>/<corpus>/<file>``. Row ``i`` of a file is its ``i``-th data row (CSV rows
after the header, JSONL lines), which is what gold label ids point at:
``<corpus>/<file>:<row>``.

The text of these corpora is never stored in this repository. A user with
internet can fetch the files that are plain copies of a public repository's file
with :func:`download`; the registry records where each one comes from.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ENV_VAR = "ZHENPING_CORPORA"
_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = _REPO_ROOT.parent / "shared" / "data" / "corpora"

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class CorpusFile:
    """One staged file of a corpus.

    Attributes:
        name: file name under the corpus folder, e.g. ``train.csv.gz``.
        text_field: column (CSV) or key (JSONL) holding the comment text.
        label_field: column with the corpus's own label, if any.
        source_path: path of the original file in the source repository, when the
            staged file is a plain copy (or a TSV→CSV conversion) of it; ``None``
            when the staged file was assembled from several files or converted from
            a spreadsheet, so it cannot be downloaded as one file.
        source_format: ``csv``, ``tsv`` or ``jsonl``: how the original is laid out.
        source_repo: overrides the corpus's repository for this file.
        source_commit: overrides the corpus's commit for this file.
        char_spaced: the source separates every character by a space (LCCC).
    """

    name: str
    text_field: str
    label_field: str | None = None
    source_path: str | None = None
    source_format: str = "csv"
    source_repo: str | None = None
    source_commit: str | None = None
    char_spaced: bool = False


@dataclass(frozen=True)
class Corpus:
    """A public corpus: where it comes from, its license and its files."""

    name: str
    repo: str  # GitHub owner/name of the public source
    commit: str  # the snapshot the staged files were read from
    license: str  # as stated by the source, verbatim in substance
    domain: str
    files: tuple[CorpusFile, ...]
    usable: bool = True  # False: the license forbids derivatives; never loaded
    labels: str = ""  # what the corpus's own label column means
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _f(name, text, label=None, src=None, fmt="csv", **kw) -> CorpusFile:
    return CorpusFile(name, text, label, src, fmt, **kw)


_ZHUOSD = ("Zhuosd/Python_Scrapy", "2f9b52cc43433604484bde0c028245f46b21d879")

CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus(
            "netease_music_comments", "Adydio/DataAnalysis_CloudMusic",
            "85d52e0c9d281ef1a36f65477fe326b260a48fc8", "not stated",
            "NetEase Cloud Music song comments (latest, new and hot comments)",
            (
                _f("latest_comments_rgn.csv.gz", "content"),
                _f("latest_comments_xue.csv.gz", "content"),
                _f("latest_comments_zms.csv.gz", "content"),
                _f("hot_comments.csv.gz", "content", src="Python/hot_comments.csv"),
                _f("new_comments.csv.gz", "content", src="new_comments.csv"),
                _f("hot_comments_300songs.csv.gz", "评论内容",
                   src="dataset/data/hot_comments.txt", fmt="tsv"),
            ),
            labels="none (like and reply counts)",
            notes="latest_comments_* were assembled from numbered chunk files; "
            "16% of rows repeat another row's text",
        ),
        Corpus(
            "bilibili_danmaku_small", _ZHUOSD[0], _ZHUOSD[1], "not stated",
            "Bilibili danmaku (bullet comments)",
            (
                _f("huwz_danmaku.csv.gz", "弹幕内容", src="弹幕.csv",
                   source_repo="hu-wenzhuo/Popup_crawl.word_cloud_analysis",
                   source_commit="3fcd38c326e8a3a978a02318eed27b1e1ef4f4fe"),
                _f("zhuosd_danmaku.csv.gz", "弹幕", src="弹幕.csv"),
                _f("zhuosd_danmaku_shuaixiaohuo.csv.gz", "弹幕",
                   src="弹幕--帅小伙吃宁夏滩羊肉.csv"),
            ),
            labels="none", notes="three quarters of rows repeat another row's text",
        ),
        Corpus(
            "bilibili_comments_small",
            "ILZFLNO02/Sentiment-analysis-of-Bilibili-comments-based-on-model-fine-tuning",
            "77fa26b4bd7d89a8a9ee7c7fd3d590b5c6581513", "not stated",
            "Bilibili video comments",
            (
                _f("bili_comments_sentiment_3class_corrected.csv.gz", "comment", "emotion"),
                _f("bili_multi_video_comments.csv.gz", "评论内容"),
                _f("zhuosd_bili_comments_shuaixiaohuo.csv.gz", "用户评论",
                   source_repo=_ZHUOSD[0], source_commit=_ZHUOSD[1]),
                _f("zhuosd_bili_comments_olympics.csv.gz", "用户评论",
                   source_repo=_ZHUOSD[0], source_commit=_ZHUOSD[1]),
            ),
            labels="emotion Positive/Negative/Neutral (one file)",
            notes="the two ILZFLNO02 files hold the same comments; spreadsheet originals",
        ),
        Corpus(
            "tencent_video_comments_small", _ZHUOSD[0], _ZHUOSD[1], "not stated",
            "Tencent Video film comments",
            (_f("geimingzhe_comments.csv.gz", "content", src="革命者_评论.csv"),),
            labels="none (likes)",
        ),
        Corpus(
            "douban_book_review", "dbiir/UER-py",
            "5743050cc41f0f21986c9f938db5ac1726052629",
            "repo Apache-2.0; data license not separately stated",
            "Douban book short reviews",
            tuple(
                _f(f"{s}.csv.gz", "text_a", "label",
                   src=f"datasets/book_review/{s}.tsv", fmt="tsv")
                for s in ("train", "dev", "test")
            ),
            labels="1 positive, 0 negative",
        ),
        Corpus(
            "douban_short_comments_small", "zhiliang-lin/public_opinion_data_analysis",
            "56db3aa2158fce5e758ea6c34caaccc90d7657d5", "not stated",
            "Douban short comments on one TV drama",
            (_f("the_queen_of_news_comments.csv.gz", "comments", "ratings",
                src="02 Python数据科学常用包+文本分析初阶/the_queen_of_news_comments.csv"),),
            labels="ratings 1-5 stars",
        ),
        Corpus(
            "douban_dmr_spam_sample", "yiyepianzhounc/DMR-Dataset-1",
            "100c7e29b111ad6077fa61347e5b801a7d8ae67d", "not stated",
            "Douban movie short reviews with spam labels",
            (_f("reviews.json.gz", "text", "label", src="reviews.json", fmt="json"),),
            labels="0 spam, 1 not spam", notes="44 of 3,318 labelled reviews",
        ),
        Corpus(
            "online_shopping_10_cats", "SophonPlus/ChineseNlpCorpus",
            "a0b781d72158bde242c0626c9e354d2b328865ff", "not stated",
            "e-commerce product reviews in 10 categories",
            (_f("online_shopping_10_cats.csv.gz", "review", "label"),),
            labels="1 positive, 0 negative; cat = category",
            notes="original is a zip archive",
        ),
        Corpus(
            "jd_phone_reviews_small", "van233aa/jd-comment",
            "b53c6fed19e30f3680ee6b979d35bf1a30df2464", "not stated",
            "JD.com phone reviews",
            (_f("jd_comments.csv.gz", "contents", src="京东评论.csv"),),
            labels="none", notes="many follow JD's structured review prompt; half repeat",
        ),
        Corpus(
            "waimai_10k", "SophonPlus/ChineseNlpCorpus",
            "a0b781d72158bde242c0626c9e354d2b328865ff", "not stated",
            "food-delivery reviews",
            (_f("waimai_10k.csv.gz", "review", "label",
                src="datasets/waimai_10k/waimai_10k.csv"),),
            labels="1 positive, 0 negative",
        ),
        Corpus(
            "asap_dianping_sample", "Meituan-Dianping/asap",
            "975122a60065240124df62cb4d5dbfd19ed9ef2c", "Apache-2.0",
            "Dianping restaurant reviews",
            tuple(
                _f(f"{s}_sample.csv.gz", "reviewbody", "star", src=f"data/{s}_sample.csv")
                for s in ("train", "dev", "test")
            ),
            labels="star 1-5 and 18 aspect sentiments",
        ),
        Corpus(
            "chnsenticorp_htl_all", "SophonPlus/ChineseNlpCorpus",
            "a0b781d72158bde242c0626c9e354d2b328865ff", "not stated", "hotel reviews",
            (_f("ChnSentiCorp_htl_all.csv.gz", "review", "label",
                src="datasets/ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv"),),
            labels="1 positive, 0 negative",
        ),
        Corpus(
            "smp2020_ewect", "dbiir/UER-py", "5743050cc41f0f21986c9f938db5ac1726052629",
            "repo Apache-2.0; data license not stated",
            "Weibo posts, general and COVID-19 (SMP2020-EWECT)",
            tuple(
                _f(f"{d}_{s}.csv.gz", "text_a", "label",
                   src=f"datasets/smp2020-ewect/{d}/{s}.tsv", fmt="tsv")
                for d in ("usual", "virus") for s in ("train", "dev", "test")
            ),
            labels="0 neutral, 1 angry, 2 happy, 3 sad, 4 fear, 5 surprise",
        ),
        Corpus(
            "weibo_senti_100k_subset2400", "forever1986/bert_task",
            "da1e0836738738853156eb875a082ee4a9d06f03", "not stated", "Weibo posts",
            (_f("weibo_senti_100k_2400.csv.gz", "review", "label",
                src="data/weibo_senti_100k.csv"),),
            labels="1 positive, 0 negative", notes="head-of-each-class cut, not random",
        ),
        Corpus(
            "osm_weibo_comments", "hyqaq/osmdataset2022",
            "10df541f8f6f9879580261bc7071ff4c595bf134", "not stated",
            "Weibo comments on online social-movement events",
            (_f("train.csv.gz", "review", "label"), _f("evl.csv.gz", "review", "label")),
            labels="0 positive, 1 weak negative, 2 anger, 3 anxiety",
            notes="text is word-segmented (spaces between words); staged from two "
            "line-aligned files",
        ),
        Corpus(
            "weibo_comments_small", "Simon-syf/crawler-weibo",
            "ee418c706fcacabf4128b946a45735ba49007814", "not stated",
            "Weibo comments under one post",
            (_f("simon_syf_weibo_comments.csv.gz", "comments"),),
            labels="none (likes)", notes="original is GBK-encoded",
        ),
        Corpus(
            "swsr", "aggiejiang/SWSR", "7b320184da8f9dd6d366dfe726c6b3e12ac92f77", "MIT",
            "Weibo posts and comments on gender topics",
            (
                _f("SexComment.csv.gz", "comment_text", "label", src="SWSR/SexComment.csv"),
                _f("SexWeibo.csv.gz", "weibo_text", src="SWSR/SexWeibo.csv"),
            ),
            labels="SexComment: 1 sexist, 0 not",
        ),
        Corpus(
            "cold", "thu-coai/COLDataset", "a0c55a945497ab58e94aef491180e1cf88ffb864",
            "Apache-2.0", "social-media comments on race, gender and region",
            tuple(
                _f(f"{s}.csv.gz", "TEXT", "label", src=f"COLDataset/{s}.csv")
                for s in ("train", "dev", "test")
            ),
            labels="0 safe, 1 offensive",
        ),
        Corpus(
            "toxicn", "DUT-lujunyu/ToxiCN", "16a315104af85a2a751705e4a41c8dc515e4c578",
            "CC BY-NC-ND 4.0", "Zhihu and Tieba comments",
            (_f("ToxiCN_1.0.csv.gz", "content", "toxic", src="ToxiCN_1.0.csv"),),
            usable=False, labels="toxic 0/1",
            notes="license forbids derivatives: zhenping never trains on it",
        ),
        Corpus(
            "zhihu_answers_small", _ZHUOSD[0], _ZHUOSD[1], "not stated",
            "Zhihu answers to two questions",
            (
                _f("zhihu_answers_intern_topic.csv.gz", "回答内容", src="知乎回答.csv"),
                _f("zhihu_answers_hk_topic.csv.gz", "回答内容", src="知乎回答-香港.csv"),
            ),
            labels="none (upvotes)",
        ),
        Corpus(
            "bdci2018_car_forum", "lqfeng/NLPDataset",
            "fb49caf16f5d8988c850ce37ee1febdda2ec50d7",
            "not stated (competition data re-hosted)", "car forum posts",
            (
                _f("train_2.csv.gz", "content", "sentiment_value",
                   src="情感分析/BDCI_Car_2018/train_2.csv"),
                _f("test_public_2.csv.gz", "content",
                   src="情感分析/BDCI_Car_2018/test_public_2.csv"),
            ),
            labels="sentiment -1/0/1 per aspect", notes="test texts repeat train texts",
        ),
        Corpus(
            "lccc_toy_sample", "thu-coai/CDial-GPT",
            "81064865221d3503251d633f3d0b651004c938a6", "MIT",
            "Weibo-derived open-domain conversations (toy sample)",
            (
                _f("toy_train.txt.gz", "utterances", src="data/toy_train.txt",
                   fmt="pairs", char_spaced=True),
                _f("toy_valid.txt.gz", "utterances", src="data/toy_valid.txt",
                   fmt="pairs", char_spaced=True),
            ),
            labels="none", notes="characters separated by spaces in the source",
        ),
        Corpus(
            "hc3plus_zh", "suu990901/chatgpt-comparison-detection-HC3-Plus",
            "6ce4b6aedd5a209b90d8ee26b29bdba2c0909f8e",
            "not stated; upstream HC3 says CC-BY-SA unless a source is stricter",
            "human vs ChatGPT answers and rewrites",
            tuple(
                _f(f"{s}.jsonl.gz", "text", "label", src=f"data/zh/{s}.jsonl", fmt="jsonl")
                for s in ("val_hc3_QA", "val_hc3_si", "test_hc3_si")
            ),
            labels="1 ChatGPT-generated, 0 human",
        ),
        Corpus(
            "agt2025_zh",
            "Ruohong457/Detecting-Machine-Generated-Text-Across-Granularity-Domains-and-LLMs",
            "db79e5e42e1852db31f92fff4f9f1617f66f7cbc", "not stated",
            "human and LLM-written answers (GPT-4.5, DeepSeek-R1)",
            (
                _f("AGT2025_fromHC3_chinese_GPT4.5_DSR1.csv.gz", "answer", "label",
                   src="data/agt-2025/AGT2025_fromHC3_chinese_GPT4.5&DSR1.csv"),
                _f("hc3_zh_human_sample.csv.gz", "answer", "label",
                   src="data/agt-2025/hc3_zh_human_sample.csv"),
                _f("M4GT_chinese_human_sample.csv.gz", "text", "label"),
                _f("AGT2025_fromM4GT_chinese_GPT4.5_DSR1.csv.gz", "text", "label"),
            ),
            labels="0 human, 1 machine-generated",
        ),
    ]
}


def usable_corpora() -> list[Corpus]:
    """Corpora zhenping may train on (licenses that allow derivatives)."""
    return [c for c in CORPORA.values() if c.usable]


def corpora_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the corpora folder: the argument, then ``$ZHENPING_CORPORA``, then
    ``../shared/data/corpora`` beside the checkout.

    Raises:
        FileNotFoundError: naming every place that was tried.
    """
    tried = []
    for cand in (root, os.environ.get(ENV_VAR), DEFAULT_ROOT):
        if not cand:
            continue
        p = Path(cand).expanduser()
        if p.is_dir():
            return p
        tried.append(str(p))
    raise FileNotFoundError(
        "no corpora folder found; pass --corpora DIR or set "
        f"{ENV_VAR} (tried: {', '.join(tried) or 'nothing'}); "
        "`zhenping corpora download DIR` fetches the public files"
    )


def get_file(corpus: str, name: str) -> tuple[Corpus, CorpusFile]:
    """Look up a registered file by corpus and file name."""
    if corpus not in CORPORA:
        raise KeyError(f"unknown corpus {corpus!r}; known: {sorted(CORPORA)}")
    c = CORPORA[corpus]
    for f in c.files:
        if f.name == name:
            return c, f
    raise KeyError(
        f"corpus {corpus!r} has no file {name!r}; files: {[f.name for f in c.files]}"
    )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_rows(path: Path, cf: CorpusFile) -> Iterator[tuple[int, dict]]:
    """Yield ``(row_index, record)`` for every data row of a staged file."""
    with _open_text(path) as fh:
        if cf.source_format == "pairs":
            for i, line in enumerate(fh):
                parts = line.rstrip("\n").split("\t")
                yield i, {cf.text_field: parts}
        elif path.name.endswith((".jsonl.gz", ".jsonl")):
            for i, line in enumerate(fh):
                yield i, json.loads(line)
        elif path.name.endswith((".json.gz", ".json")):
            # One JSON document: a list of records, or an object of records keyed
            # by name (DMR's {"review0": {...}, ...}); rows follow document order.
            doc = json.load(fh)
            recs = doc.values() if isinstance(doc, dict) else doc
            for i, rec in enumerate(recs):
                yield i, rec
        else:
            for i, rec in enumerate(csv.DictReader(fh)):
                yield i, rec


def row_text(rec: dict, cf: CorpusFile) -> str:
    """The comment text of one record, exactly as stored (missing → '')."""
    v = rec.get(cf.text_field)
    if v is None:
        return ""
    if isinstance(v, list):  # LCCC pairs: one conversation turn per element
        return "\n".join(v)
    return str(v)


def iter_texts(
    root: str | os.PathLike | None = None,
    corpora: list[str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(record_id, text)`` for every row of every usable corpus.

    For LCCC, each utterance becomes its own text with id ``...:<row>.<turn>``,
    with the character spacing of the source removed.
    """
    base = corpora_root(root)
    for c in usable_corpora():
        if corpora and c.name not in corpora:
            continue
        for cf in c.files:
            path = base / c.name / cf.name
            if not path.exists():
                continue
            for i, rec in iter_rows(path, cf):
                rid = f"{c.name}/{cf.name}:{i}"
                if cf.char_spaced:
                    for j, utt in enumerate(rec[cf.text_field]):
                        yield f"{rid}.{j}", utt.replace(" ", "")
                else:
                    yield rid, row_text(rec, cf)


# --------------------------------------------------------------------- download


def source_url(c: Corpus, cf: CorpusFile) -> str | None:
    """Raw URL of a file's public original, or ``None`` if it has no single one."""
    if cf.source_path is None:
        return None
    from urllib.parse import quote

    repo = cf.source_repo or c.repo
    commit = cf.source_commit or c.commit
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(cf.source_path)}"


def _to_staged(raw: bytes, cf: CorpusFile) -> bytes:
    """Convert an original file's bytes to the staged layout (UTF-8, CSV/JSONL)."""
    text = raw.decode("utf-8-sig")
    if cf.source_format in ("jsonl", "pairs", "json"):
        if cf.source_format == "jsonl" and text.lstrip().startswith("["):
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in json.loads(text))
        return text.encode("utf-8")
    delim = "\t" if cf.source_format == "tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in reader:
        w.writerow(row)
    return out.getvalue().encode("utf-8")


def download(
    dest: str | os.PathLike,
    corpora: list[str] | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> dict[str, str]:
    """Fetch the public originals into ``dest`` in the staged layout.

    Args:
        dest: the corpora root to write (``<dest>/<corpus>/<file>``).
        corpora: names to fetch (default: every usable corpus).
        base_url: replaces ``https://raw.githubusercontent.com`` (a mirror, or a
            local server in tests).
        timeout: seconds per request.

    Returns:
        ``{"<corpus>/<file>": status}`` where status is ``"ok"``, ``"exists"``,
        ``"manual: ..."`` (no single public file to fetch) or ``"error: ..."``.
    """
    dest = Path(dest)
    report: dict[str, str] = {}
    for c in usable_corpora():
        if corpora and c.name not in corpora:
            continue
        for cf in c.files:
            key = f"{c.name}/{cf.name}"
            target = dest / c.name / cf.name
            if target.exists():
                report[key] = "exists"
                continue
            url = source_url(c, cf)
            if url is None:
                report[key] = (
                    f"manual: assembled from several files or a spreadsheet in "
                    f"https://github.com/{cf.source_repo or c.repo}; stage it by hand"
                )
                continue
            if base_url:
                url = url.replace("https://raw.githubusercontent.com", base_url.rstrip("/"))
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    raw = resp.read()
                data = _to_staged(raw, cf)
            except Exception as exc:  # noqa: BLE001 - reported per file, run goes on
                report[key] = f"error: {exc}"
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with gzip.GzipFile(tmp, "wb", mtime=0) as gz:
                gz.write(data)
            tmp.replace(target)
            report[key] = "ok"
    return report
