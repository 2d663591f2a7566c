"""Corpora folder resolution, `zhenping corpora list` and download from a local server."""

from __future__ import annotations

import csv
import functools
import gzip
import http.server
import io
import json
import threading

import pytest
from typer.testing import CliRunner

import zhenping.training.corpora as corpora_mod
from tests.training.corpus_fixtures import make_tiny
from zhenping.training.cli import app
from zhenping.training.corpora import Corpus, CorpusFile, corpora_root, download, iter_rows, row_text

runner = CliRunner()


# ------------------------------------------------------------------ root resolution


def test_root_argument_then_env_then_default(tmp_path, monkeypatch):
    arg, env, default = (tmp_path / n for n in ("arg", "env", "default"))
    for p in (arg, env, default):
        p.mkdir()
    monkeypatch.setattr(corpora_mod, "DEFAULT_ROOT", default)
    monkeypatch.setenv("ZHENPING_CORPORA", str(env))
    assert corpora_root(arg) == arg
    assert corpora_root() == env
    monkeypatch.delenv("ZHENPING_CORPORA")
    assert corpora_root() == default
    # a folder that does not exist is skipped, the next candidate is used
    monkeypatch.setenv("ZHENPING_CORPORA", str(tmp_path / "gone"))
    assert corpora_root() == default


def test_root_not_found_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora_mod, "DEFAULT_ROOT", tmp_path / "no_default")
    monkeypatch.setenv("ZHENPING_CORPORA", str(tmp_path / "no_env"))
    with pytest.raises(FileNotFoundError) as err:
        corpora_root(tmp_path / "no_arg")
    msg = str(err.value)
    assert msg.startswith("no corpora folder found; pass --corpora DIR or set ZHENPING_CORPORA")
    for name in ("no_arg", "no_env", "no_default"):
        assert name in msg
    assert "zhenping corpora download DIR" in msg


# ------------------------------------------------------------------ list


def test_corpora_list_counts_local_rows(tmp_path):
    root, _, _ = make_tiny(tmp_path)
    r = runner.invoke(app, ["corpora", "list", "--corpora", str(root)])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.output.splitlines()[2:]}
    assert lines["waimai_10k"].split()[1:4] == ["yes", "1/1", "24"]
    assert lines["hc3plus_zh"].split()[1:4] == ["yes", "1/3", "24"]
    assert lines["cold"].split()[1:4] == ["yes", "0/3", "0"]
    assert lines["toxicn"].split()[1:5] == ["no", "0/1", "0", "CC"]
    assert lines["total"].split()[-1] == "72"
    assert r.output.splitlines()[0] == f"corpora folder: {root}"


def test_corpora_list_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora_mod, "DEFAULT_ROOT", tmp_path / "none")
    monkeypatch.delenv("ZHENPING_CORPORA", raising=False)
    r = runner.invoke(app, ["corpora", "list", "--no-count"])
    assert r.exit_code == 0
    assert "none found (pass --corpora DIR)" in r.output
    assert "netease_music_comments" in r.output


# ------------------------------------------------------------------ download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server laid out like raw.githubusercontent.com: <repo>/<commit>/<path>."""
    site = tmp_path / "site"
    base = site / "owner" / "repo" / "c0ffee"
    (base / "data").mkdir(parents=True)
    (base / "data" / "a.csv").write_text(
        "\ufefflabel,text\n1,好评\n0,\"两行\r\n文本\"\n", encoding="utf-8")
    (base / "数据").mkdir()
    (base / "数据" / "b.tsv").write_text("label\ttext_a\n1\t沙发\n0\t含,逗号\n", encoding="utf-8")
    other = site / "other" / "repo2" / "beef"
    other.mkdir(parents=True)
    (other / "c.jsonl").write_text(
        json.dumps({"text": "抱抱你", "label": 1}, ensure_ascii=False) + "\n"
        + json.dumps({"text": "加油", "label": 0}, ensure_ascii=False) + "\n", encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def registry(monkeypatch):
    files = {
        "demo_csv": Corpus("demo_csv", "owner/repo", "c0ffee", "MIT", "test",
                           (CorpusFile("a.csv.gz", "text", "label", "data/a.csv"),)),
        "demo_tsv": Corpus("demo_tsv", "owner/repo", "c0ffee", "MIT", "test",
                           (CorpusFile("b.csv.gz", "text_a", "label", "数据/b.tsv", "tsv"),)),
        "demo_jsonl": Corpus("demo_jsonl", "owner/repo", "c0ffee", "MIT", "test",
                             (CorpusFile("c.jsonl.gz", "text", "label", "c.jsonl", "jsonl",
                                         source_repo="other/repo2", source_commit="beef"),)),
        "demo_manual": Corpus("demo_manual", "owner/repo", "c0ffee", "MIT", "test",
                              (CorpusFile("d.csv.gz", "text"),)),
        "demo_missing": Corpus("demo_missing", "owner/repo", "c0ffee", "MIT", "test",
                               (CorpusFile("e.csv.gz", "text", None, "nope.csv"),)),
        "demo_unusable": Corpus("demo_unusable", "owner/repo", "c0ffee", "NC-ND", "test",
                                (CorpusFile("f.csv.gz", "text", None, "data/a.csv"),),
                                usable=False),
    }
    monkeypatch.setattr(corpora_mod, "CORPORA", files)
    return files


def _texts(path, cf):
    return [row_text(rec, cf) for _, rec in iter_rows(path, cf)]


def test_download_from_local_server(server, registry, tmp_path):
    dest = tmp_path / "dl"
    report = download(dest, base_url=server, timeout=5)
    assert report["demo_csv/a.csv.gz"] == "ok"
    assert report["demo_tsv/b.csv.gz"] == "ok"
    assert report["demo_jsonl/c.jsonl.gz"] == "ok"
    assert report["demo_manual/d.csv.gz"].startswith("manual: ")
    assert report["demo_missing/e.csv.gz"].startswith("error: ")
    assert "404" in report["demo_missing/e.csv.gz"]
    assert "demo_unusable/f.csv.gz" not in report  # never fetched
    assert not (dest / "demo_unusable").exists()

    csv_file = dest / "demo_csv" / "a.csv.gz"
    assert _texts(csv_file, registry["demo_csv"].files[0]) == ["好评", "两行\r\n文本"]
    raw = gzip.decompress(csv_file.read_bytes()).decode("utf-8")
    assert raw.startswith('"label","text"\n')  # BOM dropped, every field quoted
    assert _texts(dest / "demo_tsv" / "b.csv.gz", registry["demo_tsv"].files[0]) == ["沙发", "含,逗号"]
    header = next(csv.reader(io.StringIO(gzip.decompress(
        (dest / "demo_tsv" / "b.csv.gz").read_bytes()).decode("utf-8"))))
    assert header == ["label", "text_a"]
    assert _texts(dest / "demo_jsonl" / "c.jsonl.gz", registry["demo_jsonl"].files[0]) == ["抱抱你", "加油"]
    assert not list(dest.rglob("*.part"))

    again = download(dest, corpora=["demo_csv"], base_url=server, timeout=5)
    assert again == {"demo_csv/a.csv.gz": "exists"}


def test_download_command(server, registry, tmp_path):
    dest = tmp_path / "dl"
    r = runner.invoke(app, ["corpora", "download", str(dest), "--base-url", server,
                            "--corpus", "demo_csv", "--corpus", "demo_jsonl", "--timeout", "5"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[:2] == ["demo_csv/a.csv.gz      ok", "demo_jsonl/c.jsonl.gz  ok"]
    assert "2 downloaded, 0 already present, 0 to stage by hand, 0 failed" in r.output

    r = runner.invoke(app, ["corpora", "download", str(dest), "--base-url", server, "--timeout", "5"])
    assert r.exit_code == 1  # one file failed
    assert "1 downloaded, 2 already present, 1 to stage by hand, 1 failed" in r.output

    r = runner.invoke(app, ["corpora", "download", str(dest), "--corpus", "nosuch"])
    assert r.exit_code == 2
    assert "unknown corpus ['nosuch']" in r.output

    r = runner.invoke(app, ["corpora", "download", str(dest), "--corpus", "demo_unusable"])
    assert r.exit_code == 2
    assert "['demo_unusable'] excluded: the license does not allow zhenping to use it (NC-ND)" in r.output
