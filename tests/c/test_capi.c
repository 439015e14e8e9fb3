/* The C ABI test suite: every function, NULL arguments, error paths, on the real model.
 * Run by scripts/test-c.sh (plain, under ASan+UBSan, and under valgrind).
 *   test_capi MODEL.gguf SCRATCH_DIR
 */
#define _POSIX_C_SOURCE 200809L
#include <corral.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            passed++;                                                                \
        } else {                                                                     \
            failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, corral_last_error_message());                   \
        }                                                                            \
    } while (0)

#define CHECK_STATUS(call, expected) CHECK((call) == (expected))

static const char *model_path;
static char scratch[4096];

static const char *write_file(const char *name, const void *data, size_t len) {
    snprintf(scratch, sizeof scratch, "%s/%s", getenv("CORRAL_SCRATCH") ? getenv("CORRAL_SCRATCH") : "/tmp", name);
    FILE *f = fopen(scratch, "wb");
    if (!f) return NULL;
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    return scratch;
}

static void *read_prefix(size_t len) {
    FILE *f = fopen(model_path, "rb");
    void *buf = malloc(len);
    if (!f || !buf || fread(buf, 1, len, f) != len) {
        fprintf(stderr, "cannot read model\n");
        exit(1);
    }
    fclose(f);
    return buf;
}

static corral_model *load_small(void) {
    corral_model_params p = corral_model_default_params();
    p.context_length = 512;
    p.max_sequences = 4;
    corral_model *m = NULL;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_OK);
    return m;
}

static void test_version_and_status_names(void) {
    CHECK(strcmp(corral_version(), CORRAL_VERSION) == 0);
    CHECK(CORRAL_VERSION_NUMBER == CORRAL_VERSION_MAJOR * 10000 + CORRAL_VERSION_MINOR * 100 + CORRAL_VERSION_PATCH);
    CHECK(strcmp(corral_status_name(CORRAL_OK), "ok") == 0);
    CHECK(strcmp(corral_status_name(CORRAL_ERR_MODEL_NOT_FOUND), "model_not_found") == 0);
    CHECK(strcmp(corral_status_name(CORRAL_ERR_NULL_ARGUMENT), "null_argument") == 0);
    CHECK(strcmp(corral_status_name(12345), "unknown") == 0);
    CHECK(corral_last_error_message() != NULL);
}

static void test_bad_model_files(void) {
    corral_model *m = (corral_model *)0x1; /* must stay untouched on failure */
    corral_model_params p = corral_model_default_params();
    CHECK_STATUS(corral_model_load(NULL, &p, &m), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_load(model_path, &p, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_load("/nonexistent/x.gguf", &p, &m), CORRAL_ERR_MODEL_NOT_FOUND);
    CHECK(strstr(corral_last_error_message(), "not found") != NULL);
    CHECK_STATUS(corral_model_load("/tmp", &p, &m), CORRAL_ERR_MODEL_NOT_FOUND);
    CHECK_STATUS(corral_model_load("bad\xff\xfe.gguf", &p, &m), CORRAL_ERR_INVALID_UTF8);
    CHECK_STATUS(corral_model_load(write_file("empty.gguf", "", 0), &p, &m), CORRAL_ERR_INVALID_MODEL);
    char garbage[65536];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)(i * 2654435761u >> 13);
    CHECK_STATUS(corral_model_load(write_file("garbage.gguf", garbage, sizeof garbage), &p, &m), CORRAL_ERR_INVALID_MODEL);
    size_t cuts[] = {3, 24, 4000, 1500000};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        void *prefix = read_prefix(cuts[i]);
        CHECK_STATUS(corral_model_load(write_file("cut.gguf", prefix, cuts[i]), &p, &m), CORRAL_ERR_INVALID_MODEL);
        free(prefix);
    }
    p.max_sequences = 0;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_INVALID_ARGUMENT);
    p = corral_model_default_params();
    p.flash_attention = 7;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK(m == (corral_model *)0x1);
}

static bool cancel_load(float progress, void *user_data) {
    (void)progress;
    ++*(int *)user_data;
    return false;
}

static void test_progress_cancel(void) {
    corral_model_params p = corral_model_default_params();
    int calls = 0;
    p.on_progress = cancel_load;
    p.progress_user_data = &calls;
    corral_model *m = NULL;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_CANCELLED);
    CHECK(calls >= 1);
    CHECK(m == NULL);
}

static void test_info_and_metadata(corral_model *m) {
    corral_model_info info;
    CHECK_STATUS(corral_model_info_get(NULL, &info), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_info_get(m, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_info_get(m, &info), CORRAL_OK);
    CHECK(strcmp(info.architecture, "llama") == 0);
    CHECK(strcmp(info.quantization, "Q4_1") == 0);
    CHECK(info.layers == 30 && info.vocab_size == 49152 && info.embedding_length == 576);
    CHECK(info.context_length == 512 && info.context_length_trained == 8192);
    CHECK(info.chat_template != NULL && strstr(info.chat_template, "im_start") != NULL);
    CHECK(info.metadata_count > 20);
    char *json = NULL;
    CHECK_STATUS(corral_model_metadata_json(m, &json), CORRAL_OK);
    CHECK(json && strstr(json, "\"general.architecture\":\"llama\"") != NULL);
    corral_string_free(json);
    CHECK_STATUS(corral_model_metadata_json(NULL, &json), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_metadata_json(m, NULL), CORRAL_ERR_NULL_ARGUMENT);
    char *value = NULL;
    CHECK_STATUS(corral_model_metadata_get(m, "llama.block_count", &value), CORRAL_OK);
    CHECK(value && strcmp(value, "30") == 0);
    corral_string_free(value);
    CHECK_STATUS(corral_model_metadata_get(m, "no.such.key", &value), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_metadata_get(m, NULL, &value), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_metadata_get(NULL, "x", &value), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_metadata_get(m, "x", NULL), CORRAL_ERR_NULL_ARGUMENT);
}

static void test_tokenize(corral_model *m) {
    int32_t *tokens = NULL;
    size_t n = 0;
    const char *text = "Hello 😀 日本語";
    CHECK_STATUS(corral_model_tokenize(m, text, true, false, &tokens, &n), CORRAL_OK);
    CHECK(n > 3);
    char *back = NULL;
    CHECK_STATUS(corral_model_detokenize(m, tokens, n, false, &back), CORRAL_OK);
    CHECK(back && strcmp(back, text) == 0);
    corral_string_free(back);
    corral_tokens_free(tokens, n);
    CHECK_STATUS(corral_model_tokenize(NULL, text, true, false, &tokens, &n), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_tokenize(m, NULL, true, false, &tokens, &n), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_tokenize(m, text, true, false, NULL, &n), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_tokenize(m, text, true, false, &tokens, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_tokenize(m, "\xc3\x28", true, false, &tokens, &n), CORRAL_ERR_INVALID_UTF8);
    int32_t bad[] = {1, 999999};
    CHECK_STATUS(corral_model_detokenize(m, bad, 2, false, &back), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_detokenize(m, NULL, 2, false, &back), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_detokenize(m, NULL, 0, false, &back), CORRAL_OK);
    CHECK(back && back[0] == '\0');
    corral_string_free(back);
    CHECK_STATUS(corral_model_detokenize(NULL, bad, 1, false, &back), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_detokenize(m, bad, 1, false, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_tokens_free(NULL, 0);
    corral_string_free(NULL);
}

static void test_chat_template(corral_model *m) {
    corral_message msgs[] = {{"user", "Hi"}};
    char *prompt = NULL;
    CHECK_STATUS(corral_model_apply_chat_template(m, msgs, 1, true, &prompt), CORRAL_OK);
    CHECK(prompt && strstr(prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") != NULL);
    corral_string_free(prompt);
    CHECK_STATUS(corral_model_apply_chat_template(m, NULL, 1, true, &prompt), CORRAL_ERR_NULL_ARGUMENT);
    corral_message bad_role[] = {{NULL, "Hi"}};
    CHECK_STATUS(corral_model_apply_chat_template(m, bad_role, 1, true, &prompt), CORRAL_ERR_NULL_ARGUMENT);
    corral_message bad_utf8[] = {{"user", "\xff"}};
    CHECK_STATUS(corral_model_apply_chat_template(m, bad_utf8, 1, true, &prompt), CORRAL_ERR_INVALID_UTF8);
    CHECK_STATUS(corral_model_apply_chat_template(NULL, msgs, 1, true, &prompt), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_apply_chat_template(m, msgs, 1, true, NULL), CORRAL_ERR_NULL_ARGUMENT);
}

typedef struct {
    char text[4096];
    size_t len;
    int calls;
    int stop_after;
} collector;

static bool collect(const char *text, size_t len, void *user_data) {
    collector *c = user_data;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    c->calls++;
    return c->stop_after == 0 || c->calls < c->stop_after;
}

static void test_complete(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 8;
    p.temperature = 0.0f;
    corral_result r1 = {0}, r2 = {0};
    collector c = {0};
    CHECK_STATUS(corral_model_complete(m, "The capital of France is", &p, collect, &c, &r1), CORRAL_OK);
    CHECK(r1.text && strstr(r1.text, "Paris") != NULL);
    CHECK(strcmp(c.text, r1.text) == 0);
    CHECK(r1.text_len == strlen(r1.text));
    CHECK(r1.finish_reason == CORRAL_FINISH_LENGTH && r1.usage.completion_tokens == 8);
    CHECK(r1.usage.prompt_tokens > 0);
    CHECK_STATUS(corral_model_complete(m, "The capital of France is", &p, NULL, NULL, &r2), CORRAL_OK);
    CHECK(strcmp(r1.text, r2.text) == 0); /* greedy is deterministic */
    corral_result_free(&r1);
    corral_result_free(&r2);
    CHECK(r1.text == NULL);
    corral_result_free(&r1); /* idempotent */
    corral_result_free(NULL);

    /* Stop strings are not emitted. */
    const char *stops[] = {"Paris"};
    p.stop = stops;
    p.n_stop = 1;
    p.max_tokens = 16;
    CHECK_STATUS(corral_model_complete(m, "The capital of France is", &p, NULL, NULL, &r1), CORRAL_OK);
    CHECK(r1.finish_reason == CORRAL_FINISH_STOP && strstr(r1.text, "Paris") == NULL);
    corral_result_free(&r1);

    /* A callback returning false stops generation. */
    p = corral_generate_default_params();
    p.max_tokens = 50;
    p.ignore_eos = true;
    collector stopper = {.stop_after = 3};
    CHECK_STATUS(corral_model_complete(m, "Once upon a time", &p, collect, &stopper, &r1), CORRAL_OK);
    CHECK(r1.finish_reason == CORRAL_FINISH_CANCELLED);
    CHECK(stopper.calls == 3 && r1.usage.completion_tokens < 50);
    corral_result_free(&r1);

    /* NULL params = defaults; NULL result is allowed. */
    p = corral_generate_default_params();
    p.max_tokens = 2;
    CHECK_STATUS(corral_model_complete(m, "Hi", &p, NULL, NULL, NULL), CORRAL_OK);

    /* Bad arguments. */
    CHECK_STATUS(corral_model_complete(NULL, "x", &p, NULL, NULL, &r1), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_complete(m, NULL, &p, NULL, NULL, &r1), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_complete(m, "\xe2\x82", &p, NULL, NULL, &r1), CORRAL_ERR_INVALID_UTF8);
    corral_generate_params bad = p;
    bad.max_tokens = -5;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.top_p = 0.0f;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.temperature = -1.0f;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.n_stop = 1;
    bad.stop = NULL;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_NULL_ARGUMENT);
    const char *empty_stop[] = {""};
    bad.stop = empty_stop;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.seed = -7;
    CHECK_STATUS(corral_model_complete(m, "x", &bad, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);

    /* An over-long prompt. */
    size_t len = 20000;
    char *long_prompt = malloc(len + 1);
    for (size_t i = 0; i < len; i++) long_prompt[i] = (i % 5 == 4) ? ' ' : 'a' + (char)(i % 7);
    long_prompt[len] = '\0';
    CHECK_STATUS(corral_model_complete(m, long_prompt, &p, NULL, NULL, &r1), CORRAL_ERR_CONTEXT_OVERFLOW);
    free(long_prompt);

    /* Constrained output. */
    corral_generate_params g = corral_generate_default_params();
    g.temperature = 0.0f;
    g.max_tokens = 8;
    g.grammar = "root ::= \"yes\" | \"no\"";
    CHECK_STATUS(corral_model_complete(m, "Is water wet?", &g, NULL, NULL, &r1), CORRAL_OK);
    CHECK(strcmp(r1.text, "yes") == 0 || strcmp(r1.text, "no") == 0);
    corral_result_free(&r1);
    g.grammar = "root ::= (";
    CHECK_STATUS(corral_model_complete(m, "x", &g, NULL, NULL, &r1), CORRAL_ERR_INVALID_GRAMMAR);
    g.grammar = NULL;
    g.json_schema = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}";
    g.max_tokens = 20;
    CHECK_STATUS(corral_model_complete(m, "A JSON object with a number:", &g, NULL, NULL, &r1), CORRAL_OK);
    CHECK(r1.text[0] == '{' && strstr(r1.text, "\"n\"") != NULL);
    corral_result_free(&r1);
    g.json_schema = "{broken";
    CHECK_STATUS(corral_model_complete(m, "x", &g, NULL, NULL, &r1), CORRAL_ERR_INVALID_GRAMMAR);
    g.json_object = true;
    CHECK_STATUS(corral_model_complete(m, "x", &g, NULL, NULL, &r1), CORRAL_ERR_INVALID_ARGUMENT);

    /* The model still works after every error above. */
    CHECK_STATUS(corral_model_complete(m, "Hello", &p, NULL, NULL, &r1), CORRAL_OK);
    corral_result_free(&r1);
}

static void test_chat_and_sessions(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 16;
    p.temperature = 0.0f;
    corral_message msgs[3] = {{"user", "Name a color."}, {"assistant", ""}, {"user", "Another one?"}};
    corral_result r = {0};
    CHECK_STATUS(corral_model_chat(m, msgs, 1, &p, NULL, NULL, &r), CORRAL_OK);
    corral_result_free(&r);
    CHECK_STATUS(corral_model_chat(m, NULL, 1, &p, NULL, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_chat(NULL, msgs, 1, &p, NULL, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);

    corral_session *s = NULL;
    CHECK_STATUS(corral_model_session(NULL, &s), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_session(m, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_session(m, &s), CORRAL_OK);
    corral_result first = {0}, second = {0};
    CHECK_STATUS(corral_session_chat(s, msgs, 1, &p, NULL, NULL, &first), CORRAL_OK);
    msgs[1].content = first.text;
    CHECK_STATUS(corral_session_chat(s, msgs, 3, &p, NULL, NULL, &second), CORRAL_OK);
    CHECK(second.usage.cached_tokens >= first.usage.prompt_tokens); /* prefix reuse */
    corral_result_free(&first);
    corral_result_free(&second);
    CHECK_STATUS(corral_session_complete(s, "Hello", &p, NULL, NULL, &r), CORRAL_OK);
    corral_result_free(&r);
    CHECK_STATUS(corral_session_complete(NULL, "Hello", &p, NULL, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_session_chat(NULL, msgs, 1, &p, NULL, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);

    corral_stream *st = NULL;
    CHECK_STATUS(corral_session_generate_stream(s, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "Hello"}, &p, &st), CORRAL_OK);
    corral_chunk ch;
    while (corral_stream_next(st, &ch) == CORRAL_OK && ch.finish_reason == CORRAL_FINISH_NONE) {
    }
    CHECK(ch.finish_reason != CORRAL_FINISH_NONE);
    corral_stream_free(st);
    CHECK_STATUS(corral_session_generate_stream(s, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, &st), CORRAL_OK);
    corral_stream_free(st); /* freeing a running stream cancels it */
    CHECK_STATUS(corral_session_generate_stream(NULL, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "x"}, &p, &st), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_session_generate_stream(s, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_session_free(s);
    corral_session_free(NULL);
}

static void test_streams(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 100;
    p.ignore_eos = true;
    p.temperature = 0.0f;
    corral_stream *st = NULL;
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "Once upon a time"}, &p, &st), CORRAL_OK);
    corral_chunk ch;
    CHECK_STATUS(corral_stream_next(st, &ch), CORRAL_OK);
    CHECK(ch.finish_reason == CORRAL_FINISH_NONE);
    corral_stream_cancel(st);
    corral_stream_cancel(st); /* double cancel */
    int guard = 0;
    while (corral_stream_next(st, &ch) == CORRAL_OK && ch.finish_reason == CORRAL_FINISH_NONE && guard++ < 200) {
    }
    CHECK(ch.finish_reason == CORRAL_FINISH_CANCELLED);
    CHECK(ch.usage.completion_tokens < 100);
    CHECK_STATUS(corral_stream_next(st, &ch), CORRAL_OK); /* after the end: the final state again */
    CHECK(ch.finish_reason == CORRAL_FINISH_CANCELLED && ch.text_len == 0);
    corral_stream_cancel(st); /* cancel after the end */
    corral_stream_free(st);   /* free after cancel */
    corral_stream_free(NULL);
    corral_stream_cancel(NULL);

    CHECK_STATUS(corral_stream_next(NULL, &ch), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_generate_stream(NULL, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "x"}, &p, &st), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = NULL}, &p, &st), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "x"}, &p, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_message msgs[] = {{"user", "Hi"}};
    p.max_tokens = 4;
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, &st), CORRAL_OK);
    CHECK_STATUS(corral_stream_next(st, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_stream_free(st);
    CHECK_STATUS(corral_model_generate_stream(NULL, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = msgs, .n_messages = 1}, &p, &st), CORRAL_ERR_NULL_ARGUMENT);
}

static void test_score(corral_model *m) {
    int32_t *tokens = NULL;
    size_t n = 0;
    CHECK_STATUS(corral_model_tokenize(m, "The capital of France is Paris.", true, false, &tokens, &n), CORRAL_OK);
    float *logprobs = NULL;
    size_t k = 0;
    CHECK_STATUS(corral_model_score(m, tokens, n, &logprobs, &k), CORRAL_OK);
    CHECK(k == n - 1);
    for (size_t i = 0; i < k; i++) CHECK(logprobs[i] <= 0.0f);
    corral_floats_free(logprobs, k);
    CHECK_STATUS(corral_model_score(m, tokens, 1, &logprobs, &k), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_score(m, NULL, 2, &logprobs, &k), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_score(NULL, tokens, n, &logprobs, &k), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_score(m, tokens, n, NULL, &k), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_score(m, tokens, n, &logprobs, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_tokens_free(tokens, n);
    corral_floats_free(NULL, 0);
}

static double dot(const float *a, const float *b, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)a[i] * b[i];
    return sum;
}

/* A reply's <think> block comes back as `reasoning` (a grammar scripts the output). */
static void test_reasoning(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    CHECK(p.reasoning_budget == -1);
    p.max_tokens = 48;
    p.grammar = "root ::= \"<think>\" \"I should add two and two.\" \"</think>\" \"\\n\\nFour.\"";
    corral_message msg = {"user", "What is two plus two?"};
    corral_result r = {0};
    CHECK_STATUS(corral_model_chat(m, &msg, 1, &p, NULL, NULL, &r), CORRAL_OK);
    CHECK(r.reasoning != NULL && strcmp(r.reasoning, "I should add two and two.") == 0);
    CHECK(strcmp(r.text, "Four.") == 0);
    corral_result_free(&r);
    CHECK(r.reasoning == NULL);
    corral_stream *st = NULL;
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = &msg, .n_messages = 1}, &p, &st), CORRAL_OK);
    char reasoning[256] = "";
    corral_chunk ch;
    while (corral_stream_next(st, &ch) == CORRAL_OK) {
        if (ch.reasoning) strncat(reasoning, ch.reasoning, sizeof reasoning - strlen(reasoning) - 1);
        if (ch.finish_reason != CORRAL_FINISH_NONE) break;
    }
    CHECK(strcmp(reasoning, "I should add two and two.") == 0);
    corral_stream_free(st);
    p.grammar = NULL;
    p.reasoning_budget = -2;
    CHECK_STATUS(corral_model_chat(m, &msg, 1, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
}

/* A session saved (bytes and file) and restored; damaged states. */
static void test_session_state(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 4;
    p.temperature = 0.0f;
    const char *text = "The harbour master logged twelve ships and three storms on the first day of spring.";
    corral_session *s = NULL;
    CHECK_STATUS(corral_model_session(m, &s), CORRAL_OK);
    corral_result first = {0};
    CHECK_STATUS(corral_session_complete(s, text, &p, NULL, NULL, &first), CORRAL_OK);
    uint8_t *state = NULL;
    size_t len = 0;
    CHECK_STATUS(corral_session_state(s, &state, &len), CORRAL_OK);
    CHECK(state != NULL && len > 100);
    const char *path = write_file("session.state", "", 0);
    char saved_path[4096];
    snprintf(saved_path, sizeof saved_path, "%s", path);
    CHECK_STATUS(corral_session_save(s, saved_path), CORRAL_OK);
    corral_session_free(s);

    corral_session *restored = NULL;
    CHECK_STATUS(corral_model_session_from_state(m, state, len, &restored), CORRAL_OK);
    corral_result again = {0};
    CHECK_STATUS(corral_session_complete(restored, text, &p, NULL, NULL, &again), CORRAL_OK);
    CHECK(again.usage.cached_tokens + 1 == first.usage.prompt_tokens); /* all but the last, re-evaluated for logits */
    CHECK(strcmp(again.text, first.text) == 0);
    corral_result_free(&again);
    corral_session_free(restored);
    CHECK_STATUS(corral_model_load_session(m, saved_path, &restored), CORRAL_OK);
    corral_session_free(restored);
    corral_result_free(&first);

    state[len / 2] ^= 0xff;
    CHECK_STATUS(corral_model_session_from_state(m, state, len, &restored), CORRAL_ERR_INVALID_STATE);
    CHECK_STATUS(corral_model_session_from_state(m, state, len / 3, &restored), CORRAL_ERR_INVALID_STATE);
    CHECK_STATUS(corral_model_session_from_state(m, NULL, 10, &restored), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_load_session(m, "/nonexistent/session.state", &restored), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_session_state(NULL, &state, &len), CORRAL_ERR_NULL_ARGUMENT);
    CHECK(strcmp(corral_status_name(CORRAL_ERR_INVALID_STATE), "invalid_state") == 0);
    corral_bytes_free(state, len);
    corral_bytes_free(NULL, 0);
}

/* Embeddings on the chat model (mean pooling) and argument checks. */
static void test_embed(corral_model *m) {
    const char *texts[] = {"A man is eating food.", "A man is eating a piece of bread.", "The sky is blue."};
    corral_embeddings e = {0};
    CHECK_STATUS(corral_model_embed(m, texts, 3, NULL, &e), CORRAL_OK);
    CHECK(e.count == 3 && e.dimensions == 576 && e.prompt_tokens > 9);
    for (size_t i = 0; i < e.count; i++) {
        const float *v = e.data + i * e.dimensions;
        CHECK(dot(v, v, e.dimensions) > 0.9999 && dot(v, v, e.dimensions) < 1.0001);
    }
    corral_embeddings_free(&e);
    CHECK(e.data == NULL && e.count == 0);
    corral_embeddings_free(&e);
    corral_embeddings_free(NULL);

    corral_embed_params p = corral_embed_default_params();
    CHECK(p.normalize && !p.truncate && p.pooling == CORRAL_POOLING_MODEL && p.timeout_ms == 0);
    p.normalize = false;
    p.pooling = CORRAL_POOLING_LAST;
    CHECK_STATUS(corral_model_embed(m, texts, 1, &p, &e), CORRAL_OK);
    CHECK(e.count == 1 && dot(e.data, e.data, e.dimensions) > 1.01);
    corral_embeddings_free(&e);
    p.pooling = 7;
    CHECK_STATUS(corral_model_embed(m, texts, 1, &p, &e), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_embed(m, texts, 0, NULL, &e), CORRAL_OK);
    CHECK(e.count == 0);
    corral_embeddings_free(&e);
    const char *bad[] = {"fine", NULL};
    CHECK_STATUS(corral_model_embed(m, bad, 2, NULL, &e), CORRAL_ERR_NULL_ARGUMENT);
    const char *empty[] = {""};
    CHECK_STATUS(corral_model_embed(m, empty, 1, NULL, &e), CORRAL_ERR_INVALID_ARGUMENT);
    const char *invalid_utf8[] = {"\xff\xfe"};
    CHECK_STATUS(corral_model_embed(m, invalid_utf8, 1, NULL, &e), CORRAL_ERR_INVALID_UTF8);
    CHECK_STATUS(corral_model_embed(NULL, texts, 1, NULL, &e), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_embed(m, NULL, 1, NULL, &e), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_embed(m, texts, 1, NULL, NULL), CORRAL_ERR_NULL_ARGUMENT);

    corral_rerank_results r = {0};
    CHECK_STATUS(corral_model_rerank(m, "q", texts, 2, NULL, &r), CORRAL_ERR_UNSUPPORTED);
    CHECK(strcmp(corral_status_name(CORRAL_ERR_UNSUPPORTED), "unsupported") == 0);
    corral_rerank_results_free(&r);
    corral_rerank_results_free(NULL);
}

/* MiniLM (CORRAL_EMBED_MODEL) and the test-only reranker (CORRAL_RERANK_MODEL), when given. */
static void test_embedding_models(void) {
    const char *embed_path = getenv("CORRAL_EMBED_MODEL");
    const char *rerank_path = getenv("CORRAL_RERANK_MODEL");
    if (embed_path) {
        corral_model *m = NULL;
        CHECK_STATUS(corral_model_load(embed_path, NULL, &m), CORRAL_OK);
        const char *texts[] = {"A man is eating food.", "A man is eating a piece of bread."};
        corral_embeddings e = {0};
        CHECK_STATUS(corral_model_embed(m, texts, 2, NULL, &e), CORRAL_OK);
        CHECK(e.count == 2 && e.dimensions == 384);
        /* A float32 numpy forward pass of the same weights gives 0.7553. */
        double cosine = dot(e.data, e.data + e.dimensions, e.dimensions);
        CHECK(cosine > 0.752 && cosine < 0.758);
        corral_embeddings_free(&e);
        corral_result res = {0};
        CHECK_STATUS(corral_model_complete(m, "hi", NULL, NULL, NULL, &res), CORRAL_ERR_UNSUPPORTED);
        corral_model_free(m);
    }
    if (rerank_path) {
        /* The head is seeded random weights: mechanics only, not ranking quality. */
        corral_model *m = NULL;
        CHECK_STATUS(corral_model_load(rerank_path, NULL, &m), CORRAL_OK);
        const char *docs[] = {"A man is eating food.", "The sky is blue.", "Bread is baked."};
        corral_rerank_results r = {0};
        CHECK_STATUS(corral_model_rerank(m, "What do people eat?", docs, 3, NULL, &r), CORRAL_OK);
        CHECK(r.count == 3);
        int seen = 0;
        for (size_t i = 0; i < r.count; i++) {
            CHECK(r.results[i].score >= 0.0f && r.results[i].score <= 1.0f);
            CHECK(r.results[i].index < 3);
            seen |= 1 << r.results[i].index;
            if (i > 0) CHECK(r.results[i - 1].score >= r.results[i].score);
        }
        CHECK(seen == 7);
        size_t best = r.results[0].index;
        corral_rerank_results_free(&r);
        corral_rerank_params p = corral_rerank_default_params();
        p.top_n = 1;
        CHECK_STATUS(corral_model_rerank(m, "What do people eat?", docs, 3, &p, &r), CORRAL_OK);
        CHECK(r.count == 1 && r.results[0].index == best);
        corral_rerank_results_free(&r);
        CHECK_STATUS(corral_model_rerank(m, NULL, docs, 3, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);
        CHECK_STATUS(corral_model_rerank(m, "", docs, 3, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
        corral_model_free(m);
    }
}

static int log_lines;
static void on_log(int32_t level, const char *source, const char *message, void *user_data) {
    (void)level;
    (void)source;
    (void)message;
    ++*(int *)user_data;
}

static void test_stats_and_clear_cache(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 2;
    p.temperature = 0.0f;
    p.ignore_eos = true;
    corral_engine_stats before, after_first, after_second, after_clear;
    CHECK_STATUS(corral_model_clear_cache(m), CORRAL_OK);
    CHECK_STATUS(corral_model_stats(m, &before), CORRAL_OK);
    const char *prompt = "A long shared system prompt about the weather in Paris, then a question:";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, NULL), CORRAL_OK);
    CHECK_STATUS(corral_model_stats(m, &after_first), CORRAL_OK);
    CHECK(after_first.requests == before.requests + 1);
    CHECK(after_first.prompt_tokens > before.prompt_tokens);
    CHECK(after_first.generated_tokens == before.generated_tokens + 2);
    CHECK(after_first.cached_tokens == before.cached_tokens);
    /* The same prompt again reuses all but its last token from the prefix cache. */
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, NULL), CORRAL_OK);
    CHECK_STATUS(corral_model_stats(m, &after_second), CORRAL_OK);
    uint64_t prompt_len = after_first.prompt_tokens - before.prompt_tokens;
    CHECK(after_second.cached_tokens - after_first.cached_tokens == prompt_len - 1);
    /* Cleared: nothing is reused. */
    CHECK_STATUS(corral_model_clear_cache(m), CORRAL_OK);
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, NULL), CORRAL_OK);
    CHECK_STATUS(corral_model_stats(m, &after_clear), CORRAL_OK);
    CHECK(after_clear.cached_tokens == after_second.cached_tokens);
    CHECK(after_clear.preemptions >= before.preemptions);
    CHECK_STATUS(corral_model_stats(NULL, &before), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_stats(m, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_clear_cache(NULL), CORRAL_ERR_NULL_ARGUMENT);
}

static void test_logging(void) {
    corral_set_log_callback(on_log, 1, &log_lines);
    corral_model *m = load_small();
    CHECK(log_lines > 0); /* llama.cpp logs while loading */
    corral_set_log_callback(NULL, 1, NULL);
    int before = log_lines;
    corral_model_free(m);
    corral_model *m2 = load_small();
    CHECK(log_lines == before);
    corral_model_free(m2);
}

static void test_free_with_live_handles(void) {
    corral_model *m = load_small();
    corral_session *s = NULL;
    corral_stream *st = NULL;
    CHECK_STATUS(corral_model_session(m, &s), CORRAL_OK);
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 4;
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_TEXT, .text = "Hello"}, &p, &st), CORRAL_OK);
    corral_model_free(m); /* sessions and streams stay safe to use and free */
    corral_chunk ch;
    corral_status status;
    int guard = 0;
    while ((status = corral_stream_next(st, &ch)) == CORRAL_OK && ch.finish_reason == CORRAL_FINISH_NONE && guard++ < 100) {
    }
    CHECK(status == CORRAL_ERR_CLOSED || ch.finish_reason != CORRAL_FINISH_NONE);
    corral_result r = {0};
    CHECK_STATUS(corral_session_complete(s, "Hi", &p, NULL, NULL, &r), CORRAL_ERR_CLOSED);
    corral_stream_free(st);
    corral_session_free(s);
    corral_model_free(NULL);
}

static const char *WEATHER_TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, "
    "\"required\": [\"city\"]}}}]";

static void test_tools_and_json_messages(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 48;
    p.temperature = 0.0f;
    p.tools_json = WEATHER_TOOLS;
    p.tool_choice = "required";
    corral_message ask[] = {{"user", "What is the weather in Paris?"}};
    corral_result r = {0};
    CHECK_STATUS(corral_model_chat(m, ask, 1, &p, NULL, NULL, &r), CORRAL_OK);
    CHECK(r.finish_reason == CORRAL_FINISH_TOOL_CALLS);
    CHECK(r.tool_calls_json && strstr(r.tool_calls_json, "\"name\":\"get_weather\"") != NULL);
    CHECK(r.tool_calls_json && strstr(r.tool_calls_json, "\"id\":\"call_") != NULL);
    CHECK(r.logprobs_json == NULL);
    corral_result_free(&r);
    CHECK(r.tool_calls_json == NULL);

    /* Streamed: tool-call deltas arrive in chunks, the text stays empty. */
    corral_stream *s = NULL;
    CHECK_STATUS(corral_model_generate_stream(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES, .messages = ask, .n_messages = 1}, &p, &s), CORRAL_OK);
    corral_chunk chunk;
    int deltas = 0;
    do {
        CHECK_STATUS(corral_stream_next(s, &chunk), CORRAL_OK);
        if (chunk.tool_calls_json) deltas++;
        CHECK(chunk.text_len == 0);
    } while (chunk.finish_reason == CORRAL_FINISH_NONE);
    CHECK(chunk.finish_reason == CORRAL_FINISH_TOOL_CALLS);
    CHECK(deltas >= 2);
    corral_stream_free(s);

    /* The tool result goes back as OpenAI-shaped JSON messages. */
    const char *conversation =
        "[{\"role\": \"user\", \"content\": \"What is the weather in Paris?\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\","
        "   \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"call_1\", \"content\": \"18 C and sunny\"}]";
    char *prompt = NULL;
    CHECK_STATUS(corral_model_apply_chat_template_json(m, conversation, true, WEATHER_TOOLS, NULL, &prompt), CORRAL_OK);
    CHECK(prompt && strstr(prompt, "18 C and sunny") != NULL);
    corral_string_free(prompt);
    p.tool_choice = "none";
    p.max_tokens = 8;
    p.logprobs = 2;
    CHECK_STATUS(corral_model_generate(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = conversation}, &p, NULL, NULL, &r), CORRAL_OK);
    CHECK(r.finish_reason != CORRAL_FINISH_TOOL_CALLS && r.tool_calls_json == NULL);
    CHECK(r.logprobs_json && strstr(r.logprobs_json, "\"top_logprobs\"") != NULL);
    corral_result_free(&r);
    corral_session *session = NULL;
    CHECK_STATUS(corral_model_session(m, &session), CORRAL_OK);
    CHECK_STATUS(corral_session_generate(session, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = conversation}, &p, NULL, NULL, &r), CORRAL_OK);
    corral_result_free(&r);
    s = NULL;
    CHECK_STATUS(corral_session_generate_stream(session, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = conversation}, &p, &s), CORRAL_OK);
    corral_stream_free(s);
    corral_session_free(session);

    /* Bad input: typed errors, nothing generated. */
    CHECK_STATUS(corral_model_generate(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = NULL}, &p, NULL, NULL, &r), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_generate(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = "{\"role\": \"user\"}"}, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_generate(m, &(corral_prompt){.kind = CORRAL_PROMPT_MESSAGES_JSON, .text = "[{\"role\": \"user\"}]"}, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    p.tools_json = "not json";
    CHECK_STATUS(corral_model_chat(m, ask, 1, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    p.tools_json = WEATHER_TOOLS;
    p.tool_choice = "no_such_tool";
    CHECK_STATUS(corral_model_chat(m, ask, 1, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    p.tool_choice = NULL;
    p.logprobs = 21;
    CHECK_STATUS(corral_model_chat(m, ask, 1, &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    p = corral_generate_default_params();
    p.tools_json = WEATHER_TOOLS;
    CHECK_STATUS(corral_model_complete(m, "Hi", &p, NULL, NULL, &r), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK(corral_cpu_variant() != NULL && strlen(corral_cpu_variant()) > 0);
}

/* The tagged prompt of corral_*_generate: token ids, a bad kind, NULL pointers. */
static void test_generate_prompts(corral_model *m) {
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 4;
    p.temperature = 0.0f;
    p.ignore_eos = true;
    int32_t *tokens = NULL;
    size_t n = 0;
    CHECK_STATUS(corral_model_tokenize(m, "The capital of France is", true, false, &tokens, &n), CORRAL_OK);
    corral_prompt by_tokens = {.kind = CORRAL_PROMPT_TOKENS, .tokens = tokens, .n_tokens = n};
    corral_result from_tokens = {0}, from_text = {0};
    CHECK_STATUS(corral_model_generate(m, &by_tokens, &p, NULL, NULL, &from_tokens), CORRAL_OK);
    /* Token ids are used as given: the same ids as the text's tokenization, the same greedy reply. */
    CHECK_STATUS(corral_model_complete(m, "The capital of France is", &p, NULL, NULL, &from_text), CORRAL_OK);
    CHECK(from_tokens.usage.prompt_tokens == n && from_tokens.usage.completion_tokens == 4);
    CHECK(from_tokens.text && from_text.text && strcmp(from_tokens.text, from_text.text) == 0);
    corral_result_free(&from_tokens);
    corral_result_free(&from_text);

    corral_session *s = NULL;
    CHECK_STATUS(corral_model_session(m, &s), CORRAL_OK);
    corral_stream *st = NULL;
    CHECK_STATUS(corral_session_generate_stream(s, &by_tokens, &p, &st), CORRAL_OK);
    corral_chunk ch;
    while (corral_stream_next(st, &ch) == CORRAL_OK && ch.finish_reason == CORRAL_FINISH_NONE) {
    }
    CHECK(ch.finish_reason == CORRAL_FINISH_LENGTH);
    corral_stream_free(st);
    corral_session_free(s);

    int32_t out_of_vocabulary[] = {1, 999999};
    corral_prompt bad_token = {.kind = CORRAL_PROMPT_TOKENS, .tokens = out_of_vocabulary, .n_tokens = 2};
    CHECK_STATUS(corral_model_generate(m, &bad_token, &p, NULL, NULL, NULL), CORRAL_ERR_INVALID_ARGUMENT);
    corral_prompt no_tokens = {.kind = CORRAL_PROMPT_TOKENS, .tokens = NULL, .n_tokens = 3};
    CHECK_STATUS(corral_model_generate(m, &no_tokens, &p, NULL, NULL, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_prompt bad_kind = {.kind = 42, .text = "Hello"};
    CHECK_STATUS(corral_model_generate(m, &bad_kind, &p, NULL, NULL, NULL), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_generate_stream(m, &bad_kind, &p, &st), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(corral_model_generate(m, NULL, &p, NULL, NULL, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_prompt no_messages = {.kind = CORRAL_PROMPT_MESSAGES, .messages = NULL, .n_messages = 1};
    CHECK_STATUS(corral_model_generate(m, &no_messages, &p, NULL, NULL, NULL), CORRAL_ERR_NULL_ARGUMENT);
    corral_tokens_free(tokens, n);
}

/* LoRA adapters: loaded on the model, chosen per request; bad files are typed errors. */
static void test_adapters(corral_model *m) {
    char adapter[4096];
    const char *slash = strrchr(model_path, '/');
    snprintf(adapter, sizeof adapter, "%.*s/smollm2-lora-test-a.gguf", slash ? (int) (slash - model_path) : 1,
             slash ? model_path : ".");
    CHECK_STATUS(corral_model_load_adapter(m, "a", adapter), CORRAL_OK);
    CHECK_STATUS(corral_model_load_adapter(m, "a", adapter), CORRAL_ERR_INVALID_ARGUMENT);
    char *names = NULL;
    CHECK_STATUS(corral_model_adapters_json(m, &names), CORRAL_OK);
    CHECK(names && strcmp(names, "[\"a\"]") == 0);
    corral_string_free(names);

    const char *prompt = "The old lighthouse keeper opened the door and saw";
    corral_generate_params p = corral_generate_default_params();
    p.max_tokens = 16;
    p.temperature = 0;
    p.logprobs = 0;
    corral_result base = {0}, zero = {0}, one = {0}, bad = {0};
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &base), CORRAL_OK);
    p.adapters_json = "[{\"name\": \"a\", \"scale\": 0}]";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &zero), CORRAL_OK);
    CHECK(base.text && zero.text && strcmp(base.text, zero.text) == 0);
    CHECK(base.logprobs_json && zero.logprobs_json && strcmp(base.logprobs_json, zero.logprobs_json) == 0);
    p.adapters_json = "[{\"name\": \"a\"}]";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &one), CORRAL_OK);
    CHECK(one.logprobs_json && strcmp(base.logprobs_json, one.logprobs_json) != 0);
    p.adapters_json = "[{\"name\": \"nope\"}]";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &bad), CORRAL_ERR_INVALID_ARGUMENT);
    p.adapters_json = "{\"name\": \"a\"}";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &bad), CORRAL_ERR_INVALID_ARGUMENT);
    p.adapters_json = "[{\"name\": \"a\", \"scale\": \"high\"}]";
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &bad), CORRAL_ERR_INVALID_ARGUMENT);
    corral_result_free(&base);
    corral_result_free(&zero);
    corral_result_free(&one);

    CHECK_STATUS(corral_model_load_adapter(m, "x", "/nonexistent/adapter.gguf"), CORRAL_ERR_MODEL_NOT_FOUND);
    static const unsigned char junk[64] = "GGUF\x03\x00\x00\x00 this is not an adapter";
    CHECK_STATUS(corral_model_load_adapter(m, "x", write_file("junk-adapter.gguf", junk, sizeof junk)), CORRAL_ERR_INVALID_MODEL);
    CHECK_STATUS(corral_model_load_adapter(m, "x", model_path), CORRAL_ERR_INVALID_MODEL);
    CHECK_STATUS(corral_model_load_adapter(m, NULL, adapter), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_model_remove_adapter(m, "a"), CORRAL_OK);
    CHECK_STATUS(corral_model_remove_adapter(m, "a"), CORRAL_ERR_INVALID_ARGUMENT);
    p.adapters_json = NULL;
    CHECK_STATUS(corral_model_complete(m, prompt, &p, NULL, NULL, &bad), CORRAL_OK);
    corral_result_free(&bad);
}

/* What a load takes in memory, without loading; context "auto". */
static void test_estimate_memory(void) {
    corral_model_params p = corral_model_default_params();
    p.context_length = 2048;
    corral_memory_estimate e;
    CHECK_STATUS(corral_estimate_memory(model_path, &p, &e), CORRAL_OK);
    CHECK(e.context_length == 2048);
    CHECK(e.kv_cache_bytes == 30ull * 3 * 64 * 2 * 2 * 2048); /* layers x KV heads x dim x (K+V) x f16 */
    CHECK(e.weights_bytes > 90ull << 20 && e.mapped_weights_bytes <= e.weights_bytes);
    CHECK(e.total_bytes == e.weights_bytes + e.kv_cache_bytes + e.compute_bytes + e.overhead_bytes);
    CHECK(e.required_bytes == e.total_bytes - e.mapped_weights_bytes);
    CHECK(e.fits && e.available_bytes > e.required_bytes);
    p.context_length = CORRAL_CONTEXT_LENGTH_AUTO;
    CHECK_STATUS(corral_estimate_memory(model_path, &p, &e), CORRAL_OK);
    CHECK(e.context_length == 8192); /* the trained context fits here */
    corral_model *m = NULL;
    p.max_sequences = 1;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_OK);
    corral_model_info info;
    CHECK_STATUS(corral_model_info_get(m, &info), CORRAL_OK);
    CHECK(info.context_length == 8192);
    corral_model_free(m);
    CHECK_STATUS(corral_estimate_memory(NULL, &p, &e), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_estimate_memory(model_path, &p, NULL), CORRAL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(corral_estimate_memory("/nonexistent.gguf", NULL, &e), CORRAL_ERR_MODEL_NOT_FOUND);
    CHECK(strcmp(corral_status_name(CORRAL_ERR_INSUFFICIENT_MEMORY), "insufficient_memory") == 0);
}


/* A loopback port nobody listens on (bound, read back, closed). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof address;
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        getsockname(fd, (struct sockaddr *)&address, &len) != 0) {
        fprintf(stderr, "cannot find a free port\n");
        exit(1);
    }
    close(fd);
    return ntohs(address.sin_port);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Starts `server` (examples/c/rpc_server.c) on `port`; waits until it accepts connections. */
static pid_t start_worker(const char *server, int port) {
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the suite */
        if (!freopen("/dev/null", "w", stdout)) _exit(127);
        execl(server, server, "127.0.0.1", port_text, "1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = {0};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons((uint16_t)port);
        int connected = connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
        close(fd);
        if (connected) return pid;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "the RPC worker on port %d did not start\n", port);
    return pid;
}

static bool stop_after_kill(const char *text, size_t len, void *user_data) {
    (void)text;
    (void)len;
    int *chunks = user_data;
    return ++*chunks < 100000;
}

/* Layers on two loopback workers (CORRAL_RPC_SERVER: the example server) and this process:
 * the same greedy text as the local model; a killed worker fails the next request with
 * CORRAL_ERR_WORKER_UNAVAILABLE and the local model keeps working. */
static void test_rpc(corral_model *local) {
    CHECK(strcmp(corral_status_name(CORRAL_ERR_WORKER_UNAVAILABLE), "worker_unavailable") == 0);
    corral_model_params p = corral_model_default_params();
    p.context_length = 512;
    corral_model *m = NULL;
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", free_port());
    p.rpc_servers = servers;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_WORKER_UNAVAILABLE);
    CHECK(strstr(corral_last_error_message(), servers) != NULL);
    p.rpc_servers = "nohost";
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_INVALID_ARGUMENT);
    p.rpc_servers = "127.0.0.1:50052";
    p.rpc_split = "1,x";
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_INVALID_ARGUMENT);
    p.rpc_split = "1,1,1";
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);

    const char *server = getenv("CORRAL_RPC_SERVER");
    if (!server) return;
    int port_a = free_port(), port_b = free_port();
    pid_t worker_a = start_worker(server, port_a), worker_b = start_worker(server, port_b);
    snprintf(servers, sizeof servers, "127.0.0.1:%d,127.0.0.1:%d", port_a, port_b);
    p.rpc_servers = servers;
    p.rpc_split = NULL;
    CHECK_STATUS(corral_model_load(model_path, &p, &m), CORRAL_OK);
    corral_generate_params g = corral_generate_default_params();
    g.temperature = 0.0f;
    g.max_tokens = 24;
    corral_result here = {0}, there = {0};
    /* Both from an empty cache: a generation continuing from a cached prefix may differ in
     * its last bits, and at a near tie in its text (README, "Concurrency and numerics"). */
    CHECK_STATUS(corral_model_clear_cache(local), CORRAL_OK);
    CHECK_STATUS(corral_model_complete(local, "The three primary colours are", &g, NULL, NULL, &here), CORRAL_OK);
    CHECK_STATUS(corral_model_complete(m, "The three primary colours are", &g, NULL, NULL, &there), CORRAL_OK);
    CHECK(here.text && there.text && strcmp(here.text, there.text) == 0);
    corral_result_free(&here);
    corral_result_free(&there);

    kill(worker_b, SIGKILL);
    waitpid(worker_b, NULL, 0);
    double killed = now_s();
    int chunks = 0;
    g.max_tokens = 64;
    CHECK_STATUS(corral_model_complete(m, "Once upon a time", &g, stop_after_kill, &chunks, &there),
                 CORRAL_ERR_WORKER_UNAVAILABLE);
    CHECK(now_s() - killed < 10.0);
    CHECK_STATUS(corral_model_complete(m, "Again", &g, NULL, NULL, &there), CORRAL_ERR_WORKER_UNAVAILABLE);
    corral_model_free(m);
    CHECK_STATUS(corral_model_complete(local, "The three primary colours are", &g, NULL, NULL, &here), CORRAL_OK);
    corral_result_free(&here);
    kill(worker_a, SIGKILL);
    waitpid(worker_a, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--quick]\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    /* --quick: the parts that need little generation, for slow checkers such as valgrind. */
    int quick = argc > 2 && strcmp(argv[2], "--quick") == 0;
    test_version_and_status_names();
    test_bad_model_files();
    test_progress_cancel();
    test_estimate_memory();
    corral_model *m = load_small();
    if (!m) return 1;
    test_info_and_metadata(m);
    test_tokenize(m);
    test_chat_template(m);
    test_streams(m);
    test_stats_and_clear_cache(m);
    test_embed(m);
    if (!quick) {
        test_complete(m);
        test_chat_and_sessions(m);
        test_score(m);
        test_tools_and_json_messages(m);
        test_generate_prompts(m);
        test_session_state(m);
        test_reasoning(m);
        test_adapters(m);
        test_rpc(m);
    }
    corral_model_free(m);
    if (!quick) test_embedding_models();
    test_logging();
    test_free_with_live_handles();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
