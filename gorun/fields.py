"""Cron fields: parse one field of a cron expression (Debian/Vixie syntax) into the set it matches.

Grammar, as Debian cron's entry.c reads it (get_list / get_range / get_number):

    field := item ("," item)*
    item  := "*" ["/" step]  |  value ["-" value ["/" step]]
    value := decimal number | three-letter name (month and day-of-week fields; any case)

A step after a single number (`5/10`) is an error, as in Debian (cronie and croniter accept it).
Day of week is 0-7 with both 0 and 7 meaning Sunday. The year field (gorun's 7-field form) takes
numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gorun.errors import ExprError

__all__ = [
    "DOM",
    "DOW",
    "HOUR",
    "MINUTE",
    "MONTH",
    "SECOND",
    "YEAR",
    "FieldKind",
    "parse_field",
]

_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class FieldKind:
    """One kind of cron field: its name in messages, its range and its names."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] means low + i

    def value(self, token: str, item: str) -> int:
        """One number or name of this field, range-checked."""
        if token.isdigit() and token.isascii():
            number = int(token)
            if not self.low <= number <= self.high:
                raise ExprError(f"{self.name}: {token} out of range {self.low}-{self.high}")
            return number
        if token.isalpha() and token.isascii():
            if not self.names:
                raise ExprError(f"{self.name}: names are not allowed here: {token!r}")
            try:
                return self.low + self.names.index(token.lower())
            except ValueError:
                hint = ", ".join(self.names)
                raise ExprError(f"{self.name}: unknown name {token!r} (one of {hint})") from None
        if not token:
            raise ExprError(f"{self.name}: missing number in {item!r}")
        raise ExprError(f"{self.name}: bad value {token!r} in {item!r}")


SECOND = FieldKind("second", 0, 59)
MINUTE = FieldKind("minute", 0, 59)
HOUR = FieldKind("hour", 0, 23)
DOM = FieldKind("day of month", 1, 31)
MONTH = FieldKind("month", 1, 12, tuple(_MONTH_NAMES))
# 7 is Sunday too; names map sun..sat to 0..6 (so `fri-sun` is reversed, as in Debian).
DOW = FieldKind("day of week", 0, 7, tuple(_DOW_NAMES))
YEAR = FieldKind("year", 1970, 2099)


@lru_cache(maxsize=8192)
def parse_field(text: str, kind: FieldKind) -> frozenset[int]:
    """The values `text` matches in a field of `kind`; raises ExprError naming the field.

    Day-of-week 7 is folded into 0 (Sunday). Cached: 10,000 jobs share a few dozen sets.
    """
    if not text:
        raise ExprError(f"{kind.name}: empty field")
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, kind))
    if kind is DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _parse_item(item: str, kind: FieldKind) -> range:
    if not item:
        raise ExprError(f"{kind.name}: empty list element")
    body, slash, step_text = item.partition("/")
    if body == "*":
        low, high = kind.low, kind.high
    else:
        first, dash, last = body.partition("-")
        low = kind.value(first, item)
        if not dash:
            if slash:
                # Debian's get_range only reads a step after `*` or a range.
                raise ExprError(
                    f"{kind.name}: a step needs * or a range before it: {item!r}"
                    f" (write {low}-{kind.high}/{step_text})"
                )
            return range(low, low + 1)
        high = kind.value(last, item)
        if low > high:
            raise ExprError(f"{kind.name}: reversed range {body!r}")
    step = 1
    if slash:
        if not (step_text.isdigit() and step_text.isascii()):
            raise ExprError(f"{kind.name}: bad step {step_text!r} in {item!r}")
        step = int(step_text)
        if step == 0:
            raise ExprError(f"{kind.name}: zero step in {item!r}")
    return range(low, high + 1, step)
