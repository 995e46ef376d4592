"""Progress on a real terminal (a pseudo-terminal) draws a bar in place; anywhere else, one line per step."""

from __future__ import annotations

import io
import os

from pricepipe_assets.sources.progress import Progress


def show_two_steps(progress: Progress) -> None:
    with progress:
        for day in ("2024-01-01", "2024-01-02"):
            progress.update()
            progress.step_done(f"{day} ready")


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_no_step_lines_are_written() -> None:
    main, terminal_fd = os.openpty()
    try:
        with open(terminal_fd, "w") as terminal:
            show_two_steps(Progress("download", " file", total=2, stream=terminal))
        shown = os.read(main, 65536).decode()
    finally:
        os.close(main)

    assert "\r" in shown and "2/2" in shown
    assert "download: 2024-01-01 ready" not in shown


def test_off_a_terminal_each_finished_step_is_one_line_and_nothing_else_is_written() -> None:
    log = io.StringIO()
    show_two_steps(Progress("download", " file", total=2, stream=log))

    assert log.getvalue() == "download: 2024-01-01 ready\ndownload: 2024-01-02 ready\n"


def test_disabled_progress_writes_nothing_anywhere() -> None:
    log = io.StringIO()
    show_two_steps(Progress("download", " file", enabled=False, stream=log))

    assert log.getvalue() == ""
