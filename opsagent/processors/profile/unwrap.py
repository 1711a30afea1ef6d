"""Strips Kubernetes container-log wrappers so the parser sees the application's own lines.

- CRI (containerd, CRI-O): `<RFC3339Nano time> <stdout|stderr> <P|F> <message>`; a `P`
  (partial) line is continued by the following lines of the same stream up to an `F` line.
  https://github.com/kubernetes/design-proposals-archive/blob/main/node/kubelet-cri-logging.md
- Docker json-file: `{"log":"<message>\n","stream":"stdout","time":"..."}`; a message without
  a trailing newline (Docker splits lines at 16 KiB) is continued by the next entry.

One Unwrapper per file (partials are carried over between batches). Mode "auto" decides from
the first non-empty line of the file. Lines that do not fit the wrapper are counted as
`bad_wrapper`; a joined partial message longer than max_bytes is cut there (`truncated`).
"""

from __future__ import annotations

import json
import re
from collections import Counter

_CRI = re.compile(rb"^\d{4}-\d\d-\d\dT\S+ (stdout|stderr) ([PF])(?: (.*))?$", re.S)


def detect(line: bytes) -> str:
    """"docker", "cri" or "none" for a first line."""
    if line.startswith(b'{"log":') or (line.startswith(b"{") and b'"log"' in line
                                        and b'"stream"' in line):
        return "docker"
    if _CRI.match(line):
        return "cri"
    return "none"


class Unwrapper:
    def __init__(self, mode: str, max_bytes: int = 1_048_576) -> None:
        self.mode = mode  # "auto" | "none" | "cri" | "docker"
        self.max_bytes = max_bytes
        self._partial: dict[bytes, list[bytes]] = {}  # stream -> pieces waiting for the end
        self._partial_len: dict[bytes, int] = {}

    def unwrap(self, lines: list[bytes], bad: Counter[str]) -> list[bytes]:
        """The messages of `lines` (complete ones only); problems are counted into `bad`."""
        if self.mode == "auto":
            for line in lines:
                if line.strip():
                    self.mode = detect(line)
                    break
            else:
                return lines
        if self.mode == "none":
            return lines
        if self.mode == "cri":
            return self._cri(lines, bad)
        return self._docker(lines, bad)

    def _join(self, stream: bytes, piece: bytes, final: bool, out: list[bytes],
              bad: Counter[str]) -> None:
        pieces = self._partial.get(stream)
        if pieces is None:
            if final:
                out.append(piece)
                return
            pieces = self._partial[stream] = []
            self._partial_len[stream] = 0
        size = self._partial_len[stream]
        if size < self.max_bytes:
            pieces.append(piece[: self.max_bytes - size])
            self._partial_len[stream] = size + len(piece)
        if final:
            if self._partial_len[stream] > self.max_bytes:
                bad["truncated"] += 1
            else:
                out.append(b"".join(pieces))
            del self._partial[stream]
            del self._partial_len[stream]

    def _cri(self, lines: list[bytes], bad: Counter[str]) -> list[bytes]:
        out: list[bytes] = []
        append = out.append
        for line in lines:
            # Fast path: "<time> stdout F <msg>" with nothing pending on the stream.
            parts = line.split(b" ", 3)
            if len(parts) == 4 and parts[2] == b"F" and not self._partial and \
                    parts[1] in (b"stdout", b"stderr") and parts[0][:1].isdigit():
                append(parts[3])
                continue
            m = _CRI.match(line)
            if m is None:
                bad["bad_wrapper"] += 1
                continue
            self._join(m.group(1), m.group(3) or b"", m.group(2) == b"F", out, bad)
        return out

    def _docker(self, lines: list[bytes], bad: Counter[str]) -> list[bytes]:
        out: list[bytes] = []
        for line in lines:
            try:
                obj = json.loads(line)
                msg = obj["log"]
                stream = str(obj.get("stream", "")).encode()
            except (ValueError, KeyError, TypeError, AttributeError):
                bad["bad_wrapper"] += 1
                continue
            if not isinstance(msg, str):
                bad["bad_wrapper"] += 1
                continue
            data = msg.encode("utf-8", "replace")  # JSON may hold lone surrogates
            final = data.endswith(b"\n")
            if final:
                data = data[:-1]
                if data.endswith(b"\r"):
                    data = data[:-1]
            self._join(stream, data, final, out, bad)
        return out

    def pending(self) -> int:
        """Partial messages waiting for their end (dropped at shutdown, counted by the caller)."""
        return len(self._partial)
