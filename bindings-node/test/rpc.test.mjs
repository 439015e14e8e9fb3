// Models spread over RPC workers (two `corral-rpc-server` child processes on loopback): the
// same output as a local load, a worker lost mid-stream is a WorkerUnavailableError within
// seconds (never a crash or a hang), and bad addresses or splits are refused.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { InvalidArgumentError, Model, WorkerUnavailableError, serveRpc } from 'corral'

import { GREEDY, MODEL_PATH, rejectsWith, within } from './helpers.mjs'

// The package's own bin script, wherever the package is (this folder's parent, or node_modules).
const SERVER = join(dirname(createRequire(import.meta.url).resolve('corral/package.json')), 'bin/rpc-server.mjs')

const PROMPTS = ['The capital of France is', 'Once upon a time', 'def fibonacci(n):']
const LOAD = { contextLength: 1024, maxSequences: 2 }

/** A loopback port nothing listens on (the OS's choice, released at once). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once `port` accepts a connection; rejects after `ms` or when the worker exits. */
async function waitForPort(worker, ms = 20_000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (worker.process.exitCode !== null || worker.process.signalCode !== null) {
      throw new Error(`the RPC worker on port ${worker.port} exited: ${worker.stderr}`)
    }
    const accepted = await new Promise((resolve) => {
      const socket = connect(worker.port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (accepted) return
    await sleep(100)
  }
  throw new Error(`the RPC worker on port ${worker.port} did not listen within ${ms} ms: ${worker.stderr}`)
}

const workers = []

/** `node bin/rpc-server.mjs` on a free loopback port with one thread. */
async function startWorker() {
  const port = await freePort()
  const child = spawn(process.execPath, [SERVER, '--port', String(port), '--threads', '1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const worker = { process: child, port, address: `127.0.0.1:${port}`, stderr: '' }
  child.stderr.setEncoding('utf8').on('data', (text) => (worker.stderr += text))
  workers.push(worker)
  return worker
}

function killWorkers() {
  for (const { process: child } of workers) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}
// Also when the test process ends without its after() hook (a crash, a signal).
process.once('exit', killWorkers)

/** Reads a stream to its end: its text, or the error it threw. */
async function drain(stream, onChunk = () => {}) {
  let text = ''
  for await (const chunk of stream) {
    text += chunk.text
    onChunk(chunk)
  }
  return text
}

describe('RPC workers', () => {
  let w1
  let w2
  let local
  let remote

  before(async () => {
    w1 = await startWorker()
    w2 = await startWorker()
    await Promise.all([waitForPort(w1), waitForPort(w2)])
    local = await within(60_000, Model.load(MODEL_PATH, LOAD), 'local load')
    remote = await within(60_000, Model.load(MODEL_PATH, { ...LOAD, rpcServers: [w1.address, w2.address] }), 'RPC load')
  })

  after(async () => {
    killWorkers()
    await Promise.all(
      workers.map(({ process: child }) =>
        child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once('exit', resolve)),
      ),
    )
    await local?.dispose()
    await remote?.dispose()
  })

  test('greedy completions and scores match a local load', { timeout: 180_000 }, async () => {
    for (const prompt of PROMPTS) {
      const options = { maxTokens: 32, ...GREEDY }
      const expected = await within(30_000, local.complete(prompt, options), 'local completion')
      const actual = await within(60_000, remote.complete(prompt, options), 'RPC completion')
      assert.equal(expected.usage.completionTokens, 32)
      assert.equal(actual.text, expected.text, prompt)
      assert.equal(actual.usage.completionTokens, 32)

      const tokens = local.tokenize(prompt + expected.text)
      const [want, got] = await Promise.all([local.score(tokens), within(60_000, remote.score(tokens), 'RPC score')])
      assert.equal(got.length, want.length)
      for (let i = 0; i < want.length; i++) {
        assert.ok(Math.abs(got[i] - want[i]) < 0.2, `${prompt}: token ${i}: ${got[i]} vs ${want[i]}`)
      }
    }
  })

  test('a down worker fails the load at once, naming it', { timeout: 30_000 }, async () => {
    const down = `127.0.0.1:${await freePort()}`
    const started = Date.now()
    const load = Model.load(MODEL_PATH, { ...LOAD, rpcServers: [down] })
    await within(10_000, rejectsWith(assert, load, WorkerUnavailableError, 'worker_unavailable'), 'load with a down worker')
    await assert.rejects(Model.load(MODEL_PATH, { ...LOAD, rpcServers: [down] }), (error) => error.message.includes(down))
    assert.ok(Date.now() - started < 10_000)
  })

  test('malformed addresses, splits and types are invalid arguments', { timeout: 30_000 }, async () => {
    for (const options of [
      { rpcServers: ['nohost'] },
      { rpcServers: ['h:0'] },
      { rpcServers: ['h:65536'] },
      { rpcServers: [':50052'] },
      { rpcServers: [w1.address, w1.address] },
      { rpcServers: [w1.address, w2.address], rpcSplit: [1, 1] },
      { rpcServers: [w1.address, w2.address], rpcSplit: [1, 1, 1, 1] },
      { rpcServers: [w1.address], rpcSplit: [1, Number.NaN] },
      { rpcServers: [w1.address], rpcSplit: [1, -1] },
      { rpcSplit: [1] },
      { rpcServers: w1.address },
      { rpcServers: [50052] },
      { rpcServers: [w1.address], rpcSplit: ['1', '1'] },
      { rpcServers: [w1.address], rpcSplit: 1 },
      { rpcServer: [w1.address] },
    ]) {
      await within(10_000, rejectsWith(assert, Model.load(MODEL_PATH, { ...LOAD, ...options }), InvalidArgumentError, 'invalid_argument'))
    }
  })

  test('serveRpc rejects when it cannot listen, and checks its options', { timeout: 30_000 }, async () => {
    const taken = createServer()
    await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const port = taken.address().port
      await within(10_000, rejectsWith(assert, serveRpc({ port, threads: 1 }), WorkerUnavailableError, 'worker_unavailable'))
    } finally {
      taken.close()
    }
    for (const options of [{ port: 0 }, { port: 65536 }, { port: 1.5 }, { threads: 0 }, { port: '50052' }, { prot: 50052 }, 'fast']) {
      await within(10_000, rejectsWith(assert, serveRpc(options), InvalidArgumentError, 'invalid_argument'))
    }
  })

  // Last: it kills a worker the tests above use.
  test('a worker killed mid-stream fails the stream, then every request, with WorkerUnavailableError', { timeout: 120_000 }, async (t) => {
    let chunks = 0
    let streaming
    const streamed = new Promise((resolve) => (streaming = resolve))
    const stream = remote.completeStream('Once upon a time', { maxTokens: 900, ignoreEos: true, ...GREEDY })
    const outcome = drain(stream, () => {
      if (++chunks === 8) streaming()
    }).then(
      (text) => ({ text }),
      (error) => ({ error, at: performance.now() }),
    )
    await within(60_000, streamed, 'the first chunks over RPC')
    const killedAt = performance.now()
    w1.process.kill('SIGKILL')
    const { error, at, text } = await within(15_000, outcome, 'the stream after the kill')
    assert.equal(text, undefined, `the stream ended normally after ${chunks} chunks`)
    assert.ok(error instanceof WorkerUnavailableError, `expected WorkerUnavailableError, got ${error?.name}: ${error?.message}`)
    assert.equal(error.code, 'worker_unavailable')
    assert.ok(error.message.includes(w1.address), error.message)
    const elapsed = at - killedAt
    t.diagnostic(`kill to error: ${elapsed.toFixed(0)} ms (after ${chunks} chunks)`)
    assert.ok(elapsed < 10_000, `${elapsed} ms from the kill to the error`)

    // The process is unharmed: a model loaded now runs.
    const fresh = await within(60_000, Model.load(MODEL_PATH, LOAD), 'local load after the kill')
    try {
      const reply = await within(30_000, fresh.complete('Hello', { maxTokens: 8, ...GREEDY }))
      assert.equal(reply.usage.completionTokens, 8)
    } finally {
      await fresh.dispose()
    }
    // The RPC model stays failed until it is closed.
    await within(10_000, rejectsWith(assert, remote.complete('Hello', { maxTokens: 4, ...GREEDY }), WorkerUnavailableError, 'worker_unavailable'))
    await within(10_000, remote.dispose(), 'closing the RPC model')
    assert.equal(remote.closed, true)
  })
})
