/* Streams a chat answer from a model, printing it as it is generated.
 *
 *   cc chat.c $(pkg-config --cflags --libs corral) -o chat
 *   ./chat model.gguf "Why is the sky blue?"
 */
#include <corral.h>
#include <stdio.h>
#include <stdlib.h>

static bool print_chunk(const char *text, size_t len, void *user_data) {
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true; /* false would stop generation */
}

static bool show_progress(float progress, void *user_data) {
    (void)user_data;
    fprintf(stderr, "\rloading %3.0f%%", progress * 100.0f);
    if (progress >= 1.0f) fprintf(stderr, "\r            \r");
    return true; /* false would cancel loading */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [QUESTION]\n", argv[0]);
        return 2;
    }
    const char *question = argc > 2 ? argv[2] : "What is the capital of France?";

    corral_model_params model_params = corral_model_default_params();
    model_params.context_length = 2048;
    model_params.on_progress = show_progress;
    corral_model *model = NULL;
    if (corral_model_load(argv[1], &model_params, &model) != CORRAL_OK) {
        fprintf(stderr, "error: %s\n", corral_last_error_message());
        return 1;
    }

    corral_model_info info;
    if (corral_model_info_get(model, &info) == CORRAL_OK) {
        fprintf(stderr, "%s (%s, %s, %llu parameters)\n", info.name, info.architecture, info.quantization,
                (unsigned long long)info.parameters);
    }

    corral_message messages[] = {
        {.role = "system", .content = "You are a concise assistant."},
        {.role = "user", .content = question},
    };
    corral_generate_params params = corral_generate_default_params();
    params.max_tokens = 128;
    params.temperature = 0.0f;

    /* 1. Callback streaming. */
    corral_result result = {0};
    corral_status status = corral_model_chat(model, messages, 2, &params, print_chunk, NULL, &result);
    if (status != CORRAL_OK) {
        fprintf(stderr, "\nerror: %s\n", corral_last_error_message());
        corral_model_free(model);
        return 1;
    }
    printf("\n");
    fprintf(stderr, "[%s] prompt %u tokens, completion %u tokens, %.1f tokens/s\n",
            result.finish_reason == CORRAL_FINISH_STOP ? "stop" : "length", result.usage.prompt_tokens,
            result.usage.completion_tokens, result.usage.generation_tokens_per_s);
    corral_result_free(&result);

    /* 2. Pull streaming: the same question again, chunk by chunk. */
    corral_prompt conversation = {.kind = CORRAL_PROMPT_MESSAGES, .messages = messages, .n_messages = 2};
    corral_stream *stream = NULL;
    if (corral_model_generate_stream(model, &conversation, &params, &stream) != CORRAL_OK) {
        fprintf(stderr, "error: %s\n", corral_last_error_message());
        corral_model_free(model);
        return 1;
    }
    corral_chunk chunk;
    while (corral_stream_next(stream, &chunk) == CORRAL_OK) {
        fwrite(chunk.text, 1, chunk.text_len, stdout);
        if (chunk.finish_reason != CORRAL_FINISH_NONE) break;
    }
    printf("\n");
    corral_stream_free(stream);
    corral_model_free(model);
    return 0;
}
