// Shared test setup: the real default model, loaded once per test file.
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { after, before } from 'node:test'
import { fileURLToPath } from 'node:url'

import { Model } from 'corral'

export const PKG_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_DIR = resolve(PKG_DIR, '..')
export const MODEL_PATH =
  process.env.CORRAL_TEST_MODEL ?? resolve(REPO_DIR, 'models/SmolLM2-135M-Instruct.Q4_1.gguf')

if (!existsSync(MODEL_PATH)) {
  throw new Error(`test model not found at ${MODEL_PATH}: run scripts/fetch-model.sh or set CORRAL_TEST_MODEL`)
}

// The embedding test models (scripts/fetch-embedding-models.sh): MiniLM, and the same MiniLM
// with a seeded random rank head (a test-only reranker). Checked by the tests that use them.
export const EMBED_MODEL_PATH =
  process.env.CORRAL_EMBED_MODEL ?? resolve(REPO_DIR, 'models/all-MiniLM-L6-v2.f16.gguf')
export const RERANK_MODEL_PATH =
  process.env.CORRAL_RERANK_MODEL ?? resolve(REPO_DIR, 'models/minilm-rank-test.gguf')

/**
 * The model that the tests of the enclosing file or `describe` share: `load()` loads it before
 * them and hands it to `set`, and it is disposed of after them.
 */
export function sharedModel(load, set) {
  let model
  before(async () => {
    set((model = await load()))
  })
  after(async () => {
    await model?.dispose()
  })
}

/** Loads the test model; pass options to override the small test defaults. */
export function loadModel(options = {}) {
  return Model.load(MODEL_PATH, { contextLength: 2048, ...options })
}

export const GREEDY = { temperature: 0, seed: 1 }

/** Rejects if `promise` takes longer than `ms` (so a hang fails the test instead of stalling). */
export function within(ms, promise, what = 'operation') {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Asserts that `promise` rejects with an instance of `cls` whose `code` is `code`. */
export async function rejectsWith(assert, promise, cls, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${error?.name}: ${error?.message}`)
    assert.equal(error.code, code)
    assert.equal(error.name, cls.name)
    return true
  })
}
