"""Running a module of this package in a fresh interpreter that may lack ember.

Ray lives in its own virtual environment where ember is not installed, so the
comparison harness (and the fresh-process rows) start ``python -c BOOTSTRAP_CODE``:
it loads this folder as a package named ``ALIAS_PACKAGE`` straight from its path,
without importing ``ember``, and calls ``main(argv)`` of the named module.
"""

from __future__ import annotations

import os

ALIAS_PACKAGE = "_ember_bench"

BOOTSTRAP_CODE = f"""\
import importlib, importlib.util, sys
folder, module, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location(
    {ALIAS_PACKAGE!r}, folder + '/__init__.py', submodule_search_locations=[folder])
package = importlib.util.module_from_spec(spec)
sys.modules[{ALIAS_PACKAGE!r}] = package
spec.loader.exec_module(package)
sys.argv = [module, *argv]
sys.exit(importlib.import_module({ALIAS_PACKAGE!r} + '.' + module).main(argv))
"""


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def command(python: str, module: str, argv: list[str]) -> list[str]:
    """The argv that runs ``<this package>.<module>.main(argv)`` under ``python``."""
    return [python, "-c", BOOTSTRAP_CODE, package_dir(), module, *argv]
