"""Source-code providers' payloads -> :class:`GitHook`: GitHub, GitLab, Bitbucket Cloud/Server, Gitea.

Each parser receives the event name (from the provider's event header) and the decoded body; the shapes
follow each provider's documented payloads (see tests/contract/payloads/README.md for the samples the
contract tests feed in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.webhooks.events import ZERO_SHA, GitHook, HookKind, Provider, branch_of
from worker.webhooks.payload import get, items, text

Parser = Callable[[str, dict[str, Any]], GitHook]


def _is_zero(sha: str) -> bool:
    return not sha.strip("0")


def _push(
    event: str, ref: str, after: str, *, author: str, sender: str, message: str, link: str, has_commits: bool
) -> GitHook:
    tag = ref.startswith("refs/tags/")
    deleted = _is_zero(after) if after else False
    return GitHook(
        kind=HookKind.TAG if tag else HookKind.PUSH,
        event=event,
        ref=ref,
        branch="" if tag else branch_of(ref),
        commit="" if deleted else after,
        author=author,
        sender=sender,
        message=message,
        link=link,
        deleted=deleted,
        without_commits=not tag and not deleted and not has_commits,
    )


def _pull_request(
    event: str,
    number: str,
    *,
    ref: str,
    target: str,
    commit: str,
    sender: str,
    message: str,
    link: str,
    fork: bool,
) -> GitHook:
    return GitHook(
        kind=HookKind.PULL_REQUEST,
        event=event,
        ref=ref,
        branch=branch_of(target),
        commit=commit,
        author=sender,
        sender=sender,
        message=message,
        link=link,
        from_fork=fork,
    )


def _ignored(event: str, note: str) -> GitHook:
    return GitHook(kind=HookKind.IGNORED, event=event, note=note)


def _github_shaped_pull_request(event: str, doc: dict[str, Any], actions: frozenset[str]) -> GitHook:
    """A ``pull_request`` hook as GitHub sends it, and Gitea, whose payload copies GitHub's."""
    action = text(doc, "action")
    if action not in actions:
        return _ignored(event, f"pull_request action {action or '<none>'} starts nothing")
    pr = get(doc, "pull_request")
    number = text(doc, "number") or text(pr, "number")
    head_repo = text(pr, "head", "repo", "full_name")
    return _pull_request(
        event,
        number,
        ref=f"refs/pull/{number}/head",
        target=text(pr, "base", "ref"),
        commit=text(pr, "head", "sha"),
        sender=text(doc, "sender", "login") or text(pr, "user", "login"),
        message=text(pr, "title"),
        link=text(pr, "html_url"),
        fork=not head_repo or head_repo != text(pr, "base", "repo", "full_name"),
    )


# --- GitHub -------------------------------------------------------------------------------------------

_GITHUB_PR_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


def github(event: str, doc: dict[str, Any]) -> GitHook:
    if event == "ping":
        return GitHook(kind=HookKind.PING, event=event)
    if event == "push":
        head = get(doc, "head_commit")
        return _push(
            event,
            text(doc, "ref"),
            text(doc, "after"),
            author=text(head, "author", "name") or text(head, "author", "username"),
            sender=text(doc, "sender", "login") or text(doc, "pusher", "name"),
            message=text(head, "message"),
            link=text(head, "url") or text(doc, "compare"),
            has_commits=isinstance(head, dict),
        )
    if event == "pull_request":
        return _github_shaped_pull_request(event, doc, _GITHUB_PR_ACTIONS)
    return _ignored(event, f"GitHub event {event or '<none>'} starts nothing")


# --- GitLab -------------------------------------------------------------------------------------------

_GITLAB_MR_ACTIONS = frozenset({"open", "reopen", "update"})


def gitlab(event: str, doc: dict[str, Any]) -> GitHook:
    if event in ("Push Hook", "Tag Push Hook"):
        commits = items(doc, "commits")
        after = text(doc, "after")
        head = next((c for c in commits if text(c, "id") == after), commits[-1] if commits else None)
        count = get(doc, "total_commits_count")
        return _push(
            event,
            text(doc, "ref"),
            after,
            author=text(head, "author", "name") or text(doc, "user_name"),
            sender=text(doc, "user_username") or text(doc, "user_name"),
            message=text(head, "message") or text(doc, "message"),
            link=text(head, "url"),
            has_commits=bool(count) if isinstance(count, int) else bool(commits),
        )
    if event == "Merge Request Hook":
        attrs = get(doc, "object_attributes")
        action = text(attrs, "action")
        if action not in _GITLAB_MR_ACTIONS:
            return _ignored(event, f"merge request action {action or '<none>'} starts nothing")
        if action == "update" and not text(attrs, "oldrev"):
            return _ignored(event, "merge request update without new commits starts nothing")
        iid = text(attrs, "iid")
        return _pull_request(
            event,
            iid,
            ref=f"refs/merge-requests/{iid}/head",
            target=text(attrs, "target_branch"),
            commit=text(attrs, "last_commit", "id"),
            sender=text(doc, "user", "username"),
            message=text(attrs, "last_commit", "message") or text(attrs, "title"),
            link=text(attrs, "url"),
            fork=text(attrs, "source_project_id") != text(attrs, "target_project_id"),
        )
    return _ignored(event, f"GitLab event {event or '<none>'} starts nothing")


# --- Bitbucket Cloud and Server/Data Center -----------------------------------------------------------

_BITBUCKET_PR_EVENTS = frozenset(
    {"pullrequest:created", "pullrequest:updated", "pr:opened", "pr:modified", "pr:from_ref_updated"}
)


def bitbucket(event: str, doc: dict[str, Any]) -> GitHook:
    if event == "diagnostics:ping":
        return GitHook(kind=HookKind.PING, event=event)
    if event == "repo:push":  # Cloud
        change = next((c for c in items(doc, "push", "changes") if get(c, "new") is not None), None)
        if change is None:
            old = get(doc, "push", "changes", 0, "old")
            name = text(old, "name")
            ref = f"refs/tags/{name}" if text(old, "type") == "tag" else f"refs/heads/{name}"
            return _push(
                event, ref, ZERO_SHA, author="", sender=_bb_actor(doc), message="", link="", has_commits=False
            )
        new = get(change, "new")
        name = text(new, "name")
        ref = f"refs/tags/{name}" if text(new, "type") == "tag" else f"refs/heads/{name}"
        target = get(new, "target")
        return _push(
            event,
            ref,
            text(target, "hash"),
            author=text(target, "author", "user", "display_name")
            or text(target, "author", "display_name")
            or text(target, "author", "raw"),
            sender=_bb_actor(doc),
            message=text(target, "message"),
            link=text(target, "links", "html", "href"),
            has_commits=bool(text(target, "hash")),
        )
    if event == "repo:refs_changed":  # Server
        change = get(doc, "changes", 0)
        ref_type = text(change, "ref", "type")
        ref = text(change, "ref", "id") or text(change, "refId")
        if ref_type == "TAG" and not ref.startswith("refs/tags/"):
            ref = f"refs/tags/{text(change, 'ref', 'displayId')}"
        to = text(change, "toHash")
        return _push(
            event,
            ref,
            ZERO_SHA if text(change, "type") == "DELETE" else to,
            author=_bb_actor(doc),
            sender=_bb_actor(doc),
            message="",
            link="",
            has_commits=bool(to),
        )
    if event in _BITBUCKET_PR_EVENTS:
        if event.startswith("pullrequest:"):  # Cloud
            pr = get(doc, "pullrequest")
            number = text(pr, "id")
            source = text(pr, "source", "repository", "full_name")
            return _pull_request(
                event,
                number,
                ref=f"refs/heads/{text(pr, 'source', 'branch', 'name')}",
                target=text(pr, "destination", "branch", "name"),
                commit=text(pr, "source", "commit", "hash"),
                sender=_bb_actor(doc),
                message=text(pr, "title"),
                link=text(pr, "links", "html", "href"),
                fork=not source or source != text(pr, "destination", "repository", "full_name"),
            )
        pr = get(doc, "pullRequest")  # Server
        number = text(pr, "id")

        def repo(side: str) -> str:
            return f"{text(pr, side, 'repository', 'project', 'key')}/{text(pr, side, 'repository', 'slug')}"

        return _pull_request(
            event,
            number,
            ref=f"refs/pull-requests/{number}/from",
            target=text(pr, "toRef", "id"),
            commit=text(pr, "fromRef", "latestCommit"),
            sender=_bb_actor(doc),
            message=text(pr, "title"),
            link=text(pr, "links", "self", 0, "href"),
            fork=repo("fromRef") != repo("toRef"),
        )
    return _ignored(event, f"Bitbucket event {event or '<none>'} starts nothing")


def _bb_actor(doc: dict[str, Any]) -> str:
    return text(doc, "actor", "nickname") or text(doc, "actor", "name") or text(doc, "actor", "display_name")


# --- Gitea / Forgejo ----------------------------------------------------------------------------------

_GITEA_PR_ACTIONS = frozenset({"opened", "synchronized", "synchronize", "reopened"})


def gitea(event: str, doc: dict[str, Any]) -> GitHook:
    if event == "push":
        head = get(doc, "head_commit")
        commits = items(doc, "commits")
        return _push(
            event,
            text(doc, "ref"),
            text(doc, "after"),
            author=text(head, "author", "name"),
            sender=text(doc, "pusher", "login") or text(doc, "sender", "login"),
            message=text(head, "message"),
            link=text(head, "url") or text(doc, "compare_url"),
            has_commits=bool(commits) or isinstance(head, dict),
        )
    if event == "pull_request":
        return _github_shaped_pull_request(event, doc, _GITEA_PR_ACTIONS)
    return _ignored(event, f"Gitea event {event or '<none>'} starts nothing")


PARSERS: dict[Provider, Parser] = {
    Provider.GITHUB: github,
    Provider.GITLAB: gitlab,
    Provider.BITBUCKET: bitbucket,
    Provider.GITEA: gitea,
}

__all__ = ["PARSERS", "bitbucket", "gitea", "github", "gitlab"]
