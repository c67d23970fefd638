#!/bin/bash
# bench-compare.sh: rackboot's DHCP server against Kea 2.x (memfile), side by side, with
# ISC's perfdhcp as the load (issue 11). Prints, for each server, the median of ROUNDS
# rounds of:
#
#   capacity      the highest offered rate (DORA/s, from a fixed ladder) at which at most
#                 2.5 % of the exchanges were lost (ACKs received / DISCOVERs sent)
#   cpu/DORA      the server's CPU time (utime+stime from /proc) per ACK, at a rate both
#                 sustain (CPU_RATE, default 1000/s)
#   goodput@5x    ACKs per second received while offered 5x the server's own capacity,
#                 and that as a share of its capacity
#
# and the ratios rackboot/Kea. Runs alternate between the servers (A/B interleaved,
# within each rung of the ladder), so a load spike from something else on the machine
# hits both alike.
#
#   hack/bench-compare.sh [ROUNDS]     (default 3; make bench-compare runs this)
#
# Everything runs in two network namespaces made here (server: 10.99.0.1/16 on a veth,
# load: 10.99.0.2/16); nothing binds a port in the root namespace. perfdhcp sends as a
# relay (-l ADDRESS: giaddr set), with 10,000 simulated clients. The server is pinned to
# CPU 1 and perfdhcp to CPU 0 (taskset). Every process runs under `nice -n ${NICE:-19}`
# so a shared machine's other work is not slowed; on a busy machine the absolute numbers
# then say little, the interleaved ratios more.
#
# The servers are not configured alike in one respect, which favours Kea: rackboot sends
# an ACK only after its lease is fsync'd to its bbolt file (group commit); Kea's memfile
# appends leases to a CSV file without fsync.
#
# Needs root, kea-dhcp4-server and kea-admin (perfdhcp is in kea-admin), util-linux
# (taskset); make deps installs them. Bounded: each perfdhcp run lasts PERIOD seconds
# (default 4) and the whole script well under 15 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PERIOD=${PERIOD:-4}
CPU_RATE=${CPU_RATE:-1000}
NICE=${NICE:-19}
CLIENTS=${CLIENTS:-10000}
LADDER=${LADDER:-"500 1000 2000 3000 4000 6000 8000 10000 12000 15000 20000 25000"}
SRV_CPU=${SRV_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

for t in kea-dhcp4 perfdhcp taskset ip; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
	command -v "$t" >/dev/null || { echo "bench-compare: $t is missing: run make deps (kea-dhcp4-server, kea-admin)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-compare: needs root (network namespaces)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
S=rbbench-s-$$
C=rbbench-c-$$
srv_pid=""

cleanup() {
	stop_server
	ip netns del "$S" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-compare: building rackboot" >&2
CGO_ENABLED=0 nice -n "$NICE" go build -trimpath -o "$work/rackboot" ./cmd/rackboot

ip netns add "$S"
ip netns add "$C"
ip link add rbb0 netns "$S" type veth peer name rbb1 netns "$C"
ip -n "$S" addr add 10.99.0.1/16 dev rbb0
ip -n "$C" addr add 10.99.0.2/16 dev rbb1
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set rbb0 up
ip -n "$C" link set rbb1 up

cat >"$work/kea.json" <<EOF
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["rbb0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$work/kea/leases.csv", "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"subnet": "10.99.0.0/16", "pools": [{"pool": "10.99.1.0 - 10.99.255.254"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "$work/kea/kea.log"}]}]
}}
EOF
cat >"$work/rackboot.yaml" <<EOF
dhcp:
  discovery:
    rate: 1000000
    burst: 1000000
EOF

# start_server kea|rackboot: a fresh server (empty lease file / inventory) on CPU SRV_CPU.
start_server() {
	rm -rf "$work/kea" "$work/rb"
	mkdir -p "$work/kea" "$work/rb"
	case $1 in
	kea)
		KEA_PIDFILE_DIR=$work/kea KEA_LOCKFILE_DIR=$work/kea \
			ip netns exec "$S" nice -n "$NICE" taskset -c "$SRV_CPU" kea-dhcp4 -c "$work/kea.json" >"$work/kea/out.log" 2>&1 &
		;;
	rackboot)
		ip netns exec "$S" nice -n "$NICE" taskset -c "$SRV_CPU" "$work/rackboot" serve --config "$work/rackboot.yaml" \
			--data-dir "$work/rb" --interface rbb0 --address 10.99.0.1 --http-port 8080 --tftp-port 69 \
			--dhcp-mode server --dhcp-range 10.99.1.0-10.99.255.254 --unknown-hosts discover \
			--log-level warn >"$work/rb/out.log" 2>&1 &
		;;
	esac
	srv_pid=$!
	# Ready when a DORA gets through.
	for _ in $(seq 20); do
		sleep 0.3
		if ip netns exec "$C" perfdhcp -4 -l 10.99.0.2 -r 20 -p 1 -R 1 10.99.0.1 2>&1 |
			awk '/Statistics for: REQUEST-ACK/ {s = 1} s && /^received packets:/ {exit !($3 > 0)}'; then
			return 0
		fi
		kill -0 "$srv_pid" 2>/dev/null || { echo "bench-compare: $1 did not start:" >&2; tail -20 "$work"/*/out.log >&2; exit 1; }
	done
	echo "bench-compare: $1 never answered" >&2
	exit 1
}

stop_server() {
	if [ -n "$srv_pid" ]; then
		kill "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=""
	fi
}

# cpu_ticks: the server's utime+stime in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$srv_pid/stat"; }

# run RATE: one perfdhcp run; prints "sent_discovers acks".
run() {
	ip netns exec "$C" nice -n "$NICE" taskset -c "$LOAD_CPU" perfdhcp -4 -l 10.99.0.2 -r "$1" -R "$CLIENTS" -p "$PERIOD" 10.99.0.1 2>&1 |
		awk '/Statistics for: DISCOVER-OFFER/ {s = "do"} /Statistics for: REQUEST-ACK/ {s = "ra"}
			/^sent packets:/ && s == "do" {sent = $3}
			/^received packets:/ && s == "ra" {acks = $3}
			END {print sent + 0, acks + 0}'
}

lost_ok() { awk -v s="$1" -v a="$2" 'BEGIN {exit !(s > 0 && (s - a) / s <= 0.025)}'; }

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

tck=$(getconf CLK_TCK)
declare -A cap cpu good
servers=(kea rackboot)
for r in $(seq "$ROUNDS"); do
	# Alternate which server goes first from round to round.
	if [ $((r % 2)) = 0 ]; then order=(rackboot kea); else order=(kea rackboot); fi
	declare -A best=() failed=()
	for rate in $LADDER; do
		for s in "${order[@]}"; do
			[ -n "${failed[$s]:-}" ] && continue
			start_server "$s"
			read -r sent acks < <(run "$rate")
			stop_server
			if lost_ok "$sent" "$acks"; then best[$s]=$rate; else failed[$s]=1; fi
			echo "round $r: $s at $rate/s: $sent DISCOVERs, $acks ACKs" >&2
		done
		[ -n "${failed[kea]:-}" ] && [ -n "${failed[rackboot]:-}" ] && break
	done
	for s in "${order[@]}"; do
		cap[$s]="${cap[$s]:-} ${best[$s]:-0}"
		# CPU per DORA at a rate both sustain.
		start_server "$s"
		t0=$(cpu_ticks)
		read -r sent acks < <(run "$CPU_RATE")
		t1=$(cpu_ticks)
		stop_server
		c=$(awk -v d=$((t1 - t0)) -v a="$acks" -v h="$tck" 'BEGIN {if (a > 0) printf "%.4f", d / h * 1000 / a; else print 0}')
		cpu[$s]="${cpu[$s]:-} $c"
		echo "round $r: $s at $CPU_RATE/s: $acks ACKs, $c ms CPU per DORA" >&2
		# Goodput at 5x its own capacity.
		over=$((5 * ${best[$s]:-500}))
		start_server "$s"
		read -r sent acks < <(run "$over")
		stop_server
		g=$(awk -v a="$acks" -v p="$PERIOD" 'BEGIN {printf "%.0f", a / p}')
		good[$s]="${good[$s]:-} $g"
		echo "round $r: $s at 5x capacity ($over/s): $g ACKs/s" >&2
	done
	unset best failed
done

printf '\nDHCP (perfdhcp, %d clients as a relay, %ss runs, median of %d rounds; server on CPU %s, load on CPU %s, nice %s)\n' \
	"$CLIENTS" "$PERIOD" "$ROUNDS" "$SRV_CPU" "$LOAD_CPU" "$NICE"
printf '%-10s %14s %14s %16s %12s\n' server "capacity/s" "cpu ms/DORA" "goodput@5x /s" "of capacity"
declare -A mc mu mg
for s in "${servers[@]}"; do
	mc[$s]=$(echo "${cap[$s]}" | median)
	mu[$s]=$(echo "${cpu[$s]}" | median)
	mg[$s]=$(echo "${good[$s]}" | median)
	printf '%-10s %14s %14s %16s %11s%%\n' "$s" "${mc[$s]}" "${mu[$s]}" "${mg[$s]}" \
		"$(awk -v g="${mg[$s]}" -v c="${mc[$s]}" 'BEGIN {if (c > 0) printf "%.0f", 100 * g / c; else print "-"}')"
	echo "  $s per round: capacity${cap[$s]} | cpu${cpu[$s]} | goodput${good[$s]}"
done
awk -v rc="${mc[rackboot]}" -v kc="${mc[kea]}" -v ru="${mu[rackboot]}" -v ku="${mu[kea]}" 'BEGIN {
	printf "rackboot/kea: capacity %.2fx (target >= 1.5x), cpu per DORA %.2fx (target <= 1.0x)\n",
		(kc > 0 ? rc / kc : 0), (ku > 0 ? ru / ku : 0)
}'
echo "rackboot ACKs only fsync-durable leases (bbolt group commit); Kea memfile does not fsync."
