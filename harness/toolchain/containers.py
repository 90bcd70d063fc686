"""One home for the docker CLI calls the toolchain and harness make.

Images are made without an image builder or a registry (create a container,
copy files in, commit it) and kind's node containers are found and removed
by label. Those steps follow rules that drift apart when each call site
writes them out: a build container never outlives its step, a clean-up
never fails a run, and every step that makes something logs through `procs`,
so a failure names its log.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from harness import errors, procs

DOCKER = "docker"

Source = str | os.PathLike[str]


def _ask(*args: str, timeout: float | None = 120) -> str | None:
    """stdout of `docker ARGS`, or None if it fails: for questions and best-effort clean-up."""
    try:
        return procs.output([DOCKER, *args], what=f"docker {args[0]}", timeout=timeout)
    except errors.HarnessError:
        return None


def _run(*args: Source, log_path: Path, what: str, env: Mapping[str, str] | None = None) -> None:
    procs.run([DOCKER, *args], log_path=log_path, what=what, env=env)


def _pipe(producer: str, args: Sequence[str], *, log_path: Path, what: str) -> None:
    """`producer | docker ARGS`, failing if either side fails."""
    procs.run(["bash", "-o", "pipefail", "-c", f"{producer} | {shlex.join([DOCKER, *args])}"],
              log_path=log_path, what=what)


def _repeat(flag: str, values: Iterable[str]) -> list[str]:
    """[flag, v1, flag, v2, ...]: docker takes one value per flag."""
    return [part for value in values for part in (flag, value)]


# -- questions -----------------------------------------------------------------


def image_exists(ref: str) -> bool:
    return _ask("image", "inspect", "--format", "{{.Id}}", ref) is not None


def label_of(ref: str, label: str) -> str | None:
    """The image's value of `label` ("" when unset), or None when there is no such image."""
    found = _ask("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref)
    return None if found is None else found.strip()


def inspect(ref: str, template: str) -> str:
    """`docker inspect --format TEMPLATE REF`, stripped; "" when there is no such object."""
    return (_ask("inspect", "--format", template, ref) or "").strip()


def with_label(label: str) -> list[str]:
    """IDs of the containers, running or not, that carry `label` (KEY or KEY=VALUE)."""
    return (_ask("ps", "-aq", "--filter", f"label={label}") or "").split()


def pull(ref: str, timeout: float) -> bool:
    """Whether `ref` could be pulled (False on hosts with no registry)."""
    return _ask("pull", ref, timeout=timeout) is not None


# -- clean-up ------------------------------------------------------------------


def remove(*names: str) -> None:
    """`docker rm -f`, ignoring failure: a container already gone is what we wanted."""
    if names:
        _ask("rm", "-f", *names)


def remove_network_if_unused(network: str) -> None:
    """Remove the network when no container is attached to it (and do nothing if it is gone)."""
    attached = _ask("network", "inspect", network, "--format", "{{len .Containers}}")
    if attached is not None and attached.strip() == "0":
        _ask("network", "rm", network)


@contextlib.contextmanager
def build_container(name: str) -> Iterator[str]:
    """A container name free to create under, removed afterwards whatever happens."""
    remove(name)
    try:
        yield name
    finally:
        remove(name)


# -- steps of a build ----------------------------------------------------------


def create(name: str, image: str, *command: str, log_path: Path, what: str,
           entrypoint: str | None = None, privileged: bool = False) -> None:
    options = ["--privileged"] if privileged else []
    if entrypoint is not None:
        options += ["--entrypoint", entrypoint]
    _run("create", "--name", name, *options, image, *command, log_path=log_path, what=what)


def start(name: str, *, log_path: Path, what: str, attach: bool = False) -> None:
    """Start the container; with attach, wait for it to exit and fail if it fails."""
    _run("start", *(["-a"] if attach else []), name, log_path=log_path, what=what)


def copy_in(source: Source, name: str, dest: str, *, log_path: Path, what: str) -> None:
    _run("cp", source, f"{name}:{dest}", log_path=log_path, what=what)


def execute(name: str, *command: str, log_path: Path, what: str) -> None:
    _run("exec", name, *command, log_path=log_path, what=what)


def execute_output(name: str, *command: str, what: str) -> str:
    return procs.output([DOCKER, "exec", name, *command], what=what)


def save_into(refs: Sequence[str], name: str, command: Sequence[str], *, log_path: Path,
              what: str) -> None:
    """`docker save REFS` piped into COMMAND run in the container (e.g. `ctr images import -`)."""
    _pipe(shlex.join([DOCKER, "save", *refs]), ["exec", "-i", name, *command],
          log_path=log_path, what=what)


def stop(name: str, *, log_path: Path, what: str) -> None:
    _run("stop", "-t", "1", name, log_path=log_path, what=what)


def commit(name: str, tag: str, changes: Iterable[str], *, log_path: Path) -> None:
    """Commit the container as `tag`, with `docker commit --change` lines (ENTRYPOINT, ENV...)."""
    _run("commit", *_repeat("--change", changes), name, tag, log_path=log_path,
         what=f"committing {tag}")


# -- whole images --------------------------------------------------------------


def extend(base: str, tag: str, *, container: str, files: Iterable[tuple[Source, str]],
           changes: Iterable[str], log_path: Path, script: str | None = None) -> None:
    """Make `tag` from `base` with files copied in and, if given, a /bin/sh script run.

    files are (source on the host, destination in the image) pairs.
    """
    with build_container(container) as name:
        command = ("/bin/true",) if script is None else ("-c", script)
        create(name, base, *command, entrypoint=None if script is None else "/bin/sh",
               log_path=log_path, what=f"creating a container for {tag}")
        for source, dest in files:
            copy_in(source, name, dest, log_path=log_path,
                    what=f"copying {Path(source).name} into {tag}")
        if script is not None:
            start(name, attach=True, log_path=log_path, what=f"preparing {tag}")
        commit(name, tag, changes, log_path=log_path)


def import_rootfs(root: Path, tag: str, changes: Iterable[str], log_path: Path) -> None:
    """`tar | docker import` the folder as tag (the tag appears only on success)."""
    _pipe(shlex.join(["tar", "-C", str(root), "--numeric-owner", "-c", "."]),
          ["import", *_repeat("--change", changes), "-", tag],
          log_path=log_path, what=f"docker import of {tag}")


def build(context: Path, tag: str, *, build_args: Mapping[str, str], labels: Mapping[str, str],
          log_path: Path) -> None:
    """`docker build` with the classic builder (DOCKER_BUILDKIT=0); --force-rm: a failed
    step's container goes too, not only those of steps that worked."""
    _run("build", "--force-rm",
         *_repeat("--build-arg", (f"{k}={v}" for k, v in build_args.items())),
         *_repeat("--label", (f"{k}={v}" for k, v in labels.items())), "--tag", tag, context,
         log_path=log_path, what=f"docker build of {tag}", env={"DOCKER_BUILDKIT": "0"})
