"""Reading the pipeline file and resolving branches with real git on local repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from activities.errors import GitError
from activities.gitfile import git_error_message, read_file_at, resolve_revision

pytestmark = pytest.mark.unit


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[str, str, str]:
    """A bare repo with two commits on main and a tag on the first: (url, first sha, second sha)."""
    work, bare = tmp_path / "work", tmp_path / "repo.git"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / ".cubepaas.devops.yml").write_text("first\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "-a", "v1", "-m", "v1")
    (work / ".cubepaas.devops.yml").write_text("second\n")
    git(work, "commit", "-q", "-am", "two")
    second = git(work, "rev-parse", "HEAD")
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", "--tags", str(bare), "main")
    return bare.as_uri(), first, second


def test_a_branch_resolves_to_its_head_and_a_tag_to_its_commit(repo: tuple[str, str, str]) -> None:
    url, first, second = repo
    assert resolve_revision(url, "main") == second
    assert resolve_revision(url, "refs/heads/main") == second
    assert resolve_revision(url, "v1") == first
    assert resolve_revision(url, first.upper()) == first


def test_an_unknown_branch_is_a_permanent_git_error(repo: tuple[str, str, str]) -> None:
    with pytest.raises(GitError, match="no branch, tag or ref named 'nope'"):
        resolve_revision(repo[0], "nope")


def test_the_file_is_read_at_the_given_commit_not_the_branch_head(repo: tuple[str, str, str]) -> None:
    url, first, second = repo
    assert read_file_at(url, first) == "first\n"
    assert read_file_at(url, second) == "second\n"
    assert read_file_at(url, first, "missing.yml") is None


GIT_MISSING_REPOSITORY = """fatal: '/srv/nope.git' does not appear to be a git repository
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""


def test_the_git_error_message_is_the_first_fatal_line_not_the_last_line() -> None:
    assert (
        git_error_message(GIT_MISSING_REPOSITORY) == "'/srv/nope.git' does not appear to be a git repository"
    )


def test_a_stderr_without_fatal_is_reported_whole_and_trimmed() -> None:
    assert git_error_message("  warning: x\n  something odd happened \n\n") == (
        "warning: x something odd happened"
    )
    assert git_error_message("") == "git failed"


def test_a_missing_local_repository_is_reported_as_missing_by_real_git(tmp_path: Path) -> None:
    url = (tmp_path / "does-not-exist.git").as_uri()
    with pytest.raises(GitError) as read_err:
        read_file_at(url, "0" * 40)
    assert "does not appear to be a git repository" in str(read_err.value)
    assert "repository exists" not in str(read_err.value)
    with pytest.raises(GitError) as resolve_err:
        resolve_revision(url, "main")
    assert "does not appear to be a git repository" in str(resolve_err.value)
    assert "repository exists" not in str(resolve_err.value)
