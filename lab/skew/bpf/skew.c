// twlab clock skew: a tc (clsact, direct-action) program for a client's link.
//
// Egress adds the client's offset to TSval, ingress subtracts it from TSecr,
// so the server sees the skewed clock while the client's own RTT estimate
// (computed from TSecr) stays right. The TCP checksum is fixed incrementally.
//
// Written for old verifiers too: no loops the verifier must prove bounded
// (the option walk is unrolled), no direct packet access (bpf_skb_load_bytes
// takes any offset and checks bounds at run time), no global data (the offset
// lives in an array map), no libbpf headers (helpers are declared by number).
//
// Build: make generate (clang); the object and Go bindings are committed.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define TC_ACT_OK 0

#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

struct __sk_buff;

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len, __u64 flags) = (void *)9;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) = (void *)11;
static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, __u32 offset, void *to, __u32 len) = (void *)26;

struct config {
	__s32 offset; // timestamp ticks added to TSval on egress
	__u32 enabled;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} skew_config SEC(".maps");

// Counters, per CPU: 0 egress TSval rewritten, 1 ingress TSecr rewritten,
// 2 TCP packets seen without a timestamp option, 3 malformed options.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} skew_stats SEC(".maps");

#define ETH_HLEN 14
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10
// bpf_l4_csum_replace: size of the replaced field in the low bits of flags.
#define CSUM_SIZE_4 4

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&skew_stats, &idx);
	if (v)
		*v += 1;
}

enum { STEP_NEXT, STEP_END, STEP_FOUND, STEP_MALFORMED };

// opt_step looks at the option at *pos: it advances past NOPs and other
// options, and stops at the end, at a timestamp option or at garbage.
static __always_inline int opt_step(struct __sk_buff *skb, __u32 base, __u32 optlen, __u32 *pos)
{
	__u32 p = *pos;
	if (p >= optlen)
		return STEP_END;
	__u8 kind;
	if (bpf_skb_load_bytes(skb, base + p, &kind, 1) < 0)
		return STEP_END;
	if (kind == TCPOPT_EOL)
		return STEP_END;
	if (kind == TCPOPT_NOP) {
		*pos = p + 1;
		return STEP_NEXT;
	}
	__u8 len;
	if (p + 1 >= optlen || bpf_skb_load_bytes(skb, base + p + 1, &len, 1) < 0 || len < 2)
		return STEP_MALFORMED;
	if (kind == TCPOPT_TIMESTAMP) {
		if (len != TCPOLEN_TIMESTAMP || p + TCPOLEN_TIMESTAMP > optlen)
			return STEP_MALFORMED;
		return STEP_FOUND;
	}
	*pos = p + len;
	return STEP_NEXT;
}

// The walk is unrolled by hand: every clang unrolls it, every verifier
// since 4.7 accepts it, and 40 steps cover any legal option layout.
#define OPT_STEP                                      \
	r = opt_step(skb, l4 + 20, optlen, &pos);     \
	if (r != STEP_NEXT)                           \
		goto done;
#define OPT_STEPS_5 OPT_STEP OPT_STEP OPT_STEP OPT_STEP OPT_STEP
#define OPT_STEPS_40 OPT_STEPS_5 OPT_STEPS_5 OPT_STEPS_5 OPT_STEPS_5 \
	OPT_STEPS_5 OPT_STEPS_5 OPT_STEPS_5 OPT_STEPS_5

static __always_inline __u32 bswap32(__u32 x) { return __builtin_bswap32(x); }

// swap_halves swaps the two bytes of each 16-bit half of x, whatever the
// host's byte order: memory bytes b0 b1 b2 b3 become b1 b0 b3 b2.
static __always_inline __u32 swap_halves(__u32 x)
{
	return ((x & 0x00ff00ff) << 8) | ((x & 0xff00ff00) >> 8);
}

static __always_inline int rewrite(struct __sk_buff *skb, int egress)
{
	__u32 key = 0;
	struct config *cfg = bpf_map_lookup_elem(&skew_config, &key);
	if (!cfg || !cfg->enabled)
		return TC_ACT_OK;

	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0 || proto != __builtin_bswap16(0x0800))
		return TC_ACT_OK;
	__u8 iph[20];
	if (bpf_skb_load_bytes(skb, ETH_HLEN, iph, 20) < 0)
		return TC_ACT_OK;
	if ((iph[0] >> 4) != 4 || iph[9] != 6)
		return TC_ACT_OK;
	if (((iph[6] & 0x1f) | iph[7]) != 0)
		return TC_ACT_OK; // a later fragment: no TCP header here
	__u32 ihl = (iph[0] & 0x0f) * 4;
	if (ihl < 20)
		return TC_ACT_OK;
	__u32 l4 = ETH_HLEN + ihl;
	__u8 doff;
	if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1) < 0)
		return TC_ACT_OK;
	__u32 optlen = ((doff >> 4) * 4);
	if (optlen <= 20) {
		count(2);
		return TC_ACT_OK;
	}
	optlen -= 20;

	__u32 pos = 0;
	int r = STEP_NEXT;
	OPT_STEPS_40
done:
	if (r == STEP_MALFORMED)
		count(3);
	if (r != STEP_FOUND) {
		if (r != STEP_MALFORMED)
			count(2);
		return TC_ACT_OK;
	}
	__u32 found = pos;

	// TSval at +2, TSecr at +6 of the option.
	__u32 off = l4 + 20 + found + (egress ? 2 : 6);
	__u32 old;
	if (bpf_skb_load_bytes(skb, off, &old, 4) < 0)
		return TC_ACT_OK;
	if (!egress && old == 0)
		return TC_ACT_OK; // TSecr 0 echoes nothing (e.g. on a SYN)
	__u32 host = bswap32(old);
	host = egress ? host + (__u32)cfg->offset : host - (__u32)cfg->offset;
	__u32 new = bswap32(host);
	// The checksum sums 16-bit words from the segment's start. At an odd
	// offset (another stack's option layout: MSS, NOP, TS puts TSval at 7)
	// the field's bytes are the other halves of their words, and the
	// difference to fold in is that of the values with the two bytes of
	// each 16-bit half swapped.
	__u32 csum_old = old, csum_new = new;
	if (found & 1) {
		csum_old = swap_halves(old);
		csum_new = swap_halves(new);
	}
	if (bpf_l4_csum_replace(skb, l4 + 16, csum_old, csum_new, CSUM_SIZE_4) < 0)
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, off, &new, 4, 0) < 0)
		return TC_ACT_OK;
	count(egress ? 0 : 1);
	return TC_ACT_OK;
}

SEC("tc")
int skew_egress(struct __sk_buff *skb) { return rewrite(skb, 1); }

SEC("tc")
int skew_ingress(struct __sk_buff *skb) { return rewrite(skb, 0); }

char _license[] SEC("license") = "Dual MIT/GPL";
