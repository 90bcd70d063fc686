"""A team's own Pulumi program folder, which the gate runs instead of the bundled program.

A team releases by changing the version its program deploys and running `pulumi up`;
the gate must rehearse that program, not ours, or it tests a deployment nobody runs.
The contract is the one a person already follows: a folder with Pulumi.yaml
(``runtime: python``) and the program, which reads the version to deploy from a stack
config key (``pulumi.Config().require("chart_version")``) or from an environment
variable. The gate runs it through the Automation API over the folder, on its own
state backend and with the cluster's kubeconfig; its stack is named after the cluster,
so its config lands in ``Pulumi.<cluster>.yaml`` in the folder, as `pulumi config set`
would put it there. Everything else (the chart, its values, the images it names) is the
program's business: the gate only needs the model Service on the cluster's mapped
nodePort and the pods in the namespace it watches (``--namespace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import errors


@dataclass(frozen=True)
class Program:
    folder: Path
    project: str
    """The project's name, from Pulumi.yaml."""
    version_from: str
    """``config:KEY`` or ``env:NAME``."""

    @classmethod
    def read(cls, folder: Path, version_from: str) -> Program:
        """The program in `folder`; a folder that is not a Python Pulumi project is one
        usage error saying what is missing."""
        folder = folder.resolve()
        project_file = folder / "Pulumi.yaml"
        if not project_file.is_file():
            raise errors.UsageError(f"--program {folder}: no Pulumi.yaml there (a Pulumi "
                                    "program folder holds Pulumi.yaml and the program)")
        try:
            project = yaml.safe_load(project_file.read_text())
        except yaml.YAMLError as e:
            raise errors.UsageError(f"--program {project_file}: not YAML ({e})") from None
        if not isinstance(project, dict) or not isinstance(project.get("name"), str):
            raise errors.UsageError(f"--program {project_file}: no project name (name: ...)")
        runtime = project.get("runtime")
        language = runtime.get("name") if isinstance(runtime, dict) else runtime
        if language != "python":
            raise errors.UsageError(f"--program {project_file}: runtime {language!r}; the "
                                    "gate runs Python programs (runtime: python)")
        return cls(folder, project["name"], version_from)

    @property
    def _source(self) -> tuple[str, str]:
        kind, _, key = self.version_from.partition(":")
        return kind, key

    def config(self, version: str) -> dict[str, str]:
        """The stack config that tells the program `version` (empty for env:)."""
        kind, key = self._source
        return {key: version} if kind == "config" else {}

    def env(self, version: str) -> dict[str, str]:
        """The environment that tells the program `version` (empty for config:)."""
        kind, key = self._source
        return {key: version} if kind == "env" else {}
