"""Known-vulnerability audit of the service's runtime dependencies.

    python .ci/audit.py lock    # write requirements.lock from the installed environment
    python .ci/audit.py         # audit requirements.lock with pip-audit

``requirements.lock`` pins every package the ``zhenping`` runtime needs (its
``[project] dependencies`` and theirs, extras such as ``uvicorn[standard]``
included, markers evaluated here), at the versions installed. Local version
labels (``torch 2.13.0+cpu``) are written without the label, as published.

The audit runs ``pip-audit --no-deps --disable-pip -r requirements.lock``
against the PyPI vulnerability data and

* fails (exit 1) on a known vulnerability not listed in
  ``.ci/pip-audit-ignore.txt`` (one id per line, ``# reason, date`` after it);
* passes with a loud ``AUDIT NOT PERFORMED`` notice (exit 0) when the
  vulnerability service cannot be reached or knows none of the packages, so
  that an offline or mirrored CI does not fail for a reason unrelated to the
  code; the notice names how many packages went unchecked;
* exits 2 on its own usage errors (no lock file).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
IGNORE = Path(__file__).resolve().parent / "pip-audit-ignore.txt"
PROJECT = "zhenping"


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""}))


def runtime_closure(project: str = PROJECT) -> dict[str, str]:
    """``{name: version}`` of every installed package the project's runtime needs."""
    found: dict[str, str] = {}
    queue: list[tuple[str, set[str]]] = [(project, set())]
    seen: set[tuple[str, frozenset]] = set()
    while queue:
        name, extras = queue.pop()
        key = (canonicalize_name(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed; install the project first (pip install -e .)")
        if canonicalize_name(name) != canonicalize_name(project):
            found[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if _wanted(req, extras):
                queue.append((req.name, set(req.extras)))
    return dict(sorted(found.items()))


def write_lock() -> None:
    pins = runtime_closure()
    lines = [
        f"# Runtime dependencies of {PROJECT} as installed, for `python .ci/audit.py` (pip-audit).",
        "# Regenerate with: python .ci/audit.py lock",
    ]
    lines += [f"{name}=={version.split('+')[0]}" for name, version in pins.items()]
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(pins)} pins to {LOCK.relative_to(ROOT)}")


def ignored_ids() -> list[str]:
    if not IGNORE.is_file():
        return []
    ids = []
    for line in IGNORE.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            ids.append(entry)
    return ids


def audit() -> int:
    if not LOCK.is_file():
        print(f"{LOCK} does not exist; run: python .ci/audit.py lock", file=sys.stderr)
        return 2
    ignores = ignored_ids()
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip",
           "--vulnerability-service", "pypi", "--progress-spinner", "off", "--format", "json"]
    for vuln_id in ignores:
        cmd += ["--ignore-vuln", vuln_id]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return _not_performed("pip-audit did not finish in 15 minutes")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return _not_performed(f"pip-audit exited {proc.returncode} without a report: {reason}")

    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [(d, v) for d in audited for v in d.get("vulns", [])]
    if vulnerable:
        print(f"pip-audit: {len(vulnerable)} known vulnerabilities in {len({d['name'] for d, _ in vulnerable})} "
              "runtime packages:")
        for dep, vuln in vulnerable:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            aliases = ", ".join(vuln.get("aliases", []))
            print(f"  {dep['name']} {dep['version']}: {vuln['id']}{f' ({aliases})' if aliases else ''}; fixed in {fixes}")
        print(f"Upgrade them, or list an id in {IGNORE.relative_to(ROOT)} with the reason it does not apply.")
        return 1
    if not audited:
        return _not_performed(f"the vulnerability service knew none of the {len(deps)} packages "
                              f"({_reason_summary(skipped)})")
    print(f"pip-audit: no known vulnerabilities in {len(audited)} runtime packages"
          + (f" ({len(ignores)} ids ignored, see {IGNORE.relative_to(ROOT)})" if ignores else ""))
    if skipped:
        print(f"  not checked ({len(skipped)}): " + ", ".join(f"{d['name']} {d.get('version', '')}".strip()
                                                        for d in skipped))
    return 0


def _reason_summary(skipped: list[dict]) -> str:
    reasons = {re.sub(r":.*", "", d["skip_reason"]) for d in skipped}
    return "; ".join(sorted(reasons)) or "no reason given"


def _not_performed(reason: str) -> int:
    print("=" * 72)
    print("AUDIT NOT PERFORMED: " + reason + ".")
    print("No vulnerability data was checked; this is not a pass. Run `python .ci/audit.py`")
    print("where https://pypi.org/pypi/<name>/<version>/json answers with vulnerability data.")
    print("=" * 72)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["lock"]:
        write_lock()
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    return audit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
