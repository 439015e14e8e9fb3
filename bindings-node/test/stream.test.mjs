// Streaming, early exit, AbortSignal, timeouts.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { AbortError, CancelledError, CorralError, DeadlineExceededError, Model } from 'corral'

import { GREEDY, MODEL_PATH, loadModel, rejectsWith, within } from './helpers.mjs'

const LONG = { maxTokens: 2000, ignoreEos: true, ...GREEDY }

let model
before(async () => {
  // One sequence: a request that did not release its slot would make the next one hang.
  model = await loadModel({ maxSequences: 1 })
})
after(async () => {
  await model?.dispose()
})

function assertAbortError(error, reason) {
  assert.ok(error instanceof AbortError, `${error?.name}: ${error?.message}`)
  assert.ok(error instanceof CancelledError && error instanceof CorralError)
  assert.equal(error.name, 'AbortError')
  assert.equal(error.code, 'cancelled')
  if (reason !== undefined) assert.equal(error.cause, reason)
  return true
}

describe('streams', () => {
  test('break cancels the generation and frees its sequence', async () => {
    let seen = 0
    for await (const chunk of model.completeStream('Once upon a time', LONG)) {
      assert.equal(typeof chunk.text, 'string')
      if (++seen === 3) break
    }
    // maxSequences is 1: this only runs once the broken-off request released the sequence.
    const next = await within(30_000, model.complete('Hello', { maxTokens: 2, ...GREEDY }), 'the next request')
    assert.equal(next.usage.completionTokens, 2)
  })

  test('an exception in the loop body cancels too', async () => {
    await assert.rejects(async () => {
      for await (const _ of model.completeStream('Once upon a time', LONG)) throw new Error('consumer failed')
    }, /consumer failed/)
    await within(30_000, model.complete('Hello', { maxTokens: 1, ...GREEDY }), 'the next request')
  })

  test('cancel() ends the stream with a cancelled chunk', async () => {
    const stream = model.completeStream('Once upon a time', LONG)
    const chunks = []
    for await (const chunk of stream) {
      chunks.push(chunk)
      if (chunks.length === 2) stream.cancel()
    }
    const last = chunks.at(-1)
    assert.equal(last.finishReason, 'cancelled')
    assert.ok(last.usage.completionTokens < 2000)
  })

  test('a slow consumer still gets every chunk in order', async () => {
    const whole = await model.complete('The three primary colors are', { maxTokens: 24, ...GREEDY })
    let text = ''
    for await (const chunk of model.completeStream('The three primary colors are', { maxTokens: 24, ...GREEDY })) {
      text += chunk.text
      await new Promise((r) => setTimeout(r, 30))
    }
    assert.equal(text, whole.text)
  })

  test('next() calls made concurrently are served in order', async () => {
    const whole = await model.complete('Count: one, two,', { maxTokens: 6, ...GREEDY })
    const stream = model.completeStream('Count: one, two,', { maxTokens: 6, ...GREEDY })
    const results = await Promise.all(Array.from({ length: 10 }, () => stream.next()))
    const chunks = results.filter((r) => !r.done).map((r) => r.value)
    assert.equal(chunks.map((c) => c.text).join(''), whole.text)
    assert.equal(chunks.at(-1).finishReason, 'length')
    assert.ok(results.at(-1).done)
  })

  test('await using / Symbol.asyncDispose closes a stream', async () => {
    const stream = model.completeStream('Once upon a time', LONG)
    await stream.next()
    await stream[Symbol.asyncDispose]()
    assert.deepEqual(await stream.next(), { done: true, value: undefined })
    await within(30_000, model.complete('Hello', { maxTokens: 1, ...GREEDY }), 'the next request')
  })
})

describe('AbortSignal', () => {
  test('aborts a stream during generation', async () => {
    const ac = new AbortController()
    const reason = new Error('user pressed stop')
    let seen = 0
    await assert.rejects(
      async () => {
        for await (const _ of model.chatStream([{ role: 'user', content: 'Tell me a long story.' }], { ...LONG, signal: ac.signal })) {
          if (++seen === 2) ac.abort(reason)
        }
      },
      (e) => assertAbortError(e, reason),
    )
    await within(30_000, model.complete('Hello', { maxTokens: 1, ...GREEDY }), 'the next request')
  })

  test('aborts complete() during generation, promptly', async () => {
    const ac = new AbortController()
    const started = Date.now()
    setTimeout(() => ac.abort(), 300)
    await assert.rejects(model.complete('Once upon a time', { ...LONG, signal: ac.signal }), (e) => assertAbortError(e))
    assert.ok(Date.now() - started < 20_000, 'the abort stopped the generation')
    await within(30_000, model.complete('Hello', { maxTokens: 1, ...GREEDY }), 'the next request')
  })

  test('aborts prompt processing', async () => {
    // A long prompt with a small batch: many engine steps of prompt processing.
    const big = await loadModel({ contextLength: 2048, batchSize: 32, maxSequences: 1 })
    try {
      const prompt = 'The history of computing is a story of people and machines. '.repeat(120)
      const ac = new AbortController()
      setTimeout(() => ac.abort(), 50)
      const started = Date.now()
      await assert.rejects(big.complete(prompt, { maxTokens: 1, signal: ac.signal }), (e) => assertAbortError(e))
      const aborted = Date.now() - started
      const full = await big.complete(prompt, { maxTokens: 1 })
      assert.ok(full.usage.promptMs > aborted, `aborted after ${aborted} ms, full prompt took ${full.usage.promptMs} ms`)
    } finally {
      await big.dispose()
    }
  })

  test('an already aborted signal rejects at once', async () => {
    const signal = AbortSignal.abort('no thanks')
    await assert.rejects(model.complete('Hi', { signal }), (e) => assertAbortError(e, 'no thanks'))
    await assert.rejects(model.chat([{ role: 'user', content: 'Hi' }], { signal }), (e) => assertAbortError(e))
    await assert.rejects(async () => {
      for await (const _ of model.completeStream('Hi', { signal })) assert.fail('no chunk expected')
    }, (e) => assertAbortError(e))
    await assert.rejects(Model.load(MODEL_PATH, { signal }), (e) => assertAbortError(e, 'no thanks'))
  })

  test('aborts loading', async () => {
    const ac = new AbortController()
    const seen = []
    await assert.rejects(
      Model.load(MODEL_PATH, {
        signal: ac.signal,
        onProgress: (p) => {
          seen.push(p)
          ac.abort()
        },
      }),
      (e) => assertAbortError(e),
    )
    assert.ok(seen.length >= 1)
  })

  test('signals work for sessions', async () => {
    const session = model.session()
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 200)
    await assert.rejects(session.complete('Once upon a time', { ...LONG, signal: ac.signal }), (e) => assertAbortError(e))
    await session.dispose()
  })
})

describe('loading progress', () => {
  test('onProgress reports increasing values up to 1', async () => {
    const seen = []
    const m = await Model.load(MODEL_PATH, { contextLength: 256, onProgress: (p) => seen.push(p) })
    await new Promise((r) => setTimeout(r, 50)) // progress calls are queued to the event loop
    await m.dispose()
    assert.ok(seen.length >= 2)
    assert.ok(seen.every((p, i) => p >= 0 && p <= 1 && (i === 0 || p >= seen[i - 1])))
    assert.equal(seen.at(-1), 1)
  })

  test('a throwing onProgress stops loading with its error', async () => {
    const boom = new Error('progress bar broke')
    await assert.rejects(
      Model.load(MODEL_PATH, { onProgress: () => { throw boom } }),
      (e) => e === boom,
    )
  })
})

describe('timeout', () => {
  test('a request past its timeout fails with DeadlineExceededError', async () => {
    await rejectsWith(assert, model.complete('Once upon a time', { ...LONG, timeout: 200 }), DeadlineExceededError, 'deadline_exceeded')
    await within(30_000, model.complete('Hello', { maxTokens: 1, ...GREEDY }), 'the next request')
  })
})
