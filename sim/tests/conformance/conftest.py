"""Shared fixtures: the running simulator, credentials from its own token endpoints, SDK clients, and the per-operation pass list."""
import collections
import json
import os

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken

urllib3.disable_warnings()

READY = json.loads(os.environ["AZURE_SIM_READY"])
BASE = READY["https"]
HTTP = READY["http"]
SUB = "4a9d62b4-c70d-4263-9280-1c7fce8ab0e7"
TENANT = "8d3b4c2a-6f1e-4b7a-9c55-3e2f1a0b9d11"
RESPONDER = "5b0c9f2e-1d7a-4e3b-8c6f-2a9e4d1b7c30"
MALLORY_SP = "9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4"

_PASSED = collections.Counter()


def covers(*operations):
    """Marks a test as the check of these executor operations (printed when it passes)."""
    def mark(function):
        function._covers = operations
        return function
    return mark


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed:
        for operation in getattr(item.function, "_covers", ()):
            _PASSED[operation] += 1


def pytest_terminal_summary(terminalreporter):
    terminalreporter.section("operations checked by an official SDK client")
    for operation in sorted(_PASSED):
        terminalreporter.write_line(f"PASS {operation}  ({_PASSED[operation]} test(s))")
    terminalreporter.write_line(f"{len(_PASSED)} operations passed")


class SimCredential:
    """A TokenCredential that asks the simulator's IMDS endpoint, for any identity it knows."""

    def __init__(self, identity=None):
        self.identity = identity
        self.requests = 0

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        self.requests += 1
        params = {"api-version": "2018-02-01", "resource": scopes[0].removesuffix("/.default")}
        if self.identity:
            params["object_id"] = self.identity
        reply = requests.get(f"{HTTP}/metadata/identity/oauth2/token", params=params, headers={"Metadata": "true"}, timeout=5)
        reply.raise_for_status()
        body = reply.json()
        return AccessToken(body["access_token"], int(body["expires_on"]))


@pytest.fixture(autouse=True)
def fresh_world():
    """Every test starts from the seed."""
    requests.post(f"{HTTP}/_sim/reset", timeout=5).raise_for_status()
    yield


@pytest.fixture
def credential():
    return SimCredential()


def mgmt(client_class, credential, *args, **kwargs):
    """An ARM client pointed at the simulator."""
    return client_class(
        credential, *args, base_url=BASE, credential_scopes=["https://management.azure.com/.default"],
        connection_verify=False, polling_interval=0, **kwargs,
    )


def vault_url(name):
    return READY["vaults"][name]


def token(audience, identity=None):
    body = {"audience": audience}
    if identity:
        body["identity"] = identity
    return requests.post(f"{HTTP}/_sim/token", json=body, timeout=5).json()["access_token"]


def requests_log(**filters):
    return requests.get(f"{HTTP}/_sim/requests", params=filters, timeout=5).json()["value"]


def state():
    return requests.get(f"{HTTP}/_sim/state", timeout=5).json()


def add_fault(rule):
    requests.post(f"{HTTP}/_sim/faults", json=rule, timeout=5).raise_for_status()


class Rest:
    """Raw HTTPS per the Graph / Defender for Endpoint references, with a token for `audience`."""

    def __init__(self, audience, prefix):
        self.session = requests.Session()
        self.session.verify = False
        self.session.headers["Authorization"] = f"Bearer {token(audience)}"
        self.prefix = prefix

    def __getattr__(self, method):
        def call(path, **kwargs):
            return self.session.request(method.upper(), f"{BASE}{self.prefix}{path}", timeout=10, verify=False, **kwargs)
        return call


@pytest.fixture
def graph():
    return Rest("https://graph.microsoft.com", "/v1.0")


@pytest.fixture
def mde():
    return Rest("https://api.securitycenter.microsoft.com", "/api")
