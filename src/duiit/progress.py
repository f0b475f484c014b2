"""Progress bars for long work (rich); silent when asked or when nothing is long."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import track as _rich_track

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int, quiet: bool = False) -> Iterator[T]:
    """Iterate with a transient progress bar unless `quiet` or the job is tiny."""
    if quiet or total < 20:
        yield from items
        return
    yield from _rich_track(items, description=description, total=total, transient=True)
