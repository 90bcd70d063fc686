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
from dataclasses import dataclass
from pathlib import Path

from harness import errors, procs, progress
from harness.resources import RECIPES, SERVER_DIR, SERVER_IMAGE
from harness.settings import Settings
from harness.toolchain import components, containers, rootfs
from harness.toolchain.cache import Cache, building, recipe_hash, scratch

REPOSITORY = SERVER_IMAGE

PYTHON_BASE = rootfs.Recipe(
    name="python-base",
    packages=rootfs.read_packages(RECIPES / "python-base" / "packages"),
    files=(RECIPES / "python-base",),
    changes=(components.PATH_ENV,),
)


@dataclass(frozen=True)
class Build:
    """A Docker build context made into one image per version: the bundled server's, or
    a team's (`--image-build`). The Dockerfile gets MODEL_VERSION and BASE_IMAGE (our
    Python 3.11 base: no registry to pull one from), and the wheels of the context's
    requirements.txt in wheels/, fetched on the host, for an offline pip install."""

    repository: str
    context: Path
    sources: tuple[Path, ...]
    """What the image is made of: changed sources make a new image."""

    @classmethod
    def of_folder(cls, repository: str, context: Path) -> Build:
        if not (context / "Dockerfile").is_file():
            raise errors.UsageError(f"--image-build {context}: no Dockerfile in it")
        sources = tuple(p for p in sorted(context.iterdir())
                        if p.name not in ("wheels", "__pycache__"))
        return cls(repository, context, sources)

    @property
    def requirements(self) -> Path | None:
        found = self.context / "requirements.txt"
        return found if found.is_file() else None

    def reference(self, version: str) -> str:
        return f"{self.repository}:{version}"

    def key(self, version: str, base: str) -> str:
        """Sources, version and the base image's tag: a rebuilt base rebuilds the image."""
        return recipe_hash(self.sources, version, base)


SERVER = Build(REPOSITORY, SERVER_DIR, (SERVER_DIR / "Dockerfile", SERVER_DIR / "requirements.txt",
                                        SERVER_DIR / "model_server"))
"""The bundled model server."""


def wheelhouse(cache: Cache, requirements: Path = SERVER_DIR / "requirements.txt") -> Path:
    """Wheels for a requirements file (and pip), downloaded once per file's content."""
    key = recipe_hash([requirements], "cp311")
    folder = cache.root / "wheelhouse" / key
    if folder.exists():
        return folder
    log_path = cache.log("wheelhouse")
    with progress.step(f"downloading the wheels of {requirements}", log_file=log_path), \
            building(folder) as tmp:
        procs.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
             "--platform", "manylinux_2_28_x86_64", "--dest", tmp,
             "-r", requirements, "pip"],
            log_path=log_path, what=f"pip download of the wheels of {requirements}",
            error=errors.ToolchainError,
        )
    return folder


def ensure(settings: Settings, cache: Cache, version: str) -> str:
    """The image of `version`: built unless one from the same sources exists, or for an
    image of the team's own making, found in this host's docker."""
    deploy = settings.deploy
    if deploy.image_build is not None:
        return build(settings, cache, Build.of_folder(deploy.image_repository,
                                                      deploy.image_build.resolve()), version)
    if deploy.image_repository == REPOSITORY:
        return build(settings, cache, SERVER, version)
    require_present(settings, (version,))
    return f"{deploy.image_repository}:{version}"


def require_present(settings: Settings, versions: Sequence[str]) -> None:
    """Images the gate does not build (prebuilt by the team) must be in this host's docker:
    checked once docker answers and before a cluster is made for them."""
    deploy = settings.deploy
    if deploy.image_build is not None or deploy.image_repository == REPOSITORY:
        return
    missing = [ref for version in dict.fromkeys(versions)
               if not containers.image_exists(ref := f"{deploy.image_repository}:{version}")]
    if missing:
        one = len(missing) == 1
        raise errors.UsageError(
            f"{'image' if one else 'images'} {', '.join(missing)} {'is' if one else 'are'} not "
            f"in this host's docker: build or pull {'it' if one else 'them'} first, or give "
            "--image-build DIR (deploy.image_build) to have each version built; nothing was "
            "created")


def build(settings: Settings, cache: Cache, recipe: Build, version: str) -> str:
    ref = recipe.reference(version)
    base = rootfs.ensure(cache, settings.toolchain, PYTHON_BASE)
    key = recipe.key(version, base)
    if containers.label_of(ref, components.LABEL) == key:
        return ref
    wheels = wheelhouse(cache, recipe.requirements) if recipe.requirements else None
    log_path = cache.log(f"image-{recipe.repository.replace('/', '-')}-{version}")
    log_path.unlink(missing_ok=True)
    with progress.step(f"building {ref}", log_file=log_path), scratch(cache.root) as tmp:
        context = Path(tmp)
        for source in recipe.sources:
            if source.is_dir():
                shutil.copytree(source, context / source.name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, context)
        if wheels is not None:
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

