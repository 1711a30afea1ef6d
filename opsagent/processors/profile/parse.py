"""Turns a batch of log lines into counts of the few raw fields the statistics need.

A parser returns a Counter keyed by tuples of raw field values (bytes or str; None when absent)
in the order of `Parser.columns`, plus a Counter of unparsed lines by reason. Counting identical
tuples first is what makes the hot path cheap: a profile log repeats the same interface, status
and (integer millisecond) latency over and over, so the per-value work of the aggregator runs
once per distinct tuple instead of once per line. The delimited format does the per-line work
in C (bytes.split, operator.itemgetter and Counter over map()), falling back to a per-line loop
only for a batch that contains a line with too few fields.

With an event time column and a TimeBucketer, lines are counted by (start of the line's
interval, the other columns), so they are grouped by interval, not by timestamp: a millisecond
time column would otherwise make every tuple distinct.

Unparsed reasons: empty, no_match (regex did not match / too few delimited fields), bad_json,
missing_field (JSON / logfmt line without the latency field).
"""

from __future__ import annotations

import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import repeat, tee
from typing import Any

from opsagent.processors.profile.presets import Effective
from opsagent.processors.profile.timeparse import TimeBucketer

Raw = bytes | str | None
# Raw column values; with an event time (interval start or None, tuple of the other columns).
Key = tuple[Any, ...]

# logfmt: key=value, key="quoted \" value", bare key (value "true"); see
# https://brandur.org/logfmt
_LOGFMT = re.compile(rb'([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?')


class Parser:
    """Extracts `columns` from lines: the latency field, then the error and time fields when
    set, then the label fields (from `label_start` on, in the order of `labels`; a name may
    appear twice, e.g. status as error field and label). Labels in `record_labels` come from
    the file, not the line, and are not columns."""

    def __init__(self, eff: Effective, record_labels: Sequence[str] = (),
                 bucketer: TimeBucketer | None = None) -> None:
        """With `bucketer` and a time field, keys are (interval start, None when the time does
        not parse; the tuple of the other columns) instead of raw column tuples."""
        self.eff = eff
        cols: list[str] = [eff.latency_field]
        cols += [name for name in (eff.error_field, eff.time_field) if name]
        self._bucketer = bucketer if eff.time_field else None
        self._time_i = len(cols) - 1
        self.label_start = len(cols)
        cols += [name for name in eff.labels if name not in record_labels]
        self.columns: tuple[str, ...] = tuple(cols)
        self._nrest = len(cols) - 1  # columns other than the time
        fmt = eff.format
        self._parse: Callable[[list[bytes]], tuple[Counter[Key], Counter[str]]]
        if fmt == "delimited":
            self._setup_delimited()
            self._parse = self._parse_delimited
        elif fmt == "regex":
            self._regex = re.compile(eff.pattern.encode())
            self._parse = self._parse_regex
        elif fmt == "json":
            self._paths = [c.split(".") for c in cols]
            self._parse = self._parse_json
        elif fmt == "logfmt":
            self._names = [c.encode() for c in cols]
            self._parse = self._parse_logfmt
        else:  # config validation makes this unreachable
            raise ValueError(f"unknown format {fmt!r}")

    def parse(self, lines: list[bytes]) -> tuple[Counter[Key], Counter[str]]:
        """Counts of column tuples, and counts of unparsed lines by reason. With a
        TimeBucketer and a time column, each key is (interval start or None when the time does
        not parse, the tuple of the other columns): lines grouped by interval."""
        return self._parse(lines)

    def _count(self, rows: list[Key]) -> Counter[Key]:
        """Counter of rows (tuples in the order of `columns`), the time column first replaced
        by interval starts."""
        if self._bucketer is None or not rows:
            return Counter(rows)
        ti = self._time_i
        starts = self._bucketer.starts(list(map(operator.itemgetter(ti), rows)))
        rest_of = _getter([i for i in range(len(self.columns)) if i != ti])
        return Counter(zip(starts, map(rest_of, rows), strict=True))

    # -- delimited ---------------------------------------------------------------------------

    def _setup_delimited(self) -> None:
        positions = {name: i for i, name in enumerate(self.eff.fields) if name}
        idx = [positions.get(c, -1) for c in self.columns]
        # Columns the format does not have (labels that are not fields) read as None.
        self._missing = [i for i, p in enumerate(idx) if p < 0]
        real = [p if p >= 0 else 0 for p in idx]
        self._min_fields = max(real) + 1
        # itemgetter of one index returns the item, not a 1-tuple: always ask for >= 2.
        self._getter = operator.itemgetter(*real, real[0]) if len(real) == 1 else \
            operator.itemgetter(*real)
        self._ncols = len(real)
        self._delim = self.eff.delimiter.encode()
        if self._bucketer is not None:
            ti = self._time_i
            self._time_part = operator.itemgetter(real[ti])
            self._rest_parts = _getter(real[:ti] + real[ti + 1:])

    def _parse_delimited(self, lines: list[bytes]) -> tuple[Counter[Key], Counter[str]]:
        delim, maxsplit = self._delim, self._min_fields
        bad: Counter[str] = Counter()
        if self._bucketer is not None:
            # One lazy pass, no list of split lines (building one costs more than the split
            # itself, in allocation and garbage-collector work): tee feeds the time column to
            # the bucketer and the other columns alongside, and Counter groups the pairs.
            try:
                by_time, by_rest = tee(map(bytes.split, lines, repeat(delim), repeat(maxsplit)))
                counts = Counter(zip(
                    self._bucketer.map_bytes(map(self._time_part, by_time)),
                    map(self._rest_parts, by_rest), strict=True))
            except IndexError:  # a line with too few fields: classify line by line
                need = self._min_fields
                good = []
                for line in lines:
                    p = line.split(delim, maxsplit)
                    if len(p) >= need:
                        good.append(p)
                    else:
                        bad["no_match" if line.strip() else "empty"] += 1
                counts = Counter(zip(
                    self._bucketer.map_bytes(map(self._time_part, good)),
                    map(self._rest_parts, good), strict=True))
        else:
            try:
                counts = Counter(
                    map(self._getter, map(bytes.split, lines, repeat(delim), repeat(maxsplit))))
            except IndexError:  # a line with too few fields: classify line by line
                counts = Counter()
                getter, need = self._getter, self._min_fields
                for line in lines:
                    p = line.split(delim, maxsplit)
                    if len(p) >= need:
                        counts[getter(p)] += 1
                    else:
                        bad["no_match" if line.strip() else "empty"] += 1
        if self._bucketer is not None:
            if self._missing or self._nrest == 1:
                counts = self._fix_timed_columns(counts)
        elif self._missing or len(self.columns) != self._ncols or self._ncols == 1:
            counts = self._fix_columns(counts)
        return counts, bad

    def _fix_columns(self, counts: Counter[Key]) -> Counter[Key]:
        out: Counter[Key] = Counter()
        n, missing = len(self.columns), self._missing
        for key, c in counts.items():
            vals: list[Raw] = list(key[:n])
            for i in missing:
                vals[i] = None
            out[tuple(vals)] += c
        return out

    def _fix_timed_columns(self, counts: Counter[Key]) -> Counter[Key]:
        out: Counter[Key] = Counter()
        n, ti = self._nrest, self._time_i
        missing = [i - 1 if i > ti else i for i in self._missing]
        for (start, rest), c in counts.items():
            vals: list[Raw] = list(rest[:n])
            for i in missing:
                vals[i] = None
            out[(start, tuple(vals))] += c
        return out

    # -- regex -------------------------------------------------------------------------------

    def _parse_regex(self, lines: list[bytes]) -> tuple[Counter[Key], Counter[str]]:
        match = self._regex.match
        groups = self._regex.groupindex
        names = [c if c in groups else None for c in self.columns]
        bad: Counter[str] = Counter()
        keys: list[Key] = []
        append = keys.append
        full = [c for c in names if c is not None]
        if len(full) == len(names) and len(names) > 1:
            for line in lines:
                m = match(line)
                if m is None:
                    bad["no_match" if line.strip() else "empty"] += 1
                else:
                    append(m.group(*full))
        else:
            for line in lines:
                m = match(line)
                if m is None:
                    bad["no_match" if line.strip() else "empty"] += 1
                else:
                    append(tuple(m.group(nm) if nm else None for nm in names))
        return self._count(keys), bad

    # -- JSON lines --------------------------------------------------------------------------

    def _parse_json(self, lines: list[bytes]) -> tuple[Counter[Key], Counter[str]]:
        rows: list[Key] = []
        bad: Counter[str] = Counter()
        paths = self._paths
        for line in lines:
            if not line.strip():
                bad["empty"] += 1
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                bad["bad_json"] += 1
                continue
            if not isinstance(obj, dict):
                bad["bad_json"] += 1
                continue
            vals = tuple(_json_value(obj, p) for p in paths)
            if vals[0] is None:
                bad["missing_field"] += 1
                continue
            rows.append(vals)
        return self._count(rows), bad

    # -- logfmt ------------------------------------------------------------------------------

    def _parse_logfmt(self, lines: list[bytes]) -> tuple[Counter[Key], Counter[str]]:
        rows: list[Key] = []
        bad: Counter[str] = Counter()
        names = self._names
        findall = _LOGFMT.findall
        for line in lines:
            if not line.strip():
                bad["empty"] += 1
                continue
            pairs = dict(findall(line))
            vals = tuple(_logfmt_value(pairs.get(n)) for n in names)
            if vals[0] is None:
                bad["missing_field"] += 1
                continue
            rows.append(vals)
        return self._count(rows), bad


def _getter(indices: list[int]) -> Callable[[Any], tuple[Raw, ...]]:
    """itemgetter that always returns a tuple (of one index it would return the item)."""
    if len(indices) == 1:
        return operator.itemgetter(indices[0], indices[0])
    return operator.itemgetter(*indices)


def _json_value(obj: dict[str, Any], path: list[str]) -> str | None:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if cur is None or isinstance(cur, dict | list):
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _logfmt_value(raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw if raw else b""
