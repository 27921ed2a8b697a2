/* The direct reads' system calls, made in order by a thread of their own.

   Each expert read on the direct path costs the computing thread a few system calls: a slot
   of RAM mapped in place (mremap of an evicted slot, or mmap), the read submitted (io_submit,
   which pins its 160 pages), empty memory mapped back where the slot was. On the 4B at 1 GiB
   (an AMD EPYC, 2 cores) they took 27 ms of a 164 ms token, all inside llama.cpp's eval
   callback, while llama.cpp's second thread had nothing to do. Queued here, the Python side
   keeps every decision (which slot goes where, which job reads what) and returns to its
   own work at once; this thread makes the calls on the other core, in the order queued, so
   a read is submitted only after its slot is in place, and an eviction's empty memory only
   after its slot moved away.

   Completions are reaped by the Python side (io_getevents on the same AIO context, which
   the kernel allows from any thread). A read the kernel refuses is reported back as a
   failed job (its completion would never come); a failed mapping call stops the queue and
   is reported, and the Python side then falls back to the file (restore_file_mapping).

   The thread sleeps as soon as the queue is empty. Waking it costs the pushing thread 40-90
   us in this VM (a futex call and an interrupt to the other core), but spinning 200 us for
   more calls first took that core from llama.cpp's second thread: the 4B at 1 GiB, 192
   tokens, three interleaved triplets, 150/130/165 ms a token sleeping at once, 232/145/167
   spinning, 155/186/177 with the calls made on the computing thread.

   Built by setuptools with eval_filter.c (setup.py) and loaded with ctypes; without it the
   calls are made on the computing thread as before (engine/experts/map_queue.py). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { OP_MAP_SLOT = 0, OP_MAP_EMPTY = 1, OP_MOVE = 2, OP_PUNCH = 3, OP_READ = 4 };
#define MAX_BATCH 64 /* reads per io_submit */

typedef struct {
    int64_t kind, a, b, c, d, e;
} mq_op;
/* MAP_SLOT: a address, b bytes, c fd, d offset (shared, writable, populated)
   MAP_EMPTY: a address, b bytes (private anonymous, read-only: nothing resident)
   MOVE: a old address, b new address, c bytes (mremap with MREMAP_DONTUNMAP, then old emptied)
   PUNCH: a fd, b offset, c bytes (fallocate: the slot's RAM given back)
   READ: a job, b fd, c address, d bytes, e file offset */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    pthread_t thread;
    aio_context_t ctx;
    mq_op *ops;
    size_t cap, head, tail; /* ring: [head, tail) queued */
    int busy, stop, sleeping;
    /* Read by the Python side without the lock (to skip calls when the first two are 0): the
       errno of a failed mapping call (the queue stops there), how many (job, -errno) values
       wait, and this thread's CPU time so far in ns (the reads' cost, for the statistics). */
    volatile int64_t status[3];
    int error;
    int64_t error_kind; /* its op */
    int64_t *failed;    /* (job, -errno) pairs of reads the kernel refused */
    size_t n_failed, cap_failed;
} mq_queue;

static int map_empty(int64_t address, int64_t nbytes) {
    void *got = mmap((void *)address, (size_t)nbytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return got == (void *)address ? 0 : errno;
}

static int run_mapping(const mq_op *op) {
    switch (op->kind) {
    case OP_MAP_SLOT: {
        void *got = mmap((void *)op->a, (size_t)op->b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE | MAP_FIXED,
                         (int)op->c, (off_t)op->d);
        return got == (void *)op->a ? 0 : errno;
    }
    case OP_MAP_EMPTY:
        return map_empty(op->a, op->b);
    case OP_MOVE: {
        void *got = mremap((void *)op->a, (size_t)op->c, (size_t)op->c, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                           (void *)op->b);
        if (got != (void *)op->b) return errno;
        return map_empty(op->a, op->c);
    }
    case OP_PUNCH:
        return fallocate((int)op->a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)op->b, (off_t)op->c) ? errno : 0;
    default:
        return EINVAL;
    }
}

/* Report a read the kernel refused as (job, result); the lock is held. */
static void note_failed_locked(mq_queue *q, int64_t job, int64_t result) {
    if (q->n_failed + 2 > q->cap_failed) {
        size_t cap = q->cap_failed ? 2 * q->cap_failed : 64;
        int64_t *grown = realloc(q->failed, cap * sizeof *grown);
        if (!grown) { /* nothing to report it with: stop the queue instead */
            q->error = ENOMEM, q->error_kind = OP_READ;
            q->status[0] = ENOMEM;
            return;
        }
        q->failed = grown, q->cap_failed = cap;
    }
    q->failed[q->n_failed++] = job;
    q->failed[q->n_failed++] = result;
    q->status[1] = (int64_t)q->n_failed;
}

static void note_failed(mq_queue *q, int64_t job, int64_t result) {
    pthread_mutex_lock(&q->mu);
    note_failed_locked(q, job, result);
    pthread_mutex_unlock(&q->mu);
}

/* Submit reads; those the kernel refuses are reported as failed (EAGAIN: its queue is full
   while the Python side reaps, so try again shortly). */
static void submit_reads(mq_queue *q, const mq_op *ops, int n) {
    struct iocb iocbs[MAX_BATCH], *ptrs[MAX_BATCH];
    memset(iocbs, 0, sizeof iocbs);
    for (int i = 0; i < n; i++) {
        iocbs[i].aio_data = (uint64_t)ops[i].a;
        iocbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
        iocbs[i].aio_fildes = (uint32_t)ops[i].b;
        iocbs[i].aio_buf = (uint64_t)ops[i].c;
        iocbs[i].aio_nbytes = (uint64_t)ops[i].d;
        iocbs[i].aio_offset = ops[i].e;
        ptrs[i] = &iocbs[i];
    }
    int done = 0;
    while (done < n) {
        long got = syscall(SYS_io_submit, q->ctx, (long)(n - done), ptrs + done);
        if (got > 0) {
            done += (int)got;
        } else if (got < 0 && errno == EAGAIN) {
            struct timespec pause = {0, 50 * 1000};
            nanosleep(&pause, NULL);
        } else { /* the first one is refused (got 0 should not happen: treat it the same) */
            note_failed(q, ops[done].a, got < 0 ? -errno : -EIO);
            done++;
        }
    }
}

static void *worker(void *arg) {
    mq_queue *q = arg;
    mq_op batch[MAX_BATCH];
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->head == q->tail && !q->stop) {
            q->busy = 0;
            pthread_cond_broadcast(&q->idle);
            q->sleeping = 1;
            pthread_cond_wait(&q->work, &q->mu);
            q->sleeping = 0;
        }
        if (q->stop) break;
        q->busy = 1;
        /* Take a run of reads (one io_submit), or one mapping call. */
        int n = 0;
        while (q->head != q->tail && n < MAX_BATCH && q->ops[q->head % q->cap].kind == OP_READ)
            batch[n++] = q->ops[q->head++ % q->cap];
        if (!n) batch[n++] = q->ops[q->head++ % q->cap];
        pthread_mutex_unlock(&q->mu);
        int error = 0;
        if (batch[0].kind == OP_READ)
            submit_reads(q, batch, n);
        else
            error = run_mapping(&batch[0]);
        struct timespec cpu;
        if (!clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu)) q->status[2] = (int64_t)cpu.tv_sec * 1000000000 + cpu.tv_nsec;
        pthread_mutex_lock(&q->mu);
        if (error) { /* later calls may depend on this one: drop them and report */
            q->error = error, q->error_kind = batch[0].kind;
            q->status[0] = error;
            for (; q->head != q->tail; q->head++) {
                const mq_op *op = &q->ops[q->head % q->cap];
                if (op->kind == OP_READ) note_failed_locked(q, op->a, -ECANCELED); /* never to complete */
            }
        }
    }
    q->busy = 0;
    pthread_cond_broadcast(&q->idle);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

mq_queue *mq_open(uint64_t ctx) {
    mq_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->ctx = (aio_context_t)ctx;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->idle, NULL);
    if (pthread_create(&q->thread, NULL, worker, q)) {
        free(q);
        return NULL;
    }
    return q;
}

/* Queue `n` ops (in order, after those queued before); 0, or ENOMEM. */
int mq_push(mq_queue *q, const mq_op *ops, size_t n) {
    pthread_mutex_lock(&q->mu);
    if (q->error) { /* stopped: nothing more runs (the caller sees the error) */
        for (size_t i = 0; i < n; i++)
            if (ops[i].kind == OP_READ) note_failed_locked(q, ops[i].a, -ECANCELED);
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    size_t queued = q->tail - q->head;
    if (queued + n > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        while (cap < queued + n) cap *= 2;
        mq_op *grown = malloc(cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&q->mu);
            return ENOMEM;
        }
        for (size_t i = 0; i < queued; i++) grown[i] = q->ops[(q->head + i) % q->cap];
        free(q->ops);
        q->ops = grown, q->cap = cap, q->head = 0, q->tail = queued;
    }
    for (size_t i = 0; i < n; i++) q->ops[(q->tail + i) % q->cap] = ops[i];
    q->tail += n;
    if (q->sleeping) pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* Block until every op queued so far has been made (or the queue stopped on an error). */
void mq_drain(mq_queue *q) {
    pthread_mutex_lock(&q->mu);
    while ((q->head != q->tail || q->busy) && !q->error) pthread_cond_wait(&q->idle, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

/* Where `status` is (see mq_queue). */
volatile int64_t *mq_status(mq_queue *q) { return q->status; }

/* The failed mapping call's errno (0: none), its op's kind in *kind. */
int mq_error(mq_queue *q, int64_t *kind) {
    pthread_mutex_lock(&q->mu);
    int error = q->error;
    *kind = q->error_kind;
    pthread_mutex_unlock(&q->mu);
    return error;
}

/* Move up to `max_pairs` (job, -errno) pairs of refused reads into `out`; returns how many. */
size_t mq_take_failed(mq_queue *q, int64_t *out, size_t max_pairs) {
    pthread_mutex_lock(&q->mu);
    size_t pairs = q->n_failed / 2 < max_pairs ? q->n_failed / 2 : max_pairs;
    memcpy(out, q->failed, pairs * 2 * sizeof *out);
    memmove(q->failed, q->failed + 2 * pairs, (q->n_failed - 2 * pairs) * sizeof *out);
    q->n_failed -= 2 * pairs;
    q->status[1] = (int64_t)q->n_failed;
    pthread_mutex_unlock(&q->mu);
    return pairs;
}

/* Stop the thread once what is queued has been made; frees the queue. */
void mq_close(mq_queue *q) {
    mq_drain(q);
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->idle);
    free(q->ops);
    free(q->failed);
    free(q);
}
