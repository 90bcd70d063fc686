"""The toolchain's helm for the chart and program tests: found, or a clear failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import errors
from harness.settings import Settings
from harness.toolchain.cache import Cache
from harness.toolchain.helm import HELM


def toolchain_helm() -> Path:
    try:
        return HELM.path(Cache(Settings.from_env().cache_dir))
    except errors.ToolchainError as e:
        pytest.fail(f"{e} (or just `make helm`)")
