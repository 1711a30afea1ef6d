from __future__ import annotations

from collections import Counter

import pytest

from opsagent.processors.profile.unwrap import Unwrapper, detect

TS = b"2024-01-01T00:00:00.000000001Z"


@pytest.mark.parametrize("line,kind", [
    (TS + b" stdout F hello", "cri"),
    (b'{"log":"x\\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}', "docker"),
    (b"a|b|c", "none"),
    (b"", "none"),
])
def test_detect(line: bytes, kind: str) -> None:
    assert detect(line) == kind


def test_cri_full_and_partial_lines_across_batches() -> None:
    u = Unwrapper("cri")
    bad: Counter[str] = Counter()
    out1 = u.unwrap([TS + b" stdout F one", TS + b" stdout P tw", TS + b" stderr F err"], bad)
    assert out1 == [b"one", b"err"]
    assert u.pending() == 1
    out2 = u.unwrap([TS + b" stdout P o|", TS + b" stdout F 3", TS + b" stdout F "], bad)
    assert out2 == [b"two|3", b""]
    assert u.pending() == 0 and not bad


def test_cri_bad_lines_are_counted() -> None:
    u = Unwrapper("cri")
    bad: Counter[str] = Counter()
    assert u.unwrap([b"not cri", TS + b" stdout X y", TS + b" stdout F ok"], bad) == [b"ok"]
    assert bad == Counter({"bad_wrapper": 2})


def test_cri_partial_longer_than_max_is_truncated() -> None:
    u = Unwrapper("cri", max_bytes=4)
    bad: Counter[str] = Counter()
    assert u.unwrap([TS + b" stdout P abc", TS + b" stdout F def", TS + b" stdout F ok"],
                    bad) == [b"ok"]
    assert bad == Counter({"truncated": 1})


def test_docker_json_and_split_lines() -> None:
    u = Unwrapper("docker")
    bad: Counter[str] = Counter()
    lines = [
        b'{"log":"a|1\\n","stream":"stdout","time":"t"}',
        b'{"log":"b|","stream":"stdout","time":"t"}',
        b'{"log":"2\\r\\n","stream":"stdout","time":"t"}',
        b'{"log":"caf\\u00e9\\n","stream":"stderr","time":"t"}',
        b'{"stream":"stdout"}',
        b"garbage",
    ]
    assert u.unwrap(lines, bad) == [b"a|1", b"b|2", "café".encode()]
    assert bad == Counter({"bad_wrapper": 2})


def test_auto_decides_per_file_from_first_non_empty_line() -> None:
    bad: Counter[str] = Counter()
    u = Unwrapper("auto")
    assert u.unwrap([b"", TS + b" stdout F x"], bad) == [b"x"]
    assert u.mode == "cri"
    raw = Unwrapper("auto")
    assert raw.unwrap([b"plain"], bad) == [b"plain"]
    assert raw.mode == "none"


def test_docker_lone_surrogate_does_not_crash() -> None:
    bad: Counter[str] = Counter()
    out = Unwrapper("docker").unwrap([b'{"log":"a\\ud800b\\n","stream":"stdout"}'], bad)
    assert out == [b"a?b"] and not bad
