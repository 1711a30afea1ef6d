"""Command line of the agent: argparse only; each subcommand lives in opsagent/commands/.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from opsagent import __version__
from opsagent.commands import agent, forward, profile, rotate, status
from opsagent.process_limits import raise_nofile_limit

# Each module provides `register(subparsers) -> None`, adding its subparser(s) with
# `set_defaults(func=callable(args) -> int)`; heavy imports (kafka-python, watchdog, gorun's
# runner) stay inside the functions that run, so `check-config` and `--help` stay light.
COMMAND_MODULES: tuple[ModuleType, ...] = (agent, rotate, profile, forward, status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsagent", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(func=lambda _args: (print(f"opsagent {__version__}"), 0)[1])
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    # Every long-running command holds many descriptors (tailed files, watched directories,
    # cron job pipes): lift the soft open-files limit once, here, for all of them.
    raise_nofile_limit()
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
