"""Control-plane component images, tagged exactly as kubeadm lists them.

kubelet would try to pull any image kubeadm names that is not already in the
node's containerd, and pulls fail on air-gapped hosts. So every image in
`kubeadm config images list` is made here from the binaries we built: the
static ones on an empty root with just enough /etc, kube-proxy on a small
Debian root because it drives iptables and conntrack.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import procs, progress
from harness.resources import RECIPES
from harness.toolchain import rootfs, versions
from harness.toolchain.cache import Cache, recipe_hash

LABEL = "io.rollout-harness.recipe"
PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

IPTABLES_BASE = rootfs.Recipe(
    name="iptables-base",
    packages=rootfs.read_packages(RECIPES / "component-images" / "iptables-packages"),
    files=(RECIPES / "component-images",),
    overlay=RECIPES / "component-images" / "iptables-rootfs",
    prepare=RECIPES / "component-images" / "prepare-iptables.sh",
    changes=(PATH_ENV,),
)


@dataclass(frozen=True)
class ComponentImage:
    component: str
    """Key in versions.component_images()."""
    binary: Path
    """The built binary that goes into the image."""
    entrypoint: str
    """Absolute path of the binary inside the image."""

    @property
    def ref(self) -> str:
        return versions.component_images()[self.component]

    def key(self) -> str:
        return recipe_hash([Path(__file__), RECIPES / "component-images"], str(self.binary))


def label_of(ref: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', ref],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure(cache: Cache, image: ComponentImage, iptables_base: str | None = None) -> str:
    """Make image.ref from image.binary unless an image of the same recipe exists."""
    key = image.key()
    if label_of(image.ref) == key:
        return key
    log_path = cache.log(f"image-{image.component}")
    log_path.unlink(missing_ok=True)
    changes = (
        PATH_ENV,
        f'ENTRYPOINT ["{image.entrypoint}"]',
        f"LABEL {LABEL}={key}",
    )
    with progress.step(f"making image {image.ref}"):
        if iptables_base is None:
            with tempfile.TemporaryDirectory(dir=cache.root) as tmp:
                root = Path(tmp)
                _static_root(root)
                target = root / image.entrypoint.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(image.binary.read_bytes())
                target.chmod(0o755)
                rootfs.import_rootfs(root, image.ref, changes, log_path)
        else:
            _add_binary(iptables_base, image, changes, log_path)
    return key


def _static_root(root: Path) -> None:
    for folder in ("etc", "tmp", "var/run", "usr/local/bin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n"
                                     "nobody:x:65534:65534:nobody:/:/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/nsswitch.conf").write_text("hosts: files dns\n")


def _add_binary(base: str, image: ComponentImage, changes: tuple[str, ...], log: Path) -> None:
    """Base image + one binary, via create/cp/commit (no image builder needed)."""
    name = f"harness-build-{image.component}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    procs.run(["docker", "create", "--name", name, base, "/bin/true"], log_path=log,
              what=f"creating a container for {image.ref}")
    try:
        procs.run(["docker", "cp", image.binary, f"{name}:{image.entrypoint}"], log_path=log,
                  what=f"copying {image.binary.name} into {image.ref}")
        commit = ["docker", "commit"]
        for change in changes:
            commit += ["--change", change]
        procs.run([*commit, name, image.ref], log_path=log, what=f"committing {image.ref}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
