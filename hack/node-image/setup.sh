#!/bin/sh
# setup.sh runs inside the node image's root (hack/lab-image.sh RACKBOOT_IMAGE_SETUP)
# after the overlay is copied in: enable the units and make sure swap stays off.
set -eu
mkdir -p /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests
systemctl enable containerd.service rackboot-images.service kubelet.service rackboot-podnet.service
# The kubelet refuses to start with swap on; the image has none, and no swap unit may
# appear later.
systemctl mask swap.target
# Debian's iptables defaults to the nft backend; kube-proxy's image uses the same.
update-alternatives --set iptables /usr/sbin/iptables-nft
update-alternatives --set ip6tables /usr/sbin/ip6tables-nft
