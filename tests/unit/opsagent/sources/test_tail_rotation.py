"""Rotation by rename, copytruncate / truncation, deleted-while-open, inode reuse and restarts,
and hostile names (FIFO, symlink, directory named like a log)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from opsagent.sources.tail.identity import FileKey
from tests.unit.opsagent.sources.tail_helpers import Env, drain, lines, open_fds


@pytest.mark.parametrize("include", [("app.log",), ("app.log*",)],
                         ids=["renamed-out-of-globs", "renamed-within-globs"])
def test_rotation_by_rename_finishes_old_file_first(env: Env, include: tuple[str, ...]) -> None:
    env.write("app.log", b"1\n2\n")
    src = env.source(include=include)
    first = drain(src)
    old_key = first[0].key
    # The writer still has the old file open: data lands in it after the rename.
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.write("app.log.1", b"3\n")
    env.write("app.log", b"4\n")
    env.rescan()
    recs = drain(src)
    assert lines(recs) == [b"3", b"4"]
    assert recs[0].key == old_key and recs[0].path == str(env.logs / "app.log.1")
    assert recs[0].start == 4
    assert recs[1].key != old_key and recs[1].start == 0
    assert env.metric("opsagent_tail_rotations_total") == 1
    # Late writes to the rotated file are still read.
    env.write("app.log.1", b"5\n")
    assert [(r.data, r.key) for r in drain(src)] == [(b"5", old_key)]


def test_renamed_out_file_closed_after_idle_when_delivered(env: Env) -> None:
    env.write("app.log", b"1\n")
    src = env.source(include=("app.log",), rotated_file_idle_secs=30.0)
    drain(src)
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.write("app.log", b"2\n")
    env.rescan()
    drain(src)
    assert env.metric("opsagent_tail_files_open") == 2
    assert str(env.logs / "app.log.1") in src.pending_bytes()
    env.clock.advance(30.0)
    drain(src)
    assert env.metric("opsagent_tail_files_open") == 1
    assert list(src.pending_bytes()) == [str(env.logs / "app.log")]


def test_rotated_file_kept_open_until_acked(env: Env) -> None:
    env.write("app.log", b"1\n")
    src = env.source(include=("app.log",), rotated_file_idle_secs=1.0)
    recs = drain(src, ack=False)
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.rescan()
    drain(src)
    assert src.pending_bytes() == {str(env.logs / "app.log.1"): 2}
    assert env.metric("opsagent_tail_files_open") == 1
    src.ack(recs[0].key, recs[0].end)
    env.clock.advance(1.0)
    drain(src)
    assert src.pending_bytes() == {}
    assert env.metric("opsagent_tail_files_open") == 0


def test_partial_line_of_rotated_file_is_emitted_when_idle(env: Env) -> None:
    env.write("app.log", b"1\nhalf")
    src = env.source(include=("app.log",), rotated_file_idle_secs=1.0,
                     partial_line_timeout_secs=100.0)
    assert lines(drain(src)) == [b"1"]
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.rescan()
    env.clock.advance(1.0)
    recs = drain(src)
    assert [(r.data, r.start, r.end) for r in recs] == [(b"half", 2, 6)]


@pytest.mark.parametrize(
    ("before", "after", "lost"),
    [
        (b"aaaa\nbbbb\n", b"c\n", 0),
        (b"aaaa\n", b"", 0),
    ],
    ids=["copytruncate-then-write", "truncate-to-empty"],
)
def test_truncation_restarts_at_zero(env: Env, before: bytes, after: bytes, lost: int) -> None:
    path = env.write("app.log", before)
    src = env.source()
    old = drain(src)
    os.truncate(path, 0)
    env.write("app.log", after)
    recs = drain(src)
    assert lines(recs) == ([after.rstrip(b"\n")] if after else [])
    assert all(r.start == 0 and r.key != old[0].key for r in recs)
    assert env.metric("opsagent_tail_truncations_total") == 1
    assert env.metric("opsagent_tail_truncation_lost_bytes_total") == lost


def test_truncation_counts_bytes_known_but_unread(env: Env) -> None:
    path = env.write("app.log", b"0123456789\n" * 10)
    src = env.source(read_chunk_bytes=22, max_read_ahead_bytes=22)
    recs = drain(src, ack=False)
    assert len(recs) == 2  # read-ahead cap: 88 bytes known to exist are not read yet
    src.pending_bytes()
    os.truncate(path, 0)
    src.ack(recs[-1].key, recs[-1].end)  # acks of the old generation still count until then
    env.write("app.log", b"new\n")
    recs2 = drain(src)
    assert lines(recs2) == [b"new"]
    assert env.metric("opsagent_tail_truncation_lost_bytes_total") == 88


def test_truncate_and_regrow_past_offset_detected_by_head_check(env: Env) -> None:
    path = env.write("app.log", b"old line\n")
    src = env.source()
    first = drain(src)
    os.truncate(path, 0)
    env.write("app.log", b"NEW LINE ONE\nNEW TWO\n")  # longer than the old offset
    env.rescan()
    recs = drain(src)
    assert lines(recs) == [b"NEW LINE ONE", b"NEW TWO"]
    assert recs[0].start == 0 and recs[0].key != first[0].key
    assert env.metric("opsagent_tail_truncations_total") == 1


def test_partial_line_before_truncation_is_emitted_with_old_key(env: Env) -> None:
    path = env.write("app.log", b"a\nhal")
    src = env.source()
    old = drain(src)
    os.truncate(path, 0)
    env.write("app.log", b"x\n")
    recs = drain(src)
    assert [(r.data, r.key == old[0].key) for r in recs] == [(b"hal", True), (b"x", False)]


def test_deleted_file_read_to_end_then_closed_after_ack(env: Env) -> None:
    path = env.write("app.log", b"a\n")
    src = env.source()
    fds = open_fds()
    recs = drain(src, ack=False)
    env.write("app.log", b"b\n")
    os.unlink(path)
    env.rescan()
    recs += drain(src, ack=False)
    assert lines(recs) == [b"a", b"b"]
    assert open_fds() == fds  # still open: not acked yet
    for r in recs:
        src.ack(r.key, r.end)
    drain(src)
    assert open_fds() == fds - 1
    assert env.metric("opsagent_tail_files_open") == 0


@pytest.mark.parametrize(("max_files", "max_secs", "advance", "abandoned"),
                         [(0, 3600.0, 0.0, 2), (1, 3600.0, 0.0, 1), (5, 10.0, 11.0, 2),
                          (5, 10.0, 9.0, 0)],
                         ids=["count-0", "count-1", "age-over", "age-under"])
def test_deleted_file_budget(env: Env, max_files: int, max_secs: float, advance: float,
                             abandoned: int) -> None:
    for name in ("a.log", "b.log"):
        env.write(name, b"0123456789\n" * 4)
    src = env.source(read_chunk_bytes=11, max_read_ahead_bytes=11,
                     max_open_deleted_files=max_files, deleted_file_max_secs=max_secs)
    drain(src, ack=False)  # one line read from each, not acked: the rest is unread
    os.unlink(env.logs / "a.log")
    os.unlink(env.logs / "b.log")
    env.rescan()
    drain(src, ack=False)
    env.clock.advance(advance)
    drain(src, ack=False)
    assert env.metric("opsagent_tail_errors_total", reason="deleted_budget") == abandoned
    assert env.metric("opsagent_tail_abandoned_bytes_total") == 33 * abandoned
    assert env.metric("opsagent_tail_files_open") == 2 - abandoned


def test_restart_resumes_renamed_out_file(env: Env) -> None:
    env.write("app.log", b"1\n2\n")
    src = env.source(include=("app.log",))
    recs = src.poll(timeout=0)
    src.ack(recs[0].key, recs[0].end)
    src.stop()
    os.rename(env.logs / "app.log", env.logs / "app.log.1")  # rotated while the agent was down
    env.write("app.log", b"3\n")
    again = env.source(include=("app.log",))
    got = drain(again)
    assert [(r.data, r.path.rsplit("/", 1)[1]) for r in got] == [(b"2", "app.log.1"),
                                                                (b"3", "app.log")]
    assert got[0].key == recs[0].key


def test_restart_resumes_file_renamed_out_before_stop(env: Env) -> None:
    env.write("app.log", b"1\n2\n")
    src = env.source(include=("app.log",))
    recs = src.poll(timeout=0)
    src.ack(recs[0].key, recs[0].end)
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.rescan()
    drain(src, ack=False)
    src.stop()
    doc = json.loads((env.state / "p.json").read_bytes())
    assert [e["path"] for e in doc["entries"].values()] == [str(env.logs / "app.log.1")]
    again = env.source(include=("app.log",))
    assert [(r.data, r.key) for r in drain(again)] == [(b"2", recs[0].key)]


_LONG_HEAD = b"H" * 300 + b"\n"


@pytest.mark.parametrize(
    ("original", "rewrite", "reason"),
    [
        (b"1\n2\n3\n", b"different content\n", "inode_reuse"),
        (b"1\n2\n3\n", b"1\n", "truncated_while_stopped"),
        # Same first 256 bytes (head hash equal), other bytes just before the offset.
        (_LONG_HEAD + b"aa\nbb\n", _LONG_HEAD + b"aa\nXX\nmore\n", "inode_reuse"),
    ],
    ids=["new-content", "shorter", "same-head-other-tail"],
)
def test_checkpoint_content_mismatch_starts_from_zero(env: Env, original: bytes,
                                                      rewrite: bytes, reason: str) -> None:
    env.write("app.log", original)
    src = env.source()
    for r in drain(src):
        src.ack(r.key, r.end)
    src.stop()
    # Rewrite in place: the saved (dev, ino) matches but the content does not, as after the
    # inode was reused by a new file.
    with open(env.logs / "app.log", "r+b") as f:
        f.truncate(0)
        f.write(rewrite)
    again = env.source()
    recs = drain(again)
    assert b"".join(r.data + b"\n" for r in recs) == rewrite
    assert recs[0].start == 0
    assert env.metric("opsagent_tail_errors_total", reason=reason) == 1


def test_unchanged_file_resumes_without_error(env: Env) -> None:
    env.write("app.log", _LONG_HEAD + b"aa\n")
    src = env.source()
    for r in drain(src):
        src.ack(r.key, r.end)
    src.stop()
    env.write("app.log", b"bb\n")
    again = env.source()
    assert lines(drain(again)) == [b"bb"]
    assert env.metric("opsagent_tail_errors_total", reason="inode_reuse") == 0


def test_inode_reuse_by_new_file_with_same_first_line(env: Env) -> None:
    path = env.write("app.log", b"HEADER\nold body line\n")
    src = env.source()
    for r in drain(src):
        src.ack(r.key, r.end)
    src.stop()
    saved = json.loads((env.state / "p.json").read_bytes())["entries"]
    (cp,) = saved.values()
    os.unlink(path)
    # Simulate the new file getting the old inode: rewrite the checkpoint to point at the
    # inode of a fresh file with the same header (inode numbers cannot be forced in a test).
    path2 = env.write("app.log", b"HEADER\nnew body line!\n")
    st = os.stat(path2)
    key = str(FileKey(st.st_dev, st.st_ino, cp["fingerprint"]))
    cp.update(dev=st.st_dev, ino=st.st_ino)
    from opsagent.state.checkpoints import Checkpoint, CheckpointStore
    CheckpointStore(str(env.state), "p", registry=env.registry).save({key: Checkpoint(**cp)})
    again = env.source()
    assert lines(drain(again)) == [b"HEADER", b"new body line!"]
    assert env.metric("opsagent_tail_errors_total", reason="inode_reuse") == 1


def test_fifo_symlink_and_directory_named_like_logs_are_skipped(env: Env,
                                                                 tmp_path: object) -> None:
    os.mkfifo(env.logs / "fifo.log")
    secret = env.logs.parent / "secret.txt"
    secret.write_bytes(b"secret\n")
    os.symlink(secret, env.logs / "link.log")
    (env.logs / "dir.log").mkdir()
    outside = env.logs.parent / "outside"
    outside.mkdir()
    (outside / "x.log").write_bytes(b"via symlinked dir\n")
    os.symlink(outside, env.logs / "sub")
    env.write("ok.log", b"fine\n")
    src = env.source(include=("*.log", "**/x.log"))
    assert lines(drain(src)) == [b"fine"]
    assert env.metric("opsagent_tail_errors_total", reason="not_regular") == 2
    assert env.metric("opsagent_tail_errors_total", reason="symlink") == 1
    env.rescan()
    drain(src)  # counted once per name, not at every rescan
    assert env.metric("opsagent_tail_errors_total", reason="not_regular") == 2


def test_corrupt_checkpoint_is_reported_and_previous_generation_used(env: Env) -> None:
    env.write("app.log", b"1\n2\n3\n")
    src = env.source()
    recs = src.poll(timeout=0)
    src.ack(recs[0].key, recs[0].end)
    src.save_checkpoints()
    src.ack(recs[1].key, recs[1].end)
    src.stop()
    current = env.state / "p.json"
    current.write_bytes(current.read_bytes()[:-20])  # truncated by a crash
    again = env.source()
    assert lines(drain(again)) == [b"2", b"3"]  # previous generation: offset after "1"
    assert env.metric("opsagent_checkpoint_corrupt_total") == 1


def lose_checkpoints(env: Env) -> None:
    """Both generations damaged, as by a crash or a broken disk."""
    for name in ("p.json", "p.json.1"):
        path = env.state / name
        if path.exists():
            path.write_bytes(path.read_bytes()[:-20])


@pytest.mark.parametrize("damage", ["both-corrupt", "current-corrupt", "no-state"])
def test_start_at_end_after_a_restart(env: Env, damage: str) -> None:
    """start_at = "end" skips what files held before the first start only: with checkpoints
    that all are corrupt, the files are read from the start (duplicates), never from the end
    (which would lose the lines written while the agent was down)."""
    env.write("app.log", b"before\n")
    src = env.source(start_at="end")
    env.write("app.log", b"1\n")
    assert lines(drain(src)) == [b"1"]
    src.save_checkpoints()
    env.write("app.log", b"2\n")
    assert lines(drain(src)) == [b"2"]
    src.stop()  # saves again: two generations
    env.write("app.log", b"while-down\n")
    if damage == "both-corrupt":
        lose_checkpoints(env)
    elif damage == "current-corrupt":
        current = env.state / "p.json"
        current.write_bytes(current.read_bytes()[:-20])
    else:
        for name in ("p.json", "p.json.1"):
            (env.state / name).unlink()
    again = env.source(start_at="end")
    expected = {
        "both-corrupt": [b"before", b"1", b"2", b"while-down"],  # duplicates, no loss
        "current-corrupt": [b"2", b"while-down"],  # previous generation: after "1"
        "no-state": [],  # a first start: existing content skipped by design
    }[damage]
    assert lines(drain(again)) == expected


def test_auto_ack_of_old_generation_does_not_move_new_offset(env: Env) -> None:
    path = env.write("app.log", b"a\nhal")
    src = env.source(auto_ack=True)
    drain(src)
    os.truncate(path, 0)
    assert lines(drain(src)) == [b"hal"]  # the old generation's partial line
    src.stop()
    env.write("app.log", b"new\n")
    again = env.source()
    assert lines(drain(again)) == [b"new"]
    assert env.metric("opsagent_tail_errors_total", reason="truncated_while_stopped") == 0


def test_checkpoint_of_file_missing_at_start_is_kept_for_a_while(env: Env) -> None:
    (env.logs / "late").mkdir()
    env.write("late/app.log", b"1\n2\n")
    src = env.source(include=("late/*.log",))
    recs = drain(src)
    src.stop()
    os.rename(env.logs / "late", env.logs / "hidden")  # the volume is not there at start
    again = env.source(include=("late/*.log",), deleted_file_max_secs=100.0)
    assert drain(again) == []
    again.save_checkpoints()
    saved = json.loads((env.state / "p.json").read_bytes())["entries"]
    assert list(saved) == [str(recs[0].key)]  # still there
    os.rename(env.logs / "hidden", env.logs / "late")
    env.write("late/app.log", b"3\n")
    env.rescan()
    assert lines(drain(again)) == [b"3"]  # resumed, not read again from 0


def test_orphaned_checkpoint_dropped_after_deadline(env: Env) -> None:
    env.write("app.log", b"1\n")
    src = env.source()
    drain(src)
    src.stop()
    os.unlink(env.logs / "app.log")
    again = env.source(deleted_file_max_secs=30.0)
    again.save_checkpoints()
    assert json.loads((env.state / "p.json").read_bytes())["entries"] != {}
    env.clock.advance(30.0)
    drain(again)
    again.save_checkpoints()
    assert json.loads((env.state / "p.json").read_bytes())["entries"] == {}


def test_multiline_event_split_by_rotation_loses_nothing(env: Env) -> None:
    from opsagent.sources.tail import MultilineConfig

    env.write("app.log", b"INFO a\nERROR x\n\tat one\n")
    src = env.source(include=("app.log",), multiline=MultilineConfig(),
                     rotated_file_idle_secs=3.0)
    assert lines(drain(src)) == [b"INFO a"]
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.write("app.log", b"\tat two\nINFO b\n")
    env.rescan()
    got = drain(src)
    env.clock.advance(3.0)
    got += drain(src)
    # Each file's part of the event is its own record (keys differ); nothing is lost.
    assert sorted(lines(got)) == sorted([b"ERROR x\n\tat one", b"INFO b", b"\tat two"])
    assert env.metric("opsagent_tail_files_open") == 1  # the rotated file was finished


def test_pending_follows_a_rotated_file_renamed_again(env: Env) -> None:
    env.write("app.log", b"1\n2\n")
    src = env.source(include=("app.log",))
    drain(src, ack=False)
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.rescan()
    drain(src, ack=False)
    os.rename(env.logs / "app.log.1", env.logs / "app.log.2")
    env.rescan()
    drain(src, ack=False)
    assert src.pending_bytes() == {str(env.logs / "app.log.2"): 4}
    st = os.stat(env.logs / "app.log.2")
    assert src.pending_by_file() == {(st.st_dev, st.st_ino): 4}


def test_hard_link_to_a_file_outside_and_a_device_node_are_not_tailed(env: Env) -> None:
    # A hard link to a file outside the tree (same filesystem) would ship its content to Kafka;
    # a device node named like a log is looked at through O_PATH, never opened (no driver code).
    secret = env.logs.parent / "shadow"
    secret.write_bytes(b"root:secret-hash\n")
    os.link(secret, env.logs / "stolen.log")
    os.mknod(env.logs / "dev.log", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    env.write("ok.log", b"fine\n")
    src = env.source()
    assert lines(drain(src)) == [b"fine"]
    assert env.metric("opsagent_tail_errors_total", reason="hard_link") == 1
    assert env.metric("opsagent_tail_errors_total", reason="not_regular") == 1


def test_hard_link_unlinked_right_after_the_open_is_not_tailed(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race the link count alone loses: the in-tree link to an outside file is removed
    # between our O_PATH open and fstat, so fstat counts one link - the outside one. Injected
    # at that exact moment (deterministic) instead of raced.
    from opsagent import safeopen

    secret = env.logs.parent / "shadow"
    secret.write_bytes(b"root:secret-hash\n")
    os.link(secret, env.logs / "stolen.log")
    real_fstat = os.fstat
    armed = [True]

    def fstat_after_unlink(fd: int) -> os.stat_result:
        if armed[0] and stat.S_ISREG(real_fstat(fd).st_mode):
            armed[0] = False
            os.unlink(env.logs / "stolen.log")
        return real_fstat(fd)

    class OsProxy:
        def __getattr__(self, name: str) -> object:
            return fstat_after_unlink if name == "fstat" else getattr(os, name)

    monkeypatch.setattr(safeopen, "os", OsProxy())
    src = env.source()
    assert drain(src) == []
    assert not armed[0], "the unlink was not injected"
    assert secret.read_bytes() == b"root:secret-hash\n"


def test_files_created_and_rotated_while_the_agent_was_down_are_read_once(env: Env) -> None:
    # Issue 10, defect 2: with globs that also match rotated names (the shipped default) and
    # compressed archives excluded, a file created and renamed away while the agent was down
    # is read at start, and a renamed file already (partly) read is resumed, never re-read.
    kw = {"include": ("app*.log*",), "exclude": ("*.zst", "*.gz")}
    env.write("app.log", b"a0\na1\n")
    src = env.source(**kw)
    assert lines(drain(src)) == [b"a0", b"a1"]
    src.stop()
    env.write("app.log", b"a2\n")                       # written after the stop
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.write("app.log", b"b0\nb1\n")                   # a whole file's life while down
    os.rename(env.logs / "app.log", env.logs / "app.log.2")
    env.write("app.log.2.zst", b"\x28\xb5\x2f\xfd compressed\n")
    env.write("app.log.1.gz", b"\x1f\x8b gzip\n")
    env.write("app.log", b"c0\n")
    got = drain(env.source(**kw))
    assert sorted(lines(got)) == [b"a2", b"b0", b"b1", b"c0"]
    by_file = {r.path.rsplit("/", 1)[1]: r.data for r in got if r.data != b"b1"}
    assert by_file == {"app.log.1": b"a2", "app.log.2": b"b0", "app.log": b"c0"}


def test_narrow_globs_miss_a_file_created_and_rotated_while_down(env: Env) -> None:
    # Why the default globs match rotated names: with "*.log" only, a file whose whole life
    # (creation, rename out of the globs) falls while the agent is down is never seen.
    env.write("app.log", b"a0\n")
    src = env.source()
    drain(src)
    src.stop()
    os.rename(env.logs / "app.log", env.logs / "app.log.1")
    env.write("app.log", b"b0\n")
    os.rename(env.logs / "app.log", env.logs / "app.log.2")
    assert lines(drain(env.source())) == []
