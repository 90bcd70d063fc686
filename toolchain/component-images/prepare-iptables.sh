#!/bin/sh
# Runs in the chroot of kube-proxy's base: every iptables entry point goes
# through the wrapper first, which then replaces itself with the chosen backend.
set -eu
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -sf /usr/local/sbin/iptables-wrapper "/usr/local/sbin/$tool"
done
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
