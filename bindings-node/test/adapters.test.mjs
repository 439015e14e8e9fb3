// LoRA adapters: the `adapters` load option, loadAdapter/removeAdapter/adapters(), the
// `adapters` generation option (scale 0 is the base model, scale 1 changes it), concurrent
// requests with different adapters, and typed errors for bad names, scales and files.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { InvalidArgumentError, InvalidModelError, Model, ModelNotFoundError } from 'corral'

import { MODEL_PATH, REPO_DIR, rejectsWith, within } from './helpers.mjs'

// Seeded test adapters of the default model (scripts/fetch-model.sh builds them).
const ADAPTER_A = process.env.CORRAL_TEST_ADAPTER_A ?? resolve(REPO_DIR, 'models/smollm2-lora-test-a.gguf')
const ADAPTER_B = process.env.CORRAL_TEST_ADAPTER_B ?? resolve(REPO_DIR, 'models/smollm2-lora-test-b.gguf')
const PROMPT = 'The old lighthouse keeper opened the door and saw'

function load(options = {}) {
  return Model.load(MODEL_PATH, { contextLength: 2048, threads: 2, ...options })
}

/** Greedy options with per-token logprobs, running with `adapters`. */
function using(adapters, maxTokens = 24) {
  return { maxTokens, temperature: 0, seed: 1, logprobs: true, adapters }
}

/**
 * The generated text and each token's log-probability. `fresh` first drops the cached
 * prefixes, so the whole prompt is evaluated in one batch: the adapters' f32 matrices go
 * through llama.cpp kernels whose rounding depends on the batch shape, so a run that reuses a
 * cached prefix (and evaluates only the prompt's last token) may differ slightly.
 */
async function run(model, adapters, maxTokens, fresh = true) {
  if (fresh) model.clearCache()
  const out = await model.complete(PROMPT, using(adapters, maxTokens))
  return { text: out.text, logprobs: out.logprobs.map((l) => l.token.logprob) }
}

describe('adapters', () => {
  let model
  let dir
  before(async () => {
    model = await load({ adapters: { a: ADAPTER_A, b: ADAPTER_B } })
    dir = mkdtempSync(join(tmpdir(), 'corral-adapters-'))
  })
  after(async () => {
    await model?.dispose()
    rmSync(dir, { recursive: true, force: true })
  })

  test('the adapters load option loads them by name', () => {
    assert.deepEqual(model.adapters(), ['a', 'b'])
  })

  test('scale 0 is the base model exactly; scale 1 changes the logprobs', async () => {
    const base = await run(model, [])
    assert.equal(base.logprobs.length, 24)
    assert.deepEqual(await run(model, [{ name: 'a', scale: 0 }]), base, 'scale 0 must be the base model exactly')
    const a = await run(model, [{ name: 'a' }]) // scale defaults to 1
    assert.deepEqual(await run(model, [{ name: 'a', scale: 1 }]), a)
    assert.notDeepEqual(a.logprobs, base.logprobs, 'scale 1 must change the logprobs')
    const b = await run(model, [{ name: 'b', scale: 1 }])
    assert.notDeepEqual(b.logprobs, a.logprobs)
    // Without adapters again: the base model's output again.
    assert.deepEqual(await run(model, undefined), base)
  })

  test('concurrent requests with different adapters each match their solo run', async () => {
    const sets = [[], [{ name: 'a' }], [{ name: 'b' }], [{ name: 'a', scale: 0.5 }, { name: 'b', scale: 0.5 }]]
    const solo = []
    for (const set of sets) solo.push(await run(model, set, 32))
    model.clearCache()
    const together = await within(120_000, Promise.all(sets.map((set) => run(model, set, 32, false))), 'concurrent requests')
    together.forEach((result, i) => assert.deepEqual(result, solo[i], `set ${JSON.stringify(sets[i])}`))
    // Streams choose adapters too.
    let streamed = ''
    model.clearCache()
    for await (const chunk of model.completeStream(PROMPT, using([{ name: 'b' }], 32))) streamed += chunk.text
    assert.equal(streamed, solo[2].text)
  })

  test('loadAdapter and removeAdapter while the model serves', async () => {
    const plain = await load()
    try {
      assert.deepEqual(plain.adapters(), [])
      await rejectsWith(assert, plain.complete(PROMPT, using([{ name: 'a' }], 4)), InvalidArgumentError, 'invalid_argument')
      await plain.loadAdapter('a', ADAPTER_A)
      assert.deepEqual(plain.adapters(), ['a'])
      // The same file gives the same output as when loaded with the model.
      assert.deepEqual(await run(plain, [{ name: 'a' }]), await run(model, [{ name: 'a' }]))
      // A name already loaded is refused (remove it first).
      await rejectsWith(assert, plain.loadAdapter('a', ADAPTER_B), InvalidArgumentError, 'invalid_argument')
      await plain.loadAdapter('b', ADAPTER_B)
      assert.deepEqual(plain.adapters(), ['a', 'b'])
      plain.removeAdapter('a')
      assert.deepEqual(plain.adapters(), ['b'])
      await rejectsWith(assert, plain.complete(PROMPT, using([{ name: 'a' }], 4)), InvalidArgumentError, 'invalid_argument')
      assert.throws(() => plain.removeAdapter('a'), InvalidArgumentError)
      assert.throws(() => plain.removeAdapter(42), InvalidArgumentError)
      // Loaded again under the same name: usable again.
      await plain.loadAdapter('a', ADAPTER_A)
      assert.equal((await plain.complete(PROMPT, using([{ name: 'a' }], 4))).usage.completionTokens, 4)
      plain.removeAdapter('a')
      plain.removeAdapter('b')
      assert.deepEqual(plain.adapters(), [])
    } finally {
      await plain.dispose()
    }
  })

  test('bad names and scales reject with InvalidArgumentError', async () => {
    for (const adapters of [
      [{ name: 'missing' }],
      [{ name: 'a', scale: Number.NaN }],
      [{ name: 'a', scale: Number.POSITIVE_INFINITY }],
      [{ name: 'a', scale: 1000 }],
      [{ name: 'a' }, { name: 'a', scale: 0.5 }],
      [{ name: 'a', weight: 1 }],
      [{ scale: 1 }],
      [{ name: 1 }],
      ['a'],
      { name: 'a' },
    ]) {
      await rejectsWith(assert, model.complete(PROMPT, { maxTokens: 2, adapters }), InvalidArgumentError, 'invalid_argument')
    }
    const stream = model.completeStream(PROMPT, { maxTokens: 2, adapters: [{ name: 'missing' }] })
    await rejectsWith(assert, stream.next(), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.loadAdapter('', ADAPTER_A), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.loadAdapter('c', 42), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, load({ adapters: [ADAPTER_A] }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, load({ adapters: { a: 42 } }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, load({ adapters: 'a' }), InvalidArgumentError, 'invalid_argument')
    assert.deepEqual(model.adapters(), ['a', 'b'])
  })

  test('bad adapter files are typed errors and the model keeps serving', async () => {
    const random = join(dir, 'random.gguf')
    writeFileSync(random, randomBytes(4096))
    const missing = join(dir, 'missing.gguf')
    await rejectsWith(assert, model.loadAdapter('c', missing), ModelNotFoundError, 'model_not_found')
    await rejectsWith(assert, model.loadAdapter('c', random), InvalidModelError, 'invalid_model')
    // A whole model is not an adapter.
    await rejectsWith(assert, model.loadAdapter('c', MODEL_PATH), InvalidModelError, 'invalid_model')
    // The same through the load option.
    await rejectsWith(assert, load({ adapters: { c: missing } }), ModelNotFoundError, 'model_not_found')
    await rejectsWith(assert, load({ adapters: { a: ADAPTER_A, c: random } }), InvalidModelError, 'invalid_model')
    assert.deepEqual(model.adapters(), ['a', 'b'])
    assert.equal((await model.complete(PROMPT, { maxTokens: 4, temperature: 0 })).usage.completionTokens, 4)
    const a = await model.complete(PROMPT, using([{ name: 'a' }], 4))
    assert.equal(a.usage.completionTokens, 4)
  })
})
