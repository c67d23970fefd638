#!/bin/bash
# node-image.sh builds what the Kubernetes node image carries besides Debian's packages,
# from source, offline (the Go module proxy and Debian's apt mirror only):
#
#   hack/node-image.sh WORKDIR
#
# WORKDIR/bin        kubelet kubeadm kubectl kube-proxy kube-apiserver kube-controller-manager
#                    kube-scheduler (k8s.io/kubernetes, hack/node-image/kubernetes), containerd
#                    containerd-shim-runc-v2 ctr (hack/node-image/containerd), runc
#                    (hack/node-image/runc, cgo + libseccomp), etcd etcdctl
#                    (hack/node-image/etcd), coredns (hack/node-image/coredns), pause
#                    (k8s.io/kubernetes' build/pause/linux/pause.c, gcc -static)
# WORKDIR/iptables   Debian's iptables and nftables with the libraries they load (the root of
#                    the kube-proxy image: kube-proxy execs iptables-restore or nft)
# WORKDIR/sources    one line per file above: NAME SOURCE (module@version or package=version)
#
# Every version is pinned in the helper modules' go.mod; nothing here names one.
# lab.EnsureNodeImage runs this, assembles the OCI images and calls hack/lab-image.sh.
# Needs: go, gcc, libseccomp-dev, pkg-config, apt-get, dpkg-deb.
set -euo pipefail

work=${1:?usage: node-image.sh WORKDIR}
here=$(cd "$(dirname "$0")" && pwd)/node-image
bin=$work/bin
mkdir -p "$bin"
: >"$work/sources"
log() { echo "node-image: $(date +%T) $*" >&2; }
modversion() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }
source_line() { echo "$1 $2" >>"$work/sources"; }
export GOFLAGS="-mod=readonly -buildvcs=false"

k8s=$(modversion kubernetes k8s.io/kubernetes)
minor=${k8s#v1.}
minor=${minor%%.*}
log "kubernetes $k8s (one go build for all seven)"
cmds=(kubelet kubeadm kubectl kube-proxy kube-apiserver kube-controller-manager kube-scheduler)
(cd "$here/kubernetes" && CGO_ENABLED=0 go build -trimpath -o "$bin/" \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
	"${cmds[@]/#/k8s.io/kubernetes/cmd/}")
for c in "${cmds[@]}"; do source_line "$c" "k8s.io/kubernetes@$k8s"; done

ctrd=$(modversion containerd github.com/containerd/containerd/v2)
log "containerd $ctrd"
(cd "$here/containerd" && CGO_ENABLED=0 go build -trimpath -o "$bin/" \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$ctrd" \
	github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr)
for c in containerd containerd-shim-runc-v2 ctr; do source_line "$c" "github.com/containerd/containerd/v2@$ctrd"; done

runc=$(modversion runc github.com/opencontainers/runc)
log "runc $runc (cgo, seccomp)"
# runc links libseccomp dynamically (the node image has Debian's libseccomp2, a
# dependency of systemd).
(cd "$here/runc" && CGO_ENABLED=1 go build -trimpath -tags seccomp -o "$bin/runc" \
	-ldflags "-s -w -X main.version=${runc#v}" github.com/opencontainers/runc)
source_line runc "github.com/opencontainers/runc@$runc"

etcd=$(modversion etcd go.etcd.io/etcd/server/v3)
log "etcd $etcd"
(cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -o "$bin/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3 &&
	CGO_ENABLED=0 go build -trimpath -o "$bin/etcdctl" -ldflags "-s -w" go.etcd.io/etcd/etcdctl/v3)
source_line etcd "go.etcd.io/etcd/server/v3@$etcd"
source_line etcdctl "go.etcd.io/etcd/etcdctl/v3@$(modversion etcd go.etcd.io/etcd/etcdctl/v3)"

coredns=$(modversion coredns github.com/coredns/coredns)
log "coredns $coredns"
(cd "$here/coredns" && CGO_ENABLED=0 go build -trimpath -o "$bin/coredns" -ldflags "-s -w" github.com/coredns/coredns)
source_line coredns "github.com/coredns/coredns@$coredns"

log "pause"
k8sdir=$(cd "$here/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
gcc -Os -Wall -Werror -static -DVERSION="$k8s" -o "$bin/pause" "$k8sdir/build/pause/linux/pause.c"
strip "$bin/pause"
source_line pause "k8s.io/kubernetes@$k8s/build/pause/linux/pause.c (gcc $(gcc -dumpversion), static)"

# kube-proxy's image: Debian's iptables (nft and legacy backends) and nft, with exactly
# the shared libraries they need; checked below by running them in a chroot.
log "iptables root for kube-proxy"
debs=$work/debs
mkdir -p "$debs" "$work/iptables"
pkgs=(libc6 libgcc-s1 iptables libip4tc2 libip6tc2 libxtables12 libnftnl11 libmnl0 libnetfilter-conntrack3
	libnfnetlink0 nftables libnftables1 libjansson4 libgmp10 libedit2 libbsd0 libmd0 libtinfo6 conntrack)
(cd "$debs" && apt-get download "${pkgs[@]}" >/dev/null)
for deb in "$debs"/*.deb; do
	dpkg-deb -x "$deb" "$work/iptables"
	source_line "kube-proxy-image:$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Package)=$(dpkg-deb -f "$deb" Version)"
done
r=$work/iptables
rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian" "$r/usr/share/info"
# Debian makes these links with update-alternatives in iptables' postinst; the image has
# no dpkg, so they are made here (nft backend, as on the node).
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -sf xtables-nft-multi "$r/usr/sbin/$t"
done
for t in iptables-legacy iptables-legacy-save iptables-legacy-restore ip6tables-legacy ip6tables-legacy-save ip6tables-legacy-restore; do
	[ -e "$r/usr/sbin/$t" ] || ln -sf xtables-legacy-multi "$r/usr/sbin/$t"
done
# Debian 12 is merged-/usr: /lib, /lib64, /bin, /sbin are links into /usr.
for d in lib lib64 bin sbin; do
	if [ -d "$r/$d" ] && [ ! -L "$r/$d" ]; then
		mkdir -p "$r/usr/$d"
		cp -a "$r/$d"/. "$r/usr/$d"/
		rm -rf "${r:?}/$d"
	fi
	ln -sfn "usr/$d" "$r/$d"
done
chroot "$r" /usr/sbin/iptables --version >/dev/null
chroot "$r" /usr/sbin/nft --version >/dev/null
log "done"
