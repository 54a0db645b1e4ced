"""Read one file of a git repository at a commit, with real ``git`` (no working tree is checked out).

Credentials (for https URLs) are handed to git through ``GIT_ASKPASS`` reading environment variables,
so they never appear in a command line, a URL or a log. ``file://`` and local paths need none.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from activities.errors import GitError, TransientError

PIPELINE_FILE = ".cubepaas.devops.yml"
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s' "$CUBEPAAS_GIT_USERNAME" ;;
  *) printf '%s' "$CUBEPAAS_GIT_PASSWORD" ;;
esac
"""
_TRANSIENT_HINTS = (
    "Could not resolve host",
    "Connection timed out",
    "Connection refused",
    "early EOF",
    "The remote end hung up",
    "503",
    "502",
    "504",
)


def resolve_revision(
    url: str, revision: str, *, username: str = "", password: str = "", timeout: float = 60.0
) -> str:
    """The commit sha a branch, tag or ref names in the repository (``git ls-remote``).

    A full 40-hex sha is returned as is. Raises GitError when the repository has no such ref.
    """
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower()):
        return revision.lower()
    with tempfile.TemporaryDirectory(prefix="cubepaas-git-") as tmp:
        env = _git_env(tmp, username, password)
        done = subprocess.run(
            ["git", "ls-remote", url, revision, f"{revision}^{{}}"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise _failure(done.stderr, url, "", password)
    refs: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name:
            refs[name] = sha
    for name in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}^{{}}", f"refs/tags/{revision}"):
        if name in refs:
            return refs[name]
    raise GitError(f"{url} has no branch, tag or ref named {revision!r}")


def git_error_message(stderr: str) -> str:
    """What went wrong, from git's stderr: its first ``fatal:`` (or ``error:``) line, else all of it.

    Not the last line: for a missing repository git ends with "Please make sure you have the correct
    access rights and the repository exists.", which reads as the opposite of what happened.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for prefix in ("fatal:", "error:"):
        for line in lines:
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip() or line
    whole = " ".join(lines)
    return (whole if len(whole) <= 500 else whole[:499] + "…") if whole else "git failed"


def _failure(stderr: str, url: str, revision: str, password: str) -> TransientError | GitError:
    """A failed git command as the error a retry should act on (the password masked, if git echoed it)."""
    msg = git_error_message(stderr)
    if password:
        msg = msg.replace(password, "***")
    if any(h in stderr for h in _TRANSIENT_HINTS):
        return TransientError(f"cannot reach {url}: {msg}")
    return GitError(f"cannot read {url}{f' at {revision}' if revision else ''}: {msg}")


def _git_env(tmp: str, username: str, password: str) -> dict[str, str]:
    askpass = Path(tmp) / "askpass.sh"
    askpass.write_text(_ASKPASS)
    askpass.chmod(0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tmp,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": str(askpass),
        "CUBEPAAS_GIT_USERNAME": username,
        "CUBEPAAS_GIT_PASSWORD": password,
    }


def read_file_at(
    url: str,
    revision: str,
    path: str = PIPELINE_FILE,
    *,
    username: str = "",
    password: str = "",
    timeout: float = 120.0,
) -> str | None:
    """The file's text at ``revision`` (a commit, branch or tag), or None when the file is absent.

    Raises GitError for a repository or revision that cannot be read (permanent), TransientError for
    network-looking faults.
    """
    with tempfile.TemporaryDirectory(prefix="cubepaas-git-") as tmp:
        env = _git_env(tmp, username, password)
        repo = Path(tmp) / "repo.git"

        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["git", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )

        git("init", "--bare", "-q", str(repo))
        fetched = git("--git-dir", str(repo), "fetch", "-q", "--depth=1", url, revision)
        if fetched.returncode != 0:
            # Some servers refuse fetching a bare sha at depth 1 unless allowed; try a full fetch.
            fetched = git(
                "--git-dir",
                str(repo),
                "fetch",
                "-q",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            )
            target = revision
        else:
            target = "FETCH_HEAD"
        if fetched.returncode != 0:
            raise _failure(fetched.stderr, url, revision, password)
        shown = git("--git-dir", str(repo), "show", f"{target}:{path}")
        if shown.returncode != 0:
            if "does not exist" in shown.stderr or "exists on disk, but not in" in shown.stderr:
                return None
            if target != "FETCH_HEAD":
                raise GitError(f"revision {revision} not found in {url}")
            return None
        return shown.stdout
