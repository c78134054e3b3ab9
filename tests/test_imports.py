"""Every module of both packages imports (STYLE.md 12), and ladtheory never depends on ladtrain."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import ladtheory
import ladtrain


def _modules():
    for package in (ladtheory, ladtrain):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_imports(name):
    importlib.import_module(name)


def test_ladtheory_does_not_import_ladtrain():
    code = ("import sys, pkgutil, importlib, ladtheory\n"
            "for m in pkgutil.walk_packages(ladtheory.__path__, 'ladtheory.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(any(k == 'ladtrain' or k.startswith('ladtrain.') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
