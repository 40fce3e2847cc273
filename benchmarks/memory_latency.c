/* What one random memory access costs on this machine, by the size of the
 * memory it falls in: a pointer chase (each load's address is the value of
 * the load before, so no two overlap) over a random cycle through every
 * 64-byte line of a block, timed per load.  The block is on transparent huge
 * pages with `huge` (madvise, as the core's slot arrays are), on 4 KiB pages
 * without.
 *
 * It bounds the table at a million connections (benchmarks/RESULTS.md, issue
 * 24): an update there makes at least one access at a random place of a
 * structure sized by the connections, and this says what such an access
 * costs once that structure no longer fits in the caches.
 *
 *     cc -O2 -o memory_latency benchmarks/memory_latency.c
 *     ./memory_latency 1 2 4 8 16 64 256        (sizes in MiB)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#define LINE 64
#define LOADS 5000000

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_random(void) {
    /* xorshift64*: enough to shuffle */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ns per dependent load over a block of `mib` MiB */
static double chase(size_t mib, int huge) {
    size_t lines = mib * (1u << 20) / LINE, i;
    char *block = NULL;
    size_t *order = malloc(lines * sizeof *order);
    if (order == NULL || posix_memalign((void **)&block, 2u << 20, lines * LINE) != 0) {
        fprintf(stderr, "out of memory for %zu MiB\n", mib);
        exit(1);
    }
#ifdef MADV_HUGEPAGE
    if (huge)
        (void)madvise(block, lines * LINE, MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    /* Sattolo's shuffle: one cycle through every line */
    for (i = 0; i < lines; i++)
        order[i] = i;
    for (i = lines - 1; i > 0; i--) {
        size_t j = (size_t)(next_random() % i), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (i = 0; i < lines; i++)
        *(char **)(block + i * LINE) = block + order[i] * LINE;
    char *p = block;
    for (i = 0; i < lines; i++) /* once round: pages faulted, caches as warm as they get */
        p = *(char **)p;
    double start = seconds();
    for (i = 0; i < LOADS; i++)
        p = *(char **)p;
    double ns = (seconds() - start) / LOADS * 1e9;
    if (p == NULL) /* keeps the chase */
        puts("");
    free(order);
    free(block);
    return ns;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MIB [MIB ...]\n", argv[0]);
        return 2;
    }
    printf("%8s %12s %12s\n", "MiB", "4k pages", "huge pages");
    for (int a = 1; a < argc; a++) {
        size_t mib = (size_t)strtoul(argv[a], NULL, 10);
        if (mib == 0) {
            fprintf(stderr, "not a size in MiB: %s\n", argv[a]);
            return 2;
        }
        double small = chase(mib, 0), huge = chase(mib, 1);
        printf("%8zu %9.1f ns %9.1f ns\n", mib, small, huge);
    }
    return 0;
}
