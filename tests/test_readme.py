"""The README as a new user runs it (issue 17): every command of every ```bash block, as written, in a
temporary copy of the project; each exits 0 (or is listed below with the reason it cannot run here), and
none changes what an earlier command produced.

The commands run in chains (:func:`chains`): a command that reads what an earlier one wrote is named in
:data:`AFTER` and runs after it, in the same copy, in the README's order; every other command starts a
chain of its own.  Chains run in parallel (pytest-xdist), each in its own copy; a command whose input
is missing from its chain fails there, so a dependency left out of :data:`AFTER` cannot pass unseen.
Each chain writes what it produced where the other chains of the session read it: the same file
written with other contents by two chains fails the later one (:func:`_check_across_chains`).

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
import json
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
#: command prefix -> prefix of the earlier command whose outputs it reads
AFTER = {
    ".venv/bin/simulate --oracle data/oracles/digits.parquet": "make demo",
    ".venv/bin/simulate compare out/sh out/demo": ".venv/bin/simulate --oracle data/oracles/digits.parquet",
    ".venv/bin/precompute estimate --dataset digits --pool data/oracles/digits.parquet": "make demo",
    ".venv/bin/precompute latency --pool data/oracles/digits.parquet": "make demo",
    ".venv/bin/simulate --oracle data/oracles/resnet18/digits.parquet":
        ".venv/bin/precompute run --dataset digits --pool 'resnet18.a*'",
    ".venv/bin/precompute search --dataset digits": ".venv/bin/precompute pool --max-params 5 ",
    ".venv/bin/precompute search --config examples/search-demo.toml": ".venv/bin/precompute search --dataset digits",
}
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


def runnable_commands() -> list[str]:
    """The README's commands this test runs, in the README's order."""
    slow = os.environ.get("VIBES_README_SLOW") == "1"
    return [c for c in readme_commands() if not (_reason(c, NOT_HERE) or (None if slow else _reason(c, SLOW)))]


def chains() -> dict[str, list[str]]:
    """The runnable commands grouped by the first command of their chain: a command runs after the earliest
    earlier command its :data:`AFTER` prefix names, and so joins that command's chain."""
    commands = runnable_commands()
    root: dict[int, int] = {}
    for i, cmd in enumerate(commands):
        parent = _reason(cmd, AFTER)
        earlier = [j for j in range(i) if parent is not None and commands[j].startswith(parent)]
        assert parent is None or earlier, f"{cmd!r} runs after {parent!r}, which no earlier command starts with"
        root[i] = root[earlier[0]] if earlier else i
    out: dict[str, list[str]] = {}
    for i, cmd in enumerate(commands):
        out.setdefault(commands[root[i]], []).append(cmd)
    return out


def _chain_id(first: str) -> str:
    return re.sub(r"[^A-Za-z0-9.:@*-]+", "_", first.removeprefix(".venv/bin/"))[:70]


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


def _run(cmd: str, repo: Path, env: dict[str, str]) -> float:
    """One README command in ``repo``: it exits 0 (or, where its figure depends on this machine's speed,
    with the one-line error the README promises), with no traceback; its seconds."""
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    seconds = round(time.monotonic() - t0, 1)
    timing = next((msg for key, msg in TIMING_DEPENDENT.items() if key in cmd), None)
    if timing and p.returncode == 2:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and timing in lines[0], (cmd, p.stderr[-3000:])
    else:
        assert p.returncode == 0, (cmd, p.stdout[-3000:], p.stderr[-3000:])
    assert "Traceback" not in p.stderr, (cmd, p.stderr[-3000:])
    return seconds


def _session_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session sees (the parent of the workers' own base folders)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "readme-chains"
    shared.mkdir(exist_ok=True)
    return shared


def _check_across_chains(produced: dict[str, str], name: str, shared: Path) -> None:
    """Write this chain's files, then compare with the chains already written: a file two chains both
    write must have the same contents (outputs named by the clock, ``out/simulate/<time>``, are new each run)."""
    mine = {f: h for f, h in produced.items() if not f.startswith("out/simulate/")}
    (shared / f"{name}.json").write_text(json.dumps(mine))
    for other in shared.glob("*.json"):
        if other.name == f"{name}.json":
            continue
        theirs = json.loads(other.read_text())
        clash = sorted(f for f in mine.keys() & theirs.keys() if mine[f] != theirs[f])
        assert not clash, f"the chains {name!r} and {other.stem!r} both write {clash[:5]} with other contents"


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "precompute").exists(),
                    reason="the README's commands run the project's .venv (make install)")
@pytest.mark.skipif(not (REPO.parent / "shared" / "timm-results").is_dir(),
                    reason="the README's simulate commands read ../shared/timm-results")
@pytest.mark.parametrize("first", list(chains()), ids=_chain_id)
def test_readme_commands_run(first, tmp_path, tmp_path_factory):
    """One chain of README commands, in order, in a fresh copy of the project."""
    repo = _copy_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBES_")}
    produced: dict[str, str] = {}
    ran = []
    for cmd in chains()[first]:
        ran.append((cmd, _run(cmd, repo, env)))
        now = _fingerprints(repo)
        if not any(cmd.startswith(c) for c in CONTINUES):
            changed = [f for f, h in produced.items() if now.get(f) != h]
            assert not changed, f"{cmd!r} changed what an earlier command produced: {changed[:5]}"
        produced.update(now)
    _check_across_chains(produced, _chain_id(first), _session_dir(tmp_path_factory))
    print("\nREADME commands run (seconds):")
    for cmd, s in ran:
        print(f"  {s:7.1f}  {cmd}")


def test_the_readme_offline_story_runs_here():
    """What the chains run: the README's offline story (at least 15 commands), the rest listed with a reason."""
    commands = readme_commands()
    assert commands[:2] == ["make demo", "make test"], commands[:2]
    ran = [c for chain in chains().values() for c in chain]
    assert sorted(ran) == sorted(runnable_commands()) and len(ran) >= 15, ran
    print("\nnot run:")
    for cmd in commands:
        why = _reason(cmd, NOT_HERE) or _reason(cmd, SLOW)
        if why and cmd not in ran:
            print(f"  {cmd}  -- {why}")


def test_every_readme_command_is_classified_or_runnable():
    """The lists above name commands that exist (a README edit does not leave a stale reason)."""
    commands = readme_commands()
    for table in (NOT_HERE, SLOW):
        for prefix in table:
            assert any(c.startswith(prefix) for c in commands), f"no README command starts with {prefix!r}"
    for key in TIMING_DEPENDENT:
        assert any(key in c for c in commands), key
