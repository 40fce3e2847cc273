/* The floor for `connstats read`: read a classic pcap file in 4 MiB chunks and
 * walk its records (16-byte header, then caplen bytes), adding up packets and
 * captured bytes.  No decoding, no table: the cost of getting the records. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (4u << 20)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.pcap\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    unsigned char *buf = malloc(2 * CHUNK);
    size_t have = fread(buf, 1, 24, f), start = 0, end = 0;
    if (have != 24) return 1;
    int swap = buf[0] == 0xa1;
    uint64_t packets = 0, bytes = 0;
    for (;;) {
        if (end - start < CHUNK) {
            memmove(buf, buf + start, end - start);
            end -= start;
            start = 0;
            size_t n = fread(buf + end, 1, CHUNK, f);
            if (n == 0 && end == 0) break;
            end += n;
            if (n == 0 && end - start < 16) break;
        }
        if (end - start < 16) break;
        uint32_t caplen;
        memcpy(&caplen, buf + start + 8, 4);
        if (swap) caplen = __builtin_bswap32(caplen);
        if (end - start < 16 + (size_t)caplen) {
            if (feof(f)) break;
            continue;
        }
        packets++;
        bytes += caplen;
        start += 16 + caplen;
    }
    printf("%llu %llu\n", (unsigned long long)packets, (unsigned long long)bytes);
    fclose(f);
    free(buf);
    return 0;
}
