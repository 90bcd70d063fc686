"""Building main packages from the pinned Go wrapper modules in toolchain/.

Each wrapper module (go.mod + go.sum committed) requires the upstream module
at its release and, where upstream's go.mod uses local replaces, replaces
them with the published twins. Builds are static, trimmed and stamped, and
run with GOTOOLCHAIN=local so the machine's Go is used as is.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import errors, procs
from harness.resources import RECIPES
from harness.toolchain.cache import Cache


def go_binary() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise errors.ToolchainError(
            "building from Go modules needs Go 1.24 or newer on PATH: install Go, "
            "or use --source release where downloads are reachable"
        )
    return go


def log_path(cache: Cache, module: str) -> Path:
    """The build's log: `go build -v` writes each package's path as it compiles it, so its
    last line is the progress line's "what it is doing"."""
    return cache.log(f"go-build-{module}")


def build(
    cache: Cache,
    module: str,
    packages: Sequence[str],
    out_dir: Path,
    *,
    ldflags: str = "",
    cgo: bool = False,
    env: Mapping[str, str] | None = None,
    module_dir: Path | None = None,
) -> None:
    """Build `packages` of toolchain/<module> into out_dir (one binary each)."""
    directory = module_dir or RECIPES / module
    log = log_path(cache, module)
    log.unlink(missing_ok=True)
    cmd = [go_binary(), "build", "-v", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip()]
    cmd += ["-o", f"{out_dir}/", *packages]
    procs.run(
        cmd,
        log_path=log,
        what=f"go build of module toolchain/{module}",
        cwd=directory,
        env={
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "1" if cgo else "0",
            "GOFLAGS": "-mod=readonly -buildvcs=false",
            **(env or {}),
        },
    )
