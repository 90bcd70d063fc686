"""The kind node image, assembled the way `kind build node-image` does.

`kind build node-image` cannot run offline (it pulls component images from
inside its build container), so the same steps are done here: start the
node base image, copy the Kubernetes binaries and crictl in, write /kind/version, start
containerd, import the component images into its k8s.io namespace, stop it,
and commit. The tag holds the Kubernetes version and a hash of everything
that went in, so a warm run finds it and builds nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import errors, progress
from harness.resources import RECIPES
from harness.settings import ToolchainSettings
from harness.toolchain import components, containers, kubernetes, rootfs, tools, versions
from harness.toolchain.cache import Cache, Stopwatch, recipe_hash

NODE_BASE = rootfs.Recipe(
    name="node-base",
    packages=rootfs.read_packages(RECIPES / "node-image" / "packages"),
    files=(RECIPES / "node-image",),
    overlay=RECIPES / "node-image" / "rootfs",
    prepare=RECIPES / "node-image" / "prepare.sh",
    changes=(
        "ENV container=docker",
        'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
    ),
)

RELEASE_IMAGE = f"kindest/node:{versions.KUBERNETES}"
"""The official node image used where a registry is reachable."""

BUILD_CONTAINER = "harness-node-image-build"


def planned_tag(cache: Cache) -> str | None:
    """The tag a build from the current recipes would have, if its inputs are cached."""
    parts = [NODE_BASE.tag()]
    for tool in (kubernetes.KUBERNETES, kubernetes.ETCD, kubernetes.COREDNS, kubernetes.PAUSE,
                 kubernetes.CRICTL):
        found = tool.found(cache)
        if found is None:
            return None
        parts.append(found[1].name)
    key = recipe_hash([Path(__file__), RECIPES / "component-images"], *parts)
    return f"rollout-harness/node:{versions.KUBERNETES}-{key}"


def ensure(cache: Cache, settings: ToolchainSettings) -> str:
    """The node image reference to give kind, pulling or building it if needed."""
    tag = planned_tag(cache)
    if tag and containers.image_exists(tag):
        return tag
    if settings.source in ("auto", "release") and _pull_release(cache):
        return RELEASE_IMAGE
    if settings.source == "release":
        raise errors.ToolchainError(f"could not pull {RELEASE_IMAGE}: is a registry reachable?")
    return build(cache, settings)


def _pull_release(cache: Cache) -> bool:
    if containers.image_exists(RELEASE_IMAGE):
        return True
    if not containers.pull(RELEASE_IMAGE, timeout=600):
        progress.say(f"node image: {RELEASE_IMAGE} cannot be pulled here, building our own")
        return False
    cache.record("node-image", source="release", version=versions.KUBERNETES, seconds=None)
    return True


def build(cache: Cache, settings: ToolchainSettings) -> str:
    kube = tools.ensure(cache, settings, kubernetes.KUBERNETES)
    etcd = tools.ensure(cache, settings, kubernetes.ETCD)
    coredns = tools.ensure(cache, settings, kubernetes.COREDNS)
    pause = tools.ensure(cache, settings, kubernetes.PAUSE)
    crictl = tools.ensure(cache, settings, kubernetes.CRICTL)
    tag = planned_tag(cache)
    assert tag is not None
    if containers.image_exists(tag):
        return tag
    base = rootfs.ensure(cache, settings, NODE_BASE)
    iptables_base = rootfs.ensure(cache, settings, components.IPTABLES_BASE)
    images = [
        components.ComponentImage("kube-apiserver", kube / "kube-apiserver",
                                  "/usr/local/bin/kube-apiserver"),
        components.ComponentImage("kube-controller-manager", kube / "kube-controller-manager",
                                  "/usr/local/bin/kube-controller-manager"),
        components.ComponentImage("kube-scheduler", kube / "kube-scheduler",
                                  "/usr/local/bin/kube-scheduler"),
        components.ComponentImage("etcd", etcd / "etcd", "/usr/local/bin/etcd"),
        components.ComponentImage("coredns", coredns / "coredns", "/coredns"),
        components.ComponentImage("pause", pause / "pause", "/pause"),
    ]
    for image in images:
        components.ensure(cache, image)
    proxy = components.ComponentImage("kube-proxy", kube / "kube-proxy",
                                      "/usr/local/bin/kube-proxy")
    components.ensure(cache, proxy, iptables_base=iptables_base)
    watch = Stopwatch()
    with progress.step(f"assembling node image {tag}", log_file=cache.log("node-image")):
        _assemble(cache, base, kube, crictl, [i.ref for i in [*images, proxy]], tag)
    cache.record("node-image", source="build", version=versions.KUBERNETES,
                 seconds=watch.seconds, image=tag)
    return tag


def _assemble(cache: Cache, base: str, kube: Path, crictl: Path, refs: list[str],
              tag: str) -> None:
    log_path = cache.log("node-image")
    log_path.unlink(missing_ok=True)
    with containers.build_container(BUILD_CONTAINER) as name:
        containers.create(name, base, "infinity", entrypoint="sleep", privileged=True,
                          log_path=log_path, what="creating the node image build container")
        containers.start(name, log_path=log_path, what="starting the node image build container")
        for binary in ("kubeadm", "kubelet", "kubectl"):
            containers.copy_in(kube / binary, name, f"/usr/bin/{binary}", log_path=log_path,
                               what=f"copying {binary} into the node image")
        containers.copy_in(crictl / "crictl", name, "/usr/local/bin/crictl", log_path=log_path,
                           what="copying crictl into the node image")
        _exec(name, log_path, "mkdir -p /kind && "
              f"printf '%s' {versions.KUBERNETES} > /kind/version")
        _exec(name, log_path, "(containerd > /var/log/build-containerd.log 2>&1 &) ; "
              "for i in $(seq 60); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.5; done; "
              "cat /var/log/build-containerd.log; exit 1")
        containers.save_into(
            refs, name, ["ctr", "--namespace=k8s.io", "images", "import", "--all-platforms",
                         "--no-unpack", "--digests", "-"],
            log_path=log_path, what="importing component images into the node's containerd",
        )
        listed = containers.execute_output(name, "ctr", "--namespace=k8s.io", "images", "list",
                                           "-q", what="listing the node's images")
        missing = [ref for ref in refs if ref not in listed.split()]
        if missing:
            raise errors.BuildError(f"node image lacks {', '.join(missing)} after import; "
                                    f"see {log_path}")
        # `sleep` as PID 1 does not reap, so wait for containerd to be gone or a zombie
        _exec(name, log_path, "pkill -x containerd; for i in $(seq 80); do "
              "ps -C containerd -o stat= | grep -qv '^Z' || exit 0; sleep 0.25; done; exit 1")
        containers.stop(name, log_path=log_path, what="stopping the build container")
        time.sleep(0.5)
        # the build container ran `sleep`: give the image the base's entrypoint back
        containers.commit(name, tag, (*NODE_BASE.changes, "CMD []"), log_path=log_path)


def _exec(container: str, log_path: Path, script: str) -> None:
    containers.execute(container, "bash", "-c", script, log_path=log_path,
                       what=f"node image build step: {script.split(';')[0][:60]}")
