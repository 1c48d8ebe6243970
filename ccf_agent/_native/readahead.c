/* The read-ahead thread, with no Python in it (see readahead.h). tests/native/test_core.py runs
 * it on its own against a Python split and zlib.crc32 (and sanitize.sh under ThreadSanitizer);
 * tests/native/test_read_ahead.py runs it through the binding. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "readahead.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32.h"

enum { R_IDLE, R_QUEUED, R_RUNNING, R_DONE };

/* An array of *cap items of `size` holding at least `need`, doubling from `first`. -1: no memory. */
static int room(void **items, ccf_ssize *cap, ccf_ssize need, ccf_ssize first, size_t size)
{
    if (need <= *cap)
        return 0;
    ccf_ssize grown = *cap ? *cap : first;
    while (grown < need)
        grown *= 2;
    void *more = realloc(*items, (size_t)grown * size);
    if (more == NULL)
        return -1;
    *items = more;
    *cap = grown;
    return 0;
}

int ccf_scan_block(ccf_scan *s, const unsigned char *data, ccf_ssize size, const ccf_fold *fold, int objects)
{
    s->size = size;
    for (ccf_ssize pos = 0; pos < size;) {
        const unsigned char *p = data + pos;
        const unsigned char *nl = memchr(p, '\n', size - pos); /* found: the block ends with one */
        ccf_ssize n = nl - p;
        if (room((void **)&s->lines, &s->cap, s->nlines + 1, 512, sizeof *s->lines) < 0)
            return -1;
        ccf_scan_line *l = &s->lines[s->nlines++];
        l->start = pos;
        l->n = n;
        l->crc = ccf_crc32(p, (size_t)n);
        l->hit = fold != NULL && ccf_fold_hit(p, n, fold);
        s->nhits += l->hit;
        l->status = CCF_SCAN_UNSURE;
        l->count = 0;
        if (objects && n > 0 && p[n - 1] == '}') {
            if (room((void **)&s->members, &s->mcap, s->nmembers + CCF_MAX_MEMBERS, 8192, sizeof *s->members) < 0)
                return -1;
            ccf_member *m = s->members + s->nmembers;
            if (ccf_scan_object(p, n, m, &l->count) == CCF_SCAN_OK) {
                l->status = CCF_SCAN_OK;
                l->member = s->nmembers;
                s->nmembers += l->count;
                l->hash = ccf_keys_hash(p, n, m, l->count, &l->nbytes);
            }
        }
        pos += n + 1;
    }
    return 0;
}

void ccf_scan_free(ccf_scan *s)
{
    if (s != NULL) {
        free(s->lines);
        free(s->members);
        free(s);
    }
}

static void work(ccf_read_ahead *r)
{
    ccf_read_ahead_result *out = &r->result;
    ssize_t got;
    do
        got = pread(r->fd, r->bytes + r->plen, (size_t)r->size, (off_t)r->offset);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        out->err = errno;
        return;
    }
    out->nread = got;
    ccf_ssize total = r->plen + got;
    ccf_ssize k = total - 1;
    while (k >= r->plen && r->bytes[k] != '\n')
        k--;
    out->last_nl = k >= r->plen ? k : -1;
    if (out->last_nl < 0)
        return;
    ccf_scan *s = calloc(1, sizeof *s);
    if (s != NULL && ccf_scan_block(s, (const unsigned char *)r->bytes, out->last_nl + 1,
                                    r->has_fold ? &r->fold : NULL, r->objects) < 0) {
        ccf_scan_free(s); /* the loop does it all itself */
        s = NULL;
    }
    out->scan = s;
}

static void *thread_main(void *arg)
{
    ccf_read_ahead *r = arg;
#if defined(__GLIBC__)
    pthread_setname_np(pthread_self(), "ccf-read-ahead"); /* what top -H and perf show */
#endif
#ifdef SCHED_BATCH
    /* Woken once per chunk, a normal thread preempts the event loop's thread whenever the other
     * CPU is busy; a batch thread waits for a free CPU instead. (A seccomp filter may refuse
     * this: then it stays a normal thread.) */
    struct sched_param param = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
#endif
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->state != R_QUEUED && !r->stop)
            pthread_cond_wait(&r->wake, &r->lock);
        if (r->stop)
            break;
        r->state = R_RUNNING;
        pthread_mutex_unlock(&r->lock);
        work(r);
        pthread_mutex_lock(&r->lock);
        r->state = R_DONE;
        pthread_cond_signal(&r->done);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int ccf_read_ahead_init(ccf_read_ahead *r, const ccf_fold_spec *fold, int objects)
{
    memset(r, 0, sizeof *r);
    /* The locks first: destroy, which must follow any failure, destroys those that exist. */
    int rc = pthread_mutex_init(&r->lock, NULL);
    if (rc == 0 && (r->locks = 1, rc = pthread_cond_init(&r->wake, NULL)) == 0 &&
        (r->locks = 2, rc = pthread_cond_init(&r->done, NULL)) == 0)
        r->locks = 3;
    if (rc != 0)
        return rc;
    if (fold != NULL) {
        if (ccf_fold_init(&r->fold, fold) < 0)
            return EINVAL;
        r->has_fold = 1;
    }
    r->objects = objects;
    return 0;
}

int ccf_read_ahead_start(ccf_read_ahead *r)
{
    if (r->started)
        return 0;
    if (r->closed) /* a new thread would only see stop and leave */
        return CCF_READ_AHEAD_CLOSED;
    if (r->start_error)
        return r->start_error;
    int rc = pthread_create(&r->thread, NULL, thread_main, r);
    if (rc != 0) { /* a tasks limit, say */
        r->start_error = rc;
        return rc;
    }
    r->started = 1;
    return 0;
}

void ccf_read_ahead_submit(ccf_read_ahead *r, char *bytes, int fd, long long offset, ccf_ssize size,
                           ccf_ssize plen)
{
    r->bytes = bytes;
    r->fd = fd;
    r->offset = offset;
    r->size = size;
    r->plen = plen;
    r->result.err = 0;
    r->result.nread = 0;
    r->result.last_nl = -1;
    r->result.scan = NULL;
    r->submitted = 1;
    pthread_mutex_lock(&r->lock);
    r->state = R_QUEUED;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* The state is read under the lock even when the job is likely done: the lock is what makes the
 * thread's writes to the result visible here. */
void ccf_read_ahead_wait(ccf_read_ahead *r)
{
    if (!r->submitted)
        return;
    pthread_mutex_lock(&r->lock);
    while (r->state != R_DONE)
        pthread_cond_wait(&r->done, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

int ccf_read_ahead_withdraw(ccf_read_ahead *r)
{
    if (!r->submitted)
        return 0;
    pthread_mutex_lock(&r->lock);
    int queued = r->state == R_QUEUED;
    if (queued)
        r->state = R_IDLE; /* the worker, woken or not, waits again */
    pthread_mutex_unlock(&r->lock);
    if (queued) {
        r->submitted = 0;
        r->bytes = NULL;
    }
    return queued;
}

void ccf_read_ahead_take(ccf_read_ahead *r, ccf_read_ahead_result *out)
{
    ccf_read_ahead_wait(r);
    *out = r->result;
    r->result.scan = NULL;
}

void ccf_read_ahead_clear(ccf_read_ahead *r)
{
    ccf_scan_free(r->result.scan);
    r->result.scan = NULL;
    r->bytes = NULL;
    if (r->submitted) {
        pthread_mutex_lock(&r->lock);
        r->state = R_IDLE;
        pthread_mutex_unlock(&r->lock);
        r->submitted = 0;
    }
}

void ccf_read_ahead_stop(ccf_read_ahead *r)
{
    ccf_read_ahead_wait(r);
    ccf_read_ahead_clear(r);
    if (r->started) {
        pthread_mutex_lock(&r->lock);
        r->stop = 1;
        pthread_cond_signal(&r->wake);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
        r->started = 0;
        r->stop = 0; /* no thread reads it now */
    }
}

void ccf_read_ahead_close(ccf_read_ahead *r)
{
    ccf_read_ahead_stop(r);
    r->closed = 1;
}

void ccf_read_ahead_destroy(ccf_read_ahead *r)
{
    if (r->locks == 3)
        ccf_read_ahead_stop(r);
    if (r->locks >= 3)
        pthread_cond_destroy(&r->done);
    if (r->locks >= 2)
        pthread_cond_destroy(&r->wake);
    if (r->locks >= 1)
        pthread_mutex_destroy(&r->lock);
    r->locks = 0;
}
