"""Session-wide pytest harness: the local stack (lazily) and typed clients for it.

Only tests that request a stack fixture start the stack, so ``make test-unit`` needs no server.
The stack is started once per session, or an already-running one is reused; a stack this harness
started is stopped at session end unless another pytest session still holds a lease on it.
A stack that cannot come up FAILS the requesting tests with the reason (never a skip).

Fixtures (all session-scoped):
  stack               devstack.stack.Stack
  stack_env           dict[str, str]       (KUBECONFIG, TEMPORAL_ADDRESS, S3_ENDPOINT, JENKINS_URL, ...)
  kube_api_client     kubernetes.client.ApiClient (admin, O=system:masters)
  kube_core           kubernetes.client.CoreV1Api
  sa_client_factory   (namespace, sa_name) -> kubernetes.client.ApiClient authenticated as that SA
  temporal_client     temporalio.client.Client (pydantic_data_converter)
  s3_client           minio.Minio
  jenkins_client      jenkins.Jenkins
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack

TESTS_DIR = Path(__file__).resolve().parent
_LEVEL_MARKERS = ("unit", "integration", "e2e", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/unit, tests/integration, tests/e2e get that folder's marker unless marked."""
    for item in items:
        if any(item.get_closest_marker(m) for m in _LEVEL_MARKERS):
            continue
        try:
            folder = Path(str(item.path)).resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if folder in _LEVEL_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Past ``$CUBEPAAS_TEST_DEADLINE`` (epoch seconds, set by .ci/run) no further test starts.

    A CI job killed at its time limit prints no summary; stopping first prints which tests failed and
    why, which is the only way to diagnose a cascade (one dead server failing every later test).
    """
    deadline = os.environ.get("CUBEPAAS_TEST_DEADLINE")
    if deadline and time.time() > float(deadline):
        item.session.shouldstop = f"CUBEPAAS_TEST_DEADLINE passed after {item.nodeid}: no later test ran"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    local = Stack()
    lease = local.acquire_lease()
    try:
        local.up(started_by="harness")  # no-op when already up (then it is not ours to stop)
    except Exception as err:
        local.release_lease(lease)
        pytest.fail(f"the local stack (python -m devstack up) could not be brought up: {err}", pytrace=False)
    yield local
    still_used = local.release_lease(lease)
    if local.started_by() == "harness" and still_used == 0:
        local.down()


@pytest.fixture(scope="session")
def stack_env(stack: Stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture(scope="session")
def kube_api_client(stack_env: dict[str, str]) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=stack_env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    yield client
    client.close()


@pytest.fixture(scope="session")
def kube_core(kube_api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api_client)


@pytest.fixture(scope="session")
def sa_client_factory(stack: Stack, kube_api_client: Any) -> Iterator[Callable[[str, str], Any]]:
    """``factory(namespace, sa_name)``: creates the namespace and ServiceAccount if missing, mints a
    token (TokenRequest, 1 h) and returns an ApiClient that authenticates only as that account."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_api_client)
    made: list[Any] = []

    def factory(namespace: str, sa_name: str) -> Any:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        except ApiException as err:
            if err.status != 409:
                raise
        try:
            core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa_name))
            )
        except ApiException as err:
            if err.status != 409:
                raise
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        status = core.create_namespaced_service_account_token(sa_name, namespace, request).status
        assert status is not None and status.token, f"no token minted for {namespace}/{sa_name}"
        token: str = status.token
        configuration = client.Configuration()
        configuration.host = kube_api_client.configuration.host
        configuration.ssl_ca_cert = str(stack.ca_cert_path)
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        api_client = client.ApiClient(configuration)
        made.append(api_client)
        return api_client

    yield factory
    for api_client in made:
        api_client.close()


@pytest.fixture(scope="session")
async def temporal_client(stack_env: dict[str, str]) -> AsyncIterator[Any]:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    yield await Client.connect(
        stack_env["TEMPORAL_ADDRESS"],
        namespace=stack_env["TEMPORAL_NAMESPACE"],
        data_converter=pydantic_data_converter,
    )


@pytest.fixture(scope="session")
def s3_client(stack_env: dict[str, str]) -> Any:
    from minio import Minio

    return Minio(
        stack_env["S3_ENDPOINT"],
        access_key=stack_env["S3_ACCESS_KEY"],
        secret_key=stack_env["S3_SECRET_KEY"],
        secure=stack_env.get("S3_SECURE", "false") == "true",
        region=stack_env.get("S3_REGION", "us-east-1"),
    )


@pytest.fixture(scope="session")
def jenkins_client(stack_env: dict[str, str]) -> Any:
    import jenkins

    if not stack_env.get("JENKINS_URL"):
        pytest.fail("jenkins-lite is not part of the local stack (devstack/jenkins_lite is not available)")
    client = jenkins.Jenkins(
        stack_env["JENKINS_URL"], username=stack_env["JENKINS_USER"], password=stack_env["JENKINS_TOKEN"]
    )
    # Checks the credentials now, and primes the session's auth: python-jenkins sends some requests
    # (get_version) with whatever auth its session already has, i.e. none before the first call.
    assert client.get_whoami()["id"] == stack_env["JENKINS_USER"]
    return client


@pytest.fixture(scope="session")
def crds_installed(kube_api_client: Any) -> None:
    """The product's CRDs, installed (or replaced) once per session and Established."""
    from crds.install import install_crds

    install_crds(kube_api_client)


@pytest.fixture(scope="session")
def kube(kube_api_client: Any, crds_installed: None) -> Any:
    """``activities.kube.Kube`` as admin (tests that count an activity's writes make their own)."""
    from activities.kube import Kube

    return Kube(kube_api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_api_client: Any) -> Iterator[str]:
    """A fresh namespace named after the test module, deleted (and finalized by the namespace controller)."""
    import uuid

    from activities.kube import Kube

    admin = Kube(kube_api_client)
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")[:20]
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    admin.delete_object("v1", "Namespace", name, missing_ok=True)


@pytest.fixture(scope="session")
def webhook_port() -> int:
    """The receiver's port, chosen before anything starts: the session's worker registers hooks at
    providers with ``http://127.0.0.1:<port>`` (``CUBEPAAS_WEBHOOK_URL``) before the receiver may run."""
    from devstack import proc

    return proc.free_port()


@pytest.fixture(scope="session")
def webhook_receiver(stack_env: dict[str, str], crds_installed: None, webhook_port: int) -> Iterator[Any]:
    """The real ``python -m worker.webhooks`` with the stack's environment (log: test-output/webhooks.log)."""
    from webhook_client import ReceiverProcess

    receiver = ReceiverProcess(
        dict(stack_env), TESTS_DIR.parent / "test-output" / "webhooks.log", port=webhook_port
    )
    try:
        receiver.start()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield receiver
    receiver.stop()
