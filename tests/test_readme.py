"""The README as a new user runs it (issue 17): every command of every ```bash block, top to bottom, as
written, in a temporary copy of the project; each exits 0 (or is listed below with the reason it
cannot run here), and none changes what an earlier command produced.

Not run: the commands in :data:`NOT_HERE` (a download, a GPU's hours, a path on the user's machine,
this suite itself).  Run only with ``VIBES_README_SLOW=1``: :data:`SLOW` (minutes each on a 2-core
CPU; their figures are in the closing notes of the issues).  A command in neither list runs: a new
command in the README is tested by default.

The copy shares the project's ``.venv`` (a symlink; the console scripts run this checkout's code) and
sees ``../shared`` as the README assumes.  What the commands write under ``data/`` and ``out/`` is
fingerprinted after each one; a later command may add files but not change an earlier one's, except
the commands of :data:`CONTINUES` (documented as continuing an earlier one)."""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: command prefix -> why it does not run in this test
NOT_HERE = {
    "make test": "this test suite itself",
    "make install-cpu": "downloads PyTorch's CPU wheels from download.pytorch.org",
    "make install": "with TORCH_SPEC: downloads PyTorch's CPU wheels from download.pytorch.org",
    "make precompute": "downloads a dataset and evaluates the whole pool (hours on a GPU)",
    ".venv/bin/precompute run --dataset gtsrb": "gtsrb is a download",
    ".venv/bin/precompute merge --dataset gtsrb": "needs the gtsrb parts of the command before",
    ".venv/bin/precompute fetch": "downloads pretrained weights",
    ".venv/bin/precompute search --dataset folder:/data/my_images": "a folder on the user's machine",
}
#: command prefix -> why it runs only with VIBES_README_SLOW=1
SLOW = {
    ".venv/bin/precompute check --pool 'convnext_*'": "loads every ConvNeXt on the CPU (tens of minutes)",
    ".venv/bin/precompute estimate --dataset gtsrb": "times 12 backbones at 224 px on the CPU",
    "make bench": "benchmarks (minutes each; bench-gpu wants a GPU)",
    ".venv/bin/python bench/": "benchmarks",
}
#: commands that continue an earlier one (they may change its outputs)
CONTINUES: tuple[str, ...] = (
    # the offline search demo again, from examples/search-demo.toml: nothing new to evaluate, but search.json
    # now records that its options came from the file
    ".venv/bin/precompute search --config examples/search-demo.toml",
)
#: a latency limit on this machine's measured latencies may leave nothing on a slow host: the README
#: says that this is a one-line error, which is then accepted
TIMING_DEPENDENT = {"--latency-device data/latency-here.csv": "no backbone of the oracle's pool"}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def _reason(command: str, table: dict[str, str]) -> str | None:
    return next((why for prefix, why in table.items() if command.startswith(prefix)), None)


def _fingerprints(root: Path) -> dict[str, str]:
    """sha1 of every file the commands produce for the user (data/ and out/, caches and parts aside)."""
    out = {}
    for top in ("data", "out"):
        for p in (root / top).rglob("*") if (root / top).is_dir() else ():
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not rel.startswith(("data/cache/", "data/parts/", "data/datasets/")):
                out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _copy_project(dst: Path) -> Path:
    """The tracked and untracked-but-not-ignored files of the checkout (a fresh clone's view), the
    project's .venv linked, ../shared linked beside it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    repo = dst / "repo"
    for rel in listed:
        src = REPO / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / ".venv").symlink_to(REPO / ".venv")
    (dst / "shared").symlink_to(REPO.parent / "shared")
    installed = REPO / ".venv" / ".installed"
    if installed.exists():  # make's install rule must see the venv as up to date (never reinstall from the copy)
        t = installed.stat().st_mtime - 1
        os.utime(repo / "pyproject.toml", (t, t))
    return repo


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "precompute").exists(),
                    reason="the README's commands run the project's .venv (make install)")
@pytest.mark.skipif(not (REPO.parent / "shared" / "timm-results").is_dir(),
                    reason="the README's simulate commands read ../shared/timm-results")
def test_readme_commands_run_in_order(tmp_path):
    commands = readme_commands()
    assert commands[:2] == ["make demo", "make test"], commands[:2]
    repo = _copy_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBES_")}
    slow = os.environ.get("VIBES_README_SLOW") == "1"
    produced: dict[str, str] = {}
    ran, skipped = [], []
    for cmd in commands:
        why = _reason(cmd, NOT_HERE) or (None if slow else _reason(cmd, SLOW))
        if why:
            skipped.append((cmd, why))
            continue
        t0 = time.monotonic()
        p = subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
        ran.append((cmd, round(time.monotonic() - t0, 1)))
        timing = next((msg for key, msg in TIMING_DEPENDENT.items() if key in cmd), None)
        if timing and p.returncode == 2:
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and timing in lines[0], (cmd, p.stderr[-3000:])
        else:
            assert p.returncode == 0, (cmd, p.stdout[-3000:], p.stderr[-3000:])
        assert "Traceback" not in p.stderr, (cmd, p.stderr[-3000:])
        now = _fingerprints(repo)
        if not any(cmd.startswith(c) for c in CONTINUES):
            changed = [f for f, h in produced.items() if now.get(f) != h]
            assert not changed, f"{cmd!r} changed what an earlier command produced: {changed[:5]}"
        produced.update(now)
    print("\nREADME commands run (seconds):")
    for cmd, s in ran:
        print(f"  {s:7.1f}  {cmd}")
    print("not run:")
    for cmd, why in skipped:
        print(f"  {cmd}  -- {why}")
    assert len(ran) >= 15  # the README's offline story runs; the list above says what did not


def test_every_readme_command_is_classified_or_runnable():
    """The lists above name commands that exist (a README edit does not leave a stale reason)."""
    commands = readme_commands()
    for table in (NOT_HERE, SLOW):
        for prefix in table:
            assert any(c.startswith(prefix) for c in commands), f"no README command starts with {prefix!r}"
    for key in TIMING_DEPENDENT:
        assert any(key in c for c in commands), key
