#!/bin/bash
# bench-stream.sh runs BenchmarkStream (internal/images/stream_bench_test.go) several times and
# prints the median MB/s of each sub-benchmark and the ratios the issue asks for:
# rackboot's image path (rackboot's handler → agent → disk file) against cp, nginx and
# curl moving the same 256 MiB on loopback.
#
#   hack/bench-stream.sh [ROUNDS [BENCHTIME]]    run (default 5 rounds of 3x) and summarise
#   hack/bench-stream.sh --from FILE...          summarise saved `go test -bench` output
#
# Each round is one `go test -count 1`, so every sub-benchmark is sampled once per round
# and a load spike from something else on the machine hits all of them alike (with
# -count N, go test runs each sub-benchmark's N samples back to back, and a spike skews
# the ratios). Needs nginx, curl and zstd (make deps). The numbers are the throughput of
# one stream; on two shared cores they swing by 2x, so read the medians and ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "${1:-}" = "--from" ]; then
	shift
	files=("${@:?usage: bench-stream.sh --from FILE...}")
else
	rounds=${1:-5}
	benchtime=${2:-3x}
	out=$(mktemp "${TMPDIR:-/tmp}/bench-stream.XXXXXX")
	files=("$out")
	go test -c -o "$out.test" ./internal/images
	trap 'rm -f "$out.test"' EXIT
	for i in $(seq "$rounds"); do
		echo "round $i/$rounds: images.test -test.run '^\$' -test.bench Stream -test.benchtime $benchtime (output: $out)" >&2
		(cd images && RACKBOOT_REQUIRE_LAB=1 "$out.test" -test.run '^$' -test.bench Stream -test.benchtime "$benchtime" -test.benchmem) | tee -a "$out" >&2
	done
fi

awk '
/^BenchmarkStream\// {
	name = $1; sub(/^BenchmarkStream\//, "", name); sub(/-[0-9]+$/, "", name)
	if (!(name in seen)) { seen[name] = 1; order[++n] = name }
	for (i = 2; i <= NF; i++) {
		if ($(i) == "MB/s") v[name] = v[name] " " $(i-1)
		if ($(i) == "cpu-ms/op") c[name] = c[name] " " $(i-1)
	}
}
function median(s,   a, k, i, j, t) {
	k = split(s, a, " ")
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	if (k == 0) return 0
	return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function ratio(a, b) {
	if (!(a in m) || !(b in m) || m[b] == 0 || mc[a] == 0) return
	printf "  %-20s / %-22s %5.2f x the throughput, %5.2f x the CPU\n", a, b, m[a] / m[b], mc[a] / mc[b]
}
END {
	if (n == 0) { print "no BenchmarkStream results" > "/dev/stderr"; exit 1 }
	printf "\n%-22s %8s %9s   %s\n", "sub-benchmark", "MB/s", "cpu-ms/op", "(medians; MB/s of each run)"
	for (i = 1; i <= n; i++) {
		k = order[i]; m[k] = median(v[k]); mc[k] = median(c[k])
		printf "%-22s %8.1f %9.1f  %s\n", k, m[k], mc[k], v[k]
	}
	print "\nratios of the medians (256 MiB written to a file each time):"
	ratio("raw/rackboot-agent", "raw/cp-exec")
	ratio("raw/rackboot-agent", "raw/cp-iocopy")
	ratio("raw/rackboot-agent", "raw/nginx-agent")
	ratio("raw/rackboot-agent", "raw/nginx-curl")
	ratio("raw/rackboot-agent", "raw/rackboot-curl")
	ratio("raw/rackboot-curl", "raw/nginx-curl")
	ratio("zstd/rackboot-agent", "zstd/nginx-agent")
	ratio("zstd/rackboot-agent", "zstd/nginx-curl-zstd")
	ratio("zstd/rackboot-agent", "raw/cp-exec")
}' "${files[@]}"
