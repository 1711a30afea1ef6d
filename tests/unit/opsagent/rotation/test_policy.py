"""Table tests of the pure rotation planner: snapshot + policy + time -> plan."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from opsagent.rotation.config import RotateConfig
from opsagent.rotation.naming import archive_name, classify, stamp_of, stamp_time
from opsagent.rotation.policy import DirSnapshot, Entry, plan

D = "/pvc/pod-a/logs"
NOW = 1_790_000_000.0   # 2026-09-21T...Z
DAY = 86400.0


def cfg(**kw: Any) -> RotateConfig:
    base: dict[str, Any] = {"name": "t", "directories": ("/pvc/*/logs",), "compress": False,
                            "keep": 0}
    base.update(kw)
    return RotateConfig(**base)


def e(name: str, size: int = 100, alloc: int | None = None, nlink: int = 1) -> Entry:
    return Entry(name, size, size if alloc is None else alloc, 0.0, nlink)


def arch(active: str, age_secs: float, *, zst: bool = False, size: int = 100) -> Entry:
    return e(f"{active}.{stamp_of(NOW - age_secs)}{'.zst' if zst else ''}", size)


def kinds(p: Any) -> list[tuple[str, str]]:
    return [(a.kind, a.name) for a in p.actions]


def test_naming_roundtrip_and_ownership() -> None:
    inc, exc = ("*.log",), ("debug.log",)
    a = archive_name("app.log", NOW, set())
    assert classify(a, inc, exc).kind == "archive"  # type: ignore[union-attr]
    assert classify(a + ".zst", inc, exc).kind == "compressed"  # type: ignore[union-attr]
    assert classify("app.log", inc, exc).kind == "active"  # type: ignore[union-attr]
    assert classify("debug.log", inc, exc) is None
    assert classify("debug.log.20260101-000000.zst", inc, exc) is None
    assert classify("app.log.1", inc, exc) is None          # logrotate's names are not ours
    assert classify("app.txt.20260101-000000", inc, exc) is None
    assert classify(".opsagent-tmp.abc", inc, exc).kind == "temp"  # type: ignore[union-attr]
    assert stamp_time(stamp_of(NOW)) == float(int(NOW))
    assert archive_name("app.log", NOW, {a}) == a + ".1"
    assert archive_name("app.log", NOW, {a, a + ".1.zst"}) == a + ".2"


@pytest.mark.parametrize(
    ("policy", "entries", "expected"),
    [
        pytest.param(dict(rotate_size_bytes=1000), [e("app.log", 999)], [], id="size-below"),
        pytest.param(dict(rotate_size_bytes=1000), [e("app.log", 1000)],
                     [("rotate", "app.log")], id="size-reached"),
        pytest.param(dict(rotate_size_bytes=1), [e("app.log", 0)], [], id="empty-never-rotates"),
        pytest.param(dict(rotate_size_bytes=1), [e("other.txt", 5000)], [], id="not-owned"),
        pytest.param(dict(rotate_size_bytes=1), [e("app.log", 5000, nlink=2)], [],
                     id="hard-link-refused"),
        pytest.param(dict(rotate_every="daily"), [e("app.log"), arch("app.log", DAY + 60)],
                     [("rotate", "app.log")], id="daily-due-from-archive-stamp"),
        pytest.param(dict(rotate_every="hourly"), [e("app.log"), arch("app.log", 10)],
                     [], id="hourly-not-due"),
        pytest.param(dict(rotate_every="daily"), [e("app.log")], [],
                     id="daily-unknown-start-waits"),
        pytest.param(dict(keep=2), [e("app.log"), arch("app.log", 30), arch("app.log", 20),
                                    arch("app.log", 10)],
                     [("delete", "app.log." + stamp_of(NOW - 30))], id="keep-n"),
        pytest.param(dict(max_age_secs=25), [arch("app.log", 30), arch("app.log", 20)],
                     [("delete", "app.log." + stamp_of(NOW - 30))], id="max-age"),
        pytest.param(dict(compress=True), [arch("app.log", 20), arch("b.log", 10, zst=True)],
                     [("compress", "app.log." + stamp_of(NOW - 20))], id="compress"),
        pytest.param(dict(compress=True, delay_compress=True),
                     [arch("app.log", 20), arch("app.log", 10)],
                     [("compress", "app.log." + stamp_of(NOW - 20))], id="delay-compress"),
        pytest.param({}, [e(".opsagent-tmp.1234")], [("remove_temp", ".opsagent-tmp.1234")],
                     id="leftover-temp"),
        pytest.param({}, [arch("app.log", 20), arch("app.log", 20, zst=True)],
                     [("finish_compress", "app.log." + stamp_of(NOW - 20))],
                     id="crash-between-rename-and-unlink"),
    ],
)
def test_plan_table(policy: dict[str, Any], entries: list[Entry],
                    expected: list[tuple[str, str]]) -> None:
    p = plan([DirSnapshot(D, tuple(entries))], cfg(**policy), NOW)
    assert kinds(p) == expected


def test_rotation_targets_are_fresh_and_compressed_same_pass() -> None:
    c = cfg(rotate_size_bytes=10, compress=True)
    p = plan([DirSnapshot(D, (e("app.log", 50),))], c, NOW)
    target = "app.log." + stamp_of(NOW)
    assert [(a.kind, a.name, a.target) for a in p.actions] == [
        ("rotate", "app.log", target), ("compress", target, target + ".zst")]


def test_soft_quota_compresses_before_deleting() -> None:
    c = cfg(quota_soft_bytes=250, compress=False)
    entries = (e("app.log", 100), arch("app.log", 30), arch("app.log", 20))
    p = plan([DirSnapshot(D, entries)], c, NOW)
    assert [a.kind for a in p.actions] == ["compress", "compress"]
    assert p.usage[D] == 300


def test_soft_quota_deletes_oldest_when_nothing_left_to_compress() -> None:
    c = cfg(quota_soft_bytes=250)
    entries = (e("app.log", 100), arch("app.log", 30, zst=True), arch("app.log", 20, zst=True),
               arch("app.log", 10, zst=True))
    p = plan([DirSnapshot(D, entries)], c, NOW)
    assert kinds(p) == [("delete", entries[1].name), ("delete", entries[2].name)]
    assert not p.breaches


def test_quota_counts_allocated_blocks_not_size() -> None:
    # A 1 TB sparse file allocates almost nothing: it must not trigger the quota...
    sparse = Entry("app.log", 1 << 40, 4096, 0.0)
    p = plan([DirSnapshot(D, (sparse,))], cfg(quota_soft_bytes=1 << 20), NOW)
    assert p.actions == () and p.usage[D] == 4096
    # ...and a file with few visible bytes but many blocks counts in full.
    dense = Entry("app.log", 10, 1 << 30, 0.0)
    p = plan([DirSnapshot(D, (dense,))], cfg(quota_soft_bytes=1 << 20), NOW)
    assert [b.limit for b in p.breaches] == ["soft"]


def test_hard_limit_truncates_largest_active_as_last_resort() -> None:
    c = cfg(quota_soft_bytes=100, quota_hard_bytes=200)
    entries = (e("a.log", 300), e("b.log", 50), arch("a.log", 10, zst=True))
    p = plan([DirSnapshot(D, entries)], c, NOW)
    assert kinds(p) == [("delete", entries[2].name), ("truncate", "a.log")]
    assert sorted(b.limit for b in p.breaches) == ["hard", "soft"]


def test_hard_action_none_only_reports() -> None:
    c = cfg(quota_soft_bytes=100, quota_hard_bytes=200, hard_action="none")
    p = plan([DirSnapshot(D, (e("a.log", 300),))], c, NOW)
    assert p.actions == ()
    assert [b.limit for b in p.breaches] == ["soft", "hard"]


def test_undelivered_archives_survive_soft_limit_but_not_hard() -> None:
    old = arch("app.log", 30, zst=True, size=100)
    entries = (e("app.log", 100), old)
    und = {f"{D}/{old.name}": 42}
    soft = plan([DirSnapshot(D, entries)], cfg(quota_soft_bytes=150), NOW, undelivered=und)
    assert soft.actions == () and [b.limit for b in soft.breaches] == ["soft"]
    hard = plan([DirSnapshot(D, entries)], cfg(quota_soft_bytes=100, quota_hard_bytes=150), NOW,
                undelivered=und)
    assert [(a.kind, a.undelivered_bytes) for a in hard.actions] == [("delete", 42)]


@pytest.mark.parametrize("rule", [{"keep": 1}, {"max_age_secs": 60.0}], ids=["keep", "max-age"])
def test_retention_waits_for_undelivered_archives(rule: dict[str, Any]) -> None:
    # Found by the chaos suite: with Kafka down, keep/max-age deleted archives the forwarder had
    # not read (logged as a forced action although no hard limit was set).
    old, older = arch("app.log", 3600, size=100), arch("app.log", 7200, size=100)
    entries = (e("app.log", 100), old, older)
    und = {f"{D}/{older.name}": 42}
    p = plan([DirSnapshot(D, entries)], cfg(**rule), NOW, undelivered=und)
    assert ("delete", older.name) not in kinds(p)
    delivered = plan([DirSnapshot(D, entries)], cfg(**rule), NOW)
    assert ("delete", older.name) in kinds(delivered)


def test_undelivered_active_is_not_copytruncated() -> None:
    c = cfg(rotate_size_bytes=10, method="copytruncate")
    p = plan([DirSnapshot(D, (e("app.log", 50),))], c, NOW, undelivered={f"{D}/app.log": 7})
    assert [(a.kind, a.method) for a in p.actions] == [("rotate", "skip")]


def test_pod_quota_spans_directories() -> None:
    c = cfg(quota_soft_bytes=250, quota_scope="pod", pod_pattern=r"^/pvc/(?P<pod>[^/]+)/")
    d1, d2 = "/pvc/p1/logs/a", "/pvc/p1/logs/b"
    s1 = DirSnapshot(d1, (e("x.log", 100), arch("x.log", 30, zst=True)))
    s2 = DirSnapshot(d2, (e("y.log", 100), arch("y.log", 20, zst=True)))
    p = plan([s1, s2], c, NOW, group_of={d1: "pod:p1", d2: "pod:p1"})
    assert p.usage == {"pod:p1": 400}
    # The oldest archive across the pod goes first, then the next.
    assert [(a.kind, a.directory) for a in p.actions] == [("delete", d1), ("delete", d2)]


def test_name_too_long_for_archive_is_skipped_not_failed() -> None:
    long = "x" * 251 + ".log"
    p = plan([DirSnapshot(D, (e(long, 50),))], cfg(rotate_size_bytes=10), NOW)
    assert [(a.kind, a.method) for a in p.actions] == [("rotate", "skip")]
    assert "too long" in p.actions[0].reason


def test_far_future_and_past_mtimes_do_not_matter() -> None:
    # Decisions use sizes and archive stamps, never attacker-set mtimes.
    entries = tuple(dataclasses.replace(x, mtime=m) for x, m in
                    [(e("app.log", 50), 4e12), (arch("app.log", 10), -4e12)])
    p = plan([DirSnapshot(D, entries)], cfg(keep=5), NOW)
    assert p.actions == ()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(directories=("relative/*",)), "absolute"),
        (dict(name="../../etc/x"), "name must be"),
        (dict(include=("a/b.log",)), "file-name glob"),
        (dict(compress_level=0), "compress_level"),
        (dict(quota_soft_bytes=10, quota_hard_bytes=5), "must not exceed"),
        (dict(quota_scope="pod", pod_pattern="(x"), "invalid regex"),
        (dict(quota_scope="pod", pod_pattern="x"), "named group"),
        (dict(method="copytruncate", post_rotate_argv=("kill",)), "post_rotate_argv"),
    ],
    ids=["relative", "name-path", "slash-glob", "level", "soft>hard", "bad-regex", "no-pod-group",
         "hook"],
)
def test_config_validation(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg(**kw)


def test_sparse_archive_is_not_compressed() -> None:
    sparse = Entry("app.log." + stamp_of(NOW - 10), 1 << 40, 8192, 0.0)
    p = plan([DirSnapshot(D, (sparse,))], cfg(compress=True), NOW)
    assert p.actions == ()


@pytest.mark.parametrize("stamp", ["99999999-999999", "20260230-000000", "00000101-000000",
                                   "20261126-246060"])
def test_impossible_stamps_are_not_ours_and_do_not_break_the_plan(stamp: str) -> None:
    # An attacker's `app.log.99999999-999999` used to make stamp_time raise inside plan(),
    # which stopped rotation for every directory of the policy.
    hostile = e(f"app.log.{stamp}")
    assert classify(hostile.name, ("*.log",), ()) is None
    p = plan([DirSnapshot(D, (e("app.log", 50), hostile, arch("app.log", 2 * DAY)))],
             cfg(max_age_secs=DAY, rotate_every="daily", rotate_size_bytes=10), NOW)
    assert ("delete", hostile.name) not in kinds(p)
    assert ("delete", "app.log." + stamp_of(NOW - 2 * DAY)) in kinds(p)


def _linked(name: str, ino: int, size: int = 100) -> Entry:
    return Entry(name, size, size, 0.0, 2, ino)


def test_interrupted_link_unlink_rename_is_finished() -> None:
    # rename_noreplace's fallback (link, then unlink) crashed in between: both names, one inode.
    target = "app.log." + stamp_of(NOW - 5)
    p = plan([DirSnapshot(D, (_linked("app.log", 7), _linked(target, 7)))], cfg(), NOW)
    assert [(a.kind, a.name, a.target) for a in p.actions] == [
        ("finish_rename", "app.log", target)]
    assert p.usage[D] == 100          # one inode, counted once


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param((_linked("app.log", 7), _linked("other.log." + stamp_of(NOW), 7)),
                     id="archive-of-another-log"),
        pytest.param((_linked("app.log", 7), _linked("app.log." + stamp_of(NOW), 8)),
                     id="different-inodes"),
        pytest.param((Entry("app.log", 1, 1, 0.0, 3, 7), Entry("app.log." + stamp_of(NOW),
                                                                1, 1, 0.0, 3, 7)),
                     id="a-third-link-elsewhere"),
    ],
)
def test_other_hard_links_are_refused_but_counted(entries: tuple[Entry, ...]) -> None:
    p = plan([DirSnapshot(D, entries)], cfg(rotate_size_bytes=1), NOW)
    assert p.actions == ()
    assert {r for _, r in p.skipped} == {"has more than one hard link"}
    assert p.usage[D] > 0


def test_temp_linked_to_an_archive_is_removed() -> None:
    z = "app.log." + stamp_of(NOW - 5) + ".zst"
    p = plan([DirSnapshot(D, (_linked(".opsagent-tmp.x", 9), _linked(z, 9)))], cfg(), NOW)
    assert kinds(p) == [("remove_temp", ".opsagent-tmp.x")]


def test_soft_quota_is_not_held_up_by_an_archive_that_cannot_shrink_enough() -> None:
    # One uncompressed archive is being compressed every pass (it may never succeed: an app
    # still writing it); even if it shrank to nothing the group stays over the soft limit, so
    # the oldest compressed archive goes now (600 - 100 pending - 200 <= 300).
    c = cfg(quota_soft_bytes=300, compress=True)
    old1, old2 = arch("app.log", 50, zst=True, size=200), arch("app.log", 40, zst=True, size=200)
    fresh = arch("app.log", 10, size=100)
    p = plan([DirSnapshot(D, (e("app.log", 100), old1, old2, fresh))], c, NOW)
    assert kinds(p) == [("compress", fresh.name), ("delete", old1.name)]
    assert not p.breaches


def test_hard_limit_does_not_compress_what_it_deletes() -> None:
    c = cfg(quota_soft_bytes=100, quota_hard_bytes=200, compress=True, hard_action="none")
    a1 = arch("app.log", 30, size=300)
    p = plan([DirSnapshot(D, (e("app.log", 50), a1))], c, NOW)
    assert kinds(p) == [("delete", a1.name)]


def test_pod_quota_tracks_compressions_per_directory() -> None:
    # The same archive name in two directories of one pod: each is its own file.
    c = cfg(quota_soft_bytes=250, quota_scope="pod", pod_pattern=r"^/pvc/(?P<pod>[^/]+)/",
            compress=True)
    d1, d2 = "/pvc/p1/logs/a", "/pvc/p1/logs/b"
    name = arch("x.log", 30).name
    s1 = DirSnapshot(d1, (e(name, 200),))
    s2 = DirSnapshot(d2, (e(name, 200, alloc=200),))
    p = plan([s1, s2], c, NOW, group_of={d1: "pod:p1", d2: "pod:p1"})
    assert sorted((a.kind, a.directory) for a in p.actions) == [("compress", d1),
                                                                ("compress", d2)]


def test_sparse_active_log_is_not_copytruncated() -> None:
    sparse = Entry("app.log", 1 << 40, 8192, 0.0)
    p = plan([DirSnapshot(D, (sparse,))], cfg(rotate_size_bytes=1, method="copytruncate"), NOW)
    assert [(a.kind, a.method) for a in p.actions] == [("rotate", "skip")]
    assert "sparse" in p.actions[0].reason


def test_no_rotation_onto_a_name_we_would_not_recognise() -> None:
    base = "app.log." + stamp_of(NOW)
    planted = (e(base),) + tuple(e(f"{base}.{k}") for k in range(1, 10_000))
    p = plan([DirSnapshot(D, (e("app.log", 50), *planted))], cfg(rotate_size_bytes=1), NOW)
    rot = [a for a in p.actions if a.kind == "rotate"]
    assert [(a.method, a.reason) for a in rot] == [("skip", "no free archive name this second")]


def test_a_group_without_files_reports_zero_usage() -> None:
    p = plan([DirSnapshot(D, (e("notes.txt", 5000),))], cfg(quota_soft_bytes=10), NOW)
    assert p.usage == {D: 0}
