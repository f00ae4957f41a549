"""The live search's progress bar: the budget spent, moved with the wall clock while an evaluation runs,
and each counted evaluation's line."""
from __future__ import annotations

import sys
import threading
import time

from .record import Slot, score_of


class Progress:
    """A tqdm bar of the budget spent (seconds); while an evaluation runs a thread moves it with
    the wall clock; the postfix names the current backbone and the incumbent."""

    def __init__(self, total: float, initial: float, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm  # lazy: only a search with a bar draws one

            self.bar = tqdm(total=round(total, 1), initial=round(min(initial, total), 1), unit="s",
                            desc="budget", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)

    def show(self, spent: float, current: str | None, best: tuple[str, float] | None) -> None:
        if self.bar is None:
            return
        inc = f"best {best[0]} {best[1]:.4f}" if best else "best -"
        self.bar.set_postfix_str((f"now {current} | " if current else "") + inc, refresh=False)
        self.bar.n = round(min(spent, self.bar.total), 1)
        self.bar.refresh()

    def running(self, base: float, current: str, best) -> None:
        self.idle()
        self.show(base, current, best)
        if self.bar is None:
            return
        self._stop = threading.Event()
        t0 = time.monotonic()

        def tick(stop=self._stop):
            while not stop.wait(0.5):
                self.show(base + time.monotonic() - t0, current, best)

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def idle(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.idle()
        if self.bar is not None:
            self.bar.close()


def progress_line(sl: Slot, spent: float, k: int, sh: bool) -> str:
    got = f"ε̃ {float(sl.row['score']):.4f}" if score_of(sl.row) is not None else \
        f"failed ({(sl.row.get('error') or '')[:60]})"
    at = f" @{sl.fraction:g}" if sh else ""
    where = f", worker {sl.placed[0]} {sl.placed[1]:.1f}-{sl.placed[2]:.1f} s" if k > 1 else ""
    return f"{sl.index + 1:>4}  {sl.backbone + at:<45} {got}  {sl.cost:7.2f} s  (spent {spent:.1f} s{where})"


__all__ = ["Progress", "progress_line"]
