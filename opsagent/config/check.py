"""One validation of the agent's config file, shared by `opsagent check-config`, `opsagent run`
at start and every reload of a running agent, so the three can never disagree.

It reads the file once (a regular file only: a FIFO or device is refused, never waited on),
and checks, in order: UTF-8, TOML, every key (types, ranges, cross-key rules), where the state
directory lies (never inside a watched tree), and every crontab the config names. The digest
returned is that of exactly the bytes validated, so a reload compares and remembers what it
checked, not a later version of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat

from opsagent.config import schema
from opsagent.config.loader import parse_config, read_config
from opsagent.errors import ConfigErrors


@dataclasses.dataclass(frozen=True)
class Validation:
    """`cfg` is None when the file could not be read or parsed; `errors` empty means valid."""

    cfg: schema.AgentConfig | None
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    digest: str | None          # sha256 of the bytes validated; None when unreadable

    @property
    def ok(self) -> bool:
        return self.cfg is not None and not self.errors


def watched_globs(cfg: schema.AgentConfig) -> list[str]:
    """Directory globs of every tree the agent watches (rotated or tailed)."""
    globs = [d for r in cfg.rotate for d in r.directories]
    globs += [os.path.dirname(g) for f in cfg.forward for g in f.tail.include]
    globs += [os.path.dirname(g) for p in cfg.profile for g in p.tail.include]
    return globs


def placement_errors(path: str, cfg: schema.AgentConfig) -> list[str]:
    """Problems no single key shows: the state directory or a crontab inside a tree whose
    writers are not trusted (they could plant our lock, checkpoints or rotation state, or jobs
    that we would run)."""
    from opsagent.rotation.state import check_state_dir

    errors: list[str] = []
    try:
        check_state_dir(cfg.state_dir, watched_globs(cfg))
    except ValueError as e:
        errors.append(f"{path}: state_dir: {e}")
    # A crontab in a watched tree: its writers could make root run their jobs.
    for i, crontab in enumerate(cfg.cron.crontabs):
        try:
            check_state_dir(crontab, watched_globs(cfg))
        except ValueError:
            errors.append(f"{path}: cron.crontabs[{i}]: crontab {crontab!r} is inside a watched "
                          "tree (rotated or tailed directories are written by untrusted pods)")
    return errors


def crontab_problems(cfg: schema.AgentConfig) -> tuple[list[str], list[str]]:
    """(errors, warnings) of every crontab the config names, as `FILE:LINE: message`."""
    from gorun.crontab import load_crontab

    errors: list[str] = []
    warnings: list[str] = []
    for crontab in cfg.cron.crontabs:
        try:
            mode = os.stat(crontab).st_mode
        except OSError:
            mode = stat.S_IFREG     # load_crontab reports why it cannot read it
        if not stat.S_ISREG(mode):
            # Reading a FIFO would block check-config and the reload for ever.
            errors.append(f"{crontab}:0: cannot read crontab: not a regular file")
            continue
        ct = load_crontab(crontab, system=cfg.cron.system)
        for prob in ct.problems:
            (errors if prob.severity == "error" else warnings).append(str(prob))
    return errors, warnings


def validate(path: str) -> Validation:
    """Every problem of the config file at `path` and of the crontabs it names."""
    try:
        data = read_config(path)
    except ConfigErrors as e:
        return Validation(None, tuple(str(err) for err in e.errors), (), None)
    digest = hashlib.sha256(data).hexdigest()
    try:
        cfg = parse_config(path, data, schema.AgentConfig)
    except ConfigErrors as e:
        return Validation(None, tuple(str(err) for err in e.errors), (), digest)
    errors = placement_errors(path, cfg)
    cron_errors, warnings = crontab_problems(cfg)
    return Validation(cfg, tuple(errors + cron_errors), tuple(warnings), digest)


def has_jobs(cfg: schema.AgentConfig) -> bool:
    """Whether the config runs anything at all (an empty file runs nothing)."""
    return bool(cfg.cron.crontabs or cfg.rotate or cfg.profile or cfg.forward)
