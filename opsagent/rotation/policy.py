"""Rotation decisions as a pure function: (directory snapshots + policy + time + state) -> plan.

Nothing here touches the disk or a clock; the executor carries out the plan and the next pass
re-plans from a fresh snapshot, so a plan only needs to be right for the snapshot it was made from.
Order inside a plan: clean temps, finish interrupted compressions, rotate, compress, expire
(keep / max age), then quota (soft: compress, then delete oldest archives; hard: delete archives
even if undelivered, then the configured last resort on active files).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from opsagent.rotation.config import RotateConfig
from opsagent.rotation.naming import ZST, Name, archive_name, classify, sort_key, stamp_time

NAME_MAX = 255
SPARSE_MIN_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One regular file in a snapshot (non-regular entries are never in a snapshot)."""

    name: str
    size: int
    alloc: int        # allocated bytes (st_blocks * 512): what the quota counts
    mtime: float
    nlink: int = 1
    ino: int = 0      # pairs the two names of an interrupted link + unlink rename


@dataclasses.dataclass(frozen=True, slots=True)
class DirSnapshot:
    path: str
    entries: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...] = ()   # (name, reason) of names we refuse to touch
    dev: int = 0                                # st_dev of the directory


ActionKind = Literal["remove_temp", "finish_compress", "finish_rename", "rotate", "compress",
                     "delete", "truncate"]


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    directory: str
    name: str
    reason: str
    target: str = ""                 # rotate: archive name; compress: the .zst name
    method: str = ""                 # rotate: "rename" | "copytruncate"
    undelivered_bytes: int = 0       # bytes the forwarder had not delivered (forced actions)

    def describe(self) -> str:
        """One line for people: what, on which file, and why (names shown escaped)."""
        tgt = f" -> {self.target!r}" if self.target else ""
        verb = "not rotating" if self.method == "skip" else self.kind.replace("_", " ")
        forced = (f" (forces {self.undelivered_bytes} undelivered bytes)"
                  if self.undelivered_bytes else "")
        return f"{verb} {os.path.join(self.directory, self.name)!r}{tgt}: {self.reason}{forced}"


@dataclasses.dataclass(frozen=True, slots=True)
class Breach:
    """The quota group is over a limit even after everything the plan may do."""

    group: str
    limit: Literal["soft", "hard"]
    usage: int
    limit_bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    usage: Mapping[str, int]          # quota group -> allocated bytes before the plan
    breaches: tuple[Breach, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _File:
    directory: str
    entry: Entry
    role: Name


@dataclasses.dataclass(frozen=True, slots=True)
class _Arch:
    directory: str
    active: str
    name: str
    size: int
    alloc: int
    compressed: bool
    stamp: str
    seq: int
    fresh: bool = False   # created by this plan's rotation

    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def is_sparse(size: int, alloc: int) -> bool:
    """Mostly holes: copying or compressing it reads (a copy allocates) its full apparent size."""
    return size > SPARSE_MIN_BYTES and alloc * 2 < size


def _path(f: _File) -> str:
    return os.path.join(f.directory, f.entry.name)


def _period_start(t: float, every: str) -> float:
    step = 3600.0 if every == "hourly" else 86400.0
    return t - (t % step)


def plan(
    snapshots: Sequence[DirSnapshot],
    cfg: RotateConfig,
    now: float,
    *,
    last_rotated: Mapping[str, float] | None = None,
    undelivered: Mapping[str, int] | None = None,
    group_of: Mapping[str, str] | None = None,
    hold: Collection[str] = (),
) -> Plan:
    """Decide what to do with `snapshots` under `cfg` at time `now`.

    last_rotated: path of an active log -> time of its last rotation (from the rotation state);
        used by time-based rotation. An active log without an entry rotates when its newest
        archive is from an earlier period, or, with no archive, never on time alone (the
        executor records when it first saw the file).
    undelivered: path -> bytes not yet delivered by the forwarder; such files are not compressed,
        rotated by copytruncate, or deleted unless the hard limit forces it.
    group_of: directory path -> quota group name (per pod); default: each directory its own group.
    hold: paths of archives not to compress now (the last attempt found them still growing).
    """
    last_rotated = last_rotated or {}
    undelivered = undelivered or {}
    group_of = group_of or {}
    actions: list[Action] = []
    skipped: list[tuple[str, str]] = []
    groups: dict[str, list[_File]] = {}
    usage: dict[str, int] = {}
    all_names: dict[str, set[str]] = {}

    for snap in snapshots:
        skipped.extend((os.path.join(snap.path, n), r) for n, r in snap.skipped)
        group = group_of.get(snap.path, snap.path)
        files = groups.setdefault(group, [])
        usage.setdefault(group, 0)
        names = {e.name for e in snap.entries}
        all_names[snap.path] = names | {n for n, _ in snap.skipped}
        linked: dict[int, list[tuple[Entry, Name]]] = {}
        for e in snap.entries:
            role = classify(e.name, cfg.include, cfg.exclude)
            if role is None:
                continue
            if role.kind == "temp":
                # Only a name goes: safe even for a hard link (a crash inside rename's
                # link + unlink fallback leaves the temp linked to the finished archive).
                usage[group] = usage.get(group, 0) + (e.alloc if e.nlink == 1 else 0)
                actions.append(Action("remove_temp", snap.path, e.name, "leftover temporary file"))
                continue
            if e.nlink != 1:
                linked.setdefault(e.ino, []).append((e, role))
                continue
            usage[group] = usage.get(group, 0) + e.alloc
            if role.kind == "archive" and e.name + ZST in names:
                actions.append(Action("finish_compress", snap.path, e.name,
                                      "compressed copy exists; verify it and remove the original",
                                      target=e.name + ZST))
                continue
            files.append(_File(snap.path, e, role))
        for ino, pair in linked.items():
            # Hard-linked names still take space: counted once, never touched - except the two
            # names a rename that fell back to link + unlink left when interrupted.
            usage[group] = usage.get(group, 0) + pair[0][0].alloc
            if ino and len(pair) == 2:
                (act, act_role), (arc, arc_role) = sorted(pair, key=lambda p: p[1].kind != "active")
                if (act.nlink == 2 and act_role.kind == "active" and arc_role.kind == "archive"
                        and arc_role.active == act.name):
                    actions.append(Action("finish_rename", snap.path, act.name,
                                          "interrupted rename (link + unlink): drop the old name",
                                          target=arc.name))
                    continue
            skipped.extend((os.path.join(snap.path, e.name), "has more than one hard link")
                           for e, _ in pair)

    ctx = _Context(cfg, now, last_rotated, undelivered, hold)
    breaches: list[Breach] = []
    for group, files in groups.items():
        g_actions, g_breaches = _plan_group(group, files, ctx, usage.get(group, 0), all_names)
        actions.extend(g_actions)
        breaches.extend(g_breaches)
    return Plan(tuple(actions), usage, tuple(breaches), tuple(skipped))


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    """What every phase of a group's plan reads: the policy, the time, and the inputs of plan()."""

    cfg: RotateConfig
    now: float
    last_rotated: Mapping[str, float]
    undelivered: Mapping[str, int]
    hold: Collection[str]


def _plan_group(group: str, files: list[_File], ctx: _Context, usage: int,
                all_names: Mapping[str, set[str]]) -> tuple[list[Action], list[Breach]]:
    """One quota group's plan, in four phases: rotate, retain, compress, quota."""
    archives = _archives_by_active(files)
    # Every name in the directory, symlinks and specials included, is taken for new archives.
    taken: dict[str, set[str]] = {d: set(n) for d, n in all_names.items()}
    rotations, new_archives = _plan_rotations(files, archives, ctx, taken)
    live = _live_archives(files, archives, new_archives)
    retention, doomed = _plan_retention(live, ctx)
    remaining = [a for a in live if (a.directory, a.name) not in doomed]
    usage_after = usage - sum(a.alloc for a in live if (a.directory, a.name) in doomed)
    compressions = _plan_compression(live, remaining, usage_after, ctx)
    quota, dropped, breaches = _plan_quota(group, files, remaining, compressions, new_archives,
                                           usage_after, ctx)
    if dropped:   # no point compressing what the hard limit deletes now
        compressions = [x for x in compressions
                        if os.path.join(x.directory, x.name) not in dropped]
    return rotations + retention + compressions + quota, breaches


def _archives_by_active(files: list[_File]) -> dict[tuple[str, str], list[_File]]:
    """(directory, active name) -> its archives, oldest first."""
    archives: dict[tuple[str, str], list[_File]] = {}
    for f in files:
        if f.role.kind != "active":
            archives.setdefault((f.directory, f.role.active), []).append(f)
    for lst in archives.values():
        lst.sort(key=lambda f: sort_key(f.role))
    return archives


def _plan_rotations(files: list[_File], archives: Mapping[tuple[str, str], list[_File]],
                    ctx: _Context, taken: dict[str, set[str]]
                    ) -> tuple[list[Action], dict[tuple[str, str], str]]:
    """Phase 1: rotation of active logs. Returns the actions and (directory, active) -> the
    archive name each rotation creates; the names it takes are added to `taken`."""
    cfg, now, undelivered = ctx.cfg, ctx.now, ctx.undelivered
    actions: list[Action] = []
    new_archives: dict[tuple[str, str], str] = {}
    for f in files:
        if f.role.kind != "active" or f.entry.size == 0:
            continue
        reason = _rotation_reason(f, cfg, now, ctx.last_rotated.get(_path(f)),
                                  archives.get((f.directory, f.entry.name), []))
        if not reason:
            continue
        if cfg.method == "copytruncate" and is_sparse(f.entry.size, f.entry.alloc):
            actions.append(Action("rotate", f.directory, f.entry.name,
                                  f"{reason}, but it is sparse (mostly holes): a copy would "
                                  "allocate its full size", method="skip"))
            continue
        if cfg.method == "copytruncate" and undelivered.get(_path(f), 0):
            # Truncating would destroy bytes the forwarder still has to read.
            reason_skip = f"{reason}, but {undelivered[_path(f)]} bytes are not yet delivered"
            actions.append(Action("rotate", f.directory, f.entry.name, reason_skip, method="skip"))
            continue
        target = archive_name(f.entry.name, now, taken[f.directory])
        if classify(target, cfg.include, cfg.exclude) is None:
            # 10,000 names of this second taken already (planted): the archive would not be
            # recognised as ours afterwards. Try again next second.
            actions.append(Action("rotate", f.directory, f.entry.name,
                                  "no free archive name this second", method="skip"))
            continue
        if len(os.fsencode(target + ZST)) > NAME_MAX:
            actions.append(Action("rotate", f.directory, f.entry.name,
                                  "name too long to add an archive suffix", method="skip"))
            continue
        taken[f.directory].add(target)
        new_archives[(f.directory, f.entry.name)] = target
        actions.append(Action("rotate", f.directory, f.entry.name, reason, target=target,
                              method=cfg.method))
    return actions, new_archives


def _live_archives(files: list[_File], archives: Mapping[tuple[str, str], list[_File]],
                   new_archives: Mapping[tuple[str, str], str]) -> list[_Arch]:
    """Archives after this plan's rotations: the existing ones oldest first, then the new."""
    live: list[_Arch] = []
    for (d, active), lst in archives.items():
        for f in lst:
            live.append(_Arch(d, active, f.entry.name, f.entry.size, f.entry.alloc,
                              f.role.kind == "compressed", f.role.stamp, f.role.seq))
    for (d, active), target in new_archives.items():
        # The rotated file carries the active file's size (rename) or a copy of it (copytruncate).
        src = next(f for f in files if f.directory == d and f.entry.name == active)
        live.append(_Arch(d, active, target, src.entry.size, src.entry.alloc, False,
                          target[len(active) + 1:len(active) + 16], 1 << 20, fresh=True))
    return live


def _per_active(live: list[_Arch]) -> dict[tuple[str, str], list[_Arch]]:
    """(directory, active name) -> its archives, oldest first (by stamp, then sequence)."""
    per_active: dict[tuple[str, str], list[_Arch]] = {}
    for a in live:
        per_active.setdefault((a.directory, a.active), []).append(a)
    for arch_list in per_active.values():
        arch_list.sort(key=lambda a: (a.stamp, a.seq))
    return per_active


def _plan_retention(live: list[_Arch], ctx: _Context
                    ) -> tuple[list[Action], set[tuple[str, str]]]:
    """Phase 2: keep N archives per active log, and none older than max age. Returns the
    deletions and the (directory, name) of each archive they delete."""
    cfg = ctx.cfg
    actions: list[Action] = []
    doomed: set[tuple[str, str]] = set()
    for arch_list in _per_active(live).values():
        if cfg.keep:
            for a in arch_list[: max(0, len(arch_list) - cfg.keep)]:
                # Undelivered archives wait for the forwarder (a later pass deletes them);
                # only the hard limit deletes them undelivered (step 4).
                if not a.fresh and not ctx.undelivered.get(a.path(), 0):
                    doomed.add((a.directory, a.name))
                    actions.append(_delete(a, f"more than keep={cfg.keep} archives",
                                           ctx.undelivered))
        if cfg.max_age_secs:
            for a in arch_list:
                if (a.directory, a.name) in doomed or a.fresh or ctx.undelivered.get(a.path(), 0):
                    continue
                if ctx.now - stamp_time(a.stamp) > cfg.max_age_secs:
                    doomed.add((a.directory, a.name))
                    actions.append(_delete(a, f"older than max_age_secs={cfg.max_age_secs:g}",
                                           ctx.undelivered))
    return actions, doomed


def _plan_compression(live: list[_Arch], remaining: list[_Arch], usage_after: int,
                      ctx: _Context) -> list[Action]:
    """Phase 3: compression of the archives retention keeps (`remaining`); with a soft limit
    the group is over after retention (`usage_after`), even when `compress` is off."""
    cfg, undelivered = ctx.cfg, ctx.undelivered
    over_soft = bool(cfg.soft_limit) and usage_after > cfg.soft_limit
    if not (cfg.compress or over_soft):
        return []
    newest = {k: max(v, key=lambda a: (a.stamp, a.seq)).name
              for k, v in _per_active(live).items()}
    actions: list[Action] = []
    for a in remaining:
        if a.compressed:
            continue
        if cfg.delay_compress and newest[(a.directory, a.active)] == a.name and not over_soft:
            continue
        if a.path() in ctx.hold:
            continue   # still being written last time: retried at the next rescan
        if is_sparse(a.size, a.alloc):
            # A mostly-hole file (e.g. 1 TB sparse) would cost hours of CPU to compress for
            # nothing: the quota counts its blocks, retention deletes it in time.
            continue
        und = undelivered.get(a.path(), 0) + (
            undelivered.get(os.path.join(a.directory, a.active), 0) if a.fresh else 0)
        if und and not (cfg.hard_limit and usage_after > cfg.hard_limit):
            continue
        why = ("over the soft quota" if over_soft and not cfg.compress
               else "compress = true" + (", delay_compress: not the newest archive"
                                         if cfg.delay_compress else ""))
        actions.append(Action("compress", a.directory, a.name, why, target=a.name + ZST,
                              undelivered_bytes=und))
    return actions


def _plan_quota(group: str, files: list[_File], remaining: list[_Arch],
                compressions: list[Action], new_archives: Mapping[tuple[str, str], str],
                usage_after: int, ctx: _Context
                ) -> tuple[list[Action], set[str], list[Breach]]:
    """Phase 4: quota. Returns the deletions and truncations, the paths of the archives it
    deletes (their compressions are dropped), and the limits still exceeded afterwards.

    Compression savings are unknown until done: the next pass sees them. Under the hard limit,
    delete only what even the best case (every pending compression shrinking to nothing) leaves
    over the soft limit - so an archive that can never be compressed (still growing, say) does
    not hold up the quota forever. Over the hard limit, do not wait."""
    cfg, undelivered = ctx.cfg, ctx.undelivered
    actions: list[Action] = []
    breaches: list[Breach] = []
    dropped: set[str] = set()
    if not cfg.soft_limit or usage_after <= cfg.soft_limit:
        return actions, dropped, breaches
    compressing = {os.path.join(x.directory, x.name) for x in compressions}
    hard = cfg.hard_limit
    over_hard = bool(hard) and usage_after > hard
    pending = 0 if over_hard else sum(a.alloc for a in remaining if a.path() in compressing)
    target_bytes = cfg.soft_limit
    for a in sorted(remaining, key=lambda a: (a.stamp, a.seq)):
        if usage_after - pending <= target_bytes:
            break
        if a.fresh or (a.path() in compressing and not over_hard):
            continue
        und = undelivered.get(a.path(), 0)
        if und and not (hard and usage_after > hard):
            continue
        usage_after -= a.alloc
        dropped.add(a.path())
        actions.append(_delete(a, f"quota: group usage over {target_bytes} bytes", undelivered))
    usage_after -= pending
    if usage_after > target_bytes:
        breaches.append(Breach(group, "soft", usage_after, target_bytes))
    if hard and usage_after > hard:
        breaches.append(Breach(group, "hard", usage_after, hard))
        if cfg.hard_action == "truncate":
            actives = sorted((f for f in files if f.role.kind == "active" and f.entry.alloc),
                             key=lambda f: -f.entry.alloc)
            for f in actives:
                if usage_after <= hard:
                    break
                if (f.directory, f.entry.name) in new_archives:
                    continue  # being rotated away in this plan already
                usage_after -= f.entry.alloc
                actions.append(Action("truncate", f.directory, f.entry.name,
                                      f"hard quota {hard} bytes exceeded after deleting archives",
                                      undelivered_bytes=undelivered.get(_path(f), 0)))
    return actions, dropped, breaches


def _delete(a: _Arch, reason: str, undelivered: Mapping[str, int]) -> Action:
    return Action("delete", a.directory, a.name, reason,
                  undelivered_bytes=undelivered.get(a.path(), 0))


def _rotation_reason(f: _File, cfg: RotateConfig, now: float, last: float | None,
                     archives: list[_File]) -> str:
    if cfg.rotate_size_bytes and f.entry.size >= cfg.rotate_size_bytes:
        return f"size {f.entry.size} >= rotate_size_bytes={cfg.rotate_size_bytes}"
    if cfg.rotate_every:
        if last is None and archives:
            last = stamp_time(archives[-1].role.stamp)
        if last is not None and _period_start(now, cfg.rotate_every) > last:
            return f"{cfg.rotate_every} rotation due"
    return ""
