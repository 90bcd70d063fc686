"""The harness's exceptions: one tree, one line each for a person to act on.

A failed rollout is not an exception: it is a verdict. These are for the
cases where the harness could not do its job at all, so the CLI can print
the message and exit with the class's exit code.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Something the harness could not do; the message says what to do next."""

    exit_code = 2


class UsageError(HarnessError):
    """A bad option, value or combination given by the user."""

    exit_code = 64


class DockerUnavailable(HarnessError):
    """No docker engine answers and none could be installed or started."""

    exit_code = 69


class ToolchainError(HarnessError):
    """A toolchain component is missing or could not be downloaded or built."""

    exit_code = 70


class BuildError(ToolchainError):
    """A build step failed; the message names the log with its full output."""


class ClusterError(HarnessError):
    """The kind cluster could not be created, reached or deleted."""

    exit_code = 71


class DeployError(HarnessError):
    """Pulumi could not deploy, upgrade or destroy the model stack."""

    exit_code = 72
