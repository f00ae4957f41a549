"""Options in sections in ``--help`` and ``--config FILE.toml`` (issue 25 item 4).

``precompute run``, ``precompute search`` and ``simulate`` show their options in sections, in a fixed
order, each option in exactly one; ``run`` and ``search`` take every option from a TOML file under its
own name, the command line overriding it; a bad key or value is one line (exit 2) and nothing is written;
the resolved configuration (value and source of every option) is recorded in search.json and in the
run's manifest.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_precompute_cli import pool_file  # noqa: F401  (fixture)
from test_search import fake_pool, fakes  # noqa: F401  (fixture)
from test_sweep import data_cache, fast  # noqa: F401  (fixtures)

from precompute import pool as pool_mod
from precompute.cli import main as precompute_main
from simulate.cli import main as simulate_main

pytestmark = pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning")

SECTIONS = {
    ("precompute", "search"): ["Common", "Budget and strategy", "Data", "Devices", "Cluster", "Deployment limits"],
    ("precompute", "run"): ["Common", "Evaluation", "Data", "Devices and shards", "Cluster"],
    ("simulate",): ["Commands (`simulate COMMAND --help` for each)", "Common", "Budget and strategy", "Oracle",
                    "Costs on your hardware", "Deployment limits"],
}

def shown_options(command: tuple[str, ...]) -> set[str]:
    """Every option the command shows (click's own list: not hidden), each by its long name, and --help."""
    import click

    from precompute.cli import cli
    from simulate.cli import simulate

    cmd = simulate if command[0] == "simulate" else cli.commands[command[1]]
    return {max(p.opts, key=len) for p in cmd.params if isinstance(p, click.Option) and not p.hidden} | {"--help"}

ROW = re.compile(r"^ {2,6}(?:-h {2})?(--[a-z][a-z-]*)")  # an option's row (not a wrapped help line)


def help_of(capsys, command: tuple[str, ...]) -> str:
    main = simulate_main if command[0] == "simulate" else precompute_main
    assert main([*command[1:], "--help"]) == 0
    return capsys.readouterr().out


def sections_of(text: str) -> dict[str, list[str]]:
    """Each heading of the help (a line ``Title:``; not Usage or Examples) -> the options of its rows."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.fullmatch(r"([A-Z][^:]*):", line)
        if heading:
            current = heading.group(1) if heading.group(1) != "Examples" else None
            if current:
                found[current] = []
            continue
        row = ROW.match(line)
        if current is not None and row:
            found[current].append(row.group(1))
    return found


@pytest.mark.parametrize("command", list(SECTIONS))
def test_help_shows_the_options_in_sections_in_order(capsys, command):
    text = help_of(capsys, command)
    found = sections_of(text)
    assert list(found) == SECTIONS[command]
    options = [o for title, opts in found.items() if not title.startswith("Commands") for o in opts]
    assert len(options) == len(set(options)) and set(options) == shown_options(command), options  # each once
    assert "--help" in found["Common"] and found["Common"][0] == ("--config" if command[0] == "precompute"
                                                                  else "--oracle")
    assert "Options:" not in text.splitlines()  # no option is left outside a section
    assert "Examples:" in text and not any(line != line.rstrip() for line in text.splitlines())


def test_the_examples_keep_their_lines(capsys):
    """The epilog's ``\\b`` block is shown as written: each example line is a line of the help."""
    from precompute.cli.search import SEARCH_EPILOG

    lines = help_of(capsys, ("precompute", "search")).splitlines()
    for line in SEARCH_EPILOG.removeprefix("\b\n").splitlines():
        assert line.rstrip() in lines, line


def write_toml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def search_toml(tmp_path, data_cache) -> str:  # noqa: F811
    return write_toml(tmp_path / "search.toml", f"""\
dataset = "digits"
budget = "1h"
strategy = "cycling"
evaluator = "mlp@0.1"
pool = ["fake_*", "extra"]
weights = "random"
device = "cpu"
cache-dir = {json.dumps(data_cache)}
out = {json.dumps(str(tmp_path / "search"))}
no-progress = true
top = 3
""")


def test_a_toml_file_drives_a_search_and_the_command_line_wins(fakes, data_cache, tmp_path, capsys,  # noqa: F811
                                                               monkeypatch):
    asked = []
    monkeypatch.setattr(pool_mod, "resolve_pool", lambda pools, **kw: asked.append(pools) or fake_pool(3, 0))
    config = search_toml(tmp_path, data_cache)
    code = precompute_main(["search", "--config", config, "--budget", "45m", "--seed", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert asked == [("fake_*", "extra")]  # a list in the file: the repeatable option's values, in order
    doc = json.loads((tmp_path / "search" / "search.json").read_text())
    assert doc["budget"] == "45m" and doc["budget_s"] == 2700 and doc["seed"] == 2 and doc["weights"] == "random"
    assert doc["strategy"] == "cycling" and doc["evaluator"] == "mlp@0.1"
    config_doc = doc["config"]
    assert config_doc["file"] == config
    options = config_doc["options"]
    assert options["budget"] == {"value": "45m", "from": "command line"}
    assert options["seed"] == {"value": 2, "from": "command line"}
    assert options["strategy"] == {"value": "cycling", "from": "file"}
    assert options["pool"] == {"value": ["fake_*", "extra"], "from": "file"}
    assert options["no-progress"] == {"value": True, "from": "file"}
    assert options["top"] == {"value": 3, "from": "file"}
    assert options["eta"] == {"value": 3, "from": "default"} and options["partition"] == {"value": None,
                                                                                          "from": "default"}
    help_options = {o.removeprefix("--") for opts in sections_of(help_of(capsys, ("precompute", "search"))).values()
                    for o in opts} - {"help", "config"}
    assert set(options) == help_options  # every option, under the name the file takes


def test_a_toml_file_drives_a_run_recorded_in_its_manifest(capsys, tmp_path, data_cache, pool_file, fast):  # noqa: F811
    config = write_toml(tmp_path / "run.toml", f"""\
dataset = "digits"
pool = [{json.dumps(pool_file)}]
weights = "random"
device = "cpu"
seeds = 2
fractions = "1.0"
evaluators = "mlp,silhouette"
no-progress = true
cache-dir = {json.dumps(data_cache)}
parts-dir = {json.dumps(str(tmp_path / "parts"))}
out = {json.dumps(str(tmp_path / "oracles"))}
wait = false
""")
    code = precompute_main(["run", "--config", config, "--seeds", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sweep done: 2 ok, 0 failed" in out and (tmp_path / "oracles" / "digits.parquet").exists()
    manifest = json.loads((tmp_path / "parts" / "digits" / "manifest.json").read_text())
    assert manifest["meta"]["protocol"]["seeds"] == [0]  # the command line's 1, not the file's 2
    recorded = manifest["meta"]["config"]
    assert recorded["file"] == config
    assert recorded["options"]["seeds"] == {"value": 1, "from": "command line"}
    assert recorded["options"]["evaluators"] == {"value": "mlp,silhouette", "from": "file"}
    assert recorded["options"]["wait"] == {"value": False, "from": "file"}
    assert recorded["options"]["batch-size"] == {"value": 256, "from": "default"}


RUN_KEYS = ("array-parallelism, batch-size, cache-dir, cpus-per-job, data-root, dataset, device, download, "
            "evaluators, evict-weights, format, fractions, gpus-per-job, include-test-models, input-size, "
            "keep-features, launcher, mem-gb, no-progress, out, partition, parts-dir, pool, pretrained-file, "
            "retry-failed, seeds, shard, shards, slurm-arg, time-limit, truth, wait, wait-timeout, weights")


@pytest.mark.parametrize("command, text, message", [
    ("run", 'pools = ["a"]\n', f"unknown key 'pools' (did you mean pool?); valid keys: {RUN_KEYS}"),
    ("run", "gpus = 2\n", f"unknown key 'gpus'; valid keys: {RUN_KEYS}"),
    ("run", 'seeds = "3"\n', "seeds must be an integer; got '3'"),
    ("run", "seeds = true\n", "seeds must be an integer; got true"),
    ("run", 'pool = "a.parquet"\n', 'pool must be a list of strings, e.g. pool = ["a", "b"]; got \'a.parquet\''),
    ("run", 'wait = "no"\n', "wait must be true or false; got 'no'"),
    ("run", 'format = "csv"\n', "format must be one of parquet, hdf5; got 'csv'"),
    ("run", "[slurm]\npartition = 'gpu'\n", "unknown key 'slurm' (did you mean slurm-arg?)"),
    ("search", "budget = 90\n", "budget must be a string; got 90"),
    ("search", "mem-gb = 'x'\n", "mem-gb must be a number; got 'x'"),
    ("search", "partition = ['gpu']\n", "partition must be a string; got ['gpu']"),
    ("search", "budget = \n", "not a TOML file: "),
])
def test_a_bad_config_file_is_one_line_exit_2_and_nothing_written(capsys, tmp_path, command, text, message):
    config = write_toml(tmp_path / "bad.toml", text)
    out_dir = tmp_path / "out"
    code = precompute_main([command, "--config", config, "--out", str(out_dir), "--parts-dir" if command == "run"
                            else "--top", str(tmp_path / "parts") if command == "run" else "3"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: --config {config}: {message}"), lines[0]
    assert not out_dir.exists() and not (tmp_path / "parts").exists()


def test_a_missing_config_file_is_one_line(capsys, tmp_path):
    code = precompute_main(["search", "--config", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: --config {tmp_path / 'nope.toml'}: no such file\n"


def test_the_run_keys_are_its_help_options(capsys):
    """The valid keys the refusal lists are the options ``run --help`` shows (but --config and --help)."""
    shown = {o.removeprefix("--") for opts in sections_of(help_of(capsys, ("precompute", "run"))).values()
             for o in opts} - {"help", "config"}
    assert sorted(shown) == RUN_KEYS.split(", ")


def test_the_readme_shows_the_example_file_and_it_is_a_valid_search_config(monkeypatch):
    """The README's ```toml block is examples/search-demo.toml (but its comment lines), and search takes it."""
    from precompute.cli import cli

    repo = Path(__file__).resolve().parents[1]
    example = repo / "examples" / "search-demo.toml"
    blocks = re.findall(r"```toml\n(.*?)```", (repo / "README.md").read_text(), re.S)
    assert blocks == ["".join(line for line in example.read_text().splitlines(keepends=True)
                              if not line.startswith("#"))]
    monkeypatch.chdir(repo)  # the file's paths are the README's: relative to the project
    ctx = cli.commands["search"].make_context("search", ["--config", str(example), "--budget", "1m"])
    assert ctx.params["budget"] == "1m" and ctx.params["pools"] == ("data/pool-5m.parquet",)
    assert ctx.params["input_size"] == 32 and ctx.params["out"] == "out/search-demo"
