"""Official release downloads, for hosts that can reach them.

`Unreachable` means the network said no (no route, no DNS, refused, timed
out): in `auto` mode the caller then builds from Go modules. Any other
failure (a 404, a checksum mismatch) is a real error and is raised as one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from harness import errors

log = logging.getLogger(__name__)


class Unreachable(errors.ToolchainError):
    """The release server could not be reached from this host."""


def fetch(url: str, dest: Path, *, timeout: float, sha256_url: str | None = None) -> None:
    """Download url to dest (mode 0755), atomically; verify against sha256_url if given."""
    expected = _read(sha256_url, timeout).split()[0] if sha256_url else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with _open(url, timeout) as response, tmp.open("wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise errors.ToolchainError(
                f"checksum mismatch for {url}: got {digest.hexdigest()}, expected {expected}"
            )
        tmp.chmod(0o755)
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _read(url: str, timeout: float) -> str:
    with _open(url, timeout) as response:
        return str(response.read().decode())


def _open(url: str, timeout: float):  # type: ignore[no-untyped-def]
    log.info("downloading %s", url)
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise errors.ToolchainError(f"download of {url} failed: HTTP {e.code}") from e
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
        raise Unreachable(f"{url} is unreachable from this host ({e})") from e
