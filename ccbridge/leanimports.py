"""SQLAlchemy's asyncio extension without its ORM: the bridge uses AsyncEngine only.

``sqlalchemy.ext.asyncio``'s ``__init__`` imports its ORM session classes, and with them
``sqlalchemy.orm``: 7.6 MB of RSS in every bridge that never builds a session
(BENCHMARKS.md §4). ``install`` registers the package bare before anything imports it:
its ``engine`` and ``result`` modules are imported and their names set on it, so
``from sqlalchemy.ext.asyncio import AsyncEngine`` works as before; any other name of
the package (``AsyncSession``, ``async_sessionmaker``, ...) imports the module holding it
on first use, so nothing is missing, only deferred. The package's own last step (the
greenlet shim's ``_initialize``) runs here too. Nothing is done when the package is
already imported, or when SQLAlchemy is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

PACKAGE = "sqlalchemy.ext.asyncio"
# The names the package's __init__ takes from its engine and result modules (2.1).
_EAGER = {
    "engine": (
        "async_engine_from_config",
        "AsyncConnection",
        "AsyncEngine",
        "AsyncTransaction",
        "create_async_engine",
        "create_async_pool_from_url",
    ),
    "result": ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult", "AsyncTupleResult"),
}
_DEFERRED = ("scoping", "session")  # the ORM's part: imported when a name of theirs is asked


def install() -> None:
    if PACKAGE in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except ModuleNotFoundError:
        # No SQLAlchemy: the lab's root is built by the system Python (make test), which
        # imports ccbridge.lab.rootfs, standard library only, through this package.
        return
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType(PACKAGE, "sqlalchemy.ext.asyncio, its ORM part deferred")
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = PACKAGE
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules[PACKAGE] = package
    try:
        for sub, names in _EAGER.items():
            module = importlib.import_module(f"{PACKAGE}.{sub}")
            for name in names:
                setattr(package, name, getattr(module, name))
        from sqlalchemy.util import concurrency

        concurrency._concurrency_shim._initialize()
    except BaseException:
        del sys.modules[PACKAGE]  # the real package, then, when something imports it
        raise

    def __getattr__(name: str) -> object:  # PEP 562: the session names, on first use
        for sub in _DEFERRED:
            module = importlib.import_module(f"{PACKAGE}.{sub}")
            if hasattr(module, name):
                value = getattr(module, name)
                setattr(package, name, value)
                return value
        if name in vars(package):  # a submodule, set on the package by its import
            return vars(package)[name]
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
