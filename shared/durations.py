"""Durations: the one grammar every option that takes a time accepts, and the one way a duration
is shown to people.

Grammar (:func:`parse_duration`): one or more ``<number><unit>`` terms, summed, white space
allowed between them — ``90s``, ``45m``, ``10min``, ``2h``, ``1d``, ``1h30m``, ``1.5h``,
``1d 2h``; units ``s``/``sec``/``secs``/``second(s)``, ``m``/``min``/``mins``/``minute(s)``,
``h``/``hr``/``hour(s)``, ``d``/``day(s)``, ``w``/``week(s)``; case is ignored.  A bare number is
**seconds**, everywhere (``--budget 600``, ``--within 600``, ``--recommend-at 600``).

Display (:func:`format_duration`): the largest unit the duration reaches (s, min, h, day(s),
week(s)) with three significant digits: ``45 s``, ``10 min``, ``1.5 h``, ``1 day``, ``2 days``;
:func:`hours` where a table or a projection speaks in hours throughout.  :data:`ROUND_SECONDS`: the
round durations people name (a recommendation's budgets, an axis's ticks).
"""
from __future__ import annotations

import math
import re

from shared.errors import VibesError

#: unit -> seconds
UNITS: dict[str, float] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400.0),
}
HOUR = UNITS["h"]
DAY = UNITS["d"]
#: the round durations people name, in seconds: the budgets a recommendation is given at
#: (:func:`simulate.recommend.scale_budgets`) and the ticks of a time axis (:func:`simulate.report.time_ticks`)
ROUND_SECONDS = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, HOUR, 2 * HOUR,
                 4 * HOUR, 8 * HOUR, 12 * HOUR, DAY, 2 * DAY, 4 * DAY, 7 * DAY, 14 * DAY, 28 * DAY)
EXAMPLES = "90s, 45m, 10min, 2h, 1d, 1h30m, 1.5h or plain seconds"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_TERM = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")


def parse_duration(text: str | float | int, option: str = "duration") -> float:
    """``text`` -> seconds (> 0, finite); a :class:`~shared.errors.VibesError` naming ``option``
    and the grammar otherwise.  Numbers (int/float) are seconds."""
    seconds: float | None = None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        if re.fullmatch(_NUMBER, raw):
            seconds = float(raw)
        elif raw:
            pos, total = 0, 0.0
            for m in _TERM.finditer(raw):
                if m.start() != pos or m.group(2) not in UNITS:
                    break
                total += float(m.group(1)) * UNITS[m.group(2)]
                pos = m.end()
            else:
                if pos == len(raw):
                    seconds = total
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise VibesError(f"{option} {str(text)!r}: expected a positive duration such as {EXAMPLES}")
    return seconds


def parse_durations(text: str, option: str = "duration") -> list[float]:
    """A comma list of durations -> sorted unique seconds (``10min,1h30m,1d``)."""
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise VibesError(f"{option} {str(text)!r}: expected a comma list of durations such as 10min,1h,1d")
    return sorted({parse_duration(t, option) for t in items})


_DISPLAY = (("week", 7 * 86400.0), ("day", 86400.0), ("h", 3600.0), ("min", 60.0))


def format_duration(seconds: float | None) -> str:
    """Seconds as people read them: ``45 s``, ``10 min``, ``1.5 h``, ``1 day``, ``2 days``;
    ``-`` for None or a non-finite value."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "-"
    s = float(seconds)
    for unit, size in _DISPLAY:
        if abs(s) >= size:
            v = s / size
            plural = "s" if unit in ("day", "week") and f"{v:.3g}" != "1" else ""
            return f"{v:.3g} {unit}{plural}"
    return f"{s:.3g} s"


def hours(seconds: float | None) -> str:
    """Seconds as a number of hours, three significant digits (``5400`` -> ``1.5``); ``?`` for None."""
    return "?" if seconds is None else f"{float(seconds) / HOUR:.3g}"


__all__ = ["UNITS", "HOUR", "DAY", "ROUND_SECONDS", "EXAMPLES", "parse_duration", "parse_durations",
           "format_duration", "hours"]
