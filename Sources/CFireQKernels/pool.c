// A small persistent thread pool for the data-parallel loops (Kernels.Parallel).
//
// Decoding one token runs ~120 parallel regions of a few tens of microseconds each; waking
// sleeping threads for each of them (Dispatch's concurrentPerform) cost ~15 % of the step in
// context switches. Workers here spin on a generation counter for a short while after each job
// (then sleep on a condition variable), so back-to-back regions start without a wake-up.
// Chunks are handed out by an atomic counter; which thread runs a chunk never changes a result
// (every output element belongs to exactly one chunk).
#include "CFireQKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <immintrin.h>
#include <stdlib.h>

#define MAX_WORKERS 63
#define SPIN_ROUNDS 40000
#define YIELD_EVERY 256                 // pauses between sched_yield calls (a power of two)

static struct {
    pthread_mutex_t run_lock;           // one job at a time (others fall back to the caller)
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    atomic_ulong generation;
    atomic_int sleepers;
    int workers;                        // started so far
    // the current job
    fq_pool_task fn;
    void *ctx;
    size_t chunks;
    int helpers;                        // workers taking chunks (their index < helpers)
    atomic_size_t next;
    atomic_int active;                  // workers that have not yet acknowledged the job
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static void run_chunks(int worker) {
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (c >= pool.chunks) break;
        pool.fn(pool.ctx, c, worker);
    }
}

typedef struct { int index; unsigned long seen; } worker_start;

static void *worker_main(void *arg) {
    // The generation before the first job it must serve is read by the creator (the thread may
    // start after that job is published).
    worker_start start = *(worker_start *)arg;
    free(arg);
    int index = start.index;
    unsigned long seen = start.seen;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) {
                _mm_pause();
                // Every few microseconds let another runnable thread have the core: when the
                // machine is oversubscribed (two jobs, a cgroup smaller than --threads) a pure
                // spin would hold it while the thread it waits for cannot run.
                if ((spins & (YIELD_EVERY - 1)) == 0) sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool.sleep_lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((g = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.sleep_lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep_lock);
            break;
        }
        seen = g;
        // Every worker acknowledges every job (so none can mistake a later job for the one it
        // saw); only the first `helpers` take chunks.
        if (index < pool.helpers) run_chunks(index + 1);
        atomic_fetch_sub_explicit(&pool.active, 1, memory_order_release);
    }
    return NULL;
}

int fq_pool_run(int threads, size_t chunks, fq_pool_task fn, void *ctx) {
    if (threads <= 1 || chunks <= 1) {
        for (size_t c = 0; c < chunks; c++) fn(ctx, c, 0);
        return 1;
    }
    if (threads - 1 > MAX_WORKERS) threads = MAX_WORKERS + 1;
    if (pthread_mutex_trylock(&pool.run_lock) != 0) return 0;   // busy (another caller, or nested): caller falls back
    while (pool.workers < threads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 8u << 20);
        worker_start *start = malloc(sizeof *start);
        if (!start) { pthread_attr_destroy(&attr); break; }
        start->index = pool.workers;
        start->seen = atomic_load(&pool.generation);
        if (pthread_create(&t, &attr, worker_main, start) != 0) { free(start); pthread_attr_destroy(&attr); break; }
        pthread_attr_destroy(&attr);
        pool.workers++;
    }
    int helpers = threads - 1 < pool.workers ? threads - 1 : pool.workers;
    pool.fn = fn; pool.ctx = ctx; pool.chunks = chunks; pool.helpers = helpers;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.active, pool.workers);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    run_chunks(0);
    for (unsigned spins = 1; atomic_load_explicit(&pool.active, memory_order_acquire) > 0; spins++) {
        _mm_pause();
        if ((spins & (YIELD_EVERY - 1)) == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.run_lock);
    return 1;
}
