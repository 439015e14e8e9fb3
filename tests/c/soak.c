/* Soak test of the C ABI: many threads share one corral_model and create, use and free
 * sessions and streams, cancelling some, while the process's resident memory is watched.
 *
 * Callers take tasks from one counter: a task is either a session cycle (a session, one or
 * two short calls on it, some streamed, then corral_session_free) or a cancellation (a long
 * stream, 1-2 chunks read, then stopped: corral_stream_cancel from the reading thread and
 * drained, corral_stream_cancel from another thread while the reader waits in
 * corral_stream_next, corral_stream_free mid-stream, or corral_stream_cancel then
 * corral_stream_free at once), spread evenly over the run. RSS (VmRSS) is read at start,
 * after the model loads, after warm-up (the first 10% of tasks), half-way and at the end.
 * Exits 1 when RSS grows by more than MAX_GROWTH_MB after warm-up or any error other than
 * CORRAL_ERR_CANCELLED occurs.
 *
 *   cc -std=c11 soak.c $(pkg-config --cflags --libs corral) -lpthread -o soak
 *   ./soak MODEL [CYCLES=10000] [CANCELLATIONS=1000] [CALLERS=8] [MAX_GROWTH_MB=5]
 */
#define _POSIX_C_SOURCE 200809L
#include <corral.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_STATUS 128
#define N_MODES 4

static const char *const MODE_NAMES[N_MODES] = {"cancel+drain", "other thread", "free mid-stream", "cancel+free"};

/* ---- shared state ---------------------------------------------------------------------- */

static corral_model *g_model;
static unsigned long long g_total, g_cancellations, g_warmup, g_middle;

static atomic_ullong g_next_task;
static atomic_ullong g_done;
static atomic_ullong g_cycles, g_calls, g_streamed, g_cancels, g_ended_cancelled;
static atomic_ullong g_by_mode[N_MODES];
static atomic_ullong g_errors[N_STATUS];
static atomic_ullong g_anomalies;

static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;
static double g_rss_warm = -1.0, g_rss_middle = -1.0; /* written once each, under g_print_lock */
static double g_started;

/* The canceller thread: cancels the streams callers hand it (one at a time), while the
 * caller waits in corral_stream_next. The caller frees the stream only after `done`. */
typedef struct cancel_job {
    const corral_stream *stream;
    int done;
    struct cancel_job *next;
} cancel_job;

static pthread_mutex_t g_cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cancel_cond = PTHREAD_COND_INITIALIZER;
static cancel_job *g_cancel_queue;
static int g_cancel_stop;

/* ---- helpers --------------------------------------------------------------------------- */

static double status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double kb = -1.0;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0) {
            kb = strtod(line + n, NULL);
            break;
        }
    }
    fclose(f);
    return kb;
}

static double rss_mb(void) { return status_kb("VmRSS:") / 1024.0; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Counts a failed call by status; prints the first few of each kind but `cancelled`. */
static void count_error(corral_status status) {
    int s = (int)status;
    if (s < 0 || s >= N_STATUS) s = N_STATUS - 1;
    unsigned long long n = atomic_fetch_add(&g_errors[s], 1) + 1;
    if (status != CORRAL_ERR_CANCELLED && n <= 3) {
        const char *message = corral_last_error_message();
        pthread_mutex_lock(&g_print_lock);
        fprintf(stderr, "corral: error [%s]: %s\n", corral_status_name((int32_t)status), message);
        pthread_mutex_unlock(&g_print_lock);
    }
}

static void anomaly(const char *what, int finish_reason) {
    unsigned long long n = atomic_fetch_add(&g_anomalies, 1) + 1;
    if (n <= 3) {
        pthread_mutex_lock(&g_print_lock);
        fprintf(stderr, "corral: soak: %s (finish reason %d)\n", what, finish_reason);
        pthread_mutex_unlock(&g_print_lock);
    }
}

static void expect_finished(const char *what, corral_finish_reason reason) {
    if (reason != CORRAL_FINISH_STOP && reason != CORRAL_FINISH_LENGTH) anomaly(what, (int)reason);
}

/* Questions the cycles ask. A small pool: most prompts are then found whole in some sequence's
 * cache (a KV copy between sequences and one evaluated token), which keeps the run short;
 * one task in eight gets a question of its own, evaluated from the shared prefix on. */
static const char *const QUESTIONS[] = {
    "Name a colour.", "Name a fruit.",  "Name an animal.", "Name a city.",  "Name a planet.", "Name a metal.", "Name a tree.",
    "Name a river.",  "Name a bird.",   "Name a flower.",  "Name a sport.", "Name a tool.",   "Name a fish.",
};
#define N_QUESTIONS (sizeof QUESTIONS / sizeof QUESTIONS[0])

static void question(char *out, size_t size, const char *base, unsigned caller, unsigned long long task) {
    if (task % 8 == 5) {
        snprintf(out, size, "%s (caller %u, task %llu)", base, caller, task);
    } else {
        snprintf(out, size, "%s", base);
    }
}

static corral_generate_params short_params(int32_t max_tokens) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = max_tokens;
    p.temperature = 0.0f;
    return p;
}

/* A long generation: ends only by being cancelled. */
static corral_generate_params long_params(void) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 128;
    p.temperature = 0.0f;
    p.ignore_eos = true;
    return p;
}

/* Pulls a stream to its end; returns CORRAL_OK and the final finish reason, or the error. */
static corral_status drain(const corral_stream *stream, corral_finish_reason *reason) {
    corral_chunk chunk;
    for (;;) {
        corral_status st = corral_stream_next(stream, &chunk);
        if (st != CORRAL_OK) return st;
        if (chunk.finish_reason != CORRAL_FINISH_NONE) {
            *reason = chunk.finish_reason;
            return CORRAL_OK;
        }
    }
}

static bool count_bytes(const char *text, uintptr_t len, void *user_data) {
    (void)text;
    *(size_t *)user_data += len;
    return true;
}

/* ---- a session cycle ------------------------------------------------------------------- */

static corral_status cycle(unsigned caller, unsigned long long n, unsigned long long task) {
    corral_session *session = NULL;
    corral_status st = corral_model_session(g_model, &session);
    if (st != CORRAL_OK) return st;
    char text[128];
    question(text, sizeof text, QUESTIONS[n % N_QUESTIONS], caller, task);
    corral_result r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    corral_generate_params p2 = short_params(2), p3 = short_params(3), p1 = short_params(1);
    corral_stream *stream = NULL;
    corral_finish_reason reason = CORRAL_FINISH_NONE;
    switch (n % 4) {
    case 0: { /* two chat turns: the second reuses the session's KV */
        corral_message turn1[] = {{"user", text}};
        if ((st = corral_session_chat(session, turn1, 1, &p2, NULL, NULL, &r1)) != CORRAL_OK) break;
        expect_finished("chat", r1.finish_reason);
        corral_message turn2[] = {{"user", text}, {"assistant", r1.text}, {"user", "And another?"}};
        if ((st = corral_session_chat(session, turn2, 3, &p2, NULL, NULL, &r2)) != CORRAL_OK) break;
        expect_finished("chat (second turn)", r2.finish_reason);
        atomic_fetch_add(&g_calls, 2);
        break;
    }
    case 1: { /* a completion with a chunk callback */
        size_t bytes = 0;
        if ((st = corral_session_complete(session, text, &p3, count_bytes, &bytes, &r1)) != CORRAL_OK) break;
        expect_finished("complete", r1.finish_reason);
        if (bytes != r1.text_len) anomaly("the callback saw other text than the result", (int)r1.finish_reason);
        atomic_fetch_add(&g_calls, 1);
        break;
    }
    case 2: {
        corral_message msgs[] = {{"user", text}};
        if ((st = corral_session_generate_stream(session, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p3, &stream)) != CORRAL_OK) break;
        if ((st = drain(stream, &reason)) != CORRAL_OK) break;
        expect_finished("chat_stream", reason);
        atomic_fetch_add(&g_calls, 1);
        atomic_fetch_add(&g_streamed, 1);
        break;
    }
    default: {
        if ((st = corral_session_generate_stream(session, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = text}, &p2, &stream)) != CORRAL_OK) break;
        if ((st = drain(stream, &reason)) != CORRAL_OK) break;
        expect_finished("complete_stream", reason);
        corral_stream_free(stream);
        stream = NULL;
        char more[160];
        snprintf(more, sizeof more, "%s Red, and", text);
        if ((st = corral_session_complete(session, more, &p1, NULL, NULL, &r1)) != CORRAL_OK) break;
        expect_finished("complete (second call)", r1.finish_reason);
        atomic_fetch_add(&g_calls, 2);
        atomic_fetch_add(&g_streamed, 1);
        break;
    }
    }
    corral_stream_free(stream);
    corral_result_free(&r1);
    corral_result_free(&r2);
    corral_session_free(session);
    return st;
}

/* ---- a cancellation -------------------------------------------------------------------- */

static void cancel_elsewhere(cancel_job *job) {
    pthread_mutex_lock(&g_cancel_lock);
    job->next = g_cancel_queue;
    g_cancel_queue = job;
    pthread_cond_broadcast(&g_cancel_cond);
    pthread_mutex_unlock(&g_cancel_lock);
}

static void wait_cancelled_elsewhere(cancel_job *job) {
    pthread_mutex_lock(&g_cancel_lock);
    while (!job->done) pthread_cond_wait(&g_cancel_cond, &g_cancel_lock);
    pthread_mutex_unlock(&g_cancel_lock);
}

static void *canceller(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_cancel_lock);
    for (;;) {
        while (!g_cancel_queue && !g_cancel_stop) pthread_cond_wait(&g_cancel_cond, &g_cancel_lock);
        if (!g_cancel_queue) break;
        cancel_job *job = g_cancel_queue;
        g_cancel_queue = job->next;
        pthread_mutex_unlock(&g_cancel_lock);
        corral_stream_cancel(job->stream);
        corral_stream_cancel(job->stream); /* idempotent */
        pthread_mutex_lock(&g_cancel_lock);
        job->done = 1;
        pthread_cond_broadcast(&g_cancel_cond);
    }
    pthread_mutex_unlock(&g_cancel_lock);
    return NULL;
}

static corral_status cancellation(unsigned caller, unsigned long long n, unsigned long long task) {
    int mode = (int)(n % N_MODES);
    int on_session = n % 8 < 4;
    corral_session *session = NULL;
    corral_status st = CORRAL_OK;
    corral_finish_reason reason = CORRAL_FINISH_NONE;
    if (on_session && (st = corral_model_session(g_model, &session)) != CORRAL_OK) return st;
    char prompt[160];
    question(prompt, sizeof prompt, "Tell a long story about a lighthouse.", caller, task);
    corral_message msgs[] = {{"user", prompt}};
    corral_generate_params p = long_params();
    corral_stream *stream = NULL;
    if (session) {
        st = (n / 8) % 2 == 0 ? corral_session_generate_stream(session, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, &stream)
                        : corral_session_generate_stream(session, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = prompt}, &p, &stream);
    } else {
        st = (n / 8) % 2 == 0 ? corral_model_generate_stream(g_model, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, &stream)
                        : corral_model_generate_stream(g_model, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = prompt}, &p, &stream);
    }
    if (st != CORRAL_OK) {
        corral_session_free(session);
        return st;
    }
    unsigned long long to_read = 1 + (n / 16) % 2;
    corral_chunk chunk;
    for (unsigned long long i = 0; i < to_read; i++) {
        if ((st = corral_stream_next(stream, &chunk)) != CORRAL_OK) goto out;
        if (chunk.finish_reason != CORRAL_FINISH_NONE) {
            anomaly("a long stream ended before it was cancelled", (int)chunk.finish_reason);
            goto out;
        }
    }
    switch (mode) {
    case 0:
        corral_stream_cancel(stream);
        if ((st = drain(stream, &reason)) != CORRAL_OK) goto out;
        break;
    case 1: {
        cancel_job job = {stream, 0, NULL};
        cancel_elsewhere(&job);
        corral_status drained = drain(stream, &reason); /* waits in corral_stream_next */
        /* corral_stream_cancel must not run concurrently with corral_stream_free. */
        wait_cancelled_elsewhere(&job);
        if ((st = drained) != CORRAL_OK) goto out;
        break;
    }
    case 2:
        break; /* corral_stream_free below, mid-stream */
    default:
        corral_stream_cancel(stream);
        break;
    }
    if (mode <= 1) {
        if (reason == CORRAL_FINISH_CANCELLED) {
            atomic_fetch_add(&g_ended_cancelled, 1);
        } else {
            anomaly("a cancelled stream did not end with CORRAL_FINISH_CANCELLED", (int)reason);
        }
    }
    atomic_fetch_add(&g_by_mode[mode], 1);
out:
    corral_stream_free(stream);
    corral_session_free(session);
    return st;
}

/* ---- callers --------------------------------------------------------------------------- */

static int is_cancellation(unsigned long long t) {
    return (t + 1) * g_cancellations / g_total > t * g_cancellations / g_total;
}

static void *caller_main(void *arg) {
    unsigned caller = (unsigned)(uintptr_t)arg;
    for (;;) {
        unsigned long long t = atomic_fetch_add(&g_next_task, 1);
        if (t >= g_total) break;
        corral_status st;
        /* Which cancellation or which cycle this task is: what it does cycles with that. */
        unsigned long long cancellations_before = t * g_cancellations / g_total;
        if (is_cancellation(t)) {
            atomic_fetch_add(&g_cancels, 1);
            st = cancellation(caller, cancellations_before, t);
        } else {
            atomic_fetch_add(&g_cycles, 1);
            st = cycle(caller, t - cancellations_before, t);
        }
        if (st != CORRAL_OK) count_error(st);
        unsigned long long done = atomic_fetch_add(&g_done, 1) + 1;
        if (done == g_warmup || done == g_middle) {
            double rss = rss_mb();
            pthread_mutex_lock(&g_print_lock);
            if (done == g_warmup) g_rss_warm = rss;
            if (done == g_middle) g_rss_middle = rss;
            pthread_mutex_unlock(&g_print_lock);
        }
        if (done % g_warmup == 0) {
            double rss = rss_mb();
            pthread_mutex_lock(&g_print_lock);
            fprintf(stderr, "soak: %3llu%% (%llu tasks)  RSS %.1f MB  %.0f s\n", done * 100 / g_total, done, rss, now_s() - g_started);
            pthread_mutex_unlock(&g_print_lock);
        }
    }
    return NULL;
}

static unsigned long long arg_ull(const char *s, const char *name) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-') {
        fprintf(stderr, "soak: %s must be a non-negative integer, got \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL [CYCLES=10000] [CANCELLATIONS=1000] [CALLERS=8] [MAX_GROWTH_MB=5]\n", argv[0]);
        return 2;
    }
    unsigned long long cycles = argc > 2 ? arg_ull(argv[2], "CYCLES") : 10000;
    g_cancellations = argc > 3 ? arg_ull(argv[3], "CANCELLATIONS") : 1000;
    unsigned long long callers = argc > 4 ? arg_ull(argv[4], "CALLERS") : 8;
    double max_growth = argc > 5 ? strtod(argv[5], NULL) : 5.0;
    g_total = cycles + g_cancellations;
    if (callers < 1 || callers > 256 || g_total == 0) {
        fprintf(stderr, "soak: CALLERS must be 1..256 and there must be something to do\n");
        return 2;
    }
    g_warmup = g_total / 10 ? g_total / 10 : 1;
    g_middle = g_warmup + (g_total - g_warmup) / 2;

    double rss_start = rss_mb();
    corral_model_params mp = corral_model_default_params();
    mp.context_length = 2048;
    mp.max_sequences = (uint32_t)callers;
    corral_status st = corral_model_load(argv[1], &mp, &g_model);
    if (st != CORRAL_OK) {
        fprintf(stderr, "corral: error [%s]: %s\n", corral_status_name((int32_t)st), corral_last_error_message());
        return 1;
    }
    double rss_loaded = rss_mb();
    corral_model_info info;
    corral_model_info_get(g_model, &info);
    printf("corral soak (C API): %s %s | %llu callers, context %u | %llu cycles, %llu cancellations\n", info.name,
           info.quantization, callers, info.context_length, cycles, g_cancellations);
    fflush(stdout);

    pthread_t cancel_thread;
    if (pthread_create(&cancel_thread, NULL, canceller, NULL) != 0) {
        fprintf(stderr, "soak: cannot start the canceller thread\n");
        return 1;
    }
    pthread_t *threads = calloc(callers, sizeof *threads);
    if (!threads) return 1;
    double started = g_started = now_s();
    unsigned long long started_threads = 0;
    for (unsigned long long i = 0; i < callers; i++) {
        if (pthread_create(&threads[i], NULL, caller_main, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "soak: cannot start caller %llu\n", i);
            break;
        }
        started_threads++;
    }
    for (unsigned long long i = 0; i < started_threads; i++) pthread_join(threads[i], NULL);
    free(threads);
    pthread_mutex_lock(&g_cancel_lock);
    g_cancel_stop = 1;
    pthread_cond_broadcast(&g_cancel_cond);
    pthread_mutex_unlock(&g_cancel_lock);
    pthread_join(cancel_thread, NULL);
    double elapsed = now_s() - started;
    double rss_end = rss_mb();
    corral_engine_stats stats;
    memset(&stats, 0, sizeof stats);
    corral_model_stats(g_model, &stats);
    corral_model_free(g_model);

    unsigned long long done_cycles = atomic_load(&g_cycles), done_cancels = atomic_load(&g_cancels);
    printf("cycles:         %llu of %llu (%llu calls, %llu streamed)\n", done_cycles, cycles,
           (unsigned long long)atomic_load(&g_calls), (unsigned long long)atomic_load(&g_streamed));
    printf("cancellations:  %llu of %llu (", done_cancels, g_cancellations);
    for (int m = 0; m < N_MODES; m++)
        printf("%s%s %llu", m ? ", " : "", MODE_NAMES[m], (unsigned long long)atomic_load(&g_by_mode[m]));
    printf("; %llu ended with CORRAL_FINISH_CANCELLED, the rest were freed)\n",
           (unsigned long long)atomic_load(&g_ended_cancelled));
    unsigned long long failures = atomic_load(&g_anomalies);
    int any_error = 0;
    printf("errors:         ");
    for (int s = 0; s < N_STATUS; s++) {
        unsigned long long n = atomic_load(&g_errors[s]);
        if (!n) continue;
        printf("%s%s %llu", any_error ? ", " : "", corral_status_name(s), n);
        any_error = 1;
        if (s != CORRAL_ERR_CANCELLED) failures += n;
    }
    printf("%s\n", any_error ? "" : "none");
    if (atomic_load(&g_anomalies)) printf("anomalies:      %llu\n", (unsigned long long)atomic_load(&g_anomalies));
    printf("engine:         %llu requests, %llu prompt tokens (%llu cached), %llu generated\n",
           (unsigned long long)stats.requests, (unsigned long long)stats.prompt_tokens,
           (unsigned long long)stats.cached_tokens, (unsigned long long)stats.generated_tokens);
    printf("RSS MB:         start %.1f   loaded %.1f   after warm-up (%llu tasks) %.1f   middle %.1f   end %.1f   peak %.1f\n",
           rss_start, rss_loaded, g_warmup, g_rss_warm, g_rss_middle, rss_end, status_kb("VmHWM:") / 1024.0);
    double growth = rss_end - g_rss_warm;
    printf("growth:         %+.2f MB after warm-up (limit %.1f MB)\n", growth, max_growth);
    printf("elapsed:        %.1f s   (%.1f cycles/s)\n", elapsed, (double)(done_cycles + done_cancels) / elapsed);

    int failed = 0;
    char why[256] = "";
    size_t w = 0;
    if (failures) {
        w += (size_t)snprintf(why + w, sizeof why - w, "%s%llu failures other than cancelled", w ? "; " : "", failures);
        failed = 1;
    }
    if (done_cycles != cycles || done_cancels != g_cancellations || started_threads != callers) {
        w += (size_t)snprintf(why + w, sizeof why - w, "%snot every task ran", w ? "; " : "");
        failed = 1;
    }
    if (growth != growth || growth > max_growth) { /* NaN: a reading failed */
        snprintf(why + w, sizeof why - w, "%sRSS grew %.2f MB after warm-up (limit %.1f)", w ? "; " : "", growth, max_growth);
        failed = 1;
    }
    if (failed) {
        printf("result:         FAIL (%s)\n", why);
        return 1;
    }
    printf("result:         PASS\n");
    return 0;
}
