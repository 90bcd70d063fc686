"""The model chart as production receives it: packaged at a version, in a repository.

Production bumps the chart version and the image tag together and fetches
the chart from a Helm repository. `package()` makes that .tgz (version and
appVersion aligned) with the real helm CLI, `Repository` keeps a folder of
packages with its index.yaml, and `serve()` publishes it on 127.0.0.1 so the
Pulumi program fetches by repo URL and version exactly like production.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import tarfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import errors, procs
from harness.resources import CHART_DIR
from harness.toolchain.cache import recipe_hash

log = logging.getLogger(__name__)

CHART_NAME = "ml-model"


@dataclass(frozen=True)
class Repository:
    folder: Path
    helm: Path
    log_path: Path

    @classmethod
    def of_current_chart(cls, root: Path, helm: Path, log_path: Path) -> Repository:
        """The repository for charts/ml-model as it is now: an edited chart gets a new
        folder, so a package made from an older copy is never deployed by mistake."""
        return cls(root / recipe_hash([CHART_DIR]), helm, log_path)

    def package(self, version: str) -> Path:
        """Add the chart at `version` (appVersion the same) and index it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{CHART_NAME}-{version}.tgz"
        if target.exists():
            return target
        procs.run([self.helm, "package", CHART_DIR, "--version", version, "--app-version",
                   version, "--destination", self.folder], log_path=self.log_path,
                  what=f"helm package {CHART_NAME} {version}", error=errors.DeployError)
        procs.run([self.helm, "repo", "index", self.folder], log_path=self.log_path,
                  what="helm repo index", error=errors.DeployError)
        return target

    def unpacked(self, version: str) -> Path:
        """The packaged chart at `version` as a folder, for the local-folder source."""
        into = self.folder.with_name(f"{self.folder.name}-unpacked")
        target = into / f"{CHART_NAME}-{version}"
        if not (target / "Chart.yaml").exists():
            archive = self.package(version)
            into.mkdir(parents=True, exist_ok=True)
            tmp = into / f".{target.name}.tmp"
            with tarfile.open(archive) as tar:
                _extract(tar, tmp)
            (tmp / CHART_NAME).rename(target)
            tmp.rmdir()
        return target


def _entries(repo_url: str, name: str) -> list[dict[str, Any]]:
    """Chart `name`'s entries in a repository's index.yaml."""
    url = repo_url.rstrip("/") + "/index.yaml"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            index = yaml.safe_load(response.read())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise errors.DeployError(f"cannot read the chart repository index {url}: {e}") from e
    entries = (index or {}).get("entries", {}).get(name, [])
    return [e for e in entries if isinstance(e, dict)]


def published_versions(repo_url: str, name: str = CHART_NAME) -> list[str]:
    """The versions of chart `name` a repository's index.yaml lists."""
    return sorted(str(entry["version"]) for entry in _entries(repo_url, name))


def require_published(repo_url: str, version: str, name: str = CHART_NAME) -> str:
    """The URL of chart `name` at `version` in the repository: where its index says (a
    relative or absolute URL, as helm reads it); DeployError when it is not there."""
    entries = _entries(repo_url, name)
    entry = next((e for e in entries if str(e.get("version")) == version), None)
    if entry is None:
        available = sorted(str(e.get("version")) for e in entries)
        raise errors.DeployError(
            f"chart {name} {version} is not in the repository {repo_url}; "
            f"available: {', '.join(available) or 'none'}; nothing was changed"
        )
    urls = entry.get("urls") or [f"{name}-{version}.tgz"]
    return urllib.parse.urljoin(repo_url.rstrip("/") + "/", str(urls[0]))


def download(url: str, folder: Path) -> Path:
    """Fetch a packaged chart (to check its values before deploying) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(urllib.parse.urlparse(url).path).name
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            target.write_bytes(response.read())
    except OSError as e:
        raise errors.DeployError(f"cannot fetch {url}: {e}") from e
    return target


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("chart repository: " + format, *args)


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) for the block; yield its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="chart-repo", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    """extractall with the "data" filter where Python has it (3.11.4+); before that, the
    same refusal by hand: only plain files and folders, nothing outside `into`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    root = into.resolve()
    for member in tar.getmembers():
        target = (into / member.name).resolve()
        if not (member.isfile() or member.isdir()) or root not in (target, *target.parents):
            raise ValueError(f"unsafe chart archive member: {member.name}")
    tar.extractall(into)  # members checked above
