"""Options in sections in ``--help`` (``simulate``, ``precompute run``, ``precompute search``): rich-click's
option panels, with one plain look for every command that has them -- a heading per section, click's
columns (``--option TYPE  help``), no boxes, the epilog's examples kept line for line.

The sections are declared where the command is (:func:`sections`: a title and its options, in the order
``--help`` shows them).  rich-click is imported here (light: rich itself loads only when a help is drawn).
"""
from __future__ import annotations

from collections.abc import Sequence

import rich_click
from rich_click.rich_panel import RichOptionPanel

#: rich-click's look for every sectioned command: "plain-slim" (headings, no boxes, no colour) with click's
#: own columns and markers, and no markup in help texts (``<evaluator>[@<fraction>]`` stays as written)
HELP_CONFIG = {
    "theme": "plain-slim",
    "enable_theme_env_var": False,
    "text_markup": None,
    "max_width": 100,
    "options_table_column_types": ["opt_short", "opt_long", "metavar", "help"],
    "options_table_help_sections": ["help", "envvar", "default", "required"],
    "default_string": "\\[default: {}]",  # rich markup: \\[ is a bracket
    "required_long_string": "\\[required]",
    "envvar_string": "\\[env var: {}]",
    "commands_before_options": True,
}


class SectionedCommand(rich_click.RichCommand):
    """A rich-click command whose epilog keeps click's ``\\b`` rule: a paragraph that starts with ``\\b``
    is shown as written (the examples), any other is rewrapped."""

    def format_epilog(self, ctx, formatter) -> None:
        if not self.epilog:
            return
        from rich.text import Text  # lazy: rich loads only when a help is drawn

        paragraphs = [p.removeprefix("\b\n").rstrip("\n") if p.startswith("\b") else " ".join(p.split())
                      for p in self.epilog.split("\n\n")]
        formatter.write(Text("\n\n".join(paragraphs)), no_wrap=True, overflow="ignore", crop=False)

    def get_help(self, ctx) -> str:
        """The help without the spaces rich pads each line with."""
        return _unpadded(super().get_help(ctx))

    def get_usage(self, ctx) -> str:
        """The usage line(s) of an error message, as click writes them (no padding, no blank line)."""
        return _unpadded(super().get_usage(ctx))


def _unpadded(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


class SectionedGroup(SectionedCommand, rich_click.RichGroup):
    """:class:`SectionedCommand` for a group (``simulate``)."""


def sections(*panels: tuple[str, Sequence[str]], **config):
    """Decorate a command (above its ``@click.command(cls=SectionedCommand)``) with its sections:
    ``(title, ["--option", ...])`` in the order ``--help`` shows them; ``--help`` belongs in the first.
    ``config``: more rich-click settings (e.g. ``commands_panel_title``)."""
    def deco(command: rich_click.RichCommand) -> rich_click.RichCommand:
        for title, options in panels:
            command.add_panel(RichOptionPanel(title, options=list(options)))
        command.context_settings["rich_help_config"] = {**HELP_CONFIG, **config}
        return command
    return deco


__all__ = ["HELP_CONFIG", "SectionedCommand", "SectionedGroup", "sections"]
