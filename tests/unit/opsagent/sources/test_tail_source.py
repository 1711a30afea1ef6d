"""TailSource over real files in tmp_path, driven by a FakeClock (no sleeps): lines, partial
lines, long lines, acks and checkpoints, read-ahead, metadata, batches."""

from __future__ import annotations

import json

import pytest

from opsagent.sources.tail import FileKey, MultilineConfig
from tests.unit.opsagent.sources.tail_helpers import Env, drain, lines


def test_reads_lines_with_offsets(env: Env) -> None:
    env.write("app.log", b"one\ntwo\r\n\nthree\n")
    src = env.source()
    recs = drain(src)
    assert lines(recs) == [b"one", b"two\r", b"", b"three"]
    assert [(r.start, r.end) for r in recs] == [(0, 4), (4, 9), (9, 10), (10, 16)]
    assert all(r.path == str(env.logs / "app.log") and not r.truncated for r in recs)
    assert len({r.key for r in recs}) == 1
    assert env.metric("opsagent_tail_lines_total") == 4
    assert env.metric("opsagent_tail_bytes_total") == 16


def test_invalid_utf8_passes_through(env: Env) -> None:
    raw = b"\xff\xfe bad \xc3\x28 \x00 nul\n"
    env.write("app.log", raw)
    assert lines(drain(env.source())) == [raw[:-1]]


def test_appended_data_is_read_by_later_polls(env: Env) -> None:
    src = env.source()
    env.write("app.log", b"a\n")
    assert drain(src) == []  # not yet discovered: no inotify, rescan not due
    env.rescan()
    assert lines(drain(src)) == [b"a"]
    env.write("app.log", b"b\nc\n")
    assert lines(drain(src)) == [b"b", b"c"]


@pytest.mark.parametrize(
    ("chunks", "advance", "expected"),
    [
        ([b"abc"], 4.9, []),
        ([b"abc"], 5.0, [(b"abc", 0, 3)]),
        ([b"ab", b"c\n"], 0.0, [(b"abc", 0, 4)]),
        ([b"x\nab"], 5.0, [(b"x", 0, 2), (b"ab", 2, 4)]),
    ],
    ids=["held-before-timeout", "emitted-at-timeout", "completed-later", "after-full-line"],
)
def test_partial_last_line(env: Env, chunks: list[bytes], advance: float,
                           expected: list[tuple[bytes, int, int]]) -> None:
    src = env.source()
    got = []
    for c in chunks:
        env.write("app.log", c)
        env.rescan()
        got.extend(drain(src))
    env.clock.advance(advance)
    got.extend(drain(src))
    assert [(r.data, r.start, r.end) for r in got] == expected


def test_partial_line_timeout_then_rest_of_line(env: Env) -> None:
    src = env.source()
    env.write("app.log", b"first\npart")
    env.rescan()
    assert lines(drain(src)) == [b"first"]
    env.clock.advance(4.0)
    assert drain(src) == []
    env.clock.advance(1.0)
    recs = drain(src)
    assert [(r.data, r.start, r.end) for r in recs] == [(b"part", 6, 10)]
    env.write("app.log", b"ial\n")
    recs = drain(src)
    assert [(r.data, r.start, r.end) for r in recs] == [(b"ial", 10, 14)]


def test_growing_partial_line_is_not_flushed(env: Env) -> None:
    src = env.source()
    env.write("app.log", b"ab")
    env.rescan()
    for _ in range(3):
        env.clock.advance(3.0)
        env.write("app.log", b"c")
        assert drain(src) == []
    env.write("app.log", b"\n")
    assert lines(drain(src)) == [b"abccc"]


@pytest.mark.parametrize(
    ("content", "chunk", "expected"),
    [
        (b"12345678\nok\n", 262_144, [(b"12345", True, 0, 9), (b"ok", False, 9, 12)]),
        (b"a\n" + b"x" * 20 + b"\nb\n", 16, [(b"a", False, 0, 2), (b"xxxxx", True, 2, 23),
                                             (b"b", False, 23, 25)]),
        (b"12345\n123456\n", 262_144, [(b"12345", False, 0, 6), (b"12345", True, 6, 13)]),
    ],
    ids=["long-line-in-chunk", "long-line-across-chunks", "exactly-max-vs-one-more"],
)
def test_max_line_size_truncates_and_counts(env: Env, content: bytes, chunk: int,
                                            expected: list[tuple[bytes, bool, int, int]]) -> None:
    env.write("app.log", content)
    src = env.source(max_line_bytes=5, read_chunk_bytes=chunk, max_read_ahead_bytes=1 << 20)
    got = [(r.data, r.truncated, r.start, r.end) for r in drain(src)]
    assert got == expected
    assert env.metric("opsagent_tail_truncated_lines_total") == 1


def test_overlong_partial_line_flushed_at_timeout_is_truncated(env: Env) -> None:
    src = env.source(max_line_bytes=4)
    env.write("app.log", b"abcdefgh")
    env.rescan()
    assert drain(src) == []
    env.clock.advance(5.0)
    recs = drain(src)
    assert [(r.data, r.truncated, r.start, r.end) for r in recs] == [(b"abcd", True, 0, 8)]


def test_checkpoint_advances_only_to_acked_offset(env: Env) -> None:
    env.write("app.log", b"a\nb\nc\n")
    src = env.source()
    recs = src.poll(timeout=0)
    assert len(recs) == 3
    src.ack(recs[0].key, recs[1].end)
    src.save_checkpoints()
    doc = json.loads((env.state / "p.json").read_bytes())
    (entry,) = doc["entries"].values()
    assert entry["offset"] == 4
    assert entry["path"] == str(env.logs / "app.log")
    assert env.metric("opsagent_checkpoint_writes_total") == 2  # the first scan's, this one
    src.stop()

    # A restart resumes at the acked offset: "c" is delivered again, "a", "b" are not.
    again = env.source()
    recs2 = drain(again)
    assert lines(recs2) == [b"c"]
    assert recs2[0].key == recs[0].key
    assert recs2[0].start == 4


def test_auto_ack_checkpoints_what_poll_returned(env: Env) -> None:
    env.write("app.log", b"a\nb\n")
    src = env.source(auto_ack=True)
    assert len(src.poll(timeout=0)) == 2
    src.stop()
    assert drain(env.source()) == []


def test_read_ahead_is_bounded_by_acks(env: Env) -> None:
    env.write("app.log", b"0123456789\n" * 100)
    src = env.source(read_chunk_bytes=22, max_read_ahead_bytes=44)
    first = drain(src, ack=False)
    assert len(first) == 4  # 44 bytes of 11-byte lines, then it stops until acked
    assert src.pending_bytes() == {str(env.logs / "app.log"): 1100}
    src.ack(first[-1].key, first[-1].end)
    assert len(drain(src, ack=False)) == 4
    assert src.pending_bytes()[str(env.logs / "app.log")] == 1100 - 44


def test_max_records_limits_a_poll_without_losing_lines(env: Env) -> None:
    env.write("app.log", b"".join(b"%d\n" % i for i in range(25)))
    src = env.source()
    sizes = []
    got = []
    while recs := src.poll(max_records=10, timeout=0):
        sizes.append(len(recs))
        got.extend(recs)
    assert sizes == [10, 10, 5]
    assert lines(got) == [b"%d" % i for i in range(25)]
    assert [r.start for r in got] == sorted({r.start for r in got})


def test_start_at_end_skips_existing_content_only(env: Env) -> None:
    env.write("old.log", b"old\n")
    src = env.source(start_at="end")
    env.write("old.log", b"after\n")
    env.write("new.log", b"new\n")
    env.rescan()
    assert sorted(lines(drain(src))) == [b"after", b"new"]


def test_excluded_and_unmatched_files_are_ignored(env: Env) -> None:
    env.write("app.log", b"in\n")
    env.write("debug.log", b"excluded\n")
    env.write("app.txt", b"unmatched\n")
    src = env.source(exclude=(str(env.logs / "debug*"),))
    assert lines(drain(src)) == [b"in"]


def test_fields_from_static_values_and_path_pattern(env: Env) -> None:
    (env.logs / "ns1" / "pod-a" / "web").mkdir(parents=True)
    env.write("ns1/pod-a/web/app.log", b"x\n")
    env.write("plain.log", b"y\n")
    src = env.source(
        include=("**/*.log",),
        path_pattern=str(env.logs) + r"/(?P<namespace>[^/]+)/(?P<pod>[^/]+)/(?P<container>[^/]+)/",
        static_fields={"node": "n1", "pod": "agent-xyz", "namespace": "kube-system"},
    )
    by_data = {r.data: dict(r.fields) for r in drain(src)}
    assert by_data[b"x"] == {"node": "n1", "pod": "pod-a", "namespace": "ns1",
                             "container": "web"}
    assert by_data[b"y"] == {"node": "n1", "pod": "agent-xyz", "namespace": "kube-system"}


def test_poll_batches_carries_lines_and_span(env: Env) -> None:
    env.write("app.log", b"a\nbb\n" + b"z" * 9 + b"\nc\n")
    src = env.source(max_line_bytes=4)
    batches = src.poll_batches(timeout=0)
    assert len(batches) == 1
    (b,) = batches
    assert (b.lines, b.start, b.end, b.truncated) == ([b"a", b"bb", b"zzzz", b"c"], 0, 17, 1)
    src.ack(b.key, b.end)
    src.stop()
    assert drain(env.source()) == []


def test_poll_batches_names_the_cut_lines_not_lines_of_exactly_the_limit(env: Env) -> None:
    # "zzzz" was cut from 9 bytes; "wwww" and "vvvv" are exactly max_line_bytes and whole.
    env.write("app.log", b"wwww\n" + b"z" * 9 + b"\nvvvv\nc\n")
    src = env.source(max_line_bytes=4)
    (b,) = src.poll_batches(timeout=0)
    assert b.lines == [b"wwww", b"zzzz", b"vvvv", b"c"]
    assert (b.cut, b.truncated) == ((1,), 1)
    src.stop()


def test_multiline_joins_stack_traces_with_spans(env: Env) -> None:
    content = (b"ERROR boom\n\tat a.B(B.java:1)\n\tat c.D(D.java:2)\nCaused by: x\n"
               b"INFO next\n")
    env.write("app.log", content)
    src = env.source(multiline=MultilineConfig())
    recs = drain(src)
    assert lines(recs) == [b"ERROR boom\n\tat a.B(B.java:1)\n\tat c.D(D.java:2)\nCaused by: x"]
    assert (recs[0].start, recs[0].end) == (0, content.index(b"INFO"))
    env.clock.advance(2.0)
    recs = drain(src)
    assert [(r.data, r.end) for r in recs] == [(b"INFO next", len(content))]


def test_flush_partial_emits_held_data_of_a_deleted_file_read_to_its_end(env: Env) -> None:
    path = env.write("app.log", b"ERROR x\n\tat y\ntail-without-newline")
    src = env.source(multiline=MultilineConfig(flush_timeout_secs=100.0),
                     deleted_file_max_secs=1000.0)
    assert drain(src) == []
    path.unlink()  # nobody can read it again after a restart: shutdown sends what is held
    recs = src.flush_partial()
    assert [(r.data, r.start, r.end) for r in recs] == [
        (b"ERROR x\n\tat y", 0, 14), (b"tail-without-newline", 14, 34)]


def test_shutdown_never_emits_the_partial_line_of_a_live_file(env: Env) -> None:
    # Issue 10, defect 3: the checkpoint stays before the partial line; the restart reads the
    # line whole once the writer finished it.
    env.write("app.log", b"first\npart")
    src = env.source()
    assert lines(drain(src)) == [b"first"]
    assert src.flush_partial() == []
    src.stop()
    [cp] = json.loads((env.state / "p.json").read_text())["entries"].values()
    assert cp["offset"] == 6
    env.write("app.log", b"ial\n")
    recs = drain(env.source())
    assert [(r.data, r.start, r.end) for r in recs] == [(b"partial", 6, 14)]


def test_partial_line_at_the_read_ahead_cap_is_not_split(env: Env) -> None:
    # Issue 10, defect 3: Kafka is down, the source stops at max_read_ahead_bytes in the
    # middle of a line; however long that lasts, the line is not cut in two records.
    env.write("app.log", b"a" * 20 + b"\n" + b"b" * 20 + b"\n")
    src = env.source(read_chunk_bytes=32, max_read_ahead_bytes=32)
    first = drain(src, ack=False)
    assert lines(first) == [b"a" * 20]
    env.clock.advance(60.0)
    assert drain(src, ack=False) == []
    src.ack(first[0].key, first[0].end)
    assert [(r.data, r.start, r.end) for r in drain(src)] == [(b"b" * 20, 21, 42)]


def test_multiline_group_at_the_read_ahead_cap_is_not_split(env: Env) -> None:
    head = b"x" * 20 + b"\n"
    trace = b"ERROR boom\n\tat a.B(C.java:1)\n\tat d.E(F.java:2)\n"
    env.write("app.log", head + trace + b"INFO next\n")
    src = env.source(read_chunk_bytes=32, max_read_ahead_bytes=64,
                     multiline=MultilineConfig(flush_timeout_secs=2.0))
    first = drain(src, ack=False)
    assert lines(first) == [b"x" * 20]
    env.clock.advance(60.0)  # the group waits at the cap, not at EOF
    assert drain(src, ack=False) == []
    src.ack(first[0].key, first[0].end)
    env.clock.advance(60.0)
    assert lines(drain(src))[0] == trace[:-1]


def test_partial_line_timeout_counts_from_when_the_file_stopped_growing(env: Env) -> None:
    # No poll for a while (sink full), the rest of the line written meanwhile: one record.
    env.write("app.log", b"part")
    src = env.source()
    assert drain(src) == []
    env.clock.advance(4.0)
    assert drain(src) == []
    env.write("app.log", b"ial\n")
    env.clock.advance(30.0)
    assert [(r.data, r.start, r.end) for r in drain(src)] == [(b"partial", 0, 8)]


def test_ack_of_unknown_key_is_ignored(env: Env) -> None:
    env.write("app.log", b"a\n")
    src = env.source()
    drain(src)
    src.ack(FileKey(1, 2, "nope"), 100)
    assert src.pending_bytes() == {str(env.logs / "app.log"): 0}


def test_poll_before_start_is_an_error(env: Env) -> None:
    src = env.source(start=False)
    with pytest.raises(RuntimeError):
        src.poll(timeout=0)


def test_inotify_event_wakes_poll(env: Env) -> None:
    # No periodic rescan within the test: only the inotify event can find the new file.
    src = env.source(use_inotify=True, rescan_interval_secs=3600.0)
    env.write("app.log", b"hello\n")
    got = []
    for _ in range(300):  # bounded: each poll waits at most 0.1 s for an inotify event
        env.clock.advance(0.25)  # event rescans are rate limited by the (fake) clock
        got = src.poll(timeout=0.1)
        if got:
            break
    assert lines(got) == [b"hello"]


def test_checkpoint_write_failure_is_counted_and_retried(env: Env) -> None:
    env.write("app.log", b"a\nb\n")
    env.state.write_bytes(b"")  # the state dir path is taken by a file: every save fails
    src = env.source()
    drain(src)
    env.clock.advance(1.0)
    env.write("app.log", b"c\n")
    assert lines(drain(src)) == [b"c"]  # reading goes on
    assert env.metric("opsagent_tail_errors_total", reason="checkpoint_write") >= 1
    env.state.unlink()
    src.save_checkpoints()
    doc = json.loads((env.state / "p.json").read_bytes())
    assert [e["offset"] for e in doc["entries"].values()] == [6]


def test_event_rescans_are_rate_limited(env: Env) -> None:
    src = env.source()
    env.write("app.log", b"a\n")
    src._waker.on_event(str(env.logs), True)  # as the inotify thread would
    assert drain(src) == []  # too soon after the start-up scan
    env.clock.advance(0.25)
    src._waker.on_event(str(env.logs), True)
    assert lines(drain(src)) == [b"a"]


def test_a_busy_file_does_not_starve_the_others(env: Env) -> None:
    env.write("a.log", b"a\n" * 100)
    env.write("b.log", b"b\n" * 100)
    src = env.source()
    first_polls = [lines(src.poll(max_records=30, timeout=0)) for _ in range(3)]
    assert any(b"b" in batch for batch in first_polls)
    rest = drain(src)
    assert sum(len(b) for b in first_polls) + len(rest) == 200


def test_rotation_asking_before_start_gets_every_matching_file_and_its_renames_are_followed(
        env: Env) -> None:
    # Issue 10, defect 4: the forwarder still connects to Kafka (source not started) when
    # rotation asks what is undelivered; the first scan runs now, every file of ours counts.
    path = env.write("app.log", b"".join(f"line {i}\n".encode() for i in range(100)))
    env.write("other.txt", b"not ours\n")
    src = env.source(start=False)
    st = path.stat()
    assert src.pending_by_file() == {(st.st_dev, st.st_ino): st.st_size}
    assert src.pending_bytes() == {str(path): st.st_size}
    path.rename(env.logs / "app.log.20261203-000000")  # rotation renames it out of the globs
    [cp] = json.loads((env.state / "p.json").read_text())["entries"].values()
    assert (cp["ino"], cp["offset"]) == (st.st_ino, 0)  # saved at once: found after a crash
    src.start()
    env.rescan()
    got = drain(src)
    assert lines(got) == [f"line {i}".encode() for i in range(100)]
    assert src.pending_by_file() == {(st.st_dev, st.st_ino): 0}


def test_a_stopped_source_reports_every_matching_file_and_what_it_left_undelivered(
        env: Env) -> None:
    path = env.write("app.log", b"a\n")
    old = env.write("old.log", b"b\nc\n")
    src = env.source()
    drain(src, ack=False)
    old.rename(env.logs / "old.log.1")
    env.rescan()
    drain(src, ack=False)
    src.stop()
    st, st_old = path.stat(), (env.logs / "old.log.1").stat()
    assert src.pending_by_file() == {(st.st_dev, st.st_ino): 2,
                                     (st_old.st_dev, st_old.st_ino): 4}
