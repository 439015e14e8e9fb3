"""corral's prebuilt wheel and llama-cpp-python generating in one process, in either import
order. Run by scripts/dist/test-llama-cpp-python.sh (make test-dist); by hand:

    pip install dist/corral-*.whl llama-cpp-python
    python scripts/dist/clients/with_llama_cpp_python.py MODEL corral-first|llama-cpp-python-first
"""

from __future__ import annotations

import sys


def corral_reply(model_path: str) -> str:
    import corral

    with corral.Model(model_path, context_length=512) as model:
        return model.chat([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0).text


def llama_cpp_python_reply(model_path: str) -> str:
    import llama_cpp

    llm = llama_cpp.Llama(model_path, n_ctx=512, verbose=False)
    out = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
    llm.close()
    return str(out["choices"][0]["message"]["content"])


def main() -> None:
    model_path, order = sys.argv[1], sys.argv[2]
    steps = [corral_reply, llama_cpp_python_reply]
    if order != "corral-first":
        steps.reverse()
    replies = {step.__name__: step(model_path) for step in steps}
    # And each again, with the other one loaded.
    again = {step.__name__: step(model_path) for step in steps}
    assert replies == again, (replies, again)
    assert all(text.strip() for text in replies.values()), replies
    print(f"{order}: {replies}")


if __name__ == "__main__":
    main()
