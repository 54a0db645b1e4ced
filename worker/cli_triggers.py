"""``devopsctl webhook`` and the trigger columns of ``devopsctl get pipelines -o wide``.

``devopsctl webhook PIPELINE [-n NS] [--provider P] [-o json] [--show-secret] [--rotate]`` prints where
a provider must send the Pipeline's hooks, the events to subscribe to, and (only with ``-o json`` or
``--show-secret``) the secret to configure. The secret is generated on first use into the Secret
``<pipeline>-webhook`` (owned by the Pipeline); ``--rotate`` replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime

from temporalio.service import RPCError

from crds.messages import cron_schedule_id
from crds.pipeline import Pipeline
from worker.webhooks.events import Provider
from worker.webhooks.protocol import EVENTS_TO_CONFIGURE
from worker.webhooks.secrets import ensure_webhook_secret

SCM_PROVIDERS = (Provider.GITHUB, Provider.GITLAB, Provider.BITBUCKET, Provider.GITEA)


def add_webhook_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    ns_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser("webhook", help="print the webhook URL, events and (on request) secret of a pipeline")
    p.add_argument("pipeline", metavar="PIPELINE")
    ns_arg(p)
    p.add_argument(
        "--provider",
        "-p",
        choices=[p.value for p in SCM_PROVIDERS],
        default=Provider.GITHUB.value,
        help="the provider whose URL and events -o json prints (default: github)",
    )
    p.add_argument("-o", "--output", choices=["json"], help="JSON with url, secret and events")
    p.add_argument("--show-secret", action="store_true", help="print the secret in the text output too")
    p.add_argument(
        "--rotate", action="store_true", help="replace the secret (reconfigure the provider after)"
    )


def hook_url(base: str, provider: Provider, namespace: str, pipeline: str) -> str:
    return f"{base}/hooks/{provider.value}/{namespace}/{pipeline}"


def cmd_webhook(ctx: object, args: argparse.Namespace) -> int:
    from worker.cli import EXIT_NOT_FOUND, EXIT_OK, CliError, Ctx, _namespace, kube_call

    assert isinstance(ctx, Ctx)
    namespace = _namespace(ctx, args)
    kube = ctx.kube()
    pipeline = kube_call(
        ctx, f"pipeline {namespace}/{args.pipeline}", lambda: kube.find(Pipeline, namespace, args.pipeline)
    )
    if pipeline is None:
        raise CliError(f'pipeline "{args.pipeline}" not found in namespace "{namespace}"', EXIT_NOT_FOUND)
    secret = kube_call(
        ctx,
        f"secret {namespace}/{pipeline.webhook_secret_name()}",
        lambda: ensure_webhook_secret(kube, pipeline, rotate=args.rotate),
    )
    # Where providers reach the receiver: CUBEPAAS_WEBHOOK_URL, else the local receiver's port.
    base = ctx.settings.webhook_url or f"http://127.0.0.1:{ctx.settings.webhook_port}"
    chosen = Provider(args.provider)
    if args.output == "json":
        doc = {
            "url": hook_url(base, chosen, namespace, pipeline.name),
            "secret": secret,
            "events": list(EVENTS_TO_CONFIGURE[chosen]),
            "provider": chosen.value,
            "urls": {p.value: hook_url(base, p, namespace, pipeline.name) for p in SCM_PROVIDERS},
            "eventsByProvider": {p.value: list(EVENTS_TO_CONFIGURE[p]) for p in SCM_PROVIDERS},
            "registryUrl": f"{base}/hooks/registry/{namespace}",
        }
        print(json.dumps(doc, indent=2), file=ctx.out)
        return EXIT_OK
    lines = [
        f"Webhook of pipeline {namespace}/{pipeline.name}" + (" (secret rotated)" if args.rotate else "")
    ]
    for provider in SCM_PROVIDERS:
        lines.append(f"  {provider.value:<10} {hook_url(base, provider, namespace, pipeline.name)}")
        lines.append(f"  {'':<10} events: {', '.join(EVENTS_TO_CONFIGURE[provider])}")
    lines.append(
        f"  secret     {secret}"
        if args.show_secret
        else "  secret     (hidden: use --show-secret or -o json)"
    )
    lines.append("  content type: application/json")
    if pipeline.spec.triggers.image_push is not None:
        lines.append(
            f"  registry   {base}/hooks/registry/{namespace}  (Authorization: Bearer <the token of the "
            "PipelineSetting's webhook.imageTokenSecretRef>)"
        )
    print("\n".join(lines), file=ctx.out)
    return EXIT_OK


def triggers_summary(pipeline: Pipeline) -> str:
    """``push,pr,tag,cron,poll,image`` — the triggers a Pipeline has on."""
    t = pipeline.spec.triggers
    parts = [
        name
        for name, on in (
            ("push", t.webhook_push),
            ("pr", t.webhook_pull_request),
            ("tag", t.webhook_tag),
            ("cron" + (" (paused)" if t.cron and t.cron.paused else ""), t.cron is not None),
            ("poll", t.poll_scm is not None),
            ("image", t.image_push is not None),
        )
        if on
    ]
    return ",".join(parts) or "-"


def next_cron_times(ctx: object, pipelines: Sequence[Pipeline]) -> dict[tuple[str, str], datetime | None]:
    """The next action time of each cron Schedule (asked from Temporal; missing when unreachable)."""
    from worker.cli import CliError, Ctx

    assert isinstance(ctx, Ctx)
    with_cron = [p for p in pipelines if p.spec.triggers.cron is not None]
    if not with_cron:
        return {}

    async def ask() -> dict[tuple[str, str], datetime | None]:
        client = await ctx.temporal()
        out: dict[tuple[str, str], datetime | None] = {}
        for p in with_cron:
            try:
                description = await client.get_schedule_handle(
                    cron_schedule_id(p.namespace, p.name)
                ).describe()
                times = description.info.next_action_times
                out[(p.namespace, p.name)] = (
                    times[0] if times and not description.schedule.state.paused else None
                )
            except RPCError:
                out[(p.namespace, p.name)] = None
        return out

    try:
        return asyncio.run(ask())
    except CliError:
        return {}


__all__ = ["add_webhook_parser", "cmd_webhook", "hook_url", "next_cron_times", "triggers_summary"]
