"""A restart must not tail an excluded archive that reused the inode of a checkpointed file.

Found by the chaos suite (seed 636241, backend librdkafka, 5-minute run): the agent forwarded
a compressed archive `app2.log.<stamp>.zst` (excluded by `*.zst`) as one record of zstd bytes,
under the key of another file. What happened:
1. a file found at start got its checkpoint at offset 0 (saved at once); it was delivered, the
   [[rotate]] job renamed and compressed it and deleted the original (its inode freed), and the
   agent was SIGKILLed before the next save: the checkpoint still said offset 0;
2. the compressed archive of another file got that freed inode number;
3. the restart looked for the checkpointed file by inode (`find_renamed_while_stopped`: "renamed
   while the agent was down"), found the archive, and accepted it: a checkpoint at offset 0
   covers no bytes, so its content check (head and tail hash of 0 bytes) passes for any file;
   the exclude patterns were not consulted. The archive was read from offset 0.

Inode numbers cannot be forced in a test: as in test_tail_rotation.py's inode-reuse test, the
checkpoint is rewritten to the inode of the archive (what the kernel did in that run).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from opsagent.state.checkpoints import CheckpointStore
from tests.unit.opsagent.sources.tail_helpers import Env, drain

GLOBS = {"include": ("app*.log*",), "exclude": ("*.zst", "*.gz")}   # the shipped defaults


@pytest.mark.xfail(strict=True, reason="product bug in opsagent/sources/tail/fileset.py "
                   "find_renamed_while_stopped (chaos seed 636241): reported, not fixed here")
def test_restart_does_not_read_an_excluded_archive_that_reused_a_checkpointed_inode(
        env: Env) -> None:
    env.write("app-ct40.log", b"w0-26 0\nw0-26 1\n")
    src = env.source(**GLOBS)
    src.stop()   # checkpoint at offset 0: nothing acknowledged was saved yet
    store = CheckpointStore(str(env.state), "p", registry=env.registry)
    (cp,) = store.load().values()
    assert cp.offset == 0
    # Delivered, rotated, compressed and deleted while its saved checkpoint still said 0; the
    # archive of another file now has its inode number.
    os.unlink(env.logs / "app-ct40.log")
    archive = env.write("app2.log.20261203-094625.zst", b"\x28\xb5\x2f\xfd\x04H zstd frame\n")
    st = os.stat(archive)
    reused = dataclasses.replace(cp, dev=st.st_dev, ino=st.st_ino)
    store.save({reused.id: reused})
    got = drain(env.source(**GLOBS))
    assert [(r.path.rsplit("/", 1)[1], r.data) for r in got] == []
