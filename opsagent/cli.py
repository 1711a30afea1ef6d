"""Command line of the agent: argparse only; each subcommand lives in opsagent/commands/.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from gorun.limits import raise_nofile_limit
from opsagent import __version__, early_signals
from opsagent.commands import agent, forward, profile, rotate, status

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


# The long-running commands: the agent runtime replays signals held while it started.
RUNTIME_COMMANDS = (agent.run, profile.run, rotate.run)


def main(argv: Sequence[str] | None = None) -> int:
    early_signals.hold()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func not in RUNTIME_COMMANDS:
            early_signals.release()
        if func is None:
            parser.print_help(sys.stderr)
            return 2
        # Every long-running command holds many descriptors (tailed files, watched
        # directories, cron job pipes): lift the soft open-files limit once, here, for all.
        raise_nofile_limit()
        rc: int = func(args)
        return rc
    finally:
        early_signals.release()


if __name__ == "__main__":
    sys.exit(main())
