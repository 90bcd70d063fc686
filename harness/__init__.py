"""rollout-harness: does rolling out this model version fail any request?

The public names are the settings, the errors and the steps of a run, in the
order data flows through them: toolchain → cluster → (deploy → traffic →
verdict → report, in later modules).
"""

from harness.errors import (
    BuildError,
    ClusterError,
    DeployError,
    DockerUnavailable,
    HarnessError,
    ToolchainError,
    UsageError,
)
from harness.settings import ClusterSettings, Settings, ToolchainSettings

__all__ = [
    "BuildError",
    "ClusterError",
    "ClusterSettings",
    "DeployError",
    "DockerUnavailable",
    "HarnessError",
    "Settings",
    "ToolchainError",
    "ToolchainSettings",
    "UsageError",
]
