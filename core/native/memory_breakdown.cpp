// What a llama context holds in memory, split as llama.cpp splits it: model weights, the
// context's own state (KV cache) and compute buffers, summed over every buffer type.
//
// llama.cpp's breakdown (llama_get_memory_breakdown) is C++ in its staging header
// src/llama-ext.h, which is not installed; its declaration is repeated here as in the pinned
// llama-cpp-sys-2 (0.1.161). With a model loaded with `no_alloc`, llama.cpp fills it from
// simulated allocations: corral's estimate_memory reads it without loading any weight.

#include <cstddef>
#include <cstring>
#include <map>

#include "ggml-backend.h"
#include "llama.h"

struct llama_memory_breakdown_data {
    size_t model = 0;
    size_t context = 0;
    size_t compute = 0;
};

using llama_memory_breakdown = std::map<ggml_backend_buffer_type_t, llama_memory_breakdown_data>;

LLAMA_API llama_memory_breakdown llama_get_memory_breakdown(const struct llama_context * ctx);

// Sums the breakdown of `ctx`. `model_cpu` is the weights in plain CPU buffers (mapped from
// the file when loaded with mmap); `model_other` those in other buffer types (the copies that
// the CPU backend repacks for its kernels, device memory). Returns false if llama.cpp threw.
extern "C" bool corral_memory_breakdown(const struct llama_context * ctx, size_t * model_cpu, size_t * model_other,
                                        size_t * context, size_t * compute) {
    *model_cpu = *model_other = *context = *compute = 0;
    try {
        for (const auto & entry : llama_get_memory_breakdown(ctx)) {
            const bool plain_cpu = std::strcmp(ggml_backend_buft_name(entry.first), "CPU") == 0;
            *(plain_cpu ? model_cpu : model_other) += entry.second.model;
            *context += entry.second.context;
            *compute += entry.second.compute;
        }
        return true;
    } catch (...) {
        return false;
    }
}
