"""Shared fixtures for tests with real processes."""
import os

import psutil
import pytest

import ember


def ember_processes():
    """Processes of this test run that belong to an ember cluster (daemons, zygotes, workers)."""
    me = psutil.Process()
    out = []
    for p in psutil.process_iter(["cmdline", "pid"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ember.shells." in cmd and p.pid != me.pid:
            out.append(p)
    return out


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the whole module (2 CPUs, a custom resource)."""
    ember.init(num_cpus=2, resources={"custom": 2})
    yield
    ember.shutdown()


@pytest.fixture
def no_cluster():
    if ember.is_initialized():
        ember.shutdown()
    yield
    if ember.is_initialized():
        ember.shutdown()


def pytest_sessionfinish(session, exitstatus):
    if ember.is_initialized():
        ember.shutdown()
