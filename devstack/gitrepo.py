"""Local git repositories for the demo, the tests and the bench (real git, bare repos, file:// URLs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GitCommandError(RuntimeError):
    """A ``git`` command failed; the message has its stderr."""


def git(cwd: Path, *args: str, author: str = "devstack") -> str:
    """Run ``git`` in ``cwd`` with a fixed identity; its stdout, stripped."""
    email = f"{author.replace(' ', '-').lower()}@cubepaas.invalid"
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME=author,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=author,
        GIT_COMMITTER_EMAIL=email,
    )
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GitCommandError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def make_git_repo(
    root: Path,
    pipeline_file: str,
    files: dict[str, str] | None = None,
    branch: str = "main",
    *,
    author: str = "devstack",
) -> tuple[str, str]:
    """A bare repository ``root/repo.git`` with one commit on ``branch`` holding ``.cubepaas.devops.yml``
    (and ``files``; ``*.sh`` made executable); returns (file:// url, commit sha)."""
    bare, work = root / "repo.git", root / "work"
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", "-b", branch, str(bare), author=author)
    git(root, "init", "-q", "-b", branch, str(work), author=author)
    (work / ".cubepaas.devops.yml").write_text(pipeline_file)
    for rel, text in (files or {}).items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.endswith(".sh"):
            path.chmod(0o755)
    git(work, "add", "-A", author=author)
    git(work, "commit", "-q", "-m", "pipeline", author=author)
    git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}", author=author)
    return bare.as_uri(), git(work, "rev-parse", "HEAD", author=author)


def push_commit(
    url: str, files: dict[str, str], message: str, branch: str = "main", *, author: str = "devstack"
) -> str:
    """Commit ``files`` in the work tree of a repository made by :func:`make_git_repo` and push it to
    ``branch`` of its bare repository (``url``); returns the new commit sha."""
    bare = Path(url.removeprefix("file://"))
    work = bare.parent / "work"
    for rel, text in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(work, "add", "-A", author=author)
    git(work, "commit", "-q", "-m", message, author=author)
    git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}", author=author)
    return git(work, "rev-parse", "HEAD", author=author)
