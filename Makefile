# rackboot — build, test and lab.
#
#   make test   install what the tests need (Debian packages, Go modules) and run every test
#   make lab    run the QEMU lab: network namespace, rackboot, QEMU hosts, booted end to end
#   make build  build bin/rackboot
#   make lint   gofmt + go vet
#   make dist   release artifacts under dist/: static binaries, .deb, OCI image, clusterctl repository
#   make bench  run the benchmarks and print their numbers
#   make bench-compare  rackboot beside its peers (DHCP: Kea, TFTP: dnsmasq, HTTP: nginx), in namespaces

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
# One build configuration for every Go command here: static (no cgo) and -trimpath, as
# the release binaries are built. go vet, the tests, make build/dist and the binaries the
# tests build then share one compilation of each package in the build cache, instead of
# one per configuration (minutes each, cold).
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(filter-out -trimpath,$(shell go env GOFLAGS 2>/dev/null)) -trimpath)
BIN := bin/rackboot
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit's date, not the clock's: building the same commit twice gives the same binary,
# so bootenv import (keyed by the binary's content) and the build cache keep their hits.
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)

# Debian packages the tests and the lab drive for real.
DEB_PACKAGES := systemd skopeo qemu-system-x86 qemu-utils ipxe-qemu ipxe ovmf openipmi ipmitool \
	busybox-static cpio dnsmasq-base tftp-hpa atftp isc-dhcp-client isc-dhcp-relay iproute2 curl python3-sushy e2fsprogs \
	debootstrap mtools dosfstools syslinux syslinux-common grub-efi-amd64-bin fdisk zstd nginx btrfs-progs openssh-client \
	gcc libc6-dev libseccomp-dev pkg-config binutils \
	kea-dhcp4-server kea-admin wrk

TEST_TIMEOUT ?= 60m

# envtest: kube-apiserver, etcd and the real Cluster API controllers, built from the Go
# module proxy and cached as files; the stamp changes when a pin does, so a warm run
# costs nothing. kube-apiserver and etcd come from the node image's helper modules
# (hack/node-image/kubernetes, hack/node-image/etcd: one pin of each for the lab's
# management cluster and its nodes) with the flags hack/node-image.sh uses, so the node
# image's Kubernetes build finds kube-apiserver's packages compiled already; the CAPI
# controllers from hack/envtest/capi.
ENVTEST_DIR ?= $(HOME)/.cache/rackboot-envtest
ENVTEST_MODS := hack/envtest/capi hack/node-image/kubernetes hack/node-image/etcd
ENVTEST_HASH := $(shell cat $(addsuffix /go.mod,$(ENVTEST_MODS)) $(addsuffix /go.sum,$(ENVTEST_MODS)) 2>/dev/null | sha256sum | cut -c1-16)
ENVTEST_STAMP := $(ENVTEST_DIR)/stamp-$(ENVTEST_HASH)
K8S_VERSION := $(shell sed -n 's/^require k8s.io\/kubernetes \(v[^ ]*\).*/\1/p' hack/node-image/kubernetes/go.mod)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
# The same flags as hack/node-image.sh's (the build cache keys on -trimpath and cgo).
K8S_GOFLAGS := -mod=readonly -buildvcs=false
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean
export KUBEBUILDER_ASSETS := $(ENVTEST_DIR)

DIST_VERSION ?= v0.1.0
DIST_ARCH ?= amd64,arm64

.PHONY: all build dist clusterctl test test-k8s test-node-image unit lint deps bench bench-compare lab lab-image node-image lab-down clean envtest generate verify-generate config-doc verify-config-doc

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rackboot

# dist lays out a release under dist/ (hack/dist, a module of its own, says what is
# where): static binaries for DIST_ARCH stamped with DIST_VERSION, a Debian package per
# architecture (nfpm), the OCI image (OCI layout and docker-load tarballs, built offline),
# completions, the clusterctl provider repository infrastructure-rackboot/DIST_VERSION/
# with clusterctl.yaml, and SHA256SUMS. Files carry the commit's date, not the clock's.
dist:
	rm -rf dist && mkdir -p dist
	for a in $$(echo $(DIST_ARCH) | tr , ' '); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath \
	    -ldflags '-s -w -X main.version=$(DIST_VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)' \
	    -o dist/rackboot-linux-$$a ./cmd/rackboot || exit 1; \
	done
	cd hack/dist && $(GO) run . --root ../.. --out ../../dist --version $(DIST_VERSION) --arch $(DIST_ARCH) \
	  --commit '$(COMMIT)' $(if $(BUILD_DATE),--mtime $(BUILD_DATE))

# clusterctl builds the real clusterctl from the module proxy (hack/clusterctl pins it to
# the sigs.k8s.io/cluster-api of go.mod) beside the envtest binaries, for the test of the
# provider repository (packaging/clusterctl_test.go).
CAPI_VERSION := $(shell sed -n 's/^\tsigs.k8s.io\/cluster-api v//p' go.mod)
CLUSTERCTL_LDFLAGS := -s -w -X sigs.k8s.io/cluster-api/version.gitVersion=v$(CAPI_VERSION) \
	-X sigs.k8s.io/cluster-api/version.gitMajor=$(word 1,$(subst ., ,$(CAPI_VERSION))) \
	-X sigs.k8s.io/cluster-api/version.gitMinor=$(word 2,$(subst ., ,$(CAPI_VERSION)))
clusterctl: $(ENVTEST_DIR)/clusterctl

$(ENVTEST_DIR)/clusterctl: hack/clusterctl/go.mod hack/clusterctl/go.sum
	@mkdir -p $(ENVTEST_DIR)
	cd hack/clusterctl && CGO_ENABLED=0 $(GO) build -o $@ -ldflags '$(CLUSTERCTL_LDFLAGS)' sigs.k8s.io/cluster-api/cmd/clusterctl

# deps installs the Debian packages that are missing (apt-get update only when needed)
# and downloads the Go modules through the proxy.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# kea-dhcp4-server is installed for make bench-compare, which runs its own Kea in a
	@# namespace: the packaged service must not run (its default config listens nowhere).
	@if command -v systemctl >/dev/null && systemctl is-enabled kea-dhcp4-server >/dev/null 2>&1; then \
	  systemctl disable --now kea-dhcp4-server >/dev/null 2>&1 || true; \
	fi
	$(GO) mod download

envtest: $(ENVTEST_STAMP)

$(ENVTEST_STAMP):
	@mkdir -p $(ENVTEST_DIR)
	@echo "building envtest binaries into $(ENVTEST_DIR) (cold: several minutes)"
	cd hack/node-image/kubernetes && CGO_ENABLED=0 GOFLAGS='$(K8S_GOFLAGS)' $(GO) build -trimpath -o $(ENVTEST_DIR)/kube-apiserver -ldflags '$(K8S_LDFLAGS)' k8s.io/kubernetes/cmd/kube-apiserver
	cd hack/node-image/etcd && CGO_ENABLED=0 GOFLAGS='$(K8S_GOFLAGS)' $(GO) build -trimpath -o $(ENVTEST_DIR)/etcd -ldflags '-s -w' go.etcd.io/etcd/server/v3
	cd hack/envtest/capi && for p in core bootstrap/kubeadm controlplane/kubeadm; do \
	  CGO_ENABLED=0 $(GO) build -o $(ENVTEST_DIR)/capi-$$(echo $$p | tr / -) -ldflags '-s -w' sigs.k8s.io/cluster-api/$$p || exit 1; \
	done
	rm -f $(ENVTEST_DIR)/stamp-*
	touch $@

# generate rewrites what controller-gen derives from api/ and controllers/ (deepcopy,
# CRDs with the Cluster API contract label, RBAC) and config/infrastructure-components.yaml.
# controller-gen is pinned by hack/tools/go.mod.
generate:
	hack/generate.sh

# verify-generate regenerates into a temporary directory and fails when the tree differs.
verify-generate:
	@hack/generate.sh --verify

# config-doc rewrites docs/config.md from the packages' Config types; verify-config-doc
# fails when it is stale (make test runs the same test with the rest of ./...).
config-doc:
	$(GO) test -count=1 -run '^TestConfigReferenceFresh$$' ./cmd/rackboot -update

verify-config-doc:
	$(GO) test -count=1 -run '^TestConfigReferenceFresh$$' ./cmd/rackboot

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# test runs every test, including the network-namespace and QEMU ones (they need root;
# RACKBOOT_REQUIRE_LAB=1 makes a missing tool a failure instead of a skip), the fuzz
# targets' seed corpora, and each benchmark once so none of them rots.
#
# TestQEMUKubernetes (issue 9: a Cluster of two QEMU hosts through the real Cluster API
# controllers, kubeadm init/join, pod network, scale 0/1, delete; 40-60 minutes) runs
# alone after the rest: its TCG control plane needs both cores, and beside the lab's
# other QEMU tests its kube-apiserver missed start-up deadlines.
#
# TestQEMUNodeImage (the node image booted alone into a one-node kubeadm cluster, without
# rackboot; 10-25 minutes) is a diagnostic for changes to the image and runs in make
# test-node-image; everything it checks, TestQEMUKubernetes checks through rackboot and
# Cluster API. make test says so when it starts.
#
# hack/make-test.sh runs it all, in the order that keeps a cold run short on two cores:
# the lab image and then, at nice 19, the node image build in the background from the
# start (only TestQEMUKubernetes needs the node image); lint, envtest, clusterctl, dist
# and verify-generate; go test ./... but the two tests above; every benchmark once;
# TestQEMUKubernetes. It ends with the time of each phase.
K8S_TEST := ^TestQEMUKubernetes$$
NODE_IMAGE_BOOT_TEST := ^TestQEMUNodeImage$$
test: deps
	GO='$(GO)' TEST_TIMEOUT='$(TEST_TIMEOUT)' K8S_TEST='$(K8S_TEST)' NODE_IMAGE_BOOT_TEST='$(NODE_IMAGE_BOOT_TEST)' hack/make-test.sh

# test-k8s runs the Kubernetes test alone; test-node-image boots the node image alone.
test-k8s: deps envtest node-image
	RACKBOOT_REQUIRE_LAB=1 $(GO) test -count=1 -timeout 120m -run '$(K8S_TEST)' -v ./internal/controllers

test-node-image: deps node-image
	RACKBOOT_REQUIRE_LAB=1 $(GO) test -count=1 -timeout 120m -run '$(NODE_IMAGE_BOOT_TEST)' -v ./internal/lab

# unit runs only the fast tests (no root, no namespaces, no QEMU).
unit:
	$(GO) test -short -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# bench-compare runs rackboot beside its peers on this machine and prints the ratios of
# issue 11. DHCP: dhcpload (perfdhcp's relay DORA load in one event loop; DHCP_LOAD=perfdhcp
# for perfdhcp itself) against Kea 2.x memfile and against rackboot; TFTP: a boot
# storm against dnsmasq; HTTP: wrk fetching an iPXE binary from nginx and from rackboot;
# in network namespaces, server pinned to one CPU and load to the other, interleaved,
# medians of BENCH_ROUNDS rounds (hack/bench-compare.sh says how each figure is taken;
# ONLY=dhcp|tftp|http runs one). Needs root.
BENCH_ROUNDS ?= 3
bench-compare: deps
	hack/bench-compare.sh $(BENCH_ROUNDS)

# lab runs the main job: a Cluster API management cluster, rackboot serving its provider
# in a lab namespace, and QEMU hosts (SeaBIOS + IPMI, OVMF UEFI HTTP boot + Redfish) that
# become a kubeadm cluster (the first host the control plane) from a Cluster applied from
# config/templates; it ends with kubectl get nodes from the workload cluster.
# LAB_ARGS=--keep leaves it up until Ctrl-C; --hosts-only provisions the lab's Debian
# without Kubernetes; --netboot-only is the quick boot check.
LAB_NEEDS := $(if $(filter --hosts-only --netboot-only,$(LAB_ARGS)),,envtest node-image)
LAB_VMS ?= seabios ovmf-http
lab: deps build $(LAB_NEEDS)
	$(GO) run ./internal/lab/cmd/rackboot-lab --rackboot $(BIN) $(addprefix --vm ,$(LAB_VMS)) $(LAB_ARGS)

# lab-image builds the lab's Debian 12 disk image (debootstrap from the apt mirror, no
# loop mounts; needs root), cached under ~/.cache/rackboot-lab/images by a hash of
# hack/lab-image.sh, and prints its path, sha256 and the `rackboot image add` line.
lab-image: deps
	$(GO) run ./internal/lab/cmd/lab-image

# node-image builds the Kubernetes node image (debian-12-k8s): the lab image plus
# containerd, runc, kubelet, kubeadm, kubectl and every container image kubeadm needs,
# all built from source (helper modules under hack/node-image pin them), cached under
# ~/.cache/rackboot-lab/images by a hash of all its inputs, with a provenance file beside
# it. Cold: tens of minutes on 2 cores; warm: nothing to do. See README "Node image".
node-image: deps
	$(GO) run ./internal/lab/cmd/lab-image --node

# lab-down removes lab namespaces (and their processes) left by a lab or test that was
# killed before it could clean up.
lab-down:
	$(GO) run ./internal/lab/cmd/rackboot-lab --sweep

clean:
	rm -rf bin dist
