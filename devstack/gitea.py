"""The stack's git forge: Gitea built from its Go module (testbin), everything in ``<state>/gitea/``.

A real forge for the tests and the demo: the REST API (``/api/v1``), git over smart HTTP (push and
clone) and webhooks, on loopback, with SQLite. The web UI's compiled frontend is not there (it is built
by npm, not by ``go build``): pages render without styles or scripts, the API and git do not need them.

At the first start of a state folder (before the server runs, so nothing else uses the database) the
schema is made (``gitea migrate``), the admin user ``devstack-admin`` is created with a generated
password and an access token with every scope, all kept in ``gitea/admin.json``; later starts reuse
them. The secrets of ``app.ini`` are made once too (``gitea/secrets.json``); ``app.ini`` itself is
written on every start (the port may change).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import urllib.error
import urllib.request
from base64 import urlsafe_b64encode
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack.component import Component, Context, Unhealthy, binaries
from devstack.proc import LOOPBACK
from devstack.state import atomic_write
from devstack.testbin import GITEA, cache_dir

ADMIN_USER = "devstack-admin"
ADMIN_EMAIL = "devstack-admin@devstack.invalid"
# The cron tasks that are on by default and run at start or every few minutes (or phone home); the
# others are off by default or run every 72 hours and more.
QUIET_CRON_TASKS = (
    "archive_cleanup",
    "update_mirrors",
    "repo_health_check",
    "check_repo_stats",
    "update_migration_poster_id",
    "sync_external_users",
    "deleted_branches_cleanup",
    "cleanup_hook_task_table",
    "cleanup_packages",
    "update_checker",  # would ask dl.gitea.com for a newer release
)


@dataclass(frozen=True)
class GiteaSecrets:
    """The secrets of ``app.ini``, made once per state folder (a new SECRET_KEY would make the
    stored two-factor and OAuth secrets unreadable, a new JWT secret invalidate issued tokens)."""

    secret_key: str
    internal_token: str
    jwt_secret: str  # [oauth2] JWT_SECRET: 32 random bytes, unpadded URL-safe base64 (what Gitea checks)


@dataclass(frozen=True)
class GiteaAdmin:
    user: str
    password: str
    token: str
    hooks_binary: str  # the gitea binary the repositories' git hooks call (regenerated when it changes)


def gitea_dir(ctx: Context) -> Path:
    return ctx.dir / "gitea"


def app_ini_path(ctx: Context) -> Path:
    return gitea_dir(ctx) / "app.ini"


def ensure_secrets(folder: Path) -> GiteaSecrets:
    path = folder / "secrets.json"
    try:
        return GiteaSecrets(**json.loads(path.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        pass
    made = GiteaSecrets(
        secret_key=secrets.token_urlsafe(48),
        internal_token=secrets.token_urlsafe(48),
        jwt_secret=urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
    )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(made), indent=2) + "\n")
    return made


def read_admin(ctx: Context) -> GiteaAdmin | None:
    """The admin's credentials once the first start made them (None before)."""
    try:
        return GiteaAdmin(**json.loads((gitea_dir(ctx) / "admin.json").read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def app_ini(ctx: Context, port: int, made: GiteaSecrets, static_root: Path) -> str:
    """The whole configuration: loopback only, SQLite and repositories in the state folder, offline."""
    folder = gitea_dir(ctx)
    url = f"http://{LOOPBACK}:{port}/"
    sections: dict[str, dict[str, str]] = {
        "": {
            "APP_NAME": "devstack gitea",
            "RUN_MODE": "prod",
            # Gitea refuses to start as another user than RUN_USER, and as root unless told so (the
            # sandbox and CI run everything as root; nothing of it is reachable from outside loopback).
            "RUN_USER": pwd.getpwuid(os.getuid()).pw_name,
            "WORK_PATH": str(folder),
            **({"I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true"} if os.getuid() == 0 else {}),
        },
        "server": {
            "PROTOCOL": "http",
            "HTTP_ADDR": LOOPBACK,
            "HTTP_PORT": str(port),
            "DOMAIN": LOOPBACK,
            "ROOT_URL": url,
            # Where Gitea's own git hooks (run by git on a push) call its internal API.
            "LOCAL_ROOT_URL": url,
            "APP_DATA_PATH": str(folder / "data"),
            # The module's options/ and templates/, copied next to the binary by testbin (no bindata).
            "STATIC_ROOT_PATH": str(static_root),
            "OFFLINE_MODE": "true",
            "DISABLE_SSH": "true",
            "START_SSH_SERVER": "false",
            "LFS_START_SERVER": "false",
            "LANDING_PAGE": "explore",
            # SIGTERM (devstack down) waits this long for open requests, then stops.
            "GRACEFUL_HAMMER_TIME": "3s",
        },
        "database": {
            "DB_TYPE": "sqlite3",
            "PATH": str(folder / "gitea.db"),
            "SQLITE_JOURNAL_MODE": "WAL",
            "LOG_SQL": "false",
        },
        "repository": {
            "ROOT": str(folder / "repositories"),
            "DEFAULT_BRANCH": "main",
            "DISABLE_STARS": "true",
        },
        "security": {
            "INSTALL_LOCK": "true",
            "SECRET_KEY": made.secret_key,
            "INTERNAL_TOKEN": made.internal_token,
            "PASSWORD_COMPLEXITY": "off",
            "MIN_PASSWORD_LENGTH": "8",
            # Webhook targets (and OpenID/OAuth2 hosts) may be on loopback and private networks: the
            # webhook receiver of the stack listens on 127.0.0.1. (v1.27 reads [webhook]
            # ALLOWED_HOST_LIST only as a deprecated fallback for this key, and logs an error for it.)
            "ALLOWED_HOST_LIST": "loopback,private",
        },
        "service": {
            # No self-registration: users are made by the admin (POST /api/v1/admin/users).
            "DISABLE_REGISTRATION": "true",
            "REQUIRE_SIGNIN_VIEW": "false",
            "REGISTER_EMAIL_CONFIRM": "false",
            "ENABLE_NOTIFY_MAIL": "false",
            "DEFAULT_KEEP_EMAIL_PRIVATE": "false",
            "ENABLE_CAPTCHA": "false",
        },
        "mailer": {"ENABLED": "false"},
        "oauth2": {"ENABLED": "true", "JWT_SECRET": made.jwt_secret},
        "webhook": {
            "SKIP_TLS_VERIFY": "true",
            "DELIVER_TIMEOUT": "5",
        },
        "session": {"PROVIDER": "memory"},
        "cache": {"ADAPTER": "memory"},
        # Idle-cheap: issues searched in the database (no bleve index), no Actions runner machinery,
        # no package registry, short on-disk queues (webhook deliveries wait in the database anyway),
        # and the busy cron tasks off.
        "indexer": {"ISSUE_INDEXER_TYPE": "db", "REPO_INDEXER_ENABLED": "false"},
        "actions": {"ENABLED": "false"},
        "packages": {"ENABLED": "false"},
        "queue": {"TYPE": "level", "LENGTH": "1000"},
        **{f"cron.{task}": {"ENABLED": "false", "RUN_AT_START": "false"} for task in QUIET_CRON_TASKS},
        "log": {"MODE": "console", "LEVEL": "Warn", "logger.router.MODE": "", "logger.xorm.MODE": ""},
        "other": {"SHOW_FOOTER_VERSION": "true", "SHOW_FOOTER_TEMPLATE_LOAD_TIME": "false"},
    }
    lines = ["; Written by `python -m devstack up` on every start of gitea: edits are lost."]
    for section, keys in sections.items():
        if section:
            lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {value}" for key, value in keys.items())
    return "\n".join(lines) + "\n"


class Gitea(Component):
    name = "gitea"
    startup_timeout = 90.0

    def prepare(self, ctx: Context) -> None:
        binary = binaries(ctx).gitea
        folder = gitea_dir(ctx)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = ensure_secrets(folder)
        port = ctx.ports[self.name]["main"]
        atomic_write(app_ini_path(ctx), app_ini(ctx, port, made, GITEA.assets_dir(cache_dir())))
        admin = read_admin(ctx)
        if admin is None or not (folder / "gitea.db").exists():  # a new folder, or its database deleted
            admin = self._first_start(ctx, binary)
        elif admin.hooks_binary != str(binary):
            # The repositories' hook scripts name the binary by path, and a new version is a new path.
            _gitea(ctx, binary, "admin", "regenerate", "hooks")
            admin = GiteaAdmin(admin.user, admin.password, admin.token, str(binary))
        atomic_write(folder / "admin.json", json.dumps(asdict(admin), indent=2) + "\n")

    def _first_start(self, ctx: Context, binary: Path) -> GiteaAdmin:
        ctx.log("gitea: first start of this state folder: schema, admin user and token ...")
        _gitea(ctx, binary, "migrate")
        password = secrets.token_urlsafe(18)
        created = _gitea(
            ctx, binary, "admin", "user", "create", "--username", ADMIN_USER, "--email", ADMIN_EMAIL,
            "--password", password, "--admin", "--must-change-password=false", check=False,
        )  # fmt: skip
        if created.returncode != 0:
            if "already exists" not in created.stdout + created.stderr:
                raise RuntimeError(f"gitea admin user create failed: {created.stdout}{created.stderr}")
            # Made by an earlier first start that did not get as far as admin.json: new password.
            _gitea(
                ctx, binary, "admin", "user", "change-password", "--username", ADMIN_USER,
                "--password", password, "--must-change-password=false",
            )  # fmt: skip
        token = _gitea(
            ctx, binary, "admin", "user", "generate-access-token", "--username", ADMIN_USER,
            "--token-name", f"devstack-{secrets.token_hex(4)}", "--scopes", "all", "--raw",
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        return GiteaAdmin(ADMIN_USER, password, token, str(binary))

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        folder = gitea_dir(ctx)
        return [
            str(binaries(ctx).gitea),
            "web",
            "--config", str(app_ini_path(ctx)),
            "--work-path", str(folder),
            "--custom-path", str(folder / "custom"),
            "--pid", str(folder / "gitea.pid"),
        ]  # fmt: skip

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        return _gitea_env(ctx)

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        url = self.url(ports)
        status, body = _request(f"{url}/api/v1/version")
        if status != 200 or "version" not in _json(body):
            raise Unhealthy(f"gitea /api/v1/version: HTTP {status} {body[:200]!r}")
        admin = read_admin(ctx)
        if admin is None:
            raise Unhealthy("gitea: no admin credentials yet (gitea/admin.json)")
        status, body = _request(f"{url}/api/v1/user", headers={"Authorization": f"token {admin.token}"})
        if status != 200 or _json(body).get("login") != admin.user:
            raise Unhealthy(f"gitea /api/v1/user with the admin token: HTTP {status} {body[:200]!r}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        admin = read_admin(ctx)
        values = {"GITEA_URL": self.url(ports)}
        if admin is not None:
            values |= {
                "GITEA_ADMIN_USER": admin.user,
                "GITEA_ADMIN_PASSWORD": admin.password,
                "GITEA_ADMIN_TOKEN": admin.token,
            }
        return values


def _gitea_env(ctx: Context) -> dict[str, str]:
    # No GITEA_* or GIT_* of the caller's shell (GITEA_CUSTOM, GIT_DIR, ...) reaches the server.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("GITEA_", "GIT_"))}
    return dict(inherited, GITEA_WORK_DIR=str(gitea_dir(ctx)))


def _gitea(ctx: Context, binary: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One ``gitea`` admin command on the stack's configuration (the server need not run)."""
    folder = gitea_dir(ctx)
    cmd = [str(binary), "--config", str(app_ini_path(ctx)), "--work-path", str(folder), *args]
    result = subprocess.run(
        cmd, env=_gitea_env(ctx), cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        shown = " ".join(args[:3])  # never the password
        raise RuntimeError(f"gitea {shown} ... failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return result


def _request(url: str, *, headers: dict[str, str] | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET ``url`` without any proxy (everything here is loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (urllib.error.URLError, OSError) as err:
        raise Unhealthy(f"GET {url}: {err}") from err


def _json(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
