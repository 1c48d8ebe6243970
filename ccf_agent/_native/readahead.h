/* The read-ahead thread (readahead.c), with no Python in it: while the event loop works on a
 * file's chunk, it reads the file's next chunk and does the per-line work that needs no
 * interpreter: finding the lines, their crc32 (for the ids), the redaction prefilter and the
 * projection's structural scan (a ccf_scan). The binding (py_readahead.c) wraps it in the
 * ReadAhead type and owns the job's buffer; the loop then takes the lines' facts from the scan.
 *
 * One job at a time: submit reads size bytes at offset into a buffer after the plen bytes the
 * caller put first (the reader's unfinished line); take waits for it and gives what was read,
 * where the last newline is, and the scan of the complete lines before it. Every call is the
 * owning thread's (the interpreter's); only the worker runs beside it. */
#ifndef CCF_READAHEAD_H
#define CCF_READAHEAD_H

#include <pthread.h>

#include "ccf.h"
#include "prefilter.h"
#include "scan.h"

/* What the scan found in one line of a block. */
typedef struct {
    ccf_ssize start, n; /* the line: bytes [start, start + n) of the block */
    ccf_ssize member;   /* its first member in ccf_scan.members, when status is CCF_SCAN_OK */
    ccf_ssize nbytes;   /* see ccf_keys_hash */
    uint64_t hash;      /* its keys' hash, when status is CCF_SCAN_OK */
    uint32_t crc;       /* crc32 of the line's bytes */
    int status, count, hit; /* ccf_scan_object's verdict and member count; the prefilter's */
} ccf_scan_line;

typedef struct {
    ccf_scan_line *lines;
    ccf_member *members;
    ccf_ssize size; /* of the block scanned */
    ccf_ssize nlines, cap, nmembers, mcap, nhits;
} ccf_scan;

/* Scans a block of lines, each ended by a newline, into s (zeroed, or scanned before: lines add
 * on). fold: the prefilter to run (NULL: none); objects: scan each line ending with '}' as an
 * object. -1: out of memory. */
int ccf_scan_block(ccf_scan *s, const unsigned char *data, ccf_ssize size, const ccf_fold *fold, int objects);

/* Frees a scan made by ccf_read_ahead_take (NULL: nothing). */
void ccf_scan_free(ccf_scan *s);

/* What take hands back: err (an errno of the read, or 0), nread (the bytes read), last_nl (the
 * index in the buffer of the last newline among the new bytes, -1: none) and the scan of the
 * buffer up to it (NULL: no newline, or no memory; the caller then scans itself), now the
 * caller's to free. */
typedef struct {
    int err;
    ccf_ssize nread, last_nl;
    ccf_scan *scan;
} ccf_read_ahead_result;

/* Who touches what: `state` and `stop` only under `lock` (the worker waits on them); the other
 * fields only on the owner's side. The job's inputs are written before the job is queued and its
 * results before it is marked done, each under the lock: that lock hands them from one thread to
 * the other. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int locks;       /* how many of lock, wake and done exist (a failed init leaves fewer to destroy) */
    int started, stop, state;
    int submitted;   /* a job was submitted and is not yet taken or cleared */
    int closed;      /* close ran: no thread any more, and start says so */
    int start_error; /* errno of a thread that could not be started */
    ccf_fold fold;
    int has_fold, objects;
    /* the job: the worker reads these and writes the result while it runs */
    char *bytes;
    int fd;
    long long offset;
    ccf_ssize size, plen;
    ccf_read_ahead_result result;
} ccf_read_ahead;

#define CCF_READ_AHEAD_CLOSED (-1)

/* A read-ahead (its thread not started yet) for this prefilter (NULL: none, else a spec
 * ccf_fold_init takes) and object scan. 0, or an errno: then ccf_read_ahead_destroy still
 * must run, and nothing else. */
int ccf_read_ahead_init(ccf_read_ahead *r, const ccf_fold_spec *fold, int objects);

/* Starts the thread unless it runs: 0, CCF_READ_AHEAD_CLOSED after close, or the errno of a
 * thread that could not be started (the caller reads on its own thread then; that answer
 * stays). */
int ccf_read_ahead_start(ccf_read_ahead *r);

/* Queues a job, the thread started and no job submitted: read `size` bytes at `offset` of fd
 * into bytes + plen (bytes has room for plen + size and stays the caller's, untouched by it
 * until take or clear). */
void ccf_read_ahead_submit(ccf_read_ahead *r, char *bytes, int fd, long long offset, ccf_ssize size,
                           ccf_ssize plen);

/* Waits for the submitted job, if any: the thread is done with it afterwards. Blocks: a binding
 * lets other threads run meanwhile. */
void ccf_read_ahead_wait(ccf_read_ahead *r);

/* Takes the submitted job back if the thread has not begun it: 1, and the job is forgotten (as
 * by clear; the caller reads on its own thread), else 0 (no job, or begun: take then waits only
 * for work under way). Why: under CPU contention a woken worker can wait a hundred milliseconds
 * and more for a CPU, and an owner blocked in take meanwhile is a stalled event loop. */
int ccf_read_ahead_withdraw(ccf_read_ahead *r);

/* Waits for the job (one must be submitted) and hands its result over; clear must follow. */
void ccf_read_ahead_take(ccf_read_ahead *r, ccf_read_ahead_result *out);

/* Forgets the job, if any, after wait or take: a scan not taken is freed. */
void ccf_read_ahead_clear(ccf_read_ahead *r);

/* Waits for and forgets the job, and stops the thread; submit may start a new one after. */
void ccf_read_ahead_stop(ccf_read_ahead *r);

/* Stops for good: start answers CCF_READ_AHEAD_CLOSED from now on. */
void ccf_read_ahead_close(ccf_read_ahead *r);

/* Stops the thread, if any, and destroys the locks that exist. */
void ccf_read_ahead_destroy(ccf_read_ahead *r);

#endif
