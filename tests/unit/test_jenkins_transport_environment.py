"""The Jenkins session: proxy and CA settings read once, a pool as large as the worker's threads."""

from __future__ import annotations

import pytest
from requests.adapters import HTTPAdapter

from activities.jenkins.transport import POOL_SIZE, JenkinsTransport

pytestmark = pytest.mark.unit


def test_a_proxy_from_the_environment_is_kept_and_not_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = JenkinsTransport("http://jenkins.example:8080", "u", "t")._j._session
    assert session.proxies.get("http") == "http://proxy.example:3128"
    assert session.trust_env is False
    monkeypatch.setenv("HTTP_PROXY", "http://other.example:3128")
    merged = session.merge_environment_settings("http://jenkins.example:8080/api/json", {}, None, None, None)
    assert merged["proxies"]["http"] == "http://proxy.example:3128", "read once, at the start"


def test_no_proxy_for_the_jenkins_host_means_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "jenkins.example")
    session = JenkinsTransport("http://jenkins.example:8080", "u", "t")._j._session
    assert "http" not in session.proxies


def test_a_ca_bundle_from_the_environment_verifies_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    session = JenkinsTransport("https://jenkins.example", "u", "t")._j._session
    assert session.verify == "/etc/ssl/our-ca.pem"


@pytest.mark.parametrize("url", ["http://jenkins.example:8080", "https://jenkins.example/ci/"])
def test_requests_to_jenkins_go_through_a_pool_as_large_as_the_worker_threads(url: str) -> None:
    session = JenkinsTransport(url, "u", "t")._j._session
    adapter = session.get_adapter(f"{url.rstrip('/')}/job/app/api/json")
    assert isinstance(adapter, HTTPAdapter)
    assert adapter._pool_maxsize == POOL_SIZE >= 64  # requests' default, which loses connections, is 10
    assert adapter.max_retries.total == 0
