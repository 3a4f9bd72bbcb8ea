"""Checks a cron expression the way KFP's API server will read it, before it is sent.

KFP parses schedules with robfig/cron v1 (``cron.Parse``): second minute hour day-of-month
month day-of-week, with the bounds and names below. Its parser also takes five fields,
which it reads as second..month; requiring six stops '0 3 * * *' meaning "hourly at :03".
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.runners.kubeflow.errors import ScheduleError

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_WEEKDAYS = {name: number for number, name in enumerate(
    ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _WEEKDAYS),
)


def checked_cron(cron: str) -> str:
    """``cron`` with single spaces between its six fields; ``ScheduleError`` if KFP's is not."""
    fields = cron.split()
    if len(fields) != len(_FIELDS):
        hint = f"; did you mean '0 {' '.join(fields)}'?" if len(fields) == 5 else ""
        raise ScheduleError(
            f"cron {cron!r} has {len(fields)} fields; KFP's has 6: second minute hour "
            f"day-of-month month day-of-week{hint}"
        )
    for text, (field, low, high, names) in zip(fields, _FIELDS, strict=True):
        if not all(_item_ok(item, low, high, names) for item in text.split(",")):
            raise ScheduleError(
                f"cron {cron!r}: {field} {text!r} is not valid ({field} is {low}-{high})"
            )
    return " ".join(fields)


def _item_ok(item: str, low: int, high: int, names: Mapping[str, int]) -> bool:
    """``*``, ``?``, ``n`` or ``n-m``, each optionally ``/step``."""
    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if span in ("*", "?"):
        return True
    first, dash, last = span.partition("-")
    start = _value(first, names)
    end = _value(last, names) if dash else start
    return start is not None and end is not None and low <= start <= end <= high


def _value(text: str, names: Mapping[str, int]) -> int | None:
    return int(text) if text.isdigit() else names.get(text.lower())
