from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from opsagent.processors.profile.parse import Parser
from opsagent.processors.profile.presets import effective

from .helpers import profile


def parser(record_labels: tuple[str, ...] = (), **keys: Any) -> Parser:
    return Parser(effective(profile(**keys)), record_labels)


DELIM = {"format": "delimited", "fields": ["iface", "", "ok", "ms"], "latency_field": "ms",
         "error_field": "ok", "error_values": ["false"], "labels": ["iface"]}


def test_delimited_fast_path_counts_tuples() -> None:
    p = parser(**DELIM)
    assert p.columns == ("ms", "ok", "iface")
    counts, bad = p.parse([b"a|x|true|5", b"a|y|true|5", b"b|x|false|7|extra"])
    assert counts == Counter({(b"5", b"true", b"a"): 2, (b"7", b"false", b"b"): 1})
    assert not bad


def test_delimited_short_and_empty_lines_are_counted_not_fatal() -> None:
    p = parser(**DELIM)
    counts, bad = p.parse([b"a|x|true|5", b"a|x", b"", b"  ", b"c|x|true|9"])
    assert counts == Counter({(b"5", b"true", b"a"): 1, (b"9", b"true", b"c"): 1})
    assert bad == Counter({"no_match": 1, "empty": 2})


def test_delimited_single_column_and_record_label() -> None:
    p = parser(("pod",), format="delimited", fields=["ms"], latency_field="ms",
               labels=["pod"])
    counts, _ = p.parse([b"5", b"5", b"6"])
    assert p.columns == ("ms",)
    assert counts == Counter({(b"5",): 2, (b"6",): 1})


def test_delimited_other_delimiter() -> None:
    p = parser(format="delimited", delimiter="\t", fields=["a", "ms"], latency_field="ms",
               labels=["a"])
    counts, _ = p.parse([b"x\t1.5"])
    assert counts == Counter({(b"1.5", b"x"): 1})


def test_regex_named_groups() -> None:
    p = parser(format="regex", pattern=r"(?P<op>\w+) took (?P<ms>[0-9.]+)ms(?: (?P<st>\d+))?",
               latency_field="ms", labels=["op", "st"])
    counts, bad = p.parse([b"get took 3ms 200", b"put took 4.5ms", b"garbage", b""])
    assert counts == Counter({(b"3", b"get", b"200"): 1, (b"4.5", b"put", None): 1})
    assert bad == Counter({"no_match": 1, "empty": 1})


def test_regex_single_group() -> None:
    p = parser(format="regex", pattern=r"(?P<ms>\d+)", latency_field="ms")
    counts, _ = p.parse([b"12", b"12"])
    assert counts == Counter({(b"12",): 2})


def test_json_lines_nested_and_typed_values() -> None:
    p = parser(format="json", latency_field="timing.ms", error_field="ok",
               error_values=["false"], labels=["route"])
    lines = [
        b'{"route": "/a", "ok": true, "timing": {"ms": 12.5}}',
        b'{"route": "/a", "ok": false, "timing": {"ms": 3}}',
        b'{"route": "/b", "timing": {}}',
        b'[1, 2]',
        b'{not json',
        b'',
    ]
    counts, bad = p.parse(lines)
    assert counts == Counter({("12.5", "true", "/a"): 1, ("3", "false", "/a"): 1})
    assert bad == Counter({"missing_field": 1, "bad_json": 2, "empty": 1})


def test_logfmt_quoted_and_bare() -> None:
    p = parser(format="logfmt", latency_field="dur", labels=["path", "flag"])
    lines = [b'level=info path="/a b" dur=1.5 flag', b'path=/c dur=2 msg="say \\"hi\\""',
             b"path=/d"]
    counts, bad = p.parse(lines)
    assert counts == Counter({(b"1.5", b"/a b", b""): 1, (b"2", b"/c", None): 1})
    assert bad == Counter({"missing_field": 1})


NGINX = (b'10.0.0.1 - - [01/Jan/2024:00:00:01 +0000] "GET /api/users?id=1 HTTP/1.1" 200 612 '
         b'"-" "curl/8.0" 0.123')


def test_nginx_preset() -> None:
    p = parser(preset="nginx")
    counts, bad = p.parse([NGINX, b'10.0.0.1 - - [01/Jan/2024:00:00:02 +0000] "-" 400 0 '
                                  b'"-" "-" 0.000 0.001'])
    assert not bad
    assert p.columns == ("request_time", "status", "time_local", "method", "status")
    assert p.label_start == 3
    assert counts == Counter({
        (b"0.123", b"200", b"01/Jan/2024:00:00:01 +0000", b"GET", b"200"): 1,
        (b"0.000", b"400", b"01/Jan/2024:00:00:02 +0000", None, b"400"): 1,
    })


def test_motan_preset() -> None:
    p = parser(preset="motan")
    line = (b"service|app|mod|10.0.0.1|com.example.Svc|get|java.lang.String|10.0.0.2|capp|cmod"
            b"|false|42|120|340|5|7")
    counts, bad = p.parse([line])
    assert counts == Counter({(b"7", b"false", b"com.example.Svc", b"get"): 1})
    assert not bad


@pytest.mark.parametrize("lines", [
    [b"a|b|true|1"] * 3 + [b"short"],
    [b"short", b"a|b|true|1"],
], ids=["bad-last", "bad-first"])
def test_fast_and_slow_paths_agree(lines: list[bytes]) -> None:
    p = parser(**DELIM)
    counts, bad = p.parse(lines)
    good = [x for x in lines if x != b"short"]
    counts_good, _ = p.parse(good)
    assert counts == counts_good
    assert bad == Counter({"no_match": 1})


TIMED_LINES = [  # millisecond times: every line's time is distinct
    b"2024-01-01 00:00:09.998 server|a|m|x|S|get|p|r|ra|rm|true|1|1|1|4|5",
    b"2024-01-01 00:00:09.999 [INFO] client|a|m|x|S|get|p|r|ra|rm|true|2|1|1|4|5",
    b"2024-01-01 00:00:10.000 server|a|m|x|S|get|p|r|ra|rm|true|3|1|1|4|5",
    b"2024-01-01 00:00:19.999 server|a|m|x|S|get|p|r|ra|rm|false|4|1|1|4|5",
    b"2024-01-01 00:00:11 [INFO] server|a|m|x|S|get|p|r|ra|rm|true|5|1|1|4|5",
    b"yesterday server|a|m|x|S|get|p|r|ra|rm|true|6|1|1|4|5",
]


@pytest.mark.parametrize("short", [False, True], ids=["all-complete", "with-a-short-line"])
def test_timed_lines_are_grouped_by_interval_not_by_timestamp(short: bool) -> None:
    from opsagent.processors.profile.timeparse import TimeBucketer, TimeParser

    eff = effective(profile(preset="motan_timed"))
    p = Parser(eff, (), TimeBucketer(TimeParser(eff.time_format), 10))
    assert p.columns == ("whole_time", "success", "time", "interface", "method")
    lines = TIMED_LINES + ([b"2024-01-01 00:00:12.000 server|cut"] if short else [])
    counts, bad = p.parse(lines)
    assert counts == Counter({  # (interval start, the other columns)
        (1704067200, (b"5", b"true", b"S", b"get")): 2,
        (1704067210, (b"5", b"true", b"S", b"get")): 2,
        (1704067210, (b"5", b"false", b"S", b"get")): 1,
        (None, (b"5", b"true", b"S", b"get")): 1,  # no parseable time: the aggregator's bad_time
    })
    assert bad == (Counter({"no_match": 1}) if short else Counter())


def test_timed_regex_and_json_group_the_same_way() -> None:
    from opsagent.processors.profile.timeparse import TimeBucketer, TimeParser

    fmt = "%Y-%m-%d %H:%M:%S.%f"

    def timed(**keys: Any) -> Parser:
        return Parser(effective(profile(latency_field="ms", time_field="t", time_format=fmt,
                                        labels=["k"], **keys)),
                      (), TimeBucketer(TimeParser(fmt), 10))

    rx = timed(format="regex", pattern=r"(?P<t>\S+ \S+) (?P<ms>\d+) (?P<k>\w+)")
    js = timed(format="json")
    raw = [("2024-01-01 00:00:09.5", 3, "a"), ("2024-01-01 00:00:10.25", 3, "a"),
           ("2024-01-01 00:00:19.75", 3, "a"), ("not a-time", 3, "a")]
    c_rx, _ = rx.parse([f"{t} {ms} {k}".encode() for t, ms, k in raw])
    c_js, _ = js.parse([f'{{"t": "{t}", "ms": {ms}, "k": "{k}"}}'.encode() for t, ms, k in raw])
    assert c_rx == Counter({(1704067200, (b"3", b"a")): 1, (1704067210, (b"3", b"a")): 2,
                            (None, (b"3", b"a")): 1})
    assert c_js == Counter({(1704067200, ("3", "a")): 1, (1704067210, ("3", "a")): 2,
                            (None, ("3", "a")): 1})
