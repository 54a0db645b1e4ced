"""python -m devstack.jenkins_lite --host 127.0.0.1 --port P --home DIR --user U --token T [...]"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from devstack.jenkins_lite.server import serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack.jenkins_lite", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=int, default=0, help="0 picks a free port (see the printed URL and HOME/url)"
    )
    p.add_argument("--home", required=True, help="state directory, laid out like JENKINS_HOME")
    p.add_argument("--user", default="admin")
    p.add_argument("--token", required=True, help="API token accepted with --user over basic auth")
    p.add_argument("--version", default="2.492.3", help="value of the X-Jenkins header")
    p.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of requests answered 500/503 (no effect)"
    )
    p.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of connections closed before any work")
    p.add_argument("--drop-after-rate", type=float, default=0.0, help="share done, then closed unanswered")
    p.add_argument("--fault-seed", type=int, default=None, help="seed of the fault dice (reproducible runs)")
    p.add_argument("--executors", type=int, default=4)
    p.add_argument("--quiet-period", type=int, default=5, help="seconds; a trigger's delay= overrides it")
    p.add_argument(
        "--queue-item-ttl", type=float, default=300.0, help="seconds a left queue item stays visible"
    )
    p.add_argument(
        "--kill-grace", type=float, default=3.0, help="seconds from SIGTERM to SIGKILL on timeouts"
    )
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="cluster for podTemplate agent pods (used to request service-account tokens); none: steps of "
        "podTemplate builds run without a pod",
    )
    p.add_argument("--nodes-dir", default=None, help="per-node hostPath folders (default HOME/nodes)")
    p.add_argument(
        "--container-cap",
        type=int,
        default=None,
        help="the Kubernetes cloud's containerCap: podTemplate builds with an agent at once (default and 0: "
        "unlimited); such builds do not take --executors",
    )
    a = p.parse_args(argv)
    server = serve(
        a.home,
        a.host,
        a.port,
        a.user,
        a.token,
        a.version,
        a.fail_rate,
        a.latency_ms,
        a.drop_rate,
        a.drop_after_rate,
        a.executors,
        a.queue_item_ttl,
        a.quiet_period,
        a.kill_grace,
        a.fault_seed,
        a.kubeconfig,
        a.nodes_dir,
        a.container_cap,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"jenkins-lite listening on {server.url}", flush=True)
    while not done.wait(1.0):
        pass
    server.shutdown()
    print("jenkins-lite stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
