"""``--config FILE.toml`` of ``precompute run`` and ``precompute search``: every option of the command under
its own name (``budget = "2h"``, ``strategy = "cycling"``, ``pool = ["a", "b"]`` for a repeatable option,
``no-progress = true`` for a flag), read into click's ``default_map`` before any other option, so an option
given on the command line overrides the file.  An unknown key or a value of the wrong type is refused in one
line that names the key and what it takes, before anything is read or written.

:func:`resolved_config` is what the outputs record: each option's final value and where it came from (the
command line, the file, the default).
"""
from __future__ import annotations

import difflib
import sys

import click

from shared.errors import VibesError

FILE_KEY = "vibes_config_file"  # ctx.meta: the --config file given
#: click's parameter sources as the recorded configuration names them
SOURCES = {"COMMANDLINE": "command line", "DEFAULT_MAP": "file", "DEFAULT": "default",
           "ENVIRONMENT": "environment", "PROMPT": "prompt"}


def config_option(f):
    """``--config FILE.toml``: the command's options from a TOML file (read first; the command line wins)."""
    return click.option("--config", type=click.Path(dir_okay=False), metavar="FILE.toml", is_eager=True,
                        expose_value=False, callback=_read_config,
                        help="Options from a TOML file, each under its own name (budget = \"2h\", pool = [\"a\", "
                             "\"b\"], no-progress = true); an option given here on the command line wins.")(f)


def option_keys(command: click.Command) -> dict[str, click.Option]:
    """The keys a config file may hold for ``command``: each shown option's long name (no ``--config``)."""
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden and param.expose_value:
            keys[max(param.opts, key=len).lstrip("-")] = param
    return keys


def _read_config(ctx: click.Context, param, path) -> None:
    if path is None:
        return
    values = _load_toml(path)
    keys = option_keys(ctx.command)
    defaults = {}
    for key, value in values.items():
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=1)
            raise VibesError(f"--config {path}: unknown key {key!r}" + (f" (did you mean {near[0]}?)" if near else "")
                             + f"; valid keys: {', '.join(sorted(keys))}")
        option = keys[key]
        what, ok = _kind(option)
        if not ok(value):
            raise VibesError(f"--config {path}: {key} must be {what}; got {_shown(value)}")
        defaults[option.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[FILE_KEY] = str(path)


def _load_toml(path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: the tomli backport (a dependency there only)
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise VibesError(f"--config {path}: no such file") from None
    except OSError as exc:
        raise VibesError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VibesError(f"--config {path}: not a TOML file: {exc}") from None


def _kind(option: click.Option):
    """(what the key takes, in words; a check of a TOML value)."""
    t = option.type
    if option.is_flag and option.is_bool_flag:
        what, ok = "true or false", lambda v: isinstance(v, bool)
    elif isinstance(t, click.Choice):
        what, ok = f"one of {', '.join(map(str, t.choices))}", lambda v: isinstance(v, str) and v in t.choices
    elif isinstance(t, click.types.IntParamType):
        what, ok = "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    elif isinstance(t, click.types.FloatParamType):
        what, ok = "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        what, ok = "a string", lambda v: isinstance(v, str)
    if not option.multiple:
        return what, ok
    plural = {"a string": "strings", "an integer": "integers", "a number": "numbers"}.get(what, f"values ({what})")
    key = max(option.opts, key=len).lstrip("-")
    return (f'a list of {plural}, e.g. {key} = ["a", "b"]' if plural == "strings" else f"a list of {plural}",
            lambda v: isinstance(v, list) and all(map(ok, v)))


def _shown(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def resolved_config(ctx: click.Context | None = None) -> dict:
    """The command's configuration as it runs: ``{"file": the --config file or None, "options": {key:
    {"value": ..., "from": "command line" | "file" | "default" | "environment"}}}``, keys as in the file."""
    ctx = ctx or click.get_current_context()
    options = {}
    for key, option in option_keys(ctx.command).items():
        value = ctx.params.get(option.name)
        source = ctx.get_parameter_source(option.name)
        options[key] = {"value": list(value) if isinstance(value, tuple) else value,
                        "from": SOURCES.get(source.name, source.name.lower()) if source is not None else "default"}
    return {"file": ctx.meta.get(FILE_KEY), "options": options}


__all__ = ["config_option", "option_keys", "resolved_config"]
