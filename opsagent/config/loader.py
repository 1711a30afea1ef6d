"""Turns parsed TOML into frozen dataclasses, rejecting unknown keys and naming the key path of
every problem (`profile[1].statsd.port: expected an integer, got "x"`).

Each component declares its configuration as a frozen dataclass with typed fields and defaults.
Supported field types: bool, int, float, str, Literal[...], X | None, list[X], tuple[X, ...],
dict[str, X] and nested dataclasses. A dataclass may validate itself in `__post_init__` by raising
ValueError; the message is reported under that dataclass's key path. A field's TOML key is its
name; `metadata={"key": "other-name"}` maps a different key.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from opsagent.errors import ConfigError, ConfigErrors

T = TypeVar("T")

_MISSING = object()


# A config is a few KiB; this bounds what a mistaken path (a log, a device) can make us read.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

# Keys whose values are never shown in an error (a wrong type would otherwise echo a password).
_SECRET_WORDS = ("password", "secret", "token", "credential")


def read_config(path: str) -> bytes:
    """The bytes of a config file; raises ConfigErrors for anything but a readable regular file.

    Opened with O_NONBLOCK and checked with fstat before any read: a FIFO (or a device, or a
    directory) is refused at once instead of blocking the agent's main loop forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise ConfigErrors([ConfigError("", f"cannot read config: {e.strerror}", file=path)]) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigErrors([ConfigError(
                "", f"cannot read config: not a regular file ({_file_kind(st.st_mode)})",
                file=path)])
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigErrors([ConfigError(
                "", f"cannot read config: {st.st_size} bytes, more than {MAX_CONFIG_BYTES}",
                file=path)])
        chunks = []
        total = 0
        while total <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_CONFIG_BYTES:
            raise ConfigErrors([ConfigError(
                "", f"cannot read config: more than {MAX_CONFIG_BYTES} bytes", file=path)])
        return b"".join(chunks)
    except OSError as e:
        raise ConfigErrors([ConfigError("", f"cannot read config: {e.strerror}", file=path)]) from e
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a file")


def decode_config(path: str, data: bytes) -> str:
    """UTF-8 text (TOML requires it); an invalid byte is reported with its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        column = e.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigErrors([ConfigError(
            "", f"not UTF-8 (TOML files must be): invalid byte at line {line}, column {column}",
            file=path)]) from None


def parse_config(path: str, data: bytes, cls: type[T]) -> T:
    """Decode, parse and convert config bytes read from `path`; raises ConfigErrors."""
    text = decode_config(path, data)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message carries "(at line N, column M)".
        raise ConfigErrors([ConfigError("", f"invalid TOML: {e}", file=path)]) from e
    try:
        return from_dict(cls, parsed)
    except ConfigErrors as errs:
        raise ConfigErrors(
            [ConfigError(e.path, e.message, file=path) for e in errs.errors]
        ) from None


def load_toml(path: str, cls: type[T]) -> T:
    """Read a TOML file and convert it to `cls`; raises ConfigErrors listing every problem."""
    return parse_config(path, read_config(path), cls)


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Convert a mapping to dataclass `cls`, collecting all errors into one ConfigErrors."""
    errors: list[ConfigError] = []
    value = _convert_dataclass(cls, data, path, errors)
    if errors:
        raise ConfigErrors(errors)
    return typing.cast(T, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "a table"
    origin = get_origin(tp)
    if origin in (list, tuple):
        return "an array"
    if origin is dict:
        return "a table"
    return str(tp)


def _convert_dataclass(cls: Any, data: Any, path: str, errors: list[ConfigError]) -> Any:
    if not isinstance(data, Mapping):
        errors.append(ConfigError(path, f"expected a table, got {_show(data, path)}"))
        return None
    hints = get_type_hints(cls)
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            errors.append(ConfigError(_join(path, key), f"unknown key (known keys: {known})"))
    kwargs: dict[str, Any] = {}
    before = len(errors)
    for key, f in fields.items():
        if key in data:
            kwargs[f.name] = _convert(hints[f.name], data[key], _join(path, key), errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(ConfigError(_join(path, key), "required key is missing"))
    if len(errors) > before:
        return None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        errors.append(ConfigError(path, str(e)))
        return None


def is_secret_key(path: str) -> bool:
    """A key whose value must never appear in a message (`forward[0].kafka.sasl_password`)."""
    last = path.rsplit(".", 1)[-1].split("[", 1)[0].lower()
    return any(word in last for word in _SECRET_WORDS)


def _show(v: Any, path: str = "") -> str:
    if is_secret_key(path) and not isinstance(v, Mapping | list):
        kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
        return f"{kinds.get(type(v), 'a value')} (not shown: secret key)"
    if isinstance(v, Mapping):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return repr(v)


def _convert(tp: Any, value: Any, path: str, errors: list[ConfigError]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _convert(args[0], value, path, errors)
        for a in args:
            trial: list[ConfigError] = []
            out = _convert(a, value, path, trial)
            if not trial:
                return out
        errors.append(ConfigError(path, f"unexpected value {_show(value, path)}"))
        return None
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            errors.append(ConfigError(path, f"must be one of {choices}, got {_show(value, path)}"))
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, errors)
    if origin in (list, tuple):
        if not isinstance(value, list):
            errors.append(ConfigError(path, f"expected an array, got {_show(value, path)}"))
            return None
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            errors.append(ConfigError(path, f"expected a table, got {_show(value, path)}"))
            return None
        _k, val_tp = get_args(tp)
        return {str(k): _convert(val_tp, v, _join(path, str(k)), errors) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(ConfigError(path, f"expected a boolean, got {_show(value, path)}"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(ConfigError(path, f"expected an integer, got {_show(value, path)}"))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(ConfigError(path, f"expected a number, got {_show(value, path)}"))
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(ConfigError(path, f"expected a string, got {_show(value, path)}"))
        return value
    errors.append(ConfigError(path, f"unsupported config type {_type_name(tp)}"))
    return None
