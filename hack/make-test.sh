#!/bin/bash
# make-test.sh is `make test` (the Makefile runs it after `make deps`): every test, in the
# order that keeps a cold run short on two cores, with the time of each phase at the end.
#
#   1. In the background, from the start: the lab image (debootstrap: mostly the network
#      and dpkg), then at nice 19 the Kubernetes node image (tens of minutes of Go builds
#      cold; nothing warm). Only TestQEMUKubernetes needs the node image, so it builds in
#      the CPU the other phases leave idle. The two share debootstrap's package cache, so
#      they run one after the other (lab.EnsureNodeImage would wait for the lock anyway).
#   2. lint, envtest, clusterctl, dist, verify-generate (make targets).
#   3. Once the lab image is there: go test ./... but TestQEMUKubernetes and
#      TestQEMUNodeImage (the latter is make test-node-image's: everything it checks,
#      TestQEMUKubernetes checks through rackboot and Cluster API).
#   4. Every benchmark once, so none rots.
#   5. Once the node image is there: TestQEMUKubernetes, alone (its TCG control plane
#      needs both cores).
#
# A failed phase or image build fails make test with what went wrong; nothing is skipped.
# Environment (the Makefile passes all but MAKE, so that `make -n test` runs nothing):
# GO, MAKE, TEST_TIMEOUT, K8S_TEST,
# NODE_IMAGE_BOOT_TEST.
set -euo pipefail

GO=${GO:-go}
MAKE=${MAKE:-make}
TEST_TIMEOUT=${TEST_TIMEOUT:-60m}
K8S_TEST=${K8S_TEST:-^TestQEMUKubernetes\$}
NODE_IMAGE_BOOT_TEST=${NODE_IMAGE_BOOT_TEST:-^TestQEMUNodeImage\$}

cd "$(dirname "$0")/.."
mkdir -p bin
rm -f bin/lab-image.rc

began=$(date +%s)
last=$began
phases=()
done_phase() { # NAME: the phase that just ended
	local now
	now=$(date +%s)
	phases+=("$(printf '  %-44s %3dm%02ds' "$1" $(((now - last) / 60)) $(((now - last) % 60)))")
	last=$now
}
summary() {
	local now
	now=$(date +%s)
	echo "make test: phases"
	printf '%s\n' "${phases[@]}"
	printf '  %-44s %3dm%02ds\n' "total" $(((now - began) / 60)) $(((now - began) % 60))
}

echo "make test: building the image tool"
$GO build -o bin/lab-image ./internal/lab/cmd/lab-image

echo "make test: the lab image, then the node image at nice 19, in the background (logs: bin/lab-image.log, bin/node-image.log)"
# setsid: the chain is a process group of its own, stopped as one if make test fails.
setsid bash -c '
	bin/lab-image >bin/lab-image.log 2>&1
	rc=$?
	echo $rc >bin/lab-image.rc
	[ $rc = 0 ] || exit $rc
	exec nice -n 19 bin/lab-image --node >bin/node-image.log 2>&1
' &
images=$!
trap 'kill -TERM -- -$images 2>/dev/null || true; wait $images 2>/dev/null || true; summary' EXIT
done_phase "start"

$MAKE --no-print-directory lint envtest clusterctl dist verify-generate
done_phase "lint envtest clusterctl dist verify-generate"

while [ ! -s bin/lab-image.rc ]; do
	if ! kill -0 $images 2>/dev/null; then
		echo "make test: the image builds stopped before the lab image was done; bin/lab-image.log ends:" >&2
		tail -n 40 bin/lab-image.log >&2
		exit 1
	fi
	sleep 2
done
if [ "$(cat bin/lab-image.rc)" != 0 ]; then
	echo "make test: the lab image build failed; bin/lab-image.log ends:" >&2
	tail -n 40 bin/lab-image.log >&2
	exit 1
fi
tail -n 5 bin/lab-image.log
done_phase "waiting for the lab image"

echo "make test: TestQEMUNodeImage (the node image booted without rackboot) is left to make test-node-image; TestQEMUKubernetes runs last, alone"
(
	set -x
	RACKBOOT_REQUIRE_LAB=1 $GO test -count=1 -timeout "$TEST_TIMEOUT" -skip "$K8S_TEST|$NODE_IMAGE_BOOT_TEST" ./...
)
done_phase "go test ./... (all but the Kubernetes test)"

(
	set -x
	$GO test -count=1 -run '^$' -bench . -benchtime 1x ./...
)
done_phase "every benchmark once"

echo "make test: waiting for the node image"
if ! wait $images; then
	echo "make test: the node image build failed; bin/node-image.log ends:" >&2
	tail -n 40 bin/node-image.log >&2
	exit 1
fi
tail -n 7 bin/node-image.log
done_phase "waiting for the node image"

(
	set -x
	RACKBOOT_REQUIRE_LAB=1 $GO test -count=1 -timeout 120m -run "$K8S_TEST" -v ./internal/controllers
)
done_phase "TestQEMUKubernetes"
