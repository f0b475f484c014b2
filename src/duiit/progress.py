"""What long work shows while it runs, and the consoles everything is printed on.

On a terminal: rich progress bars, and lines wrapped at the terminal's width. Where output
is not a terminal (a CI log, `| tee`, a file) a bar cannot redraw, so long work says when it
starts and ends in plain lines instead, and lines are not wrapped at all: a wrapped metric
line or table row cannot be read back or searched (rich would wrap at 80 columns there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as _rich_track

T = TypeVar("T")

# The width of a console whose output is not a terminal: wider than any line duiit prints.
UNWRAPPED = 100_000


def fit_width(console: Console) -> Console:
    """Wrap at the terminal's width; where output is not a terminal, do not wrap (unless
    COLUMNS says how wide it is, as a user or a notebook may)."""
    piped = not console.is_terminal and not console.is_jupyter
    console.width = UNWRAPPED if piped and "COLUMNS" not in os.environ else None
    return console


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console for duiit's output (stderr: progress and notes), sized by `fit_width`."""
    return fit_width(Console(stderr=stderr, quiet=quiet))


def track(items: Iterable[T], description: str, total: int, quiet: bool = False) -> Iterator[T]:
    """Iterate with a transient progress bar on a terminal, or a line when the work starts
    and one when it ends elsewhere; silent when `quiet` or the job is tiny."""
    if quiet or total < 20:
        yield from items
        return
    err = console(stderr=True)
    if err.is_terminal:
        yield from _rich_track(
            items, description=description, total=total, transient=True, console=err
        )
        return
    start = time.perf_counter()
    err.print(f"{description} ...", highlight=False)
    yield from items
    err.print(f"{description}: done in {time.perf_counter() - start:.0f} s", highlight=False)
