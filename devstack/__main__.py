"""``python -m devstack up | down [--purge] | status``: the local stack (see docs/devstack.md)."""

from __future__ import annotations

import argparse
import sys

from devstack.stack import Stack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--dir", help="state folder (default: $DEVSTACK_DIR or <repo>/.devstack)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start what is not running (detached) and wait until healthy")
    down = sub.add_parser("down", help="stop the processes `up` started; keep data")
    down.add_argument("--purge", action="store_true", help="also delete the state folder")
    sub.add_parser("status", help="each component's health, pid and URL (exit 1 if any is down)")
    args = parser.parse_args(argv)

    stack = Stack(args.dir, log=lambda line: print(line, flush=True))
    try:
        if args.command == "up":
            stack.up()
            print(f"source {stack.env_path}")
            return 0
        if args.command == "down":
            stack.down(purge=args.purge)
            return 0
        statuses = stack.status()
        for status in statuses:
            print(status.line())
        return 0 if all(s.healthy for s in statuses if s.available) else 1
    except StackError as err:
        print(f"devstack: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
