"""jsonrpcserver's dispatching modules, imported before its package ``__init__`` runs.

That ``__init__`` imports every entry point, among them ``jsonrpcserver.main``, which
builds jsonschema's validator for its default request check at import, and the HTTP
server: ~60 ms of a start-up whose first answer uses neither (``check_request`` is
our validator). The daemon calls ``defer_package_init`` first thing: the modules that
dispatch (async_dispatcher, result, response, ...) then load under a package module
whose ``__init__`` waits; ``complete_package`` runs it once the first answers are out,
and ``import jsonrpcserver`` gives the whole package, sharing those same modules.
Anything else that imports jsonrpcserver (tests, the CLI) gets it the usual way."""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

# No jsonrpcserver import here: this module is imported before the package is set aside.

PACKAGE = "jsonrpcserver"
_waiting: tuple[ModuleSpec, ModuleType] | None = None


def defer_package_init() -> None:
    """Before anything imports jsonrpcserver: its ``__init__`` runs at
    ``complete_package``. Nothing may ``from jsonrpcserver import`` until then."""
    global _waiting
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        return  # not installed: the first import says so
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    _waiting = (spec, package)


def complete_package() -> None:
    global _waiting
    if _waiting is None:
        return
    spec, package = _waiting
    _waiting = None
    assert spec.loader is not None
    spec.loader.exec_module(package)
