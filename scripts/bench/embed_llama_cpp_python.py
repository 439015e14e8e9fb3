"""llama-cpp-python's side of `corral bench-embed`: `Llama(path, embedding=True).embed(texts)`.

Usage: python embed_llama_cpp_python.py MODEL THREADS < {"texts": [...]}
Prints {"seconds": <embed time of all texts>, "vectors": [[...], ...]} (unit length, like corral's).
"""

import json
import sys
import time

from llama_cpp import Llama

model_path, threads = sys.argv[1], int(sys.argv[2])
texts = json.load(sys.stdin)["texts"]
llm = Llama(model_path, embedding=True, n_threads=threads, n_threads_batch=threads, verbose=False)
llm.embed(texts[:8])  # warm-up, as corral's side gets
start = time.perf_counter()
vectors = llm.embed(texts, normalize=True)
seconds = time.perf_counter() - start
json.dump({"seconds": seconds, "vectors": vectors}, sys.stdout)
