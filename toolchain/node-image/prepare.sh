#!/bin/sh
# Runs inside the debootstrapped root (chroot) after the overlay is copied:
# trims systemd to what a container node needs and enables our units.
set -eu
rm -f /lib/systemd/system/multi-user.target.wants/* \
      /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* \
      /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* \
      /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
systemctl enable containerd.service kubelet.service
systemctl mask systemd-binfmt.service getty.target console-getty.service
mkdir -p /etc/kubernetes/manifests /opt/cni/bin /var/lib/kubelet
chmod 0755 /usr/local/bin/entrypoint /kind /kind/bin /kind/bin/*
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/log/*.log /var/cache/debconf/*-old
