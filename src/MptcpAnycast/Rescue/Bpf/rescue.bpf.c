// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
// The rescue dataplane: tc programs on a POP's uplink.
//
// rescue_ingress decides, per segment to an anycast address, whether this POP's kernel owns the connection.
// A segment is local when it opens a connection (SYN without ACK), when a socket that is not a listener
// matches it (established, request or time-wait: the kernel would accept it), or when it completes a
// SYN-cookie handshake with a local listener. Otherwise the owner map says which POP owns the flow and the
// segment goes there in an IPIP or IP6IP6 packet; without an entry it is a miss: userspace hears of it through
// the ring buffer (with a copy of the segment, so it can send it on once the owner is known) and the segment
// is dropped here, because handing it to the local stack would make the local stack reset the connection.
// Packets that arrive encapsulated from a configured peer are decapsulated and delivered locally, and are
// never steered again: two POPs that both believe the other owns a flow cannot bounce a packet.
//
// rescue_egress lowers the MSS of SYN-ACKs sent from an anycast address so that a full-size segment of the
// client still fits the tunnel after the outer header is added.
//
// Userspace (RescueDataplane.cs) fills rescue_config, the address maps and the owner map; the counters are
// per CPU and summed there.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Debian 12's UAPI headers predate these (kernel 6.3).
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

// From <linux/icmp.h> and <linux/icmpv6.h>, which pull in libc headers a BPF target cannot include.
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3

// The first 8 bytes of an ICMP or ICMPv6 error message, before the quoted packet.
struct icmp_error {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest;
};

// A packet the programs leave alone gets no verdict (TC_ACT_UNSPEC, tcx's TCX_NEXT): the tcx programs after this
// one and the interface's own tc filters still see it, where TC_ACT_OK would end the chain and skip them.
#define PASS TC_ACT_UNSPEC

#define MAX_HELD_BYTES 1600
#define OUTER_TTL 64
// Up to this many anycast addresses per family are compared in place, out of the configuration; a hash lookup
// costs more than the whole decision for a segment that is not to an anycast address.
#define INLINE_ANYCAST 8

enum rescue_counter {
	RC_NOT_ANYCAST = 0,	// not TCP/ICMP to an anycast address: untouched
	RC_LOCAL_SYN,		// SYN without ACK: a new connection, always local
	RC_LOCAL_SOCKET,	// a non-listener socket matched
	RC_LOCAL_SYNCOOKIE,	// the ACK completes a SYN-cookie handshake with a local listener
	RC_TUNNELLED,		// decided to tunnel to the owner (those then dropped are also tunnel_unrouted or error)
	RC_DECAPSULATED,	// arrived from a peer, delivered locally
	RC_MISS,		// owner unknown: reported and dropped
	RC_MISS_UNREPORTED,	// owner unknown, report suppressed by the rate bound or a full ring
	RC_MISS_RST,		// a RST for an unknown flow: dropped, never looked up
	RC_FOREIGN_TUNNEL,	// an IPIP/IP6IP6 packet not from a configured peer, or not to us: dropped
	RC_ICMP_FORWARDED,	// an ICMP error about a tunnelled flow, sent on to the owner
	RC_MSS_CLAMPED,		// SYN-ACKs whose MSS option was lowered
	RC_ERROR,		// a helper failed (adjust_room, store_bytes): dropped
	RC_MALFORMED,		// a truncated header in a packet to an anycast address: dropped
	RC_OWNER_FORGOTTEN,	// a SYN reused the tuple of a flow with an owner: the entry is deleted, the SYN is local
	RC_TUNNEL_BY_UPLINK,	// tunnelled, but the route lookup gave no route to follow: sent out of the uplink
	RC_TUNNEL_UNROUTED,	// tunnelled, but the route to the owner is a blackhole, unreachable or prohibit: dropped
	RC_COUNT,
};

struct rescue_config {
	__u32 enabled;		// 0: every packet passes (the agent is stopping or configuring)
	// 0 while no bit of rescue_owner_hint is set (no owner entry: nothing rescued, or every rescued flow gone idle):
	// then no segment reads the hint, whose words, read at random, are a cache miss on a busy host. Userspace sets
	// it before the first bit and clears it after the last.
	__u32 owner_hint_active;
	__u32 now_seconds;	// CLOCK_MONOTONIC seconds, advanced by userspace: what a tunnelled segment stamps on its owner
	__u32 local_ipv4;	// this POP's unicast IPv4, network order: the tunnel's source and decap destination
	__u8 local_ipv6[16];
	__u16 mss_ipv4;		// the MSS budget advertised in SYN-ACKs (0: leave the MSS alone)
	__u16 mss_ipv6;
	__u32 miss_reports_per_window;	// bound on ring-buffer reports per CPU per window
	__u64 miss_window_ns;
	// The anycast addresses, when a family has at most INLINE_ANYCAST; with more, its count says so and the
	// rescue_anycast map (which always holds every anycast address) is asked instead.
	__u32 anycast_ipv4_count;
	__u32 anycast_ipv6_count;
	__be32 anycast_ipv4[INLINE_ANYCAST];
	__u8 anycast_ipv6[INLINE_ANYCAST][16];
};

// One TCP flow in the client-to-server direction, as the packet carries it.
struct flow_key {
	__u8 family;		// 4 or 6
	__u8 pad[3];
	__be16 client_port;
	__be16 server_port;
	__u8 client[16];	// IPv4 in the first four bytes, the rest zero
	__u8 server[16];
};

struct owner {
	__u8 family;		// of the owner's unicast address: 4 or 6
	__u8 pad[3];
	__u8 address[16];
	// rescue_config.now_seconds when a segment was last tunnelled on this entry (or it was written): userspace
	// deletes entries idle for longer than its timeout, so the owner map empties once the rescued flows are gone.
	__u32 used_seconds;
	__u64 learned_ns;	// bpf_ktime_get_ns() when userspace learned it (for status and eviction policy)
};

struct miss_report {
	struct flow_key flow;
	__u32 seq;		// host order
	__u32 ack_seq;
	__u16 tcp_flags;	// the 16 bits after the data offset nibble, host order
	__u16 held_len;		// bytes of the IP packet copied into held (0: not held)
	__u32 ifindex;
	__u8 held[MAX_HELD_BYTES];
};

struct miss_window {
	__u64 start_ns;
	__u32 reports;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rescue_config);
} rescue_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u8[16]);	// IPv4 in the first four bytes
	__type(value, __u8);
} rescue_anycast SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u8[16]);
	__type(value, __u32);	// the peer's index in the agent's configuration
} rescue_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct owner);
} rescue_owners SEC(".maps");

// A filter in front of the owner map: one bit per hash of a flow (owner_hint_bit), set by userspace before it
// writes the flow's owner and never cleared by the program. A flow whose bit is clear (every local flow but a few)
// pays a hash and an array read instead of an owner-map lookup; a set bit lets a tunnelled segment skip the socket
// lookup, which fails for it, and makes a SYN delete its tuple's owner entry. A stale or colliding bit costs a local
// segment one owner-map miss.
#define OWNER_HINT_BITS_LOG2 20
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << (OWNER_HINT_BITS_LOG2 - 6));
	__type(key, __u32);
	__type(value, __u64);
} rescue_owner_hint SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} rescue_misses SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RC_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rescue_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct miss_window);
} rescue_miss_window SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&rescue_counters, &counter);
	if (value)
		*value += 1;
}

static __always_inline struct rescue_config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rescue_config, &zero);
}

static __always_inline void ipv4_key(__u8 out[16], __be32 address)
{
	__builtin_memset(out, 0, 16);
	__builtin_memcpy(out, &address, 4);
}

// clang 14 does not lower __builtin_memcmp for BPF.
static __always_inline int same_ipv6(const void *a, const void *b)
{
	__u64 x[2], y[2];
	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int is_anycast_ipv4(const struct rescue_config *cfg, __be32 address)
{
	__u32 n = cfg->anycast_ipv4_count;
	if (n > INLINE_ANYCAST) {
		__u8 key[16];
		ipv4_key(key, address);
		return bpf_map_lookup_elem(&rescue_anycast, key) != NULL;
	}
#pragma unroll
	for (__u32 i = 0; i < INLINE_ANYCAST; i++) {
		if (i >= n)
			return 0;
		if (cfg->anycast_ipv4[i] == address)
			return 1;
	}
	return 0;
}

static __always_inline int is_anycast_ipv6(const struct rescue_config *cfg, const void *address)
{
	__u32 n = cfg->anycast_ipv6_count;
	if (n > INLINE_ANYCAST) {
		__u8 key[16];
		__builtin_memcpy(key, address, 16);
		return bpf_map_lookup_elem(&rescue_anycast, key) != NULL;
	}
#pragma unroll
	for (__u32 i = 0; i < INLINE_ANYCAST; i++) {
		if (i >= n)
			return 0;
		if (same_ipv6(cfg->anycast_ipv6[i], address))
			return 1;
	}
	return 0;
}

static __always_inline int is_peer(const __u8 address[16])
{
	return bpf_map_lookup_elem(&rescue_peers, address) != NULL;
}

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

// Whether the program may report one more miss in this window on this CPU: a flood of unknown segments
// costs userspace at most miss_reports_per_window reports per window per CPU.
static __always_inline int may_report(const struct rescue_config *cfg)
{
	__u32 zero = 0;
	struct miss_window *window = bpf_map_lookup_elem(&rescue_miss_window, &zero);
	if (!window)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now - window->start_ns > cfg->miss_window_ns) {
		window->start_ns = now;
		window->reports = 0;
	}
	if (window->reports >= cfg->miss_reports_per_window)
		return 0;
	window->reports++;
	return 1;
}

static __always_inline void report_miss(struct __sk_buff *skb, const struct rescue_config *cfg,
					const struct flow_key *flow, const struct tcphdr *tcp, __u32 l3_offset)
{
	if (!may_report(cfg)) {
		count(RC_MISS_UNREPORTED);
		return;
	}
	struct miss_report *report = bpf_ringbuf_reserve(&rescue_misses, sizeof(*report), 0);
	if (!report) {
		count(RC_MISS_UNREPORTED);
		return;
	}
	report->flow = *flow;
	report->seq = bpf_ntohl(tcp->seq);
	report->ack_seq = bpf_ntohl(tcp->ack_seq);
	report->tcp_flags = bpf_ntohs(((const __be16 *)tcp)[6]);
	report->ifindex = skb->ifindex;
	report->held_len = 0;
	__u32 length = skb->len - l3_offset;
	// Keeps clang from testing a copy of length: the verifier must see the bound on the register passed.
	if (length <= MAX_HELD_BYTES) {
		barrier_var(length);
		if (length > 0 && bpf_skb_load_bytes(skb, l3_offset, report->held, length) == 0)
			report->held_len = length;
	}
	bpf_ringbuf_submit(report, 0);
}

#define RESCUE_AF_INET 2
#define RESCUE_AF_INET6 10
#define RESCUE_FIB_SKIP_NEIGH (1U << 2)	// BPF_FIB_LOOKUP_SKIP_NEIGH (kernel 6.3), by number: older UAPI headers lack it

// Sends the packet to the owner by the routing table's route to it, so that a route to a peer over another link (a
// backbone) is followed: bpf_redirect_neigh alone routes only among the routes of the interface it is given. The
// lookup is made as for a forwarded packet, which the kernel answers only when forwarding is enabled on the uplink;
// its interface and next hop are then used as found, so that no second lookup can disagree with it. A route that
// says the owner is not to be reached (seen only with forwarding on) drops the packet, as it would drop a forwarded
// one. Any other failed lookup (forwarding off, no route, a local route, a packet larger than the route's link takes)
// sends the packet out of the uplink it arrived on, as the owner's route is then expected to be; both are counted.
static __always_inline int redirect_to(struct __sk_buff *skb, const struct rescue_config *cfg, const struct owner *owner)
{
	struct bpf_fib_lookup fib = {};
	fib.ifindex = skb->ifindex;
	if (owner->family == 4) {
		fib.family = RESCUE_AF_INET;
		fib.ipv4_src = cfg->local_ipv4;
		__builtin_memcpy(&fib.ipv4_dst, owner->address, 4);
	} else {
		fib.family = RESCUE_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, cfg->local_ipv6, 16);
		__builtin_memcpy(fib.ipv6_dst, owner->address, 16);
	}
	int found = bpf_fib_lookup(skb, &fib, sizeof(fib), RESCUE_FIB_SKIP_NEIGH);
	if (found == BPF_FIB_LKUP_RET_BLACKHOLE || found == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    found == BPF_FIB_LKUP_RET_PROHIBIT) {
		count(RC_TUNNEL_UNROUTED);
		return TC_ACT_SHOT;
	}
	if (found != BPF_FIB_LKUP_RET_SUCCESS) {
		count(RC_TUNNEL_BY_UPLINK);
		return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
	}

	// The lookup left the next hop (the gateway, or the owner itself on a link) where the destination was.
	struct bpf_redir_neigh next = {};
	next.nh_family = fib.family;
	if (fib.family == RESCUE_AF_INET)
		next.ipv4_nh = fib.ipv4_dst;
	else
		__builtin_memcpy(next.ipv6_nh, fib.ipv6_dst, 16);
	return bpf_redirect_neigh(fib.ifindex, &next, sizeof(next), 0);
}

// Pushes an outer IPv4 or IPv6 header (by the owner's family) in front of the IP packet and sends the result
// to the owner through the neighbour of the route to it.
static __always_inline int tunnel(struct __sk_buff *skb, const struct rescue_config *cfg, const struct owner *owner,
				  int inner_is_ipv6)
{
	__u32 inner_len = skb->len - ETH_HLEN;
	__u8 inner_proto = inner_is_ipv6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	if (owner->family == 4) {
		if (inner_is_ipv6)
			goto error;	// 6-in-4 is not offered: an IPv6 flow needs the owner's IPv6 unicast
		struct iphdr outer = {};
		outer.version = 4;
		outer.ihl = 5;
		outer.tot_len = bpf_htons(inner_len + sizeof(outer));
		outer.frag_off = bpf_htons(0x4000);	// DF: the MSS budget makes room, fragmenting would hide a bug
		outer.ttl = OUTER_TTL;
		outer.protocol = inner_proto;
		outer.saddr = cfg->local_ipv4;
		__builtin_memcpy(&outer.daddr, owner->address, 4);
		// Copied out rather than read through a cast pointer, which strict aliasing lets clang reorder.
		__u16 halves[10];
		__builtin_memcpy(halves, &outer, sizeof(halves));
		__u64 sum = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += halves[i];
		outer.check = fold(sum);
		if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
			goto error;
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0))
			goto error;
	} else {
		if (!inner_is_ipv6)
			goto error;	// 4-in-6 is not offered either
		struct ipv6hdr outer = {};
		outer.version = 6;
		outer.payload_len = bpf_htons(inner_len);
		outer.nexthdr = inner_proto;
		outer.hop_limit = OUTER_TTL;
		__builtin_memcpy(&outer.saddr, cfg->local_ipv6, 16);
		__builtin_memcpy(&outer.daddr, owner->address, 16);
		if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
			goto error;
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0))
			goto error;
	}
	return redirect_to(skb, cfg, owner);
error:
	count(RC_ERROR);
	return TC_ACT_SHOT;
}

static __always_inline int decapsulate(struct __sk_buff *skb, __u32 outer_len, __u8 inner_proto)
{
	__u64 flags = inner_proto == IPPROTO_IPV6 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV6 : BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	if (bpf_skb_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC, flags)) {
		count(RC_ERROR);
		return TC_ACT_SHOT;
	}
	count(RC_DECAPSULATED);
	return PASS;
}

// The owner map's key for the flow of tuple.
static __always_inline void flow_key_of(struct flow_key *key, const struct bpf_sock_tuple *tuple, int is_ipv6)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (is_ipv6) {
		key->family = 6;
		__builtin_memcpy(key->client, tuple->ipv6.saddr, 16);
		__builtin_memcpy(key->server, tuple->ipv6.daddr, 16);
		key->client_port = tuple->ipv6.sport;
		key->server_port = tuple->ipv6.dport;
	} else {
		key->family = 4;
		__builtin_memcpy(key->client, &tuple->ipv4.saddr, 4);
		__builtin_memcpy(key->server, &tuple->ipv4.daddr, 4);
		key->client_port = tuple->ipv4.sport;
		key->server_port = tuple->ipv4.dport;
	}
}

static __always_inline __u32 xor_words(const __u32 *address)
{
	return address[0] ^ address[1] ^ address[2] ^ address[3];
}

// The flow's bit in rescue_owner_hint: a multiplicative hash of the addresses (an IPv6 one folded to 32 bits) and
// the ports, all as the packet carries them. BpfFlowKey.OwnerHintBit computes the same from the owner map's key.
static __always_inline __u32 owner_hint_bit(const struct bpf_sock_tuple *tuple, int is_ipv6)
{
	__u32 client, server, ports;
	if (is_ipv6) {
		client = xor_words(tuple->ipv6.saddr);
		server = xor_words(tuple->ipv6.daddr);
		ports = (__u32)tuple->ipv6.sport | (__u32)tuple->ipv6.dport << 16;
	} else {
		client = tuple->ipv4.saddr;
		server = tuple->ipv4.daddr;
		ports = (__u32)tuple->ipv4.sport | (__u32)tuple->ipv4.dport << 16;
	}
	__u64 x = ((__u64)client << 32 | ports) ^ server;
	return (x * 0x9E3779B97F4A7C15ULL) >> (64 - OWNER_HINT_BITS_LOG2);
}

static __always_inline int owner_hinted(__u32 bit)
{
	__u32 word = bit >> 6;
	__u64 *bits = bpf_map_lookup_elem(&rescue_owner_hint, &word);
	return bits && ((*bits >> (bit & 63)) & 1);
}

// The owner map's entry for the flow of tuple, or NULL; key is left holding the flow's key.
static __always_inline struct owner *owner_of(struct flow_key *key, const struct bpf_sock_tuple *tuple, int is_ipv6)
{
	flow_key_of(key, tuple, is_ipv6);
	return bpf_map_lookup_elem(&rescue_owners, key);
}

// Whether the kernel would accept the segment: a socket that is not a listener matches it (established, request or
// time-wait), or it completes a SYN-cookie handshake with a local listener.
static __always_inline int is_local(struct __sk_buff *skb, struct tcphdr *tcp, void *iph, __u32 iph_len,
				    struct bpf_sock_tuple *tuple, __u32 tuple_len)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		count(RC_LOCAL_SOCKET);
		return 1;
	}
	if (tcp->ack && !tcp->syn && !tcp->rst && bpf_tcp_check_syncookie(sk, iph, iph_len, tcp, sizeof(*tcp)) == 0) {
		bpf_sk_release(sk);
		count(RC_LOCAL_SYNCOOKIE);
		return 1;
	}
	bpf_sk_release(sk);
	return 0;
}

// The owner's verdict on a TCP segment to an anycast address. The owner map is read before the socket lookup only
// when the hint says it may hold the flow: local segments are nearly all of them, and a segment with an owner entry
// has no local socket, because a SYN that opens a local connection on the same tuple deletes the entry.
static __always_inline int steer_tcp(struct __sk_buff *skb, const struct rescue_config *cfg, struct tcphdr *tcp,
				     void *iph, __u32 iph_len, struct bpf_sock_tuple *tuple, __u32 tuple_len,
				     __u32 l3_offset, int is_ipv6)
{
	struct flow_key key;
	int hinted = cfg->owner_hint_active && owner_hinted(owner_hint_bit(tuple, is_ipv6));

	if (tcp->syn && !tcp->ack) {
		// The client opens a new connection from the tuple of one another POP owned: that one is over.
		if (hinted) {
			flow_key_of(&key, tuple, is_ipv6);
			if (bpf_map_delete_elem(&rescue_owners, &key) == 0)
				count(RC_OWNER_FORGOTTEN);
		}
		count(RC_LOCAL_SYN);
		return PASS;
	}

	struct owner *owner = hinted ? owner_of(&key, tuple, is_ipv6) : NULL;
	if (!owner) {
		if (is_local(skb, tcp, iph, iph_len, tuple, tuple_len))
			return PASS;
		// An entry whose bit is clear (the hint was rebuilt while userspace wrote it) is still found here.
		if (!hinted)
			owner = owner_of(&key, tuple, is_ipv6);
	}
	if (owner) {
		// Written once a second at most: the entry's cache line stays shared between the CPUs that read it.
		if (owner->used_seconds != cfg->now_seconds)
			owner->used_seconds = cfg->now_seconds;
		count(RC_TUNNELLED);
		return tunnel(skb, cfg, owner, is_ipv6);
	}

	if (tcp->rst) {
		count(RC_MISS_RST);
		return TC_ACT_SHOT;
	}
	count(RC_MISS);
	report_miss(skb, cfg, &key, tcp, l3_offset);
	return TC_ACT_SHOT;
}

// An ICMP error about a segment the owner sent to the client (inner packet: server -> client) reaches this POP
// because its source was the anycast address. When this POP tunnels that flow, the owner needs the error.
static __always_inline int forward_icmp(struct __sk_buff *skb, const struct rescue_config *cfg,
					const struct flow_key *key, int is_ipv6)
{
	struct owner *owner = bpf_map_lookup_elem(&rescue_owners, key);
	if (!owner)
		return PASS;
	count(RC_ICMP_FORWARDED);
	return tunnel(skb, cfg, owner, is_ipv6);
}

static __always_inline int ingress_ipv4(struct __sk_buff *skb, const struct rescue_config *cfg)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return PASS;
	if (ip->ihl != 5)
		return PASS;	// IP options: not a packet this program steers

	if (ip->protocol == IPPROTO_IPIP) {
		__u8 from[16];
		ipv4_key(from, ip->saddr);
		if (ip->daddr != cfg->local_ipv4 || !is_peer(from)) {
			count(RC_FOREIGN_TUNNEL);
			return TC_ACT_SHOT;
		}
		return decapsulate(skb, sizeof(*ip), IPPROTO_IPIP);
	}

	if (ip->protocol == IPPROTO_TCP) {
		if (!is_anycast_ipv4(cfg, ip->daddr)) {
			count(RC_NOT_ANYCAST);
			return PASS;
		}
		if (ip->frag_off & bpf_htons(0x3fff)) {
			count(RC_MALFORMED);	// a fragment has no TCP header to decide on
			return TC_ACT_SHOT;
		}
		struct tcphdr *tcp = (void *)(ip + 1);
		if ((void *)(tcp + 1) > data_end) {
			count(RC_MALFORMED);
			return TC_ACT_SHOT;
		}
		struct bpf_sock_tuple tuple = {};
		tuple.ipv4.saddr = ip->saddr;
		tuple.ipv4.daddr = ip->daddr;
		tuple.ipv4.sport = tcp->source;
		tuple.ipv4.dport = tcp->dest;
		return steer_tcp(skb, cfg, tcp, ip, sizeof(*ip), &tuple, sizeof(tuple.ipv4), ETH_HLEN, 0);
	}

	if (ip->protocol == IPPROTO_ICMP) {
		if (!is_anycast_ipv4(cfg, ip->daddr))
			return PASS;
		struct icmp_error *icmp = (void *)(ip + 1);
		struct iphdr *inner = (void *)(icmp + 1);
		struct tcphdr *inner_tcp = (void *)(inner + 1);
		// RFC 792: the error quotes the IP header and at least 8 bytes, which hold both ports.
		if ((void *)inner_tcp + 8 > data_end)
			return PASS;
		if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
			return PASS;
		if (inner->ihl != 5 || inner->protocol != IPPROTO_TCP || inner->saddr != ip->daddr)
			return PASS;
		struct flow_key key = {};
		key.family = 4;
		ipv4_key(key.server, ip->daddr);
		ipv4_key(key.client, inner->daddr);
		key.client_port = inner_tcp->dest;
		key.server_port = inner_tcp->source;
		return forward_icmp(skb, cfg, &key, 0);
	}

	count(RC_NOT_ANYCAST);
	return PASS;
}

static __always_inline int ingress_ipv6(struct __sk_buff *skb, const struct rescue_config *cfg)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > data_end)
		return PASS;

	if (ip6->nexthdr == IPPROTO_IPV6) {
		if (!same_ipv6(&ip6->daddr, cfg->local_ipv6) || !is_peer((const __u8 *)&ip6->saddr)) {
			count(RC_FOREIGN_TUNNEL);
			return TC_ACT_SHOT;
		}
		return decapsulate(skb, sizeof(*ip6), IPPROTO_IPV6);
	}

	if (ip6->nexthdr == IPPROTO_TCP) {
		if (!is_anycast_ipv6(cfg, &ip6->daddr)) {
			count(RC_NOT_ANYCAST);
			return PASS;
		}
		struct tcphdr *tcp = (void *)(ip6 + 1);
		if ((void *)(tcp + 1) > data_end) {
			count(RC_MALFORMED);
			return TC_ACT_SHOT;
		}
		struct bpf_sock_tuple tuple = {};
		__builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, 16);
		tuple.ipv6.sport = tcp->source;
		tuple.ipv6.dport = tcp->dest;
		return steer_tcp(skb, cfg, tcp, ip6, sizeof(*ip6), &tuple, sizeof(tuple.ipv6), ETH_HLEN, 1);
	}

	if (ip6->nexthdr == IPPROTO_ICMPV6) {
		if (!is_anycast_ipv6(cfg, &ip6->daddr))
			return PASS;
		struct icmp_error *icmp = (void *)(ip6 + 1);
		struct ipv6hdr *inner = (void *)(icmp + 1);
		struct tcphdr *inner_tcp = (void *)(inner + 1);
		if ((void *)inner_tcp + 8 > data_end)
			return PASS;
		if (icmp->type != ICMPV6_DEST_UNREACH && icmp->type != ICMPV6_PKT_TOOBIG &&
		    icmp->type != ICMPV6_TIME_EXCEED)
			return PASS;
		if (inner->nexthdr != IPPROTO_TCP || !same_ipv6(&inner->saddr, &ip6->daddr))
			return PASS;
		struct flow_key key = {};
		key.family = 6;
		__builtin_memcpy(key.server, &ip6->daddr, 16);
		__builtin_memcpy(key.client, &inner->daddr, 16);
		key.client_port = inner_tcp->dest;
		key.server_port = inner_tcp->source;
		return forward_icmp(skb, cfg, &key, 1);
	}

	count(RC_NOT_ANYCAST);
	return PASS;
}

SEC("tc")
int rescue_ingress(struct __sk_buff *skb)
{
	struct rescue_config *cfg = config();
	if (!cfg || !cfg->enabled)
		return PASS;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return ingress_ipv4(skb, cfg);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return ingress_ipv6(skb, cfg);
	return PASS;
}

// Lowers the MSS option of a SYN-ACK to the budget. Linux puts MSS first; a few options are walked in case
// another stack's order differs. The options are read with bpf_skb_load_bytes rather than through a packet
// pointer plus a variable offset, which the verifier allows only with CAP_PERFMON.
static __always_inline int clamp_mss(struct __sk_buff *skb, __u32 tcp_offset, __u16 budget)
{
	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, tcp_offset, &tcp, sizeof(tcp)))
		return PASS;
	if (!tcp.syn || !tcp.ack)
		return PASS;
	__u32 options_end = tcp_offset + tcp.doff * 4;
	__u32 offset = tcp_offset + sizeof(tcp);
	// A bounded loop (kernel >= 5.3), not unrolled: the verifier follows each iteration.
	for (int i = 0; i < 8; i++) {
		__u8 option[4];
		if (offset + 4 > options_end || bpf_skb_load_bytes(skb, offset, option, sizeof(option)))
			return PASS;
		if (option[0] == 0)	// end of options
			return PASS;
		if (option[0] == 1) {	// no-op
			offset += 1;
			continue;
		}
		if (option[0] == 2 && option[1] == 4) {
			__be16 old_mss;
			__builtin_memcpy(&old_mss, option + 2, sizeof(old_mss));
			if (bpf_ntohs(old_mss) <= budget)
				return PASS;
			__be16 new_mss = bpf_htons(budget);
			__u32 csum_offset = tcp_offset + __builtin_offsetof(struct tcphdr, check);
			if (bpf_skb_store_bytes(skb, offset + 2, &new_mss, sizeof(new_mss), 0) ||
			    bpf_l4_csum_replace(skb, csum_offset, old_mss, new_mss, sizeof(new_mss))) {
				count(RC_ERROR);
				return PASS;
			}
			count(RC_MSS_CLAMPED);
			return PASS;
		}
		if (option[1] < 2)
			return PASS;	// a malformed length would loop
		offset += option[1];
	}
	return PASS;
}

// Whether a segment may be a SYN-ACK, read in place when the TCP header is in the linear part (where the stack
// builds it): every other segment from an anycast address then leaves without a helper call.
static __always_inline int may_be_syn_ack(const struct tcphdr *tcp, const void *data_end)
{
	if ((const void *)(tcp + 1) > data_end)
		return 1;	// not in the linear part: clamp_mss reads it with bpf_skb_load_bytes
	return tcp->syn && tcp->ack;
}

SEC("tc")
int rescue_egress(struct __sk_buff *skb)
{
	struct rescue_config *cfg = config();
	if (!cfg || !cfg->enabled)
		return PASS;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP) && cfg->mss_ipv4) {
		struct iphdr *ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
			return PASS;
		if (!is_anycast_ipv4(cfg, ip->saddr) || !may_be_syn_ack((void *)(ip + 1), data_end))
			return PASS;
		return clamp_mss(skb, ETH_HLEN + sizeof(*ip), cfg->mss_ipv4);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6) && cfg->mss_ipv6) {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return PASS;
		if (!is_anycast_ipv6(cfg, &ip6->saddr) || !may_be_syn_ack((void *)(ip6 + 1), data_end))
			return PASS;
		return clamp_mss(skb, ETH_HLEN + sizeof(*ip6), cfg->mss_ipv6);
	}
	return PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
