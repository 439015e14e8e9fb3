// The last line of defence against llama.cpp's asserts (GGML_ASSERT, GGML_ABORT): a file that
// slips past corral's own checks must give an error, not kill the host process.
//
// ggml calls its abort callback, then abort(). While a thread runs one of the calls below,
// corral's callback throws instead: llama.cpp catches exceptions around model loading and
// context creation (and turns them into a failed load), and corral_guarded_decode catches them
// around a decode. Outside those calls the callback prints the message and returns, and ggml
// aborts as it always did: there is no C++ frame to catch the exception there.
//
// A decode may only be guarded on one thread (n_threads = 1): ggml's worker threads have no
// catch frame, and the calling thread leaving a graph half computed would strand them.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

#include "llama.h"

namespace {

thread_local int guard_depth = 0;
thread_local std::string last_abort;

class ggml_abort_error : public std::runtime_error {
  public:
    explicit ggml_abort_error(const char *message) : std::runtime_error(message) {}
};

struct guard_scope {
    guard_scope() { ++guard_depth; }
    ~guard_scope() { --guard_depth; }
};

}  // namespace

extern "C" {

// ggml's abort callback (ggml_set_abort_callback).
void corral_ggml_abort_handler(const char *message) {
    if (guard_depth > 0) {
        last_abort = message ? message : "ggml abort";
        throw ggml_abort_error(last_abort.c_str());
    }
    std::fprintf(stderr, "%s\n", message ? message : "ggml abort");
}

void corral_abort_guard_enter(void) { ++guard_depth; }

void corral_abort_guard_leave(void) { --guard_depth; }

// Copies (and forgets) the message of the last assert caught on this thread; returns its
// length, 0 when none. Writes at most `capacity - 1` bytes plus a NUL.
size_t corral_abort_guard_take_message(char *out, size_t capacity) {
    size_t n = last_abort.size();
    if (n == 0 || out == nullptr || capacity == 0) {
        return n;
    }
    size_t copied = n < capacity - 1 ? n : capacity - 1;
    std::memcpy(out, last_abort.data(), copied);
    out[copied] = '\0';
    last_abort.clear();
    return n;
}

// llama_decode with asserts turned into a return value: INT32_MIN when one fired (the context
// is then in an unknown state and must be dropped).
int32_t corral_guarded_decode(llama_context *ctx, const llama_batch *batch) {
    guard_scope scope;
    try {
        return llama_decode(ctx, *batch);
    } catch (const std::exception &e) {
        if (last_abort.empty()) {
            last_abort = e.what();
        }
        return INT32_MIN;
    } catch (...) {
        last_abort = "unknown C++ exception";
        return INT32_MIN;
    }
}

}  // extern "C"

// The tokenizer's entry points, with C++ exceptions caught: llama.cpp's vocabulary code
// indexes its tables with .at(), which throws on a malformed vocabulary (a missing byte token,
// say), and an exception reaching Rust aborts the process. Each returns 0 and sets *result to
// what llama.cpp returned, or returns -1 when it threw (the message is kept as above).
namespace {

template <typename Call> int guarded_call(int32_t *result, Call call) {
    guard_scope scope;
    try {
        *result = call();
        return 0;
    } catch (const std::exception &e) {
        last_abort = e.what();
    } catch (...) {
        last_abort = "unknown C++ exception";
    }
    return -1;
}

}  // namespace

extern "C" {

int corral_guarded_tokenize(const llama_vocab *vocab, const char *text, int32_t text_len, llama_token *tokens,
                            int32_t n_tokens_max, bool add_special, bool parse_special, int32_t *result) {
    return guarded_call(result, [&] { return llama_tokenize(vocab, text, text_len, tokens, n_tokens_max, add_special, parse_special); });
}

int corral_guarded_token_to_piece(const llama_vocab *vocab, llama_token token, char *buf, int32_t length,
                                  int32_t lstrip, bool special, int32_t *result) {
    return guarded_call(result, [&] { return llama_token_to_piece(vocab, token, buf, length, lstrip, special); });
}

int corral_guarded_detokenize(const llama_vocab *vocab, const llama_token *tokens, int32_t n_tokens, char *text,
                              int32_t text_len_max, bool remove_special, bool unparse_special, int32_t *result) {
    return guarded_call(result, [&] {
        return llama_detokenize(vocab, tokens, n_tokens, text, text_len_max, remove_special, unparse_special);
    });
}

}  // extern "C"

// The RPC backend (libggml-rpc.so, built with core/build.rs RPC_PATCHES) calls this when a
// thread waits on a worker whose connection was lost (src/backend/rpc.rs installs it). Inside
// a guarded call (a load, a decode) it throws like an assert, so the call fails with an error
// naming the worker; elsewhere (a model freed after the loss, or while an exception unwinds)
// it returns and the RPC call does nothing.
namespace {

const char RPC_LOST_PREFIX[] = "corral-rpc-lost: ";

}  // namespace

extern "C" {

void corral_rpc_lost(const char *endpoint) {
    if (guard_depth > 0 && std::uncaught_exceptions() == 0) {
        last_abort = std::string(RPC_LOST_PREFIX) + (endpoint ? endpoint : "?");
        throw ggml_abort_error(last_abort.c_str());
    }
}

// llama_synchronize with asserts caught: 0, or -1 when one fired (a lost RPC worker; the
// message is kept as above). llama.cpp's state functions synchronize outside their own catch.
int corral_guarded_synchronize(llama_context *ctx) {
    guard_scope scope;
    try {
        llama_synchronize(ctx);
        return 0;
    } catch (const std::exception &e) {
        if (last_abort.empty()) {
            last_abort = e.what();
        }
    } catch (...) {
        last_abort = "unknown C++ exception";
    }
    return -1;
}

// ggml_backend_rpc_add_server (looked up in the RPC module) with its asserts caught: it
// connects to the worker and asks for its devices, and upstream aborts when either fails.
// Returns the worker's backend registration, or null (the message is kept as above).
void *corral_guarded_rpc_add_server(void *(*add_server)(const char *), const char *endpoint) {
    guard_scope scope;
    try {
        return add_server(endpoint);
    } catch (const std::exception &e) {
        if (last_abort.empty()) {
            last_abort = e.what();
        }
    } catch (...) {
        last_abort = "unknown C++ exception";
    }
    return nullptr;
}

}  // extern "C"
