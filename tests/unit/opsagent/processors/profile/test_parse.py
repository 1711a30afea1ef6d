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
