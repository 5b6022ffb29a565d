#!/usr/bin/env bash
# Soak: 100,000 MPTCP connections opened and closed at full speed, then steady churn for a bounded time, against
# the lab's POP server (mptcp-anycast lab serve) on the MptcpAnycast transport (Userspace mode; every connection
# announced and joined by the client). Checks that the server's file descriptors and memory come back to their
# baseline, that the connections the transport tracks (mptcp_anycast.connections.tracked, read from the server's
# GET /mptcp/stats) return to their baseline, and that it still announces.
#
# Usage (root): benchmarks/soak.sh [--burst-seconds S] [--minutes M]     (defaults 30 s and 10 min; bounded by both)
# Needs: wrk, mptcpize, curl (apt-get install wrk mptcpize curl), the .NET SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
BURST=30 MINUTES=10
while [ $# -gt 0 ]; do
    case "$1" in
        --burst-seconds) BURST="$2"; shift 2 ;;
        --minutes) MINUTES="$2"; shift 2 ;;
        *) echo "usage: $0 [--burst-seconds S] [--minutes M]" >&2; exit 2 ;;
    esac
done
for n in "$BURST" "$MINUTES"; do [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 120 ]] || { echo "$0: numbers must be 1..120 (got '$n')" >&2; exit 2; }; done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces)" >&2; exit 1; }

S="mpsoak$$s" C="mpsoak$$c" ANYCAST=203.0.113.1 UNICAST=192.0.2.2
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; ip netns del "$S" 2>/dev/null || true; ip netns del "$C" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

dotnet build -c Release -v q -nologo src/MptcpAnycast.Cli >/dev/null
ip netns add "$S"; ip netns add "$C"
ip link add sk0 netns "$C" type veth peer name sk1 netns "$S"
ip -n "$S" link set lo up; ip -n "$C" link set lo up
ip -n "$S" addr add "$UNICAST/24" dev sk1; ip -n "$S" link set sk1 up; ip -n "$S" addr add "$ANYCAST/32" dev lo
ip -n "$C" addr add 192.0.2.1/24 dev sk0; ip -n "$C" link set sk0 up; ip -n "$C" route add "$ANYCAST/32" via "$UNICAST"
ip netns exec "$S" sysctl -qw net.mptcp.path_manager=userspace net.mptcp.allow_join_initial_addr_port=0
ip -n "$C" mptcp limits set subflows 2 add_addr_accepted 1

# Server GC, as an ASP.NET Core app has by default (the tool is a console app).
DOTNET_gcServer=1 ip netns exec "$S" dotnet src/MptcpAnycast.Cli/bin/Release/net10.0/mptcp-anycast.dll lab serve --urls "http://[::]:8080" \
    --MptcpAnycast:Mode=Userspace --MptcpAnycast:AnycastAddresses:0=$ANYCAST --MptcpAnycast:UnicastAddresses:0=$UNICAST \
    --Logging:LogLevel:Default=Warning >/tmp/$S.log 2>&1 &
PID=$!
for _ in $(seq 1 100); do ip netns exec "$C" curl -sf "http://$ANYCAST:8080/" >/dev/null 2>&1 && break; sleep 0.2; done

state() { ip netns exec "$C" mptcpize run curl -s "http://$ANYCAST:8080/bytes/1" -o /dev/null --next "http://$ANYCAST:8080/mptcp" | grep -o '"state":"[A-Za-z]*"'; }
fds() { ls "/proc/$PID/fd" | wc -l; }
rss() { awk '/VmRSS/ { print $2 }' "/proc/$PID/status"; }
requests() { awk '/requests in/ { print $1 }'; }
# The transport's meter, over plain TCP (a plain connection is not tracked, so asking does not count itself).
stats() { ip netns exec "$C" curl -sf "http://$ANYCAST:8080/mptcp/stats"; }
metric() { grep -o "\"$2\":[0-9]*" <<<"$1" | cut -d: -f2 | grep . || echo 0; }
tracked() { local s; s=$(stats) || { echo "unreadable"; return; }; metric "$s" 'mptcp_anycast\.connections\.tracked'; }

state >/dev/null; sleep 1
FD0=$(fds) RSS0=$(rss) TR0=$(tracked)
echo "baseline: fds $FD0, RSS $RSS0 kB, tracked connections $TR0, $(state)"

N1=$(ip netns exec "$C" mptcpize run wrk -t1 -c32 -d"${BURST}s" -H "Connection: close" "http://$ANYCAST:8080/" | requests)
sleep 5
FD1=$(fds) RSS1=$(rss)
echo "burst: $N1 connections in ${BURST} s; fds $FD1, RSS $RSS1 kB, tracked connections $(tracked), $(state)"

N2=$(ip netns exec "$C" mptcpize run wrk -t1 -c2 -d"${MINUTES}m" -H "Connection: close" "http://$ANYCAST:8080/" | requests)
sleep 5
FD2=$(fds) RSS2=$(rss) ST2=$(state)
# Closed connections leave the transport's table when Kestrel or the kernel's CLOSED event says so: allow 10 s.
TR2=$(tracked)
for _ in $(seq 1 20); do [ "$TR2" = "$TR0" ] && break; sleep 0.5; TR2=$(tracked); done
echo "steady churn: $N2 connections in $MINUTES min; fds $FD2, RSS $RSS2 kB, tracked connections $TR2, $ST2"
S2=$(stats || true)
echo "meter: announcements sent $(metric "$S2" 'mptcp_anycast\.announcements{mptcp\.announcement\.result=sent}'), failed $(metric "$S2" 'mptcp_anycast\.announcements{mptcp\.announcement\.result=failed}'); joins $(metric "$S2" 'mptcp_anycast\.joins'); events lost $(metric "$S2" 'mptcp_anycast\.path_manager\.events_lost')"
echo "server errors logged: $(grep -c "fail:" "/tmp/$S.log" || true)"

ok=1
[ "$FD2" -le $((FD0 + 16)) ] || { echo "FAIL: file descriptors grew from $FD0 to $FD2"; ok=0; }
[ "$ST2" = '"state":"Joined"' ] || { echo "FAIL: not announcing/joining after the soak ($ST2)"; ok=0; }
[[ "$TR0" =~ ^[0-9]+$ && "$TR2" =~ ^[0-9]+$ ]] || { echo "FAIL: cannot read mptcp_anycast.connections.tracked from /mptcp/stats ($TR0, $TR2)"; ok=0; }
[ "$ok" = 1 ] && [ "$TR2" -gt "$TR0" ] && { echo "FAIL: tracked connections did not return to the baseline: $TR0 -> $TR2"; ok=0; }
[ "$ok" = 1 ] && echo "soak held: $((N1 + N2)) connections, fds $FD0 -> $FD2, RSS $RSS0 -> $RSS2 kB, tracked connections $TR0 -> $TR2"
[ "$ok" = 1 ]
