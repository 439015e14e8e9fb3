/* One model, two threads generating at once on their own sessions, and a third thread that
 * cancels the second one mid-generation.
 *
 *   cc threads.c $(pkg-config --cflags --libs corral) -lpthread -o threads
 *   ./threads model.gguf
 */
#define _POSIX_C_SOURCE 200809L
#include <corral.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
    corral_model *model;
    const char *prompt;
    corral_stream *stream;
    pthread_mutex_t lock; /* guards `stream` against the canceller */
    corral_finish_reason finish_reason;
    unsigned completion_tokens;
    int failed;
} job;

static void *generate(void *arg) {
    job *j = arg;
    corral_session *session = NULL;
    if (corral_model_session(j->model, &session) != CORRAL_OK) {
        j->failed = 1;
        return NULL;
    }
    corral_generate_params params = corral_generate_default_params();
    params.max_tokens = 200;
    params.temperature = 0.0f;
    params.ignore_eos = true;
    corral_prompt prompt = {.kind = CORRAL_PROMPT_TEXT, .text = j->prompt};
    corral_stream *stream = NULL;
    if (corral_session_generate_stream(session, &prompt, &params, &stream) != CORRAL_OK) {
        fprintf(stderr, "error: %s\n", corral_last_error_message());
        j->failed = 1;
        corral_session_free(session);
        return NULL;
    }
    pthread_mutex_lock(&j->lock);
    j->stream = stream;
    pthread_mutex_unlock(&j->lock);
    corral_chunk chunk;
    for (;;) {
        if (corral_stream_next(stream, &chunk) != CORRAL_OK) {
            fprintf(stderr, "error: %s\n", corral_last_error_message());
            j->failed = 1;
            break;
        }
        if (chunk.finish_reason != CORRAL_FINISH_NONE) {
            j->finish_reason = chunk.finish_reason;
            j->completion_tokens = chunk.usage.completion_tokens;
            break;
        }
    }
    pthread_mutex_lock(&j->lock);
    j->stream = NULL;
    pthread_mutex_unlock(&j->lock);
    corral_stream_free(stream);
    corral_session_free(session);
    return NULL;
}

static void *cancel_later(void *arg) {
    job *j = arg;
    struct timespec delay = {0, 300 * 1000 * 1000};
    nanosleep(&delay, NULL);
    pthread_mutex_lock(&j->lock);
    corral_stream_cancel(j->stream); /* NULL-tolerant if it has not started yet */
    corral_stream_cancel(j->stream); /* idempotent */
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    corral_model_params model_params = corral_model_default_params();
    model_params.context_length = 2048;
    corral_model *model = NULL;
    if (corral_model_load(argv[1], &model_params, &model) != CORRAL_OK) {
        fprintf(stderr, "error: %s\n", corral_last_error_message());
        return 1;
    }
    job a = {.model = model, .prompt = "The history of Rome begins", .lock = PTHREAD_MUTEX_INITIALIZER};
    job b = {.model = model, .prompt = "A recipe for bread: first", .lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t ta, tb, tc;
    pthread_create(&ta, NULL, generate, &a);
    pthread_create(&tb, NULL, generate, &b);
    pthread_create(&tc, NULL, cancel_later, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    corral_model_free(model);

    printf("thread a: finish=%d tokens=%u\n", a.finish_reason, a.completion_tokens);
    printf("thread b: finish=%d tokens=%u\n", b.finish_reason, b.completion_tokens);
    int ok = !a.failed && !b.failed && a.finish_reason == CORRAL_FINISH_LENGTH && a.completion_tokens == 200 &&
             b.finish_reason == CORRAL_FINISH_CANCELLED && b.completion_tokens < 200;
    printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
