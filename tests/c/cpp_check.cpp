// The header compiles as C++17 and the library works from C++.
#include <corral.h>

#include <cstdio>
#include <memory>
#include <string>

struct ModelDeleter {
    void operator()(corral_model *m) const { corral_model_free(m); }
};

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    corral_model_params params = corral_model_default_params();
    params.context_length = 256;
    corral_model *raw = nullptr;
    if (corral_model_load(argv[1], &params, &raw) != CORRAL_OK) {
        std::fprintf(stderr, "%s\n", corral_last_error_message());
        return 1;
    }
    std::unique_ptr<corral_model, ModelDeleter> model(raw);
    corral_generate_params gen = corral_generate_default_params();
    gen.max_tokens = 6;
    gen.temperature = 0.0f;
    std::string text;
    auto on_chunk = [](const char *t, size_t n, void *user) -> bool {
        static_cast<std::string *>(user)->append(t, n);
        return true;
    };
    corral_result result{};
    if (corral_model_complete(model.get(), "The capital of France is", &gen, on_chunk, &text, &result) != CORRAL_OK) {
        return 1;
    }
    bool ok = text == result.text && text.find("Paris") != std::string::npos;
    corral_result_free(&result);
    std::printf("c++: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
