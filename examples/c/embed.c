/* Embeds a question and some documents and prints the documents by cosine similarity.
 *
 *   cc embed.c $(pkg-config --cflags --libs corral) -o embed
 *   ./embed all-MiniLM-L6-v2.f16.gguf "How is bread made to rise?"
 */
#include <corral.h>
#include <stdio.h>

static const char *documents[] = {
    "The Eiffel Tower is in Paris and was finished in 1889.",
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
    "The Rhine flows from the Swiss Alps to the North Sea.",
};
#define N_DOCUMENTS (sizeof documents / sizeof documents[0])

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [QUESTION]\n", argv[0]);
        return 2;
    }
    const char *texts[N_DOCUMENTS + 1] = {argc > 2 ? argv[2] : "How is bread made to rise?"};
    for (size_t i = 0; i < N_DOCUMENTS; i++) texts[i + 1] = documents[i];

    corral_model *model = NULL;
    if (corral_model_load(argv[1], NULL, &model) != CORRAL_OK) {
        fprintf(stderr, "load failed: %s\n", corral_last_error_message());
        return 1;
    }
    /* One call embeds all texts, batched; vectors are unit length by default. */
    corral_embeddings e = {0};
    corral_status status = corral_model_embed(model, texts, N_DOCUMENTS + 1, NULL, &e);
    if (status != CORRAL_OK) {
        fprintf(stderr, "embed failed [%s]: %s\n", corral_status_name(status), corral_last_error_message());
        corral_model_free(model);
        return 1;
    }
    printf("question: %s\n", texts[0]);
    for (size_t d = 1; d < e.count; d++) {
        double cosine = 0;
        for (size_t k = 0; k < e.dimensions; k++) cosine += (double)e.data[k] * e.data[d * e.dimensions + k];
        printf("  %.3f  %s\n", cosine, texts[d]);
    }
    corral_embeddings_free(&e);
    corral_model_free(model);
    return 0;
}
