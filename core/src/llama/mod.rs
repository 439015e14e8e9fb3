//! corral's own bindings of llama.cpp, where llama-cpp-2 falls short: the engine's context and
//! batch (`context`), the tokenizer (`vocab`) and the guard that turns llama.cpp's asserts and
//! C++ exceptions into errors (`guard`, with `core/native/abort_guard.cpp`). Every raw llama.cpp
//! pointer corral handles lives here.

pub(crate) mod context;
pub(crate) mod guard;
pub(crate) mod model;
pub(crate) mod vocab;
