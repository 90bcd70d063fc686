"""The model server image for each version under test, built and loaded into kind.

No registry is involved anywhere: the image is built on the host and handed
to the node with `kind load`. Where no base image can be pulled, the base is
Debian bookworm's Python made by debootstrap, and the Python packages come
from a wheelhouse that pip fills on the host (which can reach the package
index even where containers cannot) — the usual air-gapped pattern.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import errors, procs, progress
from harness.resources import RECIPES, SERVER_DIR
from harness.settings import Settings
from harness.toolchain import components, containers, rootfs
from harness.toolchain.cache import Cache, building, recipe_hash, scratch

REPOSITORY = "rollout-harness/model-server"

PYTHON_BASE = rootfs.Recipe(
    name="python-base",
    packages=rootfs.read_packages(RECIPES / "python-base" / "packages"),
    files=(RECIPES / "python-base",),
    changes=(components.PATH_ENV,),
)


def reference(version: str) -> str:
    return f"{REPOSITORY}:{version}"


def recipe_key(version: str, base: str) -> str:
    """Sources, version and the base image's tag: a rebuilt base rebuilds the image."""
    return recipe_hash([SERVER_DIR / "Dockerfile", SERVER_DIR / "requirements.txt",
                        SERVER_DIR / "model_server"], version, base)


def wheelhouse(cache: Cache) -> Path:
    """Wheels for requirements.txt, downloaded once per requirements file."""
    key = recipe_hash([SERVER_DIR / "requirements.txt"], "cp311")
    folder = cache.root / "wheelhouse" / key
    if folder.exists():
        return folder
    log_path = cache.log("wheelhouse")
    with progress.step("downloading the model server's wheels", log_file=log_path), \
            building(folder) as tmp:
        procs.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
             "--platform", "manylinux_2_28_x86_64", "--dest", tmp,
             "-r", SERVER_DIR / "requirements.txt", "pip"],
            log_path=log_path, what="pip download of the server's wheels",
            error=errors.ToolchainError,
        )
    return folder


def ensure(settings: Settings, cache: Cache, version: str) -> str:
    """The image of `version`, built unless one from the same sources exists."""
    ref = reference(version)
    base = rootfs.ensure(cache, settings.toolchain, PYTHON_BASE)
    key = recipe_key(version, base)
    if containers.label_of(ref, components.LABEL) == key:
        return ref
    wheels = wheelhouse(cache)
    log_path = cache.log(f"image-model-server-{version}")
    log_path.unlink(missing_ok=True)
    with progress.step(f"building {ref}", log_file=log_path), scratch(cache.root) as tmp:
        context = Path(tmp)
        shutil.copy(SERVER_DIR / "Dockerfile", context)
        shutil.copy(SERVER_DIR / "requirements.txt", context)
        shutil.copytree(SERVER_DIR / "model_server", context / "model_server",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(wheels, context / "wheels")
        containers.build(context, ref, build_args={"BASE_IMAGE": base, "MODEL_VERSION": version},
                         labels={components.LABEL: key}, log_path=log_path)
    return ref


def load(cluster_name: str, kind: Path, refs: Sequence[str], cache: Cache) -> None:
    """Put the images on the cluster's node (kind skips those already there).

    One `kind load` for all of them: kind saves them into one archive, so the layers the
    versions share (the Python base, the wheels: nearly all of each image) cross into
    the node once, not once per version.
    """
    procs.run([kind, "load", "docker-image", "--name", cluster_name, *refs],
              log_path=cache.log("kind-load"), what=f"kind load of {', '.join(refs)}",
              error=errors.ClusterError)

