"""Progress of a long download or import for the person running it: a bar on a terminal, lines elsewhere.

A progress bar redraws itself with carriage returns. On a terminal that is one line kept up to
date; in a log file, a CI log or ``docker logs`` it is thousands of fragments on one endless line.
So, like ``pricepipe feed``'s status line, the bar is drawn only when its stream is a terminal;
anywhere else each finished step (a file downloaded, a file published) is one plain line, and the
steps in between (rows) show nothing.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


class Progress:
    """One bar (``desc``, counting ``unit``) on a terminal, or a line per :meth:`step_done` elsewhere.

    ``enabled=False`` shows nothing at all (a library call, a test); ``stream`` is standard error
    unless given.
    """

    def __init__(self, desc: str, unit: str, *, enabled: bool = True, total: int | None = None,
                 stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._desc = desc
        self._lines = enabled and not self._stream.isatty()
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._stream) if enabled and not self._lines else None

    def update(self, count: int = 1) -> None:
        """``count`` more units done; moves the bar, writes no line."""
        if self._bar is not None:
            self._bar.update(count)

    def step_done(self, what: str) -> None:
        """A step finished: its line where there is no bar (the bar already shows it)."""
        if self._lines:
            print(f"{self._desc}: {what}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
