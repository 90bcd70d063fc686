"""The pulumi CLI and its Kubernetes provider, for hosts that cannot download them.

The CLI is built from pkg/v3 with its version stamped (the Python Automation
API reads it and refuses inline refresh/destroy without one). The provider's
upstream main embeds files its release process generates, so
toolchain/pulumi-kubernetes has its own small main; the build copies the
module's schema (with the version set) and Terraform mapping next to it.
The provider is installed as a plugin of the exact version the Python SDK
asks for, and automatic plugin downloads are switched off, so a missing
plugin is a clear error rather than a download attempt.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from harness import errors, procs
from harness.resources import RECIPES
from harness.toolchain import downloads, gobuild, versions
from harness.toolchain.cache import Cache
from harness.toolchain.tools import Tool

PROVIDER_MODULE = "github.com/pulumi/pulumi-kubernetes/provider/v4"


def _probe(url: str, timeout: float) -> None:
    """Raise Unreachable unless url's host answers (official installers give no clear error)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except Exception as e:
        if isinstance(e, urllib.error.HTTPError):
            return
        raise downloads.Unreachable(f"{url} is unreachable from this host ({e})") from e


def _pulumi_release(folder: Path, timeout: float) -> None:
    from pulumi import automation as auto
    from semver import VersionInfo

    _probe("https://get.pulumi.com/", timeout)
    auto.PulumiCommand.install(root=str(folder), version=VersionInfo.parse(
        versions.PULUMI.lstrip("v")), skip_version_check=True)


def _provider_release(folder: Path, timeout: float) -> None:
    _probe("https://api.pulumi.com/", timeout)
    with tempfile.TemporaryDirectory() as home:
        procs.output(
            [shutil.which("pulumi") or "pulumi", "plugin", "install", "resource", "kubernetes",
             versions.PULUMI_KUBERNETES],
            what="pulumi plugin install resource kubernetes", env={"PULUMI_HOME": home},
            timeout=600, error=errors.ToolchainError,
        )
        found = next(Path(home).glob("plugins/resource-kubernetes-v*/pulumi-resource-kubernetes"))
        shutil.copy2(found, folder / "pulumi-resource-kubernetes")


def _provider_sources(cache: Cache, tmp: Path) -> Path:
    """The wrapper module plus the provider's schema and mapping, ready to build."""
    work = tmp / ".src"
    shutil.copytree(RECIPES / "pulumi-kubernetes", work,
                    ignore=shutil.ignore_patterns("*-embed.json"))
    listing = procs.output(
        [gobuild.go_binary(), "mod", "download", "-json",
         f"{PROVIDER_MODULE}@{versions.PULUMI_KUBERNETES_MODULE}"],
        what=f"go mod download {PROVIDER_MODULE}", env={"GOTOOLCHAIN": "local"},
        timeout=900, error=errors.BuildError,
    )
    module_dir = Path(json.loads(listing)["Dir"]) / "cmd" / "pulumi-resource-kubernetes"
    schema = json.loads((module_dir / "schema.json").read_text())
    schema["version"] = versions.PULUMI_KUBERNETES
    (work / "schema-embed.json").write_text(json.dumps(schema, separators=(",", ":")))
    mapping = json.loads((module_dir / "terraform-mapping.json").read_text())
    (work / "terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
    return work


PULUMI = Tool(
    component="pulumi",
    version=versions.PULUMI,
    module="pulumi",
    packages=("github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",),
    binaries={"pulumi": "bin/pulumi"},
    ldflags=f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={versions.PULUMI}",
    release=_pulumi_release,
)

PROVIDER = Tool(
    component="pulumi-kubernetes",
    version=versions.PULUMI_KUBERNETES,
    module="pulumi-kubernetes",
    packages=(".",),
    binaries={"pulumi-kubernetes": "pulumi-resource-kubernetes"},
    ldflags=f"-X {PROVIDER_MODULE}/pkg/version.Version={versions.PULUMI_KUBERNETES}",
    release=_provider_release,
    prepare=_provider_sources,
)


def install_plugin(provider_dir: Path, pulumi_home: Path) -> Path:
    """Install the provider as the plugin of the version the Python SDK requests."""
    plugin_dir = pulumi_home / "plugins" / f"resource-kubernetes-v{versions.PULUMI_KUBERNETES}"
    target = plugin_dir / "pulumi-resource-kubernetes"
    source = provider_dir / "pulumi-resource-kubernetes"
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        plugin_dir.mkdir(parents=True, exist_ok=True)
        tmp = plugin_dir / ".pulumi-resource-kubernetes.tmp"
        shutil.copy2(source, tmp)
        tmp.rename(target)
    return target


def plugin_home(cache: Cache) -> Path:
    """The PULUMI_HOME of every pulumi process of ours: the provider is installed there."""
    return cache.state / "pulumi-home"


def cli_env(pulumi_home: Path) -> dict[str, str]:
    """What every pulumi process of ours runs with: its plugins (the provider installed
    by `install_plugin`) in `pulumi_home`, and no reaching out for updates or plugins,
    so a missing plugin is a clear error rather than a download attempt."""
    return {
        "PULUMI_HOME": str(pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }

