// Fit before loading: estimateMemory, contextLength 'auto', InsufficientMemoryError.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'

import { estimateMemory, InsufficientMemoryError, InvalidArgumentError, InvalidModelError, Model, ModelNotFoundError } from 'corral'

import { MODEL_PATH, rejectsWith } from './helpers.mjs'

// SmolLM2-135M: 30 layers x 3 KV heads x 64 x (K + V) x f16 per token.
const KV_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2

describe('fit before loading', () => {
  test('estimateMemory reports each part', async () => {
    const e = await estimateMemory(MODEL_PATH, { contextLength: 2048 })
    assert.equal(e.contextLength, 2048)
    assert.equal(e.kvCacheBytes, KV_BYTES_PER_TOKEN * 2048)
    assert.equal(e.totalBytes, e.weightsBytes + e.kvCacheBytes + e.computeBytes + e.overheadBytes)
    assert.equal(e.requiredBytes, e.totalBytes - e.mappedWeightsBytes)
    assert.ok(e.fits && e.availableBytes > e.requiredBytes)
    // The process overhead differs between machines (195 MiB in all on one, over 250 on another)
    assert.ok(e.totalBytes > 150 * 2 ** 20 && e.totalBytes < 350 * 2 ** 20, `${e.totalBytes}`)
    const more = await estimateMemory(MODEL_PATH, { contextLength: 2048, maxSequences: 16 })
    assert.ok(more.computeBytes > e.computeBytes)
    assert.equal((await estimateMemory(MODEL_PATH, { contextLength: 'auto' })).contextLength, 8192)
  })

  test("contextLength 'auto' loads the largest context that fits", async () => {
    const model = await Model.load(MODEL_PATH, { contextLength: 'auto', maxSequences: 1 })
    assert.equal(model.info.contextLength, 8192)
    await model.dispose()
  })

  test('a context that cannot fit is refused before allocating; the process goes on', async () => {
    const huge = await estimateMemory(MODEL_PATH, { contextLength: 10_000_000 })
    assert.equal(huge.fits, false)
    await rejectsWith(assert, Model.load(MODEL_PATH, { contextLength: 10_000_000 }), InsufficientMemoryError, 'insufficient_memory')
    await assert.rejects(Model.load(MODEL_PATH, { contextLength: 10_000_000 }), /MiB available/)
    const model = await Model.load(MODEL_PATH, { contextLength: 512, maxSequences: 1 })
    const reply = await model.complete('Hello', { maxTokens: 2, temperature: 0 })
    assert.equal(reply.usage.completionTokens, 2)
    await model.dispose()
  })

  test('bad arguments and files', async () => {
    await rejectsWith(assert, estimateMemory('/nonexistent/model.gguf'), ModelNotFoundError, 'model_not_found')
    const dir = mkdtempSync(join(tmpdir(), 'corral-fit-'))
    try {
      writeFileSync(join(dir, 'random.gguf'), Buffer.alloc(4096, 7))
      await rejectsWith(assert, estimateMemory(join(dir, 'random.gguf')), InvalidModelError, 'invalid_model')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    await rejectsWith(assert, estimateMemory(MODEL_PATH, { contextLength: 'big' }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, estimateMemory(MODEL_PATH, { contextLength: 1.5 }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, estimateMemory(MODEL_PATH, { contextLenght: 512 }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, Model.load(MODEL_PATH, { contextLength: 2 ** 30 }), InvalidArgumentError, 'invalid_argument')
  })
})
