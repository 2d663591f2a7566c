"""The Docker image keeps its data in a volume and installs the locked dependencies.

No Docker engine is needed: the Dockerfile is read as text, instruction by instruction.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_data_lives_in_a_declared_volume():
    steps = instructions()
    volumes = [args for word, args in steps if word == "VOLUME"]
    assert volumes == ['["/data"]']
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "ZHENPING_DATA_DIR=/data" in env and "ZHENPING_MODEL_STORE=/data/store" in env
    # The unprivileged user owns the folder before it becomes a volume, so it can write feedback.db.
    words = [word for word, _ in steps]
    chown = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "chown zhenping:zhenping /data" in a)
    assert chown < words.index("VOLUME") < words.index("USER")


def test_the_image_installs_from_the_lock_file():
    steps = instructions()
    runs = [args for word, args in steps if word == "RUN"]
    lock_install = next(i for i, a in enumerate(runs) if "pip install -r requirements.lock" in a)
    package_install = next(i for i, a in enumerate(runs) if "pip install --no-deps ." in a)
    assert lock_install < package_install and "pip check" in runs[package_install]
    assert any(w == "COPY" and a.startswith("requirements.lock") for w, a in steps)
    # The CPU torch installed first is the version the lock pins.
    torch = next(re.search(r"torch==(\S+)", a).group(1) for a in runs if "download.pytorch.org/whl/cpu" in a)
    assert lock_pins()["torch"] == torch


def test_the_lock_covers_every_runtime_dependency():
    """Every package the installed zhenping needs at run time (transitively) is pinned: pip check passes."""
    pins = lock_pins()
    seen, todo = set(), ["zhenping"]
    while todo:
        for raw in metadata.requires(todo.pop()) or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = req.name.lower().replace("_", "-")
            if name not in seen:
                seen.add(name)
                todo.append(name)
    assert sorted(seen - set(pins)) == []


def test_the_readme_shows_the_volume():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docker run --rm -p 8000:8000 -v zhenping-data:/data" in readme


def test_the_image_compiles_the_band_table_and_drops_the_compiler():
    runs = [args for word, args in instructions() if word == "RUN"]
    build = next(a for a in runs if "pip install --no-deps ." in a)
    # The compiler comes before the package's build and leaves in the same layer, and the build
    # checks that the window took the compiled table.
    assert build.index("apt-get install") < build.index("pip install --no-deps .") < build.index("apt-get purge")
    assert "gcc" in build and "MemoryStore().index == 'compiled'" in build
