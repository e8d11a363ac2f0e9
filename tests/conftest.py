"""Project-wide test settings."""
import os

from hypothesis import settings

# CI runs property tests with a fixed seed so a landing never depends on luck; locally they
# explore new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
