"""Control-plane component images, tagged exactly as kubeadm lists them.

kubelet would try to pull any image kubeadm names that is not already in the
node's containerd, and pulls fail on air-gapped hosts. So every image in
`kubeadm config images list` is made here from the binaries we built: the
static ones on an empty root with just enough /etc, kube-proxy on a small
Debian root because it drives iptables and conntrack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import progress
from harness.resources import RECIPES
from harness.toolchain import containers, rootfs, versions
from harness.toolchain.cache import Cache, recipe_hash, scratch

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


def ensure(cache: Cache, image: ComponentImage, iptables_base: str | None = None) -> str:
    """Make image.ref from image.binary unless an image of the same recipe exists."""
    key = image.key()
    if containers.label_of(image.ref, LABEL) == key:
        return key
    log_path = cache.log(f"image-{image.component}")
    log_path.unlink(missing_ok=True)
    changes = (
        PATH_ENV,
        f'ENTRYPOINT ["{image.entrypoint}"]',
        f"LABEL {LABEL}={key}",
    )
    with progress.step(f"making image {image.ref}", log_file=log_path):
        if iptables_base is None:
            with scratch(cache.root) as tmp:
                root = Path(tmp)
                _static_root(root)
                target = root / image.entrypoint.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(image.binary.read_bytes())
                target.chmod(0o755)
                containers.import_rootfs(root, image.ref, changes, log_path)
        else:
            containers.extend(iptables_base, image.ref, files=[(image.binary, image.entrypoint)],
                              container=f"harness-build-{image.component}", changes=changes,
                              log_path=log_path)
    return key


def _static_root(root: Path) -> None:
    for folder in ("etc", "tmp", "var/run", "usr/local/bin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n"
                                     "nobody:x:65534:65534:nobody:/:/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/nsswitch.conf").write_text("hosts: files dns\n")
