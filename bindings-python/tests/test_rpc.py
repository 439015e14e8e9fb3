"""Models spread over RPC workers (`python -m corral rpc-server`): the same output as a local
model, a lost worker is a WorkerUnavailableError (never a hang or an abort), bad addresses and
splits are argument errors. Every worker is a child process, killed in teardown."""

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import corral
from conftest import MODEL_OPTIONS

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]

# Per-token log-probabilities of a model spread over workers against the same model run locally
# (the README's batching tolerance: the workers' kernels may differ from this process's).
SCORE_TOLERANCE = 0.2


def free_port() -> int:
    """A loopback port nothing listens on (bound by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(process: "subprocess.Popen[bytes]", port: int, log: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if process.poll() is not None:
            pytest.fail(f"the worker on port {port} exited ({process.returncode}): {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the worker on port {port} did not listen within {within} s: {log.read_text()}")
            time.sleep(0.05)


class Worker:
    """`python -m corral rpc-server` (or `script PORT`) in a child process, listening once
    constructed."""

    def __init__(self, log_dir: Path, script: "Path | None" = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = log_dir / f"worker-{self.port}.log"
        if script is None:
            command = ["-m", "corral", "rpc-server", "--port", str(self.port), "--threads", "1"]
        else:
            command = [str(script), str(self.port)]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, *command], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until_listening(self.process, self.port, self.log)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts workers for one test; all are killed when it ends, whatever happened."""
    started: list[Worker] = []

    def start(script: "Path | None" = None) -> Worker:
        started.append(Worker(tmp_path, script))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    log_dir = tmp_path_factory.mktemp("workers")
    started: list[Worker] = []
    try:
        started.extend(Worker(log_dir) for _ in range(2))
        yield started
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture(scope="module")
def remote(model_path: Path, workers: list[Worker]) -> Iterator[corral.Model]:
    """The default model with equal shares of its layers on both workers and this process."""
    with corral.Model(model_path, rpc_servers=[w.address for w in workers], **MODEL_OPTIONS) as loaded:
        yield loaded


def test_layers_are_spread_over_the_workers_and_this_process(
    model_path: Path, workers: list[Worker], remote: corral.Model, caplog: pytest.LogCaptureFixture
) -> None:
    # A second model on the same workers shares this process's connections to them.
    caplog.set_level(logging.INFO, logger="corral")
    corral.enable_logging(logging.INFO)
    try:
        with corral.Model(model_path, rpc_servers=tuple(w.address for w in workers), **MODEL_OPTIONS) as model:
            assert model.complete("Hi", max_tokens=2, temperature=0).usage.completion_tokens == 2
    finally:
        corral.disable_logging()  # delivers what is pending
    buffers = [r.getMessage() for r in caplog.records if "model buffer size" in r.getMessage()]
    for worker in workers:
        assert any(f"[{worker.address}]" in line for line in buffers), buffers
    assert any("RPC" not in line for line in buffers), buffers  # and some layers stayed here


def test_greedy_text_is_the_local_models(model: corral.Model, remote: corral.Model) -> None:
    for prompt in PROMPTS:
        local = model.complete(prompt, max_tokens=32, temperature=0)
        spread = remote.complete(prompt, max_tokens=32, temperature=0)
        assert spread.text == local.text, prompt
        assert spread.usage.completion_tokens == local.usage.completion_tokens


def test_scores_match_the_local_models(model: corral.Model, remote: corral.Model) -> None:
    tokens = model.tokenize(" ".join(PROMPTS) + " The quick brown fox jumps over the lazy dog.")
    local, spread = model.score(tokens), remote.score(tokens)
    assert len(spread) == len(local)
    worst = max(abs(a - b) for a, b in zip(local, spread))
    assert worst <= SCORE_TOLERANCE, (worst, local, spread)


@pytest.mark.timeout(120)
def test_a_worker_lost_mid_stream_fails_the_model_not_the_process(
    model_path: Path, model: corral.Model, start_worker: Callable[..., Worker]
) -> None:
    victim, survivor = start_worker(), start_worker()
    remote = corral.Model(model_path, rpc_servers=[victim.address, survivor.address], **MODEL_OPTIONS)
    try:
        stream = remote.complete_stream("Once upon a time", max_tokens=1500, ignore_eos=True, temperature=0)
        for _, chunk in zip(range(5), stream):
            assert chunk.text or chunk.tokens
        victim.process.kill()
        killed_at = time.monotonic()
        with pytest.raises(corral.WorkerUnavailableError) as raised:
            for _ in stream:
                assert time.monotonic() - killed_at < 10, "still generating 10 s after the worker was killed"
        seconds = time.monotonic() - killed_at
        print(f"\nkill to WorkerUnavailableError: {seconds:.3f} s")
        assert seconds < 10
        assert isinstance(raised.value, ConnectionError) and raised.value.code == "worker_unavailable"
        assert victim.address in str(raised.value), raised.value

        # The process and its other models go on.
        assert model.complete("The capital of France is", max_tokens=8, temperature=0).usage.completion_tokens == 8
        with corral.Model(model_path, **MODEL_OPTIONS) as fresh:
            assert fresh.complete("Hello", max_tokens=4, temperature=0).usage.completion_tokens == 4

        # The model that lost it fails at once, every time, until closed.
        for call in (lambda: remote.complete("Hi", max_tokens=4), lambda: list(remote.chat_stream([{"role": "user", "content": "Hi"}]))):
            started = time.monotonic()
            with pytest.raises(corral.WorkerUnavailableError, match=victim.address):
                call()
            assert time.monotonic() - started < 5
    finally:
        remote.close()
    assert remote.closed
    with pytest.raises(corral.ClosedError):
        remote.complete("Hi", max_tokens=1)

    # Closing released the survivor: it serves a new model (a worker takes one client at a time).
    with corral.Model(model_path, rpc_servers=[survivor.address], **MODEL_OPTIONS) as again:
        assert again.complete("Hello", max_tokens=4, temperature=0).usage.completion_tokens == 4


def test_a_worker_down_at_load_is_named_at_once(model_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(corral.WorkerUnavailableError) as raised:
        corral.Model(model_path, rpc_servers=[address], **MODEL_OPTIONS)
    assert time.monotonic() - started < 5
    assert isinstance(raised.value, ConnectionError) and raised.value.code == "worker_unavailable"
    assert address in str(raised.value)


@pytest.mark.parametrize("address", ["nohost", "h:0", "h:99999", ":50052", "h:port"])
def test_malformed_addresses(model_path: Path, address: str) -> None:
    with pytest.raises(corral.InvalidArgumentError, match=address) as raised:
        corral.Model(model_path, rpc_servers=[address], **MODEL_OPTIONS)
    assert not isinstance(raised.value, TypeError)
    with pytest.raises(corral.InvalidArgumentError, match=address):
        corral.estimate_memory(model_path, rpc_servers=[address])


@pytest.mark.parametrize(
    "options",
    [
        dict(rpc_split=[1.0]),  # a worker and no weight for this process
        dict(rpc_split=[1, 1, 1]),
        dict(rpc_split=[1.0, -1.0]),
        dict(rpc_split=[0, 0]),
        dict(rpc_split=[float("nan"), 1.0]),
        dict(rpc_split=[1e300, 1.0]),
        dict(rpc_servers=[], rpc_split=[1.0]),
        dict(rpc_servers=["127.0.0.1:50052", "127.0.0.1:50052"]),
    ],
)
def test_bad_splits(model_path: Path, options: dict[str, Any]) -> None:
    # A worker that is down: these must be refused before anything connects.
    arguments = dict(rpc_servers=[f"127.0.0.1:{free_port()}"], **MODEL_OPTIONS)
    arguments.update(options)
    with pytest.raises(corral.InvalidArgumentError) as raised:
        corral.Model(model_path, **arguments)
    assert raised.value.code == "invalid_argument" and not isinstance(raised.value, TypeError)
    with pytest.raises(corral.InvalidArgumentError):
        corral.estimate_memory(model_path, **{k: v for k, v in arguments.items() if k.startswith("rpc_")})


@pytest.mark.parametrize(
    "options",
    [
        dict(rpc_servers="127.0.0.1:50052"),
        dict(rpc_servers=b"127.0.0.1:50052"),
        dict(rpc_servers=[50052]),
        dict(rpc_servers={"127.0.0.1:50052": 1}),
        dict(rpc_split=1.0),
        dict(rpc_split=["1"]),
        dict(rpc_split=[True, 1.0]),
    ],
)
def test_wrong_types(model_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.Model(model_path, **options)
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.estimate_memory(model_path, **options)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (dict(port=0), corral.InvalidArgumentError),
        (dict(port=65536), corral.InvalidArgumentError),
        (dict(port=-1), corral.InvalidArgumentError),
        (dict(threads=0), corral.InvalidArgumentError),
        (dict(host="no such host"), corral.InvalidArgumentError),
        (dict(port="50052"), corral.InvalidArgumentTypeError),
        (dict(port=True), corral.InvalidArgumentTypeError),
        (dict(host=127), corral.InvalidArgumentTypeError),
        (dict(threads=1.5), corral.InvalidArgumentTypeError),
    ],
)
def test_serve_rpc_bad_arguments(arguments: dict[str, Any], error: type) -> None:
    # Refused before serving (a call that got through would block until the test times out).
    with pytest.raises(error):
        corral.serve_rpc(**arguments)


def test_a_busy_port_is_an_error_not_a_hang() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "corral", "rpc-server", "--port", str(port), "--threads", "1"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "could not listen" in done.stderr, done.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_worker_command_stops_on_ctrl_c_and_sigterm(start_worker: Callable[..., Worker], stop: signal.Signals) -> None:
    worker = start_worker()
    worker.process.send_signal(stop)
    assert worker.process.wait(timeout=10) == -stop


# The program as a terminal starts it: a shell starts background jobs with SIGINT ignored,
# and Python then keeps it ignored (so would this program, whatever corral did).
SERVE_IN_PYTHON = """
import signal, sys, corral
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    corral.serve_rpc(port=int(sys.argv[1]), threads=1)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_serve_rpc_raises_keyboard_interrupt(start_worker: Callable[..., Worker], tmp_path: Path) -> None:
    # `corral.serve_rpc` called from a program: Ctrl-C reaches the program as KeyboardInterrupt.
    script = tmp_path / "serve.py"
    script.write_text(SERVE_IN_PYTHON)
    worker = start_worker(script)
    worker.process.send_signal(signal.SIGINT)
    assert worker.process.wait(timeout=10) == 0
    assert "interrupted" in worker.log.read_text()
