#!/usr/bin/env bash
# Load comparison: the lab's POP server (mptcp-anycast lab serve), its GET / served by
#   (a) sockets       Kestrel's default TCP transport, plain wrk
#   (b) mptcp-listen  Kestrel with a bare MPTCP listen socket (nothing announced): the kernel's MPTCP floor
#   (b+) mptcp-listen-signal  the same with a kernel 'signal' endpoint: the kernel announces on every connection,
#                 no MptcpAnycast code at all: the kernel's own cost of one ADD_ADDR per connection
#   (b') anycast-none MptcpAnycast's own listener with Mode=None: the transport without announcing
#   (c) userspace     MptcpAnycast, Userspace mode: one announcement per connection (client does not join)
#   (c-) userspace-on-demand  the same transport and mode with AnnounceOn=Demand: no ANNOUNCE (nobody asks), so the
#                 difference to (c) is the announcement's own cost
#   (c+) userspace-join  the same, with a client that joins every connection's unicast address
#   (d) kernel        MptcpAnycast, Kernel mode (signal endpoint; client does not join)
#   (d+) kernel-join  the same, with a client that joins
# Each server runs in its own namespace, its client (wrk) in another, joined by a veth link.
# (b)-(d) are driven by 'mptcpize run wrk'. Keep-alive and churn ("Connection: close"), alternating the
# variants round by round; prints medians and ratios against (b).
#
# Usage (root): benchmarks/load-comparison.sh [--rounds N] [--duration SECONDS] [--connections C] [--threads T]
#               [--variants sockets,mptcp-listen,mptcp-listen-signal,anycast-none,userspace,userspace-on-demand,userspace-join,kernel,kernel-join]
# Needs: wrk, mptcpize (apt-get install wrk mptcpize), the .NET SDK. Bounded: rounds x variants x 2 x duration.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=5 DURATION=4 CONNS=32 THREADS=1 ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --connections) CONNS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --variants) ONLY="$2"; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--duration SECONDS] [--connections C] [--threads T] [--variants a,b,...]" >&2; exit 2 ;;
    esac
done
for n in "$ROUNDS" "$DURATION" "$CONNS" "$THREADS"; do
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 1000 ]] || { echo "$0: numbers must be 1..1000 (got '$n')" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces)" >&2; exit 1; }
command -v wrk >/dev/null && command -v mptcpize >/dev/null || { echo "$0: apt-get install wrk mptcpize" >&2; exit 1; }

ANYCAST=203.0.113.1 UNICAST=192.0.2.2
PREFIX="mpab$$"
PIDS=()
PAIRS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for pair in "${PAIRS[@]}"; do ip netns del "${PREFIX}${pair}s" 2>/dev/null || true; ip netns del "${PREFIX}${pair}c" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

dotnet build -c Release -v q -nologo src/MptcpAnycast.Cli >/dev/null
TOOL=src/MptcpAnycast.Cli/bin/Release/net10.0/mptcp-anycast.dll

# One client namespace and one server namespace per variant, joined by a veth link (as a client and a POP are):
# server 192.0.2.2 (its unicast) on the link and the anycast address on lo; the client routes the anycast address to it.
make_pair() { # name path_manager client_add_addr_accepted
    local s="$PREFIX${1}s" c="$PREFIX${1}c"
    PAIRS+=("$1")
    ip netns add "$s"; ip netns add "$c"
    ip link add "c$1" netns "$c" type veth peer name "s$1" netns "$s"
    ip -n "$s" link set lo up; ip -n "$c" link set lo up
    ip -n "$s" addr add "$UNICAST/24" dev "s$1"; ip -n "$s" link set "s$1" up
    ip -n "$s" addr add "$ANYCAST/32" dev lo
    ip -n "$c" addr add 192.0.2.1/24 dev "c$1"; ip -n "$c" link set "c$1" up
    ip -n "$c" route add "$ANYCAST/32" via "$UNICAST"
    ip netns exec "$s" sysctl -qw net.mptcp.path_manager="$2" net.mptcp.allow_join_initial_addr_port=0
    ip -n "$s" mptcp limits set subflows 2 add_addr_accepted 0
    ip -n "$c" mptcp limits set subflows 2 add_addr_accepted "$3"
    if [ "$2" = kernel ]; then ip -n "$s" mptcp endpoint add "$UNICAST" dev "s$1" signal; fi
}

declare -A NS CNS PORT ARGS WRAP
add_variant() { # name path_manager client_add_addr_accepted wrap args...
    local name="$1" idx="${#PAIRS[@]}"
    make_pair "$idx" "$2" "$3"
    NS[$name]="$PREFIX${idx}s"; CNS[$name]="$PREFIX${idx}c"; PORT[$name]=8080; WRAP[$name]="$4"; shift 4; ARGS[$name]="$*"
}
COMMON="--MptcpAnycast:AnycastAddresses:0=$ANYCAST --MptcpAnycast:UnicastAddresses:0=$UNICAST --Logging:LogLevel:Default=Warning"
add_variant sockets        userspace 0 ""              --Transport sockets
add_variant mptcp-listen   userspace 0 "mptcpize run"  --Transport mptcp-listen
add_variant mptcp-listen-signal kernel 0 "mptcpize run" --Transport mptcp-listen
add_variant anycast-none   userspace 0 "mptcpize run"  --Transport anycast --MptcpAnycast:Mode=None $COMMON
add_variant userspace      userspace 0 "mptcpize run"  --Transport anycast --MptcpAnycast:Mode=Userspace $COMMON
add_variant userspace-on-demand userspace 0 "mptcpize run" --Transport anycast --MptcpAnycast:Mode=Userspace --MptcpAnycast:AnnounceOn=Demand $COMMON
add_variant userspace-delayed userspace 0 "mptcpize run" --Transport anycast --MptcpAnycast:Mode=Userspace --MptcpAnycast:AnnounceDelay=00:00:00.100 $COMMON
add_variant userspace-join userspace 1 "mptcpize run"  --Transport anycast --MptcpAnycast:Mode=Userspace $COMMON
add_variant kernel         kernel    0 "mptcpize run"  --Transport anycast --MptcpAnycast:Mode=Kernel $COMMON
add_variant kernel-join    kernel    1 "mptcpize run"  --Transport anycast --MptcpAnycast:Mode=Kernel $COMMON
VARIANTS=(sockets mptcp-listen mptcp-listen-signal anycast-none userspace userspace-on-demand userspace-delayed userspace-join kernel kernel-join)
if [ -n "$ONLY" ]; then
    IFS=, read -r -a VARIANTS <<<"$ONLY"
    for v in "${VARIANTS[@]}"; do [ -n "${NS[$v]:-}" ] || { echo "$0: unknown variant '$v'" >&2; exit 2; }; done
    [[ " ${VARIANTS[*]} " == *" mptcp-listen "* ]] || VARIANTS=(mptcp-listen "${VARIANTS[@]}") # the ratio's base
fi

for v in "${VARIANTS[@]}"; do
    # Server GC, as an ASP.NET Core app has by default (the tool is a console app).
    # shellcheck disable=SC2086
    DOTNET_gcServer=1 ip netns exec "${NS[$v]}" dotnet "$TOOL" lab serve --urls "http://[::]:${PORT[$v]}" ${ARGS[$v]} >"/tmp/$PREFIX-$v.log" 2>&1 &
    PIDS+=($!)
done
for v in "${VARIANTS[@]}"; do
    for _ in $(seq 1 100); do
        ip netns exec "${CNS[$v]}" curl -sf "http://$ANYCAST:${PORT[$v]}/" >/dev/null 2>&1 && break
        sleep 0.2
    done
    ip netns exec "${CNS[$v]}" curl -sf "http://$ANYCAST:${PORT[$v]}/" >/dev/null || { echo "server $v did not start:"; cat "/tmp/$PREFIX-$v.log"; exit 1; }
done

run_wrk() { # variant mode -> requests/sec
    local v="$1" mode="$2" header=()
    [ "$mode" = churn ] && header=(-H "Connection: close")
    # shellcheck disable=SC2086
    timeout $((DURATION + 20)) ip netns exec "${CNS[$v]}" ${WRAP[$v]} wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "${header[@]}" \
        "http://$ANYCAST:${PORT[$v]}/" 2>&1 | awk '/Requests\/sec/ { print $2 }'
}

echo "warming up ..." >&2
for v in "${VARIANTS[@]}"; do run_wrk "$v" keepalive >/dev/null; run_wrk "$v" churn >/dev/null; done

# The server's kernel counters, absolute: MPTCP connections, ADD_ADDR sent, joins accepted, TCP segments out and in.
counters() {
    ip netns exec "${NS[$1]}" nstat -az 2>/dev/null | awk '
        $1 == "MPTcpExtMPCapableSYNRX" { c = $2 } $1 == "MPTcpExtAddAddrTx" { a = $2 } $1 == "MPTcpExtMPJoinAckRx" { j = $2 }
        $1 == "TcpOutSegs" { o = $2 } $1 == "TcpInSegs" { i = $2 }
        END { print c + 0, a + 0, j + 0, o + 0, i + 0 }'
}
add_counters() { # "a b c d e" "f g h i j" -> the element-wise sum
    awk -v x="$1" -v y="$2" 'BEGIN { n = split(x, a, " "); split(y, b, " "); for (k = 1; k <= n; k++) printf "%s%d", (k > 1 ? " " : ""), a[k] + b[k]; print "" }'
}
sub_counters() { # after before -> after - before
    awk -v x="$1" -v y="$2" 'BEGIN { n = split(x, a, " "); split(y, b, " "); for (k = 1; k <= n; k++) printf "%s%d", (k > 1 ? " " : ""), a[k] - b[k]; print "" }'
}

declare -A RESULTS CHURN_COUNTERS
for r in $(seq 1 "$ROUNDS"); do
    # alternate the order each round so that no variant always runs first
    if [ $((r % 2)) -eq 0 ]; then order=("${VARIANTS[@]}"); else order=(); for ((i=${#VARIANTS[@]}-1; i>=0; i--)); do order+=("${VARIANTS[$i]}"); done; fi
    for v in "${order[@]}"; do
        for mode in keepalive churn; do
            [ "$mode" = churn ] && before=$(counters "$v")
            rps=$(run_wrk "$v" "$mode")
            [ "$mode" = churn ] && CHURN_COUNTERS[$v]=$(add_counters "${CHURN_COUNTERS[$v]:-0 0 0 0 0}" "$(sub_counters "$(counters "$v")" "$before")")
            RESULTS[$v,$mode]="${RESULTS[$v,$mode]:-} ${rps:-0}"
            echo "round $r $v $mode ${rps:-0}" >&2
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
printf "\nwrk -t%s -c%s -d%ss, %s rounds, medians (requests/s); ratio = variant / mptcp-listen\n" "$THREADS" "$CONNS" "$DURATION" "$ROUNDS"
printf "%-20s %12s %8s %12s %8s\n" variant keep-alive ratio churn ratio
bk=$(echo "${RESULTS[mptcp-listen,keepalive]}" | median); bc=$(echo "${RESULTS[mptcp-listen,churn]}" | median)
for v in "${VARIANTS[@]}"; do
    k=$(echo "${RESULTS[$v,keepalive]}" | median); c=$(echo "${RESULTS[$v,churn]}" | median)
    printf "%-20s %12.0f %8.3f %12.0f %8.3f\n" "$v" "$k" "$(echo "$k $bk" | awk '{ print $1 / $2 }')" "$c" "$(echo "$c $bc" | awk '{ print $1 / $2 }')"
done

# The same ratios taken round by round (each variant against the base measured in the same round, minutes apart at
# most), then the median and the range: slow drifts of the machine cancel out, which the ratio of medians above keeps.
per_round() { # base-list variant-list -> "median (min-max)"
    awk -v b="$1" -v x="$2" 'BEGIN { nb = split(b, B, " "); nx = split(x, X, " "); n = 0
        for (i = 1; i <= nb && i <= nx; i++) if (B[i] > 0) R[++n] = X[i] / B[i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (R[j] < R[i]) { t = R[i]; R[i] = R[j]; R[j] = t }
        m = (n % 2) ? R[(n + 1) / 2] : (R[n / 2] + R[n / 2 + 1]) / 2
        printf "%.3f (%.2f-%.2f)", m, R[1], R[n] }'
}
printf "\nper-round ratios to mptcp-listen: median (min-max) over %s rounds\n" "$ROUNDS"
printf "%-20s %22s %22s\n" variant keep-alive churn
for v in "${VARIANTS[@]}"; do
    printf "%-20s %22s %22s\n" "$v" "$(per_round "${RESULTS[mptcp-listen,keepalive]}" "${RESULTS[$v,keepalive]}")" \
        "$(per_round "${RESULTS[mptcp-listen,churn]}" "${RESULTS[$v,churn]}")"
done

# What the kernel did on each server during the measured churn runs, from its MIB counters: ADD_ADDR options sent,
# joins accepted and TCP segments sent and received per MPTCP connection, so that a variant's cost can be read
# against the work it really caused.
printf "\nserver kernel counters over the measured churn runs, per MPTCP connection\n"
printf "%-20s %12s %12s %12s %12s %12s\n" variant mptcp-conns add_addr joins segs-out segs-in
for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    set -- ${CHURN_COUNTERS[$v]:-0 0 0 0 0}
    awk -v v="$v" -v c="$1" -v a="$2" -v j="$3" -v o="$4" -v i="$5" \
        'BEGIN { printf "%-20s %12d %12.3f %12.3f %12.2f %12.2f\n", v, c, (c ? a / c : 0), (c ? j / c : 0), (c ? o / c : 0), (c ? i / c : 0) }'
done
