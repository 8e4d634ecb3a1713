"""Alias kept for plugin authors: the built-in plugins moved to :mod:`switchgear.default_plugins`.

``import switchgear.plugins.builtin.router`` (or ``from switchgear.plugins.builtin import
router``) gives the module :mod:`switchgear.default_plugins.router` itself, not a copy, so
its state is shared. Nothing in switchgear imports this package; the layer test places it
above the built-in plugins. In ``plugins.disabled`` and ``plugins.modules`` the old names
are translated by the manager.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

OLD = __name__ + "."
NEW = "switchgear.default_plugins."


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(NEW + spec.name.removeprefix(OLD))
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The real module ran under its own name; importing it here set its __spec__ to
        # the alias's, so it gets its own back.
        module.__spec__ = self.real_spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if (
            not fullname.startswith(OLD)
            or importlib.util.find_spec(NEW + fullname.removeprefix(OLD)) is None
        ):
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader())


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())


def __getattr__(name: str) -> ModuleType:
    try:
        return importlib.import_module(OLD + name)
    except ImportError:
        raise AttributeError(name) from None
