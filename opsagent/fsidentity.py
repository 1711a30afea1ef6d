"""Runs file opens with the file-system identity of a directory's owner, so that the kernel,
not a check of ours, refuses what that owner could not do itself (docs/rotation.md "Hard links
and the owner's identity").

Linux keeps credentials per thread. One dedicated worker thread (per process: it is rebuilt
after a fork) drops its supplementary groups once (the raw setgroups system call: glibc's
wrapper would change every thread of the process), and before each call sets its file-system
uid and gid (setfsuid/setfsgid, per thread in glibc too) to the identity asked for and clears
the file-system capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN,
CAP_FSETID, CAP_LINUX_IMMUTABLE, CAP_MKNOD, CAP_MAC_OVERRIDE) from its effective set with
capset, which is per thread as well. The kernel already clears them when the fsuid changes
from 0; clearing them explicitly also covers an owner that is uid 0. Permission checks happen
when a file is opened, so the descriptors the worker returns are then used by any thread.

Needs CAP_SETUID and CAP_SETGID (to set another fsuid/fsgid, and to drop the groups). A process
whose effective uid is not 0 is already an ordinary user: calls run in the caller's thread,
as the process's own identity. A root process that cannot switch (capabilities missing, an
architecture whose system call numbers we do not know) fails closed: IdentityError.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import platform
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# (setgroups, capget, capset) per machine; setfsuid/setfsgid come from libc.
_SYSCALLS = {"x86_64": (116, 125, 126), "aarch64": (159, 90, 91)}
_CAP_VERSION_3 = 0x20080522
# The kernel's CAP_FS_MASK: CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID (bits 0-4),
# LINUX_IMMUTABLE (9), MKNOD (27); MAC_OVERRIDE (32) lives in the second word.
_FS_CAPS_LOW = 0b11111 | (1 << 9) | (1 << 27)
_FS_CAPS_HIGH = 1 << 0


class IdentityError(Exception):
    """The worker could not take on the identity asked for: the call was not made."""


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int


def of_directory(dir_fd: int) -> Identity:
    """The identity of the owner of the directory `dir_fd` (its uid and group)."""
    st = os.fstat(dir_fd)
    return Identity(st.st_uid, st.st_gid)


def run_as(identity: Identity, fn: Callable[..., T], *args: Any) -> T:
    """Call fn(*args) with `identity` as file-system identity (see the module docstring);
    returns its result or raises its exception. IdentityError if the identity cannot be taken."""
    if os.geteuid() != 0:
        return fn(*args)
    return _worker().call(identity, fn, args)


class _Cred:
    """ctypes access to the per-thread credential calls."""

    def __init__(self) -> None:
        numbers = _SYSCALLS.get(platform.machine())
        if numbers is None:
            raise IdentityError(f"unsupported machine {platform.machine()!r}: cannot set a "
                                "per-thread identity")
        self.sys_setgroups, self.sys_capget, self.sys_capset = numbers
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.libc.setfsuid.argtypes = [ctypes.c_uint32]
        self.libc.setfsgid.argtypes = [ctypes.c_uint32]

    def _syscall(self, number: int, *args: Any) -> None:
        if self.libc.syscall(number, *args) < 0:
            err = ctypes.get_errno()
            raise IdentityError(f"system call {number}: {os.strerror(err)}")

    def drop_groups(self) -> None:
        self._syscall(self.sys_setgroups, ctypes.c_size_t(0), None)

    def assume(self, ident: Identity) -> None:
        # setfsuid/setfsgid report no error: they return the previous value. Calling them with
        # -1 (never valid) changes nothing and returns the current value, which we verify.
        self.libc.setfsgid(ident.gid)
        self.libc.setfsuid(ident.uid)
        if (self.libc.setfsgid(0xFFFFFFFF) != ident.gid
                or self.libc.setfsuid(0xFFFFFFFF) != ident.uid):
            raise IdentityError(f"cannot take uid {ident.uid} gid {ident.gid} (CAP_SETUID and "
                                "CAP_SETGID are needed)")
        self._drop_fs_caps()

    def _drop_fs_caps(self) -> None:
        hdr = _CapHeader(_CAP_VERSION_3, 0)
        data = (_CapData * 2)()
        self._syscall(self.sys_capget, ctypes.byref(hdr), data)
        data[0].effective &= ~_FS_CAPS_LOW & 0xFFFFFFFF
        data[1].effective &= ~_FS_CAPS_HIGH & 0xFFFFFFFF
        self._syscall(self.sys_capset, ctypes.byref(hdr), data)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@dataclasses.dataclass
class _Request:
    identity: Identity
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class _Worker:
    """The one thread that ever changes its identity. Requests are served one at a time; each
    is an open or a create, which takes microseconds."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self.setup_error: IdentityError | None = None
        self.thread = threading.Thread(target=self._serve, name="opsagent-fsidentity",
                                       daemon=True)
        self.thread.start()

    def call(self, identity: Identity, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if threading.current_thread() is self.thread:
            raise RuntimeError("run_as called from inside run_as")
        req = _Request(identity, fn, args)
        self.requests.put(req)
        req.done.wait()
        if req.error is not None:
            raise req.error
        result: T = req.result
        return result

    def _serve(self) -> None:
        cred: _Cred | None = None
        try:
            cred = _Cred()
            cred.drop_groups()
        except (IdentityError, OSError) as e:
            self.setup_error = IdentityError(f"cannot drop supplementary groups: {e}")
        while True:
            req = self.requests.get()
            try:
                if cred is None or self.setup_error is not None:
                    raise IdentityError(str(self.setup_error))
                cred.assume(req.identity)
                req.result = req.fn(*req.args)
            except BaseException as e:  # handed to the caller, who raises it
                req.error = e
            finally:
                req.done.set()


_lock = threading.Lock()
_current: _Worker | None = None


def _worker() -> _Worker:
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():  # none yet, or we are a fork child
            _current = _Worker()
        return _current


def _forget_after_fork() -> None:
    # The child has no worker thread, and another thread may have held the lock at the fork.
    global _lock, _current
    _lock = threading.Lock()
    _current = None


os.register_at_fork(after_in_child=_forget_after_fork)
