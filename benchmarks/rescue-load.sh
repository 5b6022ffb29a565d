#!/usr/bin/env bash
# Accept and churn with the rescue program on the server's uplink versus without it: the lab's POP server
# (mptcp-anycast lab serve, the MptcpAnycast transport in Userspace mode) in a namespace, wrk in another, joined by a
# veth link as in load-comparison.sh. One server throughout; in each round the program is attached to the server's
# link (benchmarks' rescue-attach: the agent's configuration, no peers; one process for the run, told when to attach
# and detach) for one side and absent for the other, the order alternating round by round. wrk keep-alive and "Connection: close" (churn) on each side; prints the per-round
# ratios on/off (median, min-max) and the program's counters of every "on" side, with the first misses (segments no
# local socket matched, which the program drops: without an agent nobody answers them).
#
# Usage (root): benchmarks/rescue-load.sh [--rounds N] [--duration SECONDS] [--connections C] [--mptcp] [--disabled]
#                                         [--slices N [--slice-ms M] [--toggle] [--clsact] [--owners N]] [--mss N]
#   --mptcp: the client is 'mptcpize run wrk' (default plain TCP, the clients rescue is for).
#   --disabled: the "on" side attaches the program configured off (it passes every packet at once): the hooks' cost.
#   --slices N: instead of rounds, one long wrk run per mode while rescue-attach attaches and detaches the program
#     every M ms (default 1000), N pairs of slices, and rates each slice by the server namespace's TCP counters
#     (passive opens for churn, segments in for keep-alive): adjacent slices share the machine's slow swings.
#   --toggle (with --slices): the program stays attached and each slice turns it on or off through its
#     configuration, so both sides carry the tc hooks: the ratio is the program's work alone.
#   --clsact (with --slices): the programs are attached as cls_bpf filters of a clsact qdisc (how the agent attaches
#     them on kernels before 6.6), not through tcx.
#   --owners N (with --slices): the owner map holds N entries of made-up clients, as on a POP rescuing N flows, so
#     the server's own segments read the owner hint (without, the program skips it: nothing is rescued).
#   --mss N: the program's MSS budget for SYN-ACKs instead of the MTU's (0: it leaves them alone).
# rescue-attach fails when the kernel still reports the program on the link after a detach (tc does not show tcx).
# Needs: wrk (and mptcpize for --mptcp), the .NET SDK. Bounded: rounds x 2 sides x 2 modes x (duration + 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=7 DURATION=4 CONNS=32 WRAP="" DISABLED="" TOGGLE="" ATTACH_MODE="" SLICES=0 SLICE_MS=1000 MSS=() OWNERS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --connections) CONNS="$2"; shift 2 ;;
        --mptcp) WRAP="mptcpize run"; shift ;;
        --disabled) DISABLED="--disabled"; shift ;;
        --slices) SLICES="$2"; shift 2 ;;
        --toggle) TOGGLE="--toggle"; shift ;;
        --clsact) ATTACH_MODE="--clsact"; shift ;;
        --slice-ms) SLICE_MS="$2"; shift 2 ;;
        --mss) MSS=(--mss "$2"); shift 2 ;;
        --owners) OWNERS=(--owners "$2"); shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--duration SECONDS] [--connections C] [--mptcp] [--disabled] [--slices N [--slice-ms M] [--toggle] [--clsact] [--owners N]] [--mss N]" >&2; exit 2 ;;
    esac
done
for n in "$ROUNDS" "$DURATION" "$CONNS"; do
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 1000 ]] || { echo "$0: numbers must be 1..1000 (got '$n')" >&2; exit 2; }
done
[[ "$SLICES" =~ ^[0-9]+$ && "$SLICES" -le 1000 ]] || { echo "$0: --slices must be 1..1000 (got '$SLICES')" >&2; exit 2; }
[ -z "$TOGGLE$ATTACH_MODE${OWNERS[*]}" ] || [ "$SLICES" -gt 0 ] || { echo "$0: --toggle, --clsact and --owners need --slices" >&2; exit 2; }
[[ "$SLICE_MS" =~ ^[0-9]+$ && "$SLICE_MS" -ge 100 && "$SLICE_MS" -le 10000 ]] || { echo "$0: --slice-ms must be 100..10000 (got '$SLICE_MS')" >&2; exit 2; }
# Slices: both modes, each N pairs of two slices plus a few seconds; bounded like the rounds.
SLICE_SECONDS=$(( (SLICES * 2 * SLICE_MS + 999) / 1000 + 5 ))
[ "$SLICES" -eq 0 ] || [ $((2 * SLICE_SECONDS)) -le 3600 ] || { echo "$0: --slices $SLICES of $SLICE_MS ms may take more than an hour; use fewer" >&2; exit 2; }
# rescue-attach stops by itself after at most an hour: a run must fit in that.
ATTACH_SECONDS=$((ROUNDS * 4 * (DURATION + 25) + 300))
[ "$ATTACH_SECONDS" -le 3600 ] || { echo "$0: --rounds $ROUNDS with --duration $DURATION may take more than an hour (the bound is rounds x 4 x (duration + 25 s) + 300 s); use fewer rounds" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces, BPF)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "$0: apt-get install wrk" >&2; exit 1; }

ANYCAST=203.0.113.1 UNICAST=192.0.2.2
PREFIX="mprl$$" S="mprl$$s" C="mprl$$c"
SERVER="" AGENT=""
cleanup() {
    [ -n "$AGENT" ] && { echo quit >&3; sleep 1; kill "$AGENT" 2>/dev/null; } || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    rm -f "/tmp/$PREFIX-commands"
}
trap cleanup EXIT INT TERM

# Release: the benchmarks project builds the tool beside itself.
dotnet build -c Release -v q -nologo benchmarks/MptcpAnycast.Benchmarks >/dev/null
BIN=benchmarks/MptcpAnycast.Benchmarks/bin/Release/net10.0
TOOL=$BIN/mptcp-anycast.dll BENCH=$BIN/MptcpAnycast.Benchmarks.dll

ip netns add "$S"; ip netns add "$C"
ip link add cl netns "$C" type veth peer name uplink netns "$S"
ip -n "$S" link set lo up; ip -n "$C" link set lo up
ip -n "$S" addr add "$UNICAST/24" dev uplink; ip -n "$S" link set uplink up
ip -n "$S" addr add "$ANYCAST/32" dev lo
ip -n "$C" addr add 192.0.2.1/24 dev cl; ip -n "$C" link set cl up
ip -n "$C" route add "$ANYCAST/32" via "$UNICAST"
ip netns exec "$S" sysctl -qw net.mptcp.path_manager=userspace net.mptcp.allow_join_initial_addr_port=0
ip -n "$S" mptcp limits set subflows 2 add_addr_accepted 0

# Server GC, as an ASP.NET Core app has by default (the tool is a console app).
DOTNET_gcServer=1 ip netns exec "$S" dotnet "$TOOL" lab serve --urls "http://[::]:8080" --Transport anycast --MptcpAnycast:Mode=Userspace \
    --MptcpAnycast:AnycastAddresses:0=$ANYCAST --MptcpAnycast:UnicastAddresses:0=$UNICAST --Logging:LogLevel:Default=Warning \
    >"/tmp/$PREFIX-server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
    ip netns exec "$C" curl -sf "http://$ANYCAST:8080/" >/dev/null 2>&1 && break
    sleep 0.2
done
ip netns exec "$C" curl -sf "http://$ANYCAST:8080/" >/dev/null || { echo "the server did not start:"; cat "/tmp/$PREFIX-server.log"; exit 1; }

run_wrk() { # mode [seconds] -> requests/sec
    local header=()
    [ "$1" = churn ] && header=(-H "Connection: close")
    # shellcheck disable=SC2086
    timeout $((${2:-$DURATION} + 20)) ip netns exec "$C" $WRAP wrk -t1 -c"$CONNS" -d"${2:-$DURATION}s" "${header[@]}" \
        "http://$ANYCAST:8080/" 2>&1 | awk '/Requests\/sec/ { print $2 }'
}

if [ "$SLICES" -gt 0 ]; then
    echo "warming up ..." >&2
    run_wrk keepalive >/dev/null; run_wrk churn >/dev/null
    for mode in keepalive churn; do
        # wrk starts first and outlasts the slices; rescue-attach begins after a second of load.
        run_wrk "$mode" $((SLICE_SECONDS + 5)) >/dev/null &
        WRK=$!
        sleep 1
        ip netns exec "$S" dotnet "$BENCH" rescue-attach --slices "$SLICES" --slice-ms "$SLICE_MS" $DISABLED $TOGGLE $ATTACH_MODE "${MSS[@]}" "${OWNERS[@]}" --interface uplink \
            --anycast "$ANYCAST" --unicast4 "$UNICAST" --max-seconds "$SLICE_SECONDS" >"/tmp/$PREFIX-slices-$mode.log" 2>&1 \
            || { echo "rescue-attach failed:"; cat "/tmp/$PREFIX-slices-$mode.log"; exit 1; }
        wait "$WRK" || true
        grep '^counters' "/tmp/$PREFIX-slices-$mode.log" >&2
        echo "$mode (wrk -t1 -c$CONNS${WRAP:+ under $WRAP}):"
        # Churn is rated by passive opens, keep-alive by segments in: the other line is printed for completeness.
        sed -n '/pairs of/,$p' "/tmp/$PREFIX-slices-$mode.log"
    done
    exit 0
fi

# One rescue-attach process for the whole run, driven through a FIFO: "attach" loads and attaches the program,
# "detach" prints its counters and removes it. The "on" sides then do not follow a .NET start-up the "off" sides lack.
FIFO="/tmp/$PREFIX-commands"
mkfifo "$FIFO"
exec 3<>"$FIFO"
ip netns exec "$S" dotnet "$BENCH" rescue-attach --commands $DISABLED "${MSS[@]}" --interface uplink --anycast "$ANYCAST" --unicast4 "$UNICAST" \
    --max-seconds "$ATTACH_SECONDS" <&3 >"/tmp/$PREFIX-attach.log" 2>&1 &
AGENT=$!
wait_line() { # count pattern: waits (bounded) until the log has that many lines matching pattern
    for _ in $(seq 1 150); do [ "$(grep -c "$2" "/tmp/$PREFIX-attach.log")" -ge "$1" ] && return 0; sleep 0.2; done
    echo "rescue-attach did not answer:"; cat "/tmp/$PREFIX-attach.log"; exit 1
}
ATTACHES=0
attach() {
    ATTACHES=$((ATTACHES + 1))
    echo attach >&3
    wait_line "$ATTACHES" '^attached'
}
detach() { # sets COUNTERS
    echo detach >&3
    wait_line "$ATTACHES" '^detached'
    COUNTERS=$(grep '^counters' "/tmp/$PREFIX-attach.log" | tail -n 1)
}

echo "warming up ..." >&2
run_wrk keepalive >/dev/null; run_wrk churn >/dev/null
attach; run_wrk keepalive >/dev/null; run_wrk churn >/dev/null; detach

declare -A RESULTS
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order=(off on); else order=(on off); fi
    for side in "${order[@]}"; do
        [ "$side" = on ] && attach
        for mode in keepalive churn; do
            rps=$(run_wrk "$mode")
            RESULTS[$side,$mode]="${RESULTS[$side,$mode]:-} ${rps:-0}"
            echo "round $r rescue-$side $mode ${rps:-0}" >&2
        done
        if [ "$side" = on ]; then
            detach
            counters=$COUNTERS
            echo "round $r $counters" >&2
            grep '^miss' "/tmp/$PREFIX-attach.log" | tail -n 5 >&2 || true
            if [[ "$counters" == *"error="* ]]; then
                echo "$0: a helper of the program failed: $counters" >&2; exit 1
            fi
        fi
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
per_round() { # base-list variant-list -> "median (min-max)"
    awk -v b="$1" -v x="$2" 'BEGIN { nb = split(b, B, " "); nx = split(x, X, " "); n = 0
        for (i = 1; i <= nb && i <= nx; i++) if (B[i] > 0) R[++n] = X[i] / B[i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (R[j] < R[i]) { t = R[i]; R[i] = R[j]; R[j] = t }
        m = (n % 2) ? R[(n + 1) / 2] : (R[n / 2] + R[n / 2 + 1]) / 2
        printf "%.3f (%.3f-%.3f)", m, R[1], R[n] }'
}
printf "\nwrk -t1 -c%s -d%ss%s, %s rounds; medians (requests/s) and per-round ratios rescue on%s / off, median (min-max)\n" \
    "$CONNS" "$DURATION" "${WRAP:+ under $WRAP}" "$ROUNDS" "${DISABLED:+ (attached, configured off)}"
for mode in keepalive churn; do
    printf "%-10s off %10.0f   on %10.0f   ratio %s\n" "$mode" "$(echo "${RESULTS[off,$mode]}" | median)" "$(echo "${RESULTS[on,$mode]}" | median)" \
        "$(per_round "${RESULTS[off,$mode]}" "${RESULTS[on,$mode]}")"
done
