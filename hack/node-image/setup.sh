#!/bin/sh
# setup.sh runs inside the node image's root (hack/lab-image.sh RACKBOOT_IMAGE_SETUP)
# after the overlay is copied in: enable the units, make sure swap stays off, and load
# the container images into containerd's store.
set -eu
mkdir -p /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests
systemctl enable containerd.service kubelet.service rackboot-podnet.service
# The kubelet refuses to start with swap on; the image has none, and no swap unit may
# appear later.
systemctl mask swap.target
# Debian's iptables defaults to the nft backend; kube-proxy's image uses the same.
update-alternatives --set iptables /usr/sbin/iptables-nft
update-alternatives --set ip6tables /usr/sbin/ip6tables-nft

# The images kubeadm needs go into containerd's k8s.io namespace here, on the build
# machine, unpacked for the overlayfs snapshotter the CRI uses: a node's first boot has
# nothing to import (importing them at boot took a TCG guest 6 minutes of both CPUs,
# while its control plane was starting). containerd runs with the node's own
# configuration; hack/lab-image.sh runs this script in a private mount namespace, so
# its mounts never reach the build machine.
images=/var/lib/rackboot/images
want=$(ls "$images"/*.tar | wc -l)
mount -t proc proc /proc
mkdir -p /run/containerd
/usr/local/bin/containerd --config /etc/containerd/config.toml --log-level warn >/run/containerd.log 2>&1 &
pid=$!
stop() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	umount /proc 2>/dev/null || true
}
trap stop EXIT
for i in $(seq 120); do /usr/local/bin/ctr version >/dev/null 2>&1 && break; sleep 0.5; done
for tar in "$images"/*.tar; do
	/usr/local/bin/ctr -n k8s.io images import "$tar" >/dev/null || {
		cat /run/containerd.log >&2
		exit 1
	}
done
/usr/local/bin/ctr -n k8s.io images ls -q | grep -v '^sha256:' >/run/rackboot-images
stop
trap - EXIT
got=$(wc -l </run/rackboot-images)
if [ "$got" -ne "$want" ]; then
	echo "setup: containerd has $got images, want $want:" >&2
	cat /run/rackboot-images /run/containerd.log >&2
	exit 1
fi
echo "setup: $got images in containerd's k8s.io namespace:"
cat /run/rackboot-images
rm -rf "$images" /run/containerd /run/containerd.log /run/rackboot-images
