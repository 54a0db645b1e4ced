"""HTTP front of jenkins-lite: Jenkins' URL space, auth, headers, faults; `serve()` for tests."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import secrets
import signal
import socket
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

from devstack.jenkins_lite import api
from devstack.jenkins_lite.agents import ContainerCap, KubernetesCloud
from devstack.jenkins_lite.faults import Faults
from devstack.jenkins_lite.model import Build, HttpError, Job, State, failure, now_ms
from devstack.jenkins_lite.runner import (
    INTERRUPTED,
    STRING_CREDENTIALS,
    USERNAME_PASSWORD,
    Console,
    Scheduler,
)

JSON_TYPE = "application/json;charset=utf-8"
TEXT_TYPE = "text/plain;charset=UTF-8"
HTML_TYPE = "text/html;charset=utf-8"
XML_TYPE = "application/xml;charset=UTF-8"
CRED_BASE = ("credentials", "store", "system", "domain", "_")


@dataclass
class Resp:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_resp(obj: Any, query: dict[str, str] | None = None, content_type: str = JSON_TYPE) -> Resp:
    tree = (query or {}).get("tree")
    if tree:
        obj = apply_tree(obj, parse_tree(tree))
    return Resp(200, json.dumps(obj).encode("utf-8"), content_type)


def html_page(title: str, text: str, status: int = 200) -> Resp:
    body = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)} [Jenkins]</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return Resp(status, body.encode("utf-8"), HTML_TYPE)


def redirect(location: str) -> Resp:
    return Resp(302, b"", None, {"Location": location})


# ---- ?tree= (hudson.model.Api / TreeString) ----------------------------------------------------------------

Tree = dict[str, "tuple[Tree | None, tuple[int | None, int | None] | None]"]


def parse_tree(spec: str) -> Tree:
    pos = 0

    def parse_level() -> Tree:
        nonlocal pos
        out: Tree = {}
        while pos < len(spec):
            start = pos
            while pos < len(spec) and spec[pos] not in ",[]{}":
                pos += 1
            name = spec[start:pos].strip()
            sub: Tree | None = None
            rng: tuple[int | None, int | None] | None = None
            if pos < len(spec) and spec[pos] == "[":
                pos += 1
                sub = parse_level()
                pos += 1  # ]
            if pos < len(spec) and spec[pos] == "{":
                end = spec.index("}", pos)
                rng = _parse_range(spec[pos + 1 : end])
                pos = end + 1
            if name:
                out[name] = (sub, rng)
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            if pos < len(spec) and spec[pos] == "]":
                break
        return out

    return parse_level()


def _parse_range(s: str) -> tuple[int | None, int | None]:
    if "," in s:
        a, b = s.split(",", 1)
        return (int(a) if a.strip() else None, int(b) if b.strip() else None)
    n = int(s)
    return (n, n + 1)


def apply_tree(obj: Any, tree: Tree) -> Any:
    if isinstance(obj, list):
        return [apply_tree(x, tree) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {"_class": obj["_class"]} if "_class" in obj else {}
    for name, (sub, rng) in tree.items():
        if name not in obj:
            continue
        v = obj[name]
        if rng is not None and isinstance(v, list):
            v = v[rng[0] : rng[1]]
        out[name] = v if sub is None else apply_tree(v, sub)
    return out


# ---- the application ---------------------------------------------------------------------------------------


class App:
    def __init__(self, state: State, faults: Faults, scheduler: Scheduler) -> None:
        self.state = state
        self.faults = faults
        self.scheduler = scheduler

    # -- entry
    def dispatch(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any, root: str
    ) -> Resp:
        segs = [unquote(s) for s in path.split("/") if s != ""]
        user = self.authenticate(segs, headers)
        if segs[:1] == ["cubepaas-lite"]:
            return self.lite(method, segs[1:], body)
        if not segs:
            return html_page("Dashboard", "jenkins-lite")
        head = segs[0]
        if head == "login" and len(segs) == 1:
            return html_page("Sign in", "Sign in to Jenkins")
        if segs == ["api", "json"]:
            with self.state.lock:
                return json_resp(api.hudson(self.state, root), query)
        if segs == ["crumbIssuer", "api", "json"]:
            crumb = {
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": secrets.token_hex(32),
                "crumbRequestField": "Jenkins-Crumb",
            }
            return json_resp(crumb, query)
        if segs == ["whoAmI", "api", "json"]:
            who = {
                "_class": "hudson.security.WhoAmI",
                "anonymous": False,
                "authenticated": True,
                "authorities": ["authenticated"],
                "details": None,
                "name": user,
                "toString": user,
            }
            return json_resp(who, query)
        if segs == ["me", "api", "json"]:
            me: dict[str, Any] = {
                "_class": "hudson.model.User",
                "absoluteUrl": f"{root}user/{user}",
                "description": None,
                "fullName": user,
                "id": user,
                "property": [],
            }
            return json_resp(me, query)
        if segs == ["createItem"]:
            self.require_post(method)
            return self.create_item(query, body, headers)
        if head == "queue":
            return self.queue(method, segs[1:], query, root)
        if tuple(segs[:5]) == CRED_BASE:
            return self.credentials(method, segs[5:], query, body, headers, root, user)
        if head == "job" and len(segs) >= 2:
            return self.job(method, segs[1], segs[2:], query, body, headers, root, user)
        raise HttpError(404)

    def authenticate(self, segs: list[str], headers: Any) -> str:
        auth = headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, token = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, token = "", ""
            if user == self.state.user and secrets.compare_digest(token, self.state.token):
                return user
            raise HttpError(
                401, f"Invalid password/token for user: {user}", {"WWW-Authenticate": 'Basic realm="Jenkins"'}
            )
        if segs == ["login"]:
            return "anonymous"
        # Jenkins answers an anonymous API call to a secured instance: 403 (HudsonAuthenticationEntryPoint).
        raise HttpError(
            403,
            "Authentication required",
            {"X-You-Are-Authenticated-As": "anonymous", "X-Required-Permission": "hudson.model.Hudson.Read"},
        )

    @staticmethod
    def require_post(method: str) -> None:
        if method != "POST":
            raise HttpError(405, "This URL requires POST")

    # -- fault control
    def lite(self, method: str, segs: list[str], body: bytes) -> Resp:
        if segs != ["faults"]:
            raise HttpError(404)
        if method == "POST":
            try:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("want a JSON object")
                self.faults.update_from_json(data)
            except ValueError as e:
                raise HttpError(400, str(e)) from e
        return json_resp(asdict(self.faults.get()))

    # -- jobs
    def create_item(self, query: dict[str, str], body: bytes, headers: Any) -> Resp:
        ctype = headers.get("Content-Type")
        if not ctype:
            raise failure("No Content-Type header set")
        name = query.get("name")
        if name is None:
            raise failure("Query parameter 'name' is required")
        if not (ctype.startswith("application/xml") or ctype.startswith("text/xml")):
            with self.state.lock:
                if name.strip() in self.state.jobs:
                    raise failure(f"A job already exists with the name \u2018{name.strip()}\u2019")
            raise failure("No mode given")
        self.state.create_job(name, body.decode("utf-8"))
        return Resp(200)

    def job(
        self,
        method: str,
        name: str,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
        headers: Any,
        root: str,
        user: str,
    ) -> Resp:
        s = self.state
        with s.lock:
            job = s.get_job(name)
        if not rest:
            return html_page(name, f"Pipeline {name}")
        if rest == ["api", "json"]:
            with s.lock:
                return json_resp(api.job_json(s, job, root), query)
        if rest == ["config.xml"]:
            if method == "POST":
                s.update_job(name, body.decode("utf-8"))
                return Resp(200)
            return Resp(200, job.config_xml.encode("utf-8"), XML_TYPE)
        if rest in (["build"], ["buildWithParameters"]):
            self.require_post(method)
            return self.trigger(job, rest[0], query, body, headers, root, user)
        if rest == ["doDelete"]:
            self.require_post(method)
            self.delete_job(job)
            return redirect(root)
        if rest[0] == "wfapi" and rest[1:] in ([], ["describe"]):
            with s.lock:
                return json_resp(api.job_wfapi(job), content_type="application/json;charset=UTF-8")
        if rest == ["wfapi", "runs"]:
            with s.lock:
                runs = [
                    api.run_ext(b, root) for b in sorted(job.builds.values(), key=lambda b: -b.number)[:10]
                ]
            return json_resp(runs, content_type="application/json;charset=UTF-8")
        with s.lock:
            b = s.get_build(name, rest[0])
        return self.build(method, job, b, rest[1:], query, body, root, user)

    def trigger(
        self, job: Job, how: str, query: dict[str, str], body: bytes, headers: Any, root: str, user: str
    ) -> Resp:
        form = dict(query)
        if body and (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            form.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()})
        delay = self.parse_delay(form.get("delay"))
        with self.state.lock:
            defs = job.config.params if job.config is not None else []
            if how == "buildWithParameters" and not defs:
                raise HttpError(500, "java.lang.IllegalStateException: This build is not parameterized!")
            given: dict[str, str] = {}
            if how == "build" and defs:
                raw = form.get("json")
                if raw is None:
                    raise failure("Nothing is submitted")
                try:
                    submitted = json.loads(raw).get("parameter", [])
                    submitted = submitted if isinstance(submitted, list) else [submitted]
                    given = {str(p["name"]): str(p.get("value", "")) for p in submitted}
                except (ValueError, AttributeError, KeyError, TypeError) as e:
                    raise failure(f"Malformed form submission: {e}") from e
            elif how == "buildWithParameters":
                given = form
            params: list[dict[str, Any]] = []
            for d in defs:  # undefined parameters are dropped, like Jenkins since SECURITY-170
                value: Any = given.get(d.name, d.default)
                if d.type_name == "BooleanParameterDefinition":
                    value = str(value).lower() in ("true", "on", "yes", "1")
                params.append({"_class": d.value_class, "name": d.name, "value": value})
            item = self.state.schedule(job, params, user, delay)
        return Resp(201, b"", None, {"Location": f"{root}queue/item/{item.id}/"})

    def parse_delay(self, raw: str | None) -> float:
        """hudson.model.queue.TimeDuration.fromString: "<n>sec" or milliseconds; default = quiet period."""
        if raw is None:
            return float(self.state.quiet_period)
        v = raw.strip()
        mult = 1.0
        if v.endswith("secs") or v.endswith("sec"):
            v, mult = v[: v.rindex("sec")].strip(), 1000.0
        try:
            return int(v) * mult / 1000.0
        except ValueError as e:
            raise HttpError(400, f"Invalid delay parameter value: {raw}") from e

    def delete_job(self, job: Job) -> None:
        with self.state.lock:
            running = [b for b in job.builds.values() if b.building]
            for b in running:
                b.control.kill = True
                b.control.aborted_by = self.state.user
                b.control.wake.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.state.lock:
                if not any(b.building for b in running):
                    break
            time.sleep(0.05)
        self.state.remove_job(job.name)

    # -- builds
    def build(
        self,
        method: str,
        job: Job,
        b: Build,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
        root: str,
        user: str,
    ) -> Resp:
        s = self.state
        if not rest:
            return html_page(f"{job.name} #{b.number}", "Build")
        if rest == ["api", "json"]:
            with s.lock:
                return json_resp(api.build_json(s, b, root), query)
        if rest == ["consoleText"]:
            return Resp(200, _read(b.console_path), TEXT_TYPE)
        if rest == ["logText", "progressiveText"]:
            with s.lock:
                done = not b.building
            return progressive(b.console_path, query, done)
        if rest in (["stop"], ["term"], ["kill"]):
            self.require_post(method)
            with s.lock:
                if b.building:
                    ctl = b.control
                    ctl.aborted_by = ctl.aborted_by or user
                    if rest[0] == "kill":
                        ctl.kill = True
                    else:
                        ctl.signals += 1
                    ctl.wake.set()
            if rest[0] == "stop":
                return redirect(urljoin(f"{root}{api.build_path(b)}stop", "."))
            return Resp(200)
        if rest[0] == "wfapi":
            return self.wfapi(method, b, rest[1:], query, root, user)
        if rest[0] == "input" and len(rest) == 3 and rest[2] in ("proceedEmpty", "abort", "proceed"):
            self.require_post(method)
            self.decide_input(b, rest[1], "abort" if rest[2] == "abort" else "proceed", user)
            return Resp(200)
        if rest[0] == "execution" and len(rest) >= 3 and rest[1] == "node":
            return self.node(b, rest[2], rest[3:], query)
        if rest == ["doDelete"]:
            self.require_post(method)
            with s.lock:
                if b.building:
                    raise failure("Unable to delete a build in progress")
                job.builds.pop(b.number, None)
            import shutil

            shutil.rmtree(b.dir, ignore_errors=True)
            return redirect(f"{root}{api.job_path(job.name)}")
        raise HttpError(404)

    def wfapi(
        self, method: str, b: Build, rest: list[str], query: dict[str, str], root: str, user: str
    ) -> Resp:
        ct = "application/json;charset=UTF-8"
        with self.state.lock:
            if rest in ([], ["describe"]):
                return json_resp(api.run_ext(b, root), content_type=ct)
            if rest == ["pendingInputActions"]:
                return json_resp(api.pending_inputs(b), content_type=ct)
            if rest == ["nextPendingInputAction"]:
                pending = api.pending_inputs(b)
                return json_resp(pending[0] if pending else None, content_type=ct)
            if rest == ["artifacts"]:
                return json_resp([], content_type=ct)
            if rest == ["changesets"]:
                return json_resp([], content_type=ct)
        if rest == ["inputSubmit"]:
            self.require_post(method)
            input_id = query.get("inputId", "")
            try:
                self.decide_input(b, input_id, "proceed", user)
            except HttpError as e:
                msg = (
                    f"Error processing Input Submit request. This Run instance does not have an Input with "
                    f"an ID of '{input_id}'. The input ID may not be pre-normalized appropriately."
                )
                raise HttpError(500, msg) from e
            return Resp(200)
        raise HttpError(404)

    def decide_input(self, b: Build, input_id: str, decision: str, user: str) -> None:
        with self.state.lock:
            p = b.pending_input
            if p is None or p["id"] != input_id or b.control.input_decision is not None:
                raise HttpError(404)
            b.control.input_decision = (input_id, decision, user)
            b.control.wake.set()

    def node(self, b: Build, node_id: str, rest: list[str], query: dict[str, str]) -> Resp:
        s = self.state
        with s.lock:
            n = b.node(node_id)
            if n is None:
                raise HttpError(404)
            done = n.log_done or not b.building
            has_log, t = n.has_log, now_ms()
            if rest == ["wfapi", "describe"] or rest == ["wfapi"]:
                d = api.stage_ext(b, n, t, True) if n.kind == "stage" else api.atom_ext(b, n, t)
                return json_resp(d, content_type="application/json;charset=UTF-8")
        path = b.node_log_path(node_id)
        if rest == ["wfapi", "log"]:
            size = path.stat().st_size if has_log and path.exists() else 0
            tail = _read_range(path, max(0, size - api.WFAPI_LOG_MAX), size) if size else b""
            with s.lock:
                d = api.node_log_ext(b, n, tail, size)
            return json_resp(d, content_type="application/json;charset=UTF-8")
        if not has_log:
            raise HttpError(404)
        if rest == ["log", "logText", "progressiveText"]:
            return progressive(path, query, done)
        if rest == ["log"] or rest == ["log", "logText", "consoleText"]:
            return Resp(200, _read(path), TEXT_TYPE)
        raise HttpError(404)

    # -- queue
    def queue(self, method: str, rest: list[str], query: dict[str, str], root: str) -> Resp:
        s = self.state
        if rest == ["api", "json"]:
            with s.lock:
                return json_resp(api.queue_json(s, root), query)
        if rest == ["cancelItem"]:
            self.require_post(method)
            try:
                item_id = int(query.get("id", ""))
            except ValueError as e:
                raise HttpError(400, "id must be a number") from e
            with s.lock:
                item = s.queue.get(item_id)
                if item is None:
                    raise HttpError(404, f"Provided id ({item_id}) not found")
                if item.state == "left":
                    raise HttpError(500, f"Could not cancel run for id {item_id}")
                item.state, item.cancelled, item.why, item.left_ms = "left", True, None, now_ms()
                s.save_queue()
                s.changed.notify_all()
            return Resp(204)
        if len(rest) >= 2 and rest[0] == "item" and rest[2:] in ([], ["api", "json"]):
            try:
                item_id = int(rest[1])
            except ValueError as e:
                raise HttpError(404) from e
            with s.lock:
                item = s.queue_item(item_id)
                return json_resp(api.queue_item_json(s, item, root), query)
        raise HttpError(404)

    # -- credentials (system store, global domain)
    def credentials(
        self,
        method: str,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
        headers: Any,
        root: str,
        user: str,
    ) -> Resp:
        s = self.state
        if not rest:
            return html_page("Global credentials (unrestricted)", "Credentials")
        if rest == ["api", "json"]:
            with s.lock:
                return json_resp(api.credentials_domain(s), query)
        if rest == ["createCredentials"]:
            self.require_post(method)
            ctype = headers.get("Content-Type") or ""
            if not ctype:
                raise failure("No Content-Type header set")
            if ctype.startswith("application/xml") or ctype.startswith("text/xml"):
                cred = _credential_from_xml(body)
                with s.lock:
                    if cred["id"] in s.credentials:
                        return Resp(409)
                    s.credentials[cred["id"]] = cred
                    s.save_credentials()
                return Resp(200)
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
            if "json" not in form:
                raise failure("Nothing is submitted")
            try:
                data = json.loads(form["json"])["credentials"]
                cred = _credential_from_json(data)
            except (ValueError, KeyError, TypeError) as e:
                raise HttpError(500, f"Failed to bind credentials: {e}") from e
            with s.lock:
                # The plugin ignores addCredentials' false (id taken) on a form submission: same redirect.
                if cred["id"] not in s.credentials:
                    s.credentials[cred["id"]] = cred
                    s.save_credentials()
            return redirect(f"{root}credentials/store/system/domain/_")
        if len(rest) >= 2 and rest[0] == "credential":
            cid, sub = rest[1], rest[2:]
            with s.lock:
                found = s.credentials.get(cid)
                if found is None:
                    raise HttpError(404)
                cred = found
                if not sub:
                    return html_page(cid, "Credential")
                if sub == ["api", "json"]:
                    return json_resp(api.credential_json(cred), query)
                if sub == ["config.xml"]:
                    if method == "GET":
                        return Resp(200, api.credential_xml(cred).encode("utf-8"), XML_TYPE)
                    if method == "POST":
                        new = _credential_from_xml(body)
                        del s.credentials[cid]
                        s.credentials[new["id"]] = new
                        s.save_credentials()
                        return Resp(200)
                    if method == "DELETE":
                        del s.credentials[cid]
                        s.save_credentials()
                        return Resp(200)
                    raise HttpError(400)
                if sub == ["doDelete"]:
                    self.require_post(method)
                    del s.credentials[cid]
                    s.save_credentials()
                    return redirect(f"{root}credentials/store/system/")
            raise HttpError(404)
        raise HttpError(404)


def _credential_from_json(data: dict[str, Any]) -> dict[str, Any]:
    cls = data.get("$class") or data.get("stapler-class")
    if cls not in (USERNAME_PASSWORD, STRING_CREDENTIALS):
        raise ValueError(f"unsupported credentials class {cls!r}")
    cred: dict[str, Any] = {
        "$class": cls,
        "id": str(data.get("id") or secrets.token_hex(8)),
        "scope": str(data.get("scope", "GLOBAL")),
        "description": str(data.get("description", "")),
    }
    if cls == USERNAME_PASSWORD:
        cred["username"] = str(data.get("username", ""))
        cred["password"] = str(data.get("password", ""))
    else:
        cred["secret"] = str(data.get("secret", ""))
    return cred


def _credential_from_xml(body: bytes) -> dict[str, Any]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise HttpError(500, f"java.io.IOException: Failed to parse credential: {e}") from e
    data: dict[str, Any] = {"$class": root.tag}
    for child in root:
        data[child.tag] = child.text or ""
    try:
        return _credential_from_json(data)
    except ValueError as e:
        raise HttpError(500, str(e)) from e


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _read_range(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def progressive(path: Path, query: dict[str, str], complete: bool) -> Resp:
    """org.kohsuke.stapler.framework.io.LargeText.doProgressiveText."""
    if not path.exists():
        headers = {"X-Text-Size": "0"}
        if not complete:
            headers["X-More-Data"] = "true"
        return Resp(200, b"", TEXT_TYPE, headers)
    try:
        start = int(query.get("start", "0") or 0)
    except ValueError as e:
        raise HttpError(400, "start must be a number") from e
    size = path.stat().st_size
    if size < start:
        start = 0  # LargeText: "text rolled over"
    data = _read_range(path, start, size)
    headers = {"X-Text-Size": str(start + len(data))}
    if not complete:
        headers["X-More-Data"] = "true"
    return Resp(200, data, TEXT_TYPE, headers)


# ---- HTTP plumbing -----------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Jetty(12.0.16)"
    sys_version = ""
    app: App
    lite: LiteServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, delayed ACKs cost ~40 ms per answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("JENKINS_LITE_ACCESS_LOG"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.handle_any("GET")

    def do_POST(self) -> None:
        self.handle_any("POST")

    def do_DELETE(self) -> None:
        self.handle_any("DELETE")

    def do_HEAD(self) -> None:
        self.handle_any("HEAD")

    def handle_any(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        host = self.headers.get("Host") or f"{self.lite.host}:{self.lite.port}"
        root = f"http://{host}/"
        fault, latency_ms, status = "none", 0, 503
        if not parts.path.startswith("/cubepaas-lite/"):
            fault, latency_ms, status = self.app.faults.roll()
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if fault == "drop":
            self.drop()
            return
        if fault == "error":
            self.send(oops(status))
            return
        try:
            resp = self.app.dispatch(
                "GET" if method == "HEAD" else method, parts.path, query, body, self.headers, root
            )
        except HttpError as e:
            resp = error_resp(e)
        except Exception as e:  # a Jenkins 500 page, never a dead connection
            resp = html_page("Oops!", f"A problem occurred while processing the request: {e!r}", 500)
        if fault == "drop_after":
            self.drop()
            return
        if method == "HEAD":
            resp = Resp(
                resp.status, b"", resp.content_type, {**resp.headers, "Content-Length": str(len(resp.body))}
            )
        self.send(resp)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(2)

    def send(self, resp: Resp) -> None:
        self.send_response(resp.status)
        self.send_header("X-Jenkins", self.lite.state.version)
        self.send_header("X-Jenkins-Session", self.lite.state.session)
        self.send_header("X-Hudson", "1.395")
        self.send_header("X-Content-Type-Options", "nosniff")
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            # Jetty writes header values as ISO-8859-1; characters outside it become "?"
            self.send_header(k, v.encode("latin-1", "replace").decode("latin-1"))
        if "Content-Length" not in resp.headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if resp.body:
            self.wfile.write(resp.body)


def error_resp(e: HttpError) -> Resp:
    titles = {
        400: "Error",
        401: "Unauthorized",
        403: "Access Denied",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        500: "Oops!",
    }
    if e.status == 409 and not e.message:
        return Resp(409, b"", None, e.headers)
    r = html_page(titles.get(e.status, "Error"), e.message or titles.get(e.status, ""), e.status)
    r.headers.update(e.headers)
    return r


def oops(status: int) -> Resp:
    body = (
        "<!DOCTYPE html><html><head><title>Jenkins [Jenkins]</title></head><body>"
        '<div id="error-description"><h1>Oops!</h1><h2>A problem occurred while processing the request</h2>'
        "<p>jenkins-lite injected fault</p></div></body></html>"
    )
    return Resp(status, body.encode(), HTML_TYPE)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class LiteServer:
    """A running jenkins-lite; `serve()` makes one."""

    def __init__(
        self,
        state: State,
        faults: Faults,
        host: str,
        port: int,
        cloud: KubernetesCloud | None = None,
        container_cap: int | None = None,
    ) -> None:
        self.state = state
        self.faults = faults
        self.host = host
        self.scheduler = Scheduler(state, "")
        self.scheduler.cloud = cloud
        self.scheduler.cap = ContainerCap(container_cap)
        app = App(state, faults, self.scheduler)
        handler = type("BoundHandler", (Handler,), {"app": app, "lite": self})
        self.httpd = _Server((host, port), handler)
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self.scheduler.root_url = self.url
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> LiteServer:
        self.scheduler.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="jenkins-lite-http",
            daemon=True,
        )
        self._thread.start()
        (self.state.home / "url").write_text(self.url + "\n")
        return self

    def set_faults(
        self,
        fail_rate: float | None = None,
        latency_ms: int | None = None,
        drop_rate: float | None = None,
        drop_after_rate: float | None = None,
    ) -> None:
        self.faults.set(fail_rate, latency_ms, drop_rate, drop_after_rate)

    def shutdown(self) -> None:
        """Stop serving; running builds end ABORTED as a Jenkins restart would leave them."""
        if self._stopped:
            return
        self._stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.state.lock:
            self.scheduler.stopping = True
            self.state.changed.notify_all()
            running = [b for j in self.state.jobs.values() for b in j.builds.values() if b.building]
            for b in running:
                b.control.kill = True
                b.control.wake.set()
        deadline = time.monotonic() + 10
        for r in list(self.scheduler.runners):
            r.join(max(0.0, deadline - time.monotonic()))
        with self.state.lock:
            for b in running:
                if b.building:  # runner stuck: record the end ourselves
                    abort_interrupted(self.state, b, "jenkins-lite is shutting down")

    def __enter__(self) -> LiteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def abort_interrupted(state: State, b: Build, why: str) -> None:
    """Mark a build the server can no longer run as ABORTED (the way Jenkins leaves an unresumable build)."""
    for pgid in b.pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    c = Console(b.console_path)
    c.line(f"jenkins-lite: {why}; the build cannot continue")
    c.line("Finished: ABORTED")
    c.close()
    t = now_ms()
    for n in b.nodes:
        if n.end_ms is None:
            n.status, n.end_ms, n.error = "ABORTED", t, {"message": None, "type": INTERRUPTED}
        n.log_done = True
    b.pending_input = None
    b.result, b.end_ms, b.building, b.pgids = "ABORTED", t, False, []
    state.save_build(b)


def serve(
    home: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    user: str = "admin",
    token: str = "lite-token",
    version: str = "2.492.3",
    fail_rate: float = 0.0,
    latency_ms: int = 0,
    drop_rate: float = 0.0,
    drop_after_rate: float = 0.0,
    executors: int = 4,
    queue_item_ttl: float = 300.0,
    quiet_period: int = 5,
    kill_grace: float = 3.0,
    fault_seed: int | None = None,
    kubeconfig: str | Path | None = None,
    nodes_dir: str | Path | None = None,
    container_cap: int | None = None,
) -> LiteServer:
    """Start jenkins-lite in this process (threads) and return its handle; call `.shutdown()` when done.

    With ``kubeconfig``, podTemplate builds run in agent pods of that cluster (docs/jenkins-lite.md), their
    hostPath volumes kept under ``nodes_dir`` (default ``HOME/nodes``). ``container_cap``: the cloud's
    containerCap, how many podTemplate builds have an agent at once (None or 0: unlimited).
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    cloud = None
    if kubeconfig is not None:
        cloud = KubernetesCloud.from_kubeconfig(Path(kubeconfig), Path(nodes_dir or home / "nodes"))
    state = State(home, user, token, version, executors, queue_item_ttl, quiet_period, kill_grace)
    with state.lock:
        for b in state.load():
            abort_interrupted(state, b, "the server restarted while this build was running")
            if cloud is not None and b.agent_pod is not None:
                cloud.delete_pod(b.agent_pod["namespace"], b.agent_pod["name"])
    faults = Faults(fault_seed)
    faults.set(fail_rate, latency_ms, drop_rate, drop_after_rate)
    return LiteServer(state, faults, host, port, cloud, container_cap).start()
