/* A PACKET_MMAP TPACKET_V3 receive ring, walked block by block (Linux only).
 *
 * The kernel fills fixed-size blocks of the ring with packets and hands a
 * block to user space when it is full or when its retire timer fires; user
 * space walks the block and gives it back by writing TP_STATUS_KERNEL into
 * its header.  One wakeup and one hand-over per block instead of one system
 * call per packet is what lets a capture keep up with small packets.
 *
 * The walk only writes offsets and lengths (relative to the start of the
 * mapping) of the IP packets into four arrays, split by direction, so that
 * the counting core can take a whole block through its buffer entry point.
 * Nothing here touches Python: every function may run without the GIL.
 *
 * The ring is mapped at the start of a larger reservation: CS_RING_TAIL
 * read-only zero bytes follow it.  A packet the ring cut short (larger than
 * a block allows) is handed over with its full IP length, as the capture
 * reader does for packets cut by the snap length; its view may then reach
 * past the end of the last block, into the tail.  The counting core reads
 * only the headers, which the walk checked were captured.
 */
#ifndef CS_RING_H
#define CS_RING_H

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if_arp.h>

/* TPACKET_V3 frames start at multiples of 8 in their block. */
#define CS_V3_ALIGNMENT 8u

/* The largest IP packet an IP header can describe: IPv6, 65535-byte payload. */
#define CS_IP_MAX (40u + 65535u)

typedef struct {
    int fd;
    uint8_t *map;
    size_t map_len;        /* the ring itself */
    size_t area_len;       /* the ring and its zero tail (what is unmapped) */
    uint32_t block_size;
    uint32_t block_nr;
    uint32_t cur;          /* the block to look at next */
    int held;              /* cur is owned by user space and not yet released */
} cs_ring;

typedef struct {
    /* outputs of one walk, offsets relative to the start of the mapping */
    uint32_t *tx_off, *tx_len, *rx_off, *rx_len;
    uint32_t cap;              /* capacity of each array */
    uint32_t n_tx, n_rx;
    uint64_t skipped;          /* frames that are not IPv4/IPv6 (ARP, LLDP, ...) */
    uint64_t loopback_copies;  /* PACKET_OUTGOING copies on loopback, not counted */
    uint64_t packets;          /* IP packets handed over */
    uint64_t bytes;            /* IP bytes handed over */
    uint64_t frames;           /* every frame of the block, including skipped ones */
    uint64_t truncated;        /* IP packets the ring cut short (larger than a block allows) */
    /* optional pcapng tee: enhanced packet blocks of the counted packets */
    uint8_t *tee;
    size_t tee_len, tee_cap;
    size_t tee_hint;           /* capacity to start a new tee buffer with */
    int tee_on;
} cs_walk;

static size_t cs_ring_tail(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (CS_IP_MAX + page - 1) / page * page;
}

/* Map the ring (map_len bytes of fd) at the start of a read-only zero area
 * of area_len bytes.  Returns the area or MAP_FAILED (errno set). */
static void *cs_ring_map(int fd, size_t map_len, size_t area_len, int locked)
{
    void *area, *map;
    int err;
    area = mmap(NULL, area_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0);
    if (area == MAP_FAILED)
        return MAP_FAILED;
    map = mmap(area, map_len, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_FIXED | (locked ? MAP_LOCKED : 0), fd, 0);
    if (map == MAP_FAILED) {
        err = errno;
        munmap(area, area_len);
        errno = err;
        return MAP_FAILED;
    }
    return area;
}

/* Set TPACKET_V3, create the ring and map it.  Returns 0 or -errno. */
static int cs_ring_setup(cs_ring *r, int fd, uint32_t block_size,
                         uint32_t block_nr, uint32_t retire_ms)
{
    int version = TPACKET_V3;
    struct tpacket_req3 req;
    /* Frames have no fixed size in V3 (packets are packed in the block);
     * the kernel still wants a frame size that divides the block size. */
    const uint32_t frame = 2048;
    void *map;

    memset(r, 0, sizeof(*r));
    r->fd = fd;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0)
        return -errno;
    memset(&req, 0, sizeof(req));
    req.tp_block_size = block_size;
    req.tp_block_nr = block_nr;
    req.tp_frame_size = frame;
    req.tp_frame_nr = (uint32_t)(((uint64_t)block_size / frame) * block_nr);
    req.tp_retire_blk_tov = retire_ms;
    req.tp_sizeof_priv = 0;
    req.tp_feature_req_word = 0;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        return -errno;
    r->map_len = (size_t)block_size * block_nr;
    r->area_len = r->map_len + cs_ring_tail();
    map = cs_ring_map(fd, r->map_len, r->area_len, 1);
    if (map == MAP_FAILED) {
        /* MAP_LOCKED needs RLIMIT_MEMLOCK room; the ring works without it */
        map = cs_ring_map(fd, r->map_len, r->area_len, 0);
        if (map == MAP_FAILED)
            return -errno;
    }
    r->map = (uint8_t *)map;
    r->block_size = block_size;
    r->block_nr = block_nr;
    return 0;
}

static void cs_ring_free(cs_ring *r)
{
    if (r->map != NULL)
        munmap(r->map, r->area_len);
    r->map = NULL;
}

static inline struct tpacket_block_desc *cs_ring_block(cs_ring *r, uint32_t i)
{
    return (struct tpacket_block_desc *)(r->map + (size_t)i * r->block_size);
}

static inline int cs_block_ready(struct tpacket_block_desc *b)
{
    return (__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE)
            & TP_STATUS_USER) != 0;
}

/* Wait until the next block belongs to user space, or until wake_fd (an
 * eventfd, -1 for none) is signalled.
 * Returns 1 (ready), 0 (timeout), 2 (woken) or -errno (-EINTR for a signal). */
static int cs_ring_wait(cs_ring *r, int timeout_ms, int wake_fd)
{
    struct pollfd p[2];
    int n;
    if (cs_block_ready(cs_ring_block(r, r->cur)))
        return 1;
    p[0].fd = r->fd;
    p[0].events = POLLIN | POLLERR;
    p[0].revents = 0;
    p[1].fd = wake_fd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    n = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (wake_fd >= 0 && (p[1].revents & POLLIN))
        return 2;
    if (p[0].revents & (POLLERR | POLLNVAL))
        return -ENETDOWN;
    return cs_block_ready(cs_ring_block(r, r->cur)) ? 1 : 0;
}

static inline uint32_t cs_be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }

/* The length to hand over for an IP packet the ring cut short: the capture
 * reader's rule (connstats/capture/_scan_py.py, Scanner._cut).  The decoder
 * reads the IP header and the first four bytes of a TCP, UDP or SCTP header
 * (the ports); when those were captured, the packet goes with its full IP
 * length (`total`) and its bytes count in full.  Otherwise the captured bytes
 * go, and the decoder's rule for a short packet applies.  `room`: bytes from
 * the packet to the end of the buffer the core is given. */
static uint32_t cs_cut_length(const uint8_t *p, uint32_t captured, uint32_t total,
                              uint32_t wire, uint64_t room)
{
    int proto;
    uint32_t sub, need, header;
    if (total > wire || total > room)
        return captured;
    if (p[0] >> 4 == 4) {
        proto = p[9];
        sub = (uint32_t)(p[0] & 0x0F) * 4;
        need = 20;
        if (sub > total || (cs_be16(p + 6) & 0x1FFF))
            proto = -1;  /* no transport header is read */
    } else {
        proto = p[6];
        sub = 40;
        need = 40;
        if (proto == 44) {  /* IPv6 fragment header */
            if (total < 48) {
                proto = -1;
            } else {
                need = 48;
                proto = p[40];
                sub = 48;
                if (cs_be16(p + 42) >> 3)
                    proto = -1;
            }
        }
    }
    header = proto == 6 ? 20 : proto == 17 ? 8 : proto == 132 ? 12 : 0;
    if (header && total - sub >= header && sub + 4 > need)
        need = sub + 4;
    return captured >= need ? total : captured;
}

/* The IP packet's length to hand over, by the capture reader's rule
 * (Scanner._emit): bytes after the IP total length (Ethernet padding of short
 * frames) are not part of the packet; a packet cut short goes by
 * cs_cut_length.  A zero total (TSO, jumbograms) means "unknown". */
static uint32_t cs_ip_length(const uint8_t *p, uint32_t captured, uint32_t wire,
                             uint64_t room, uint64_t *truncated)
{
    int version = captured > 0 ? p[0] >> 4 : 0;
    int cut = captured < wire;
    uint32_t total;
    if (version == 4 && captured >= 20) {
        total = cs_be16(p + 2);
        if (20 <= total && total < captured)
            return total;
        if (cut && total > captured) {
            (*truncated)++;
            return cs_cut_length(p, captured, total, wire, room);
        }
    } else if (version == 6 && captured >= 40) {
        total = cs_be16(p + 4);
        if (total && 40 + total < captured)
            return 40 + total;
        if (cut && total && 40 + total > captured) {
            (*truncated)++;
            return cs_cut_length(p, captured, 40 + total, wire, room);
        }
    } else if (cut) {
        (*truncated)++;  /* not even the IP header was captured */
    }
    return captured;
}

static int cs_tee_reserve(cs_walk *w, size_t more)
{
    size_t cap;
    uint8_t *grown;
    if (w->tee_len + more <= w->tee_cap)
        return 0;
    cap = w->tee_cap ? w->tee_cap : w->tee_hint > 65536 ? w->tee_hint : 65536;
    while (cap < w->tee_len + more)
        cap *= 2;
    grown = (uint8_t *)realloc(w->tee, cap);
    if (grown == NULL)
        return -1;
    w->tee = grown;
    w->tee_cap = cap;
    return 0;
}

static inline void cs_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* pcapng enhanced packet block (host byte order, interface 0, ns timestamps)
 * with the epb_flags direction: 1 inbound, 2 outbound. */
static int cs_tee_packet(cs_walk *w, const uint8_t *data, uint32_t caplen,
                         uint32_t origlen, uint64_t ts_ns, int outbound)
{
    uint32_t padded = (caplen + 3u) & ~3u;
    uint32_t total = 28 + padded + 8 /* epb_flags */ + 4 /* opt_endofopt */ + 4;
    uint8_t *p;
    if (cs_tee_reserve(w, total) < 0)
        return -1;
    p = w->tee + w->tee_len;
    cs_put32(p, 6);
    cs_put32(p + 4, total);
    cs_put32(p + 8, 0);
    cs_put32(p + 12, (uint32_t)(ts_ns >> 32));
    cs_put32(p + 16, (uint32_t)ts_ns);
    cs_put32(p + 20, caplen);
    cs_put32(p + 24, origlen);
    memcpy(p + 28, data, caplen);
    memset(p + 28 + caplen, 0, padded - caplen);
    p += 28 + padded;
    {
        uint16_t opt[2] = {2, 4};  /* epb_flags, 4 bytes */
        memcpy(p, opt, 4);
    }
    cs_put32(p + 4, outbound ? 2u : 1u);
    cs_put32(p + 8, 0);
    cs_put32(p + 12, total);
    w->tee_len += total;
    return 0;
}

/* Walk the current block (which must be ready).  At most `limit` IP
 * packets are handed over (0: no limit); the rest of the block is left
 * uncounted.  skip_outgoing_loopback: on loopback devices every packet is
 * seen twice (as sent and as received); keep only the received copy, as
 * tcpdump does.  Returns 0, or -1 if the tee could not grow (out of memory). */
static int cs_ring_walk(cs_ring *r, cs_walk *w, uint64_t limit)
{
    struct tpacket_block_desc *b = cs_ring_block(r, r->cur);
    uint32_t n = b->hdr.bh1.num_pkts;
    /* 64-bit: header fields the kernel wrote are added, never wrapped */
    uint64_t off = b->hdr.bh1.offset_to_first_pkt;
    const uint64_t sll_at = TPACKET_ALIGN(sizeof(struct tpacket3_hdr));
    size_t base = (size_t)r->cur * r->block_size;
    /* bytes from the start of this block to the end of the buffer the core gets */
    uint64_t room = (uint64_t)r->area_len - base;
    uint64_t taken = 0;
    uint32_t i;
    int rc = 0;

    w->n_tx = w->n_rx = 0;
    w->tee_len = 0;
    r->held = 1;
    for (i = 0; i < n; i++) {
        struct tpacket3_hdr *h;
        const struct sockaddr_ll *sll;
        uint16_t proto;
        uint64_t data_off;
        uint32_t caplen, len;
        int outbound;
        /* never trust a header that points outside the block: the frame
         * header and the sockaddr_ll after it must both lie inside it, at
         * the alignment the kernel always gives them (V3 packs frames at
         * 8 bytes: V3_ALIGNMENT in net/packet/af_packet.c) */
        if (off < sizeof(struct tpacket_block_desc)
            || off + sll_at + sizeof(struct sockaddr_ll) > r->block_size
            || (off & (CS_V3_ALIGNMENT - 1)) != 0)
            break;
        h = (struct tpacket3_hdr *)((uint8_t *)b + off);
        sll = (const struct sockaddr_ll *)((uint8_t *)h + sll_at);
        w->frames++;
        proto = ntohs(sll->sll_protocol);
        data_off = off + h->tp_mac;
        caplen = h->tp_snaplen;
        outbound = sll->sll_pkttype == PACKET_OUTGOING;
        if (data_off + caplen > r->block_size) {
            w->skipped++;
        } else if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
            w->skipped++;
        } else if (outbound && sll->sll_hatype == ARPHRD_LOOPBACK) {
            w->loopback_copies++;
        } else if (limit == 0 || taken < limit) {
            if (w->n_tx + w->n_rx >= w->cap)
                break;  /* cannot happen: cap covers a block of minimal frames */
            len = cs_ip_length((uint8_t *)b + data_off, caplen, h->tp_len,
                               room - data_off, &w->truncated);
            if (outbound) {
                w->tx_off[w->n_tx] = (uint32_t)(base + data_off);
                w->tx_len[w->n_tx++] = len;
            } else {
                w->rx_off[w->n_rx] = (uint32_t)(base + data_off);
                w->rx_len[w->n_rx++] = len;
            }
            w->bytes += len;
            w->packets++;
            taken++;
            /* the tee keeps the frame as captured, with its wire length:
             * reading the file applies the same rule as above */
            if (w->tee_on && rc == 0)
                rc = cs_tee_packet(w, (uint8_t *)b + data_off, caplen, h->tp_len,
                                   (uint64_t)h->tp_sec * 1000000000u + h->tp_nsec,
                                   outbound);
        }
        if (h->tp_next_offset == 0)
            break;
        off += h->tp_next_offset;
    }
    return rc;
}

/* Whether packets wait in the ring that were not walked: the next block is
 * ready, or the kernel is filling it (it hands a block over when full or at
 * its retire timeout).  For the end of a capture, once no more packets come
 * in.  The kernel writes num_pkts of the block it fills as it goes; a block
 * it has not reopened yet may show an old count: then the caller waits for
 * nothing, up to its timeout. */
static int cs_ring_pending(cs_ring *r)
{
    uint32_t i = r->held ? (r->cur + 1) % r->block_nr : r->cur;
    struct tpacket_block_desc *b = cs_ring_block(r, i);
    if (cs_block_ready(b))
        return 1;
    return __atomic_load_n(&b->hdr.bh1.num_pkts, __ATOMIC_RELAXED) != 0;
}

/* Give the current block back to the kernel and move to the next one. */
static void cs_ring_release(cs_ring *r)
{
    if (!r->held)
        return;
    __atomic_store_n(&cs_ring_block(r, r->cur)->hdr.bh1.block_status,
                     TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    r->held = 0;
    r->cur = (r->cur + 1) % r->block_nr;
}

#endif
