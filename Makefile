# corral: the two entry points of the README, plus their parts.
#   make demo   streams a chat answer from the default model
#   make test   runs every test
# Both install what a fresh Debian machine lacks (scripts/setup.sh) and fetch the model.

MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf
CARGO ?= cargo
PROMPT ?= Explain in two sentences why the sky is blue.

.PHONY: demo test setup model embedding-models build test-rust test-c test-python test-node test-dist dist bench header

setup:
	./scripts/setup.sh

model:
	./scripts/fetch-model.sh >/dev/null

# MiniLM (f16, Q8_0), its source weights and the test reranker, for the embedding tests; the
# test LoRA adapters of the default model.
embedding-models: setup
	./scripts/fetch-embedding-models.sh >/dev/null

build: setup
	$(CARGO) build --release --locked -p corral-cli

demo: build model
	./target/release/corral chat $(MODEL) "$(PROMPT)" --max-tokens 200 --temperature 0.7 --seed 3

test: setup model embedding-models test-rust test-c test-python test-node test-dist

test-rust:
	$(CARGO) fmt --all --check
	$(CARGO) test --release --locked

test-c:
	./scripts/test-c.sh

test-python:
	./scripts/test-python.sh

test-node:
	./scripts/test-node.sh

# The prebuilt packages (wheel, npm tarballs, C SDK) in dist/, and their test on a clean
# Debian bullseye machine.
dist: setup
	./scripts/dist/build.sh

test-dist: dist model
	./scripts/dist/test.sh
	./scripts/dist/test-llama-cpp-python.sh

bench: build model
	./target/release/corral bench $(MODEL)
