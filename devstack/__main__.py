"""``python -m devstack up [--data-plane] | down [--purge] | status``: the local stack (docs/devstack.md)."""

from __future__ import annotations

import argparse
import sys

from devstack.stack import Stack, StackError


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--dir", help="state folder (default: $DEVSTACK_DIR or <repo>/.devstack)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running (detached) and wait until healthy")
    up.add_argument(
        "--data-plane",
        action="store_true",
        help="also start the second cluster dp1 (DP1_KUBECONFIG); it stays part of the stack until `down`",
    )
    down = sub.add_parser("down", help="stop the processes `up` started (both clusters); keep data")
    down.add_argument("--purge", action="store_true", help="also delete the state folder")
    sub.add_parser("status", help="each component's health, pid and URL (exit 1 if any is down)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stack = Stack(args.dir, log=lambda line: print(line, flush=True))
    try:
        if args.command == "up":
            stack.up(data_plane=args.data_plane)
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
