"""jenkins-lite: a Jenkins-REST-compatible server that really runs cubepaas-plan steps (development tooling).

See docs/jenkins-lite.md. `python -m devstack.jenkins_lite --port 0 --home DIR --user U --token T`
or, in tests, `serve(home=DIR)` which returns a handle with `.url`, `.set_faults(...)` and `.shutdown()`.
"""

from devstack.jenkins_lite.server import LiteServer, serve

__all__ = ["LiteServer", "serve"]
