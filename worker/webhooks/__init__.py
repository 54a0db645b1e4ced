"""The webhook receiver: ``python -m worker.webhooks``, its own process (it faces the internet).

URLs (``CUBEPAAS_WEBHOOK_PORT``; the provider is chosen by the URL, never guessed from headers):

- ``POST /hooks/github/<namespace>/<pipeline>``: ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>``
- ``POST /hooks/gitlab/<namespace>/<pipeline>``: ``X-Gitlab-Token: <secret>``
- ``POST /hooks/bitbucket/<namespace>/<pipeline>``: Cloud and Server: ``X-Hub-Signature: sha256=<hex>``
- ``POST /hooks/gitea/<namespace>/<pipeline>`` (or ``forgejo``): ``X-Gitea-Signature`` /
  ``X-Forgejo-Signature`` (hex, no prefix)
- ``POST /hooks/registry[/<namespace>]``: distribution, Harbor, Docker Hub notifications with
  ``Authorization: Bearer <token>`` (Docker Hub, which cannot set headers: ``?token=<token>``)
- ``GET /healthz``, ``/readyz``, ``/metrics``

The modules, one job each: :mod:`.http` (server, limits, routing), :mod:`.signatures` (verification),
:mod:`.scm` and :mod:`.registry` (provider payloads -> typed events), :mod:`.mapping` (event + Pipeline ->
a run or the reason for none), :mod:`.secrets` (the per-Pipeline webhook Secret), :mod:`.receiver` (one
delivery end to end), :mod:`.metrics`, :mod:`.main` (the process).
"""
