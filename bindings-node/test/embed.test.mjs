// Embeddings and reranking: MiniLM (an encoder-only embedding model), the test-only reranker,
// and the default chat model embedding while it generates.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, test } from 'node:test'

import {
  AbortError,
  ContextOverflowError,
  DeadlineExceededError,
  InvalidArgumentError,
  Model,
  UnsupportedError,
} from 'corral'

import { EMBED_MODEL_PATH, GREEDY, RERANK_MODEL_PATH, loadModel, rejectsWith, sharedModel, within } from './helpers.mjs'

for (const [path, variable] of [[EMBED_MODEL_PATH, 'CORRAL_EMBED_MODEL'], [RERANK_MODEL_PATH, 'CORRAL_RERANK_MODEL']]) {
  if (!existsSync(path)) {
    throw new Error(`test model not found at ${path}: run scripts/fetch-embedding-models.sh or set ${variable}`)
  }
}

function dot(a, b) {
  let sum = 0
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i]
  return sum
}
const norm = (v) => Math.sqrt(dot(v, v))
const cosine = (a, b) => dot(a, b) / (norm(a) * norm(b))

/** 64 texts of varied content and length (1 to ~60 words). */
const VARIED = Array.from({ length: 64 }, (_, i) => {
  const topics = ['the weather in spring', 'a recipe for bread', 'how engines work', 'a football match', 'the history of Rome', 'a quiet library', 'learning to swim', 'prime numbers']
  const words = `Text ${i} talks about ${topics[i % topics.length]}, and then goes on about other things for a while.`.split(' ')
  const length = 1 + ((i * 7) % 60)
  return Array.from({ length }, (_, j) => words[(i + j) % words.length]).join(' ')
})

describe('embed (MiniLM)', () => {
  let model
  sharedModel(() => Model.load(EMBED_MODEL_PATH, { contextLength: 512, threads: 2 }), (loaded) => (model = loaded))

  /** The model still embeds after an error. */
  async function stillWorks() {
    const [v] = await model.embed('still working')
    assert.equal(v.length, 384)
  }

  test('one unit-length 384-dim Float32Array per text', async () => {
    const vectors = await model.embed(['Hello world', 'A second, longer text about something else entirely.', 'x'])
    assert.equal(vectors.length, 3)
    for (const v of vectors) {
      assert.ok(v instanceof Float32Array)
      assert.equal(v.length, 384)
      assert.ok(v.every(Number.isFinite), 'a NaN or infinite component')
      assert.ok(Math.abs(norm(v) - 1) < 1e-4, `norm ${norm(v)}`)
    }
    const [single] = await model.embed('Hello world')
    assert.ok(cosine(single, vectors[0]) >= 0.9999)
  })

  test('a single string gives a one-element array', async () => {
    const out = await model.embed('Hello world')
    assert.ok(Array.isArray(out))
    assert.equal(out.length, 1)
  })

  test('the known similarity of two sentences (sentence-transformers: 0.7552)', async () => {
    const [a, b] = await model.embed(['A man is eating food.', 'A man is eating a piece of bread.'])
    const similarity = dot(a, b)
    assert.ok(Math.abs(similarity - 0.7552) < 0.005, `cosine ${similarity}`)
  })

  test('a batch of 64 equals the texts embedded one by one', async () => {
    const batch = await model.embed(VARIED)
    assert.equal(batch.length, VARIED.length)
    for (let i = 0; i < VARIED.length; i++) {
      const [alone] = await model.embed(VARIED[i])
      const c = cosine(batch[i], alone)
      assert.ok(c >= 0.9999, `text ${i}: cosine ${c}`)
    }
  })

  test('concurrent calls each get their own vectors', async () => {
    const groups = [VARIED.slice(0, 5), VARIED.slice(5, 6), VARIED.slice(10, 30), ['A man is eating food.'], VARIED.slice(40, 48)]
    const expected = []
    for (const group of groups) expected.push(await model.embed(group))
    const results = await within(60_000, Promise.all(groups.map((group) => model.embed(group))), 'concurrent embeds')
    for (let g = 0; g < groups.length; g++) {
      assert.equal(results[g].length, groups[g].length)
      for (let i = 0; i < groups[g].length; i++) {
        assert.ok(cosine(results[g][i], expected[g][i]) >= 0.9999, `group ${g} text ${i}`)
      }
    }
  })

  test('normalize: false keeps the raw length', async () => {
    const [raw] = await model.embed('Hello world', { normalize: false })
    const [unit] = await model.embed('Hello world')
    assert.ok(Math.abs(norm(raw) - 1) > 1e-2, `norm ${norm(raw)}`)
    assert.ok(cosine(raw, unit) >= 0.9999)
  })

  test('pooling: cls gives another vector than the model\'s mean', async () => {
    const [mean] = await model.embed('The quick brown fox jumps over the lazy dog.')
    const [cls] = await model.embed('The quick brown fox jumps over the lazy dog.', { pooling: 'cls' })
    const [explicitMean] = await model.embed('The quick brown fox jumps over the lazy dog.', { pooling: 'mean' })
    assert.equal(cls.length, 384)
    assert.ok(Math.abs(norm(cls) - 1) < 1e-4)
    assert.ok(cosine(mean, cls) < 0.999, `cosine ${cosine(mean, cls)}`)
    assert.ok(cosine(mean, explicitMean) >= 0.9999)
  })

  test('no texts: no vectors', async () => {
    assert.deepEqual(await model.embed([]), [])
  })

  test('an empty text is an invalid argument', async () => {
    await rejectsWith(assert, model.embed(''), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.embed(['fine', '']), InvalidArgumentError, 'invalid_argument')
    await stillWorks()
  })

  test('a text longer than the context overflows unless truncated', async () => {
    const long = Array.from({ length: 2000 }, (_, i) => ['alpha', 'beta', 'gamma', 'delta'][i % 4]).join(' ')
    await rejectsWith(assert, model.embed(long), ContextOverflowError, 'context_overflow')
    await stillWorks()
    const [v] = await model.embed(long, { truncate: true })
    assert.equal(v.length, 384)
    assert.ok(Math.abs(norm(v) - 1) < 1e-4)
  })

  test('bad texts and options', async () => {
    for (const texts of [42, null, undefined, { text: 'x' }, ['ok', 7], [null]]) {
      await rejectsWith(assert, model.embed(texts), InvalidArgumentError, 'invalid_argument')
    }
    for (const options of [
      { normalise: true },
      { pooling: 'max' },
      { pooling: 'rank' },
      { normalize: 'yes' },
      { truncate: 1 },
      { timeout: -10 },
      { timeout: Number.NaN },
      { timeout: Infinity },
      { signal: 'stop' },
      'fast',
      [],
    ]) {
      await rejectsWith(assert, model.embed('x', options), InvalidArgumentError, 'invalid_argument')
    }
    // Non-finite numbers are named (they cannot cross to corral-core as JSON).
    await assert.rejects(model.embed('x', { timeout: Infinity }), /timeout must be a finite number/)
    await assert.rejects(model.embed('x', { normalise: true }), /normalise/)
    await stillWorks()
  })

  test('an already aborted signal rejects with AbortError', async () => {
    const reason = new Error('stop')
    await assert.rejects(model.embed('x', { signal: AbortSignal.abort(reason) }), (error) => {
      assert.ok(error instanceof AbortError)
      assert.equal(error.name, 'AbortError')
      assert.equal(error.code, 'cancelled')
      assert.equal(error.cause, reason)
      return true
    })
    await stillWorks()
  })

  // ~40k tokens: seconds of work on a CPU, so the abort and the timeout land mid-call.
  const MANY = Array.from({ length: 256 }, (_, i) => `sentence number ${i} `.repeat(30))

  test('aborting a running call rejects with AbortError', async () => {
    const controller = new AbortController()
    const running = model.embed(MANY, { signal: controller.signal })
    setTimeout(() => controller.abort(), 20)
    await within(30_000, assert.rejects(running, AbortError), 'the aborted embed')
    await stillWorks()
  })

  test('a timeout rejects with DeadlineExceededError', async () => {
    await rejectsWith(assert, model.embed(MANY, { timeout: 5 }), DeadlineExceededError, 'deadline_exceeded')
    await stillWorks()
  })

  test('an encoder-only model cannot generate or rerank', async () => {
    await rejectsWith(assert, model.complete('Hello', { maxTokens: 4 }), UnsupportedError, 'unsupported')
    await rejectsWith(assert, model.rerank('query', ['a document']), UnsupportedError, 'unsupported')
    await stillWorks()
  })
})

// minilm-rank-test.gguf is MiniLM with a seeded RANDOM rank head: it is a reranker in shape
// only, and its scores say nothing about relevance. These tests check the mechanics (shape,
// order, topN, batching), never which document should win.
describe('rerank (test-only reranker)', () => {
  let model
  sharedModel(() => Model.load(RERANK_MODEL_PATH, { contextLength: 512, threads: 2 }), (loaded) => (model = loaded))

  const QUERY = 'What do cats eat?'
  const DOCUMENTS = [
    'Cats are obligate carnivores and eat meat.',
    'Paris is the capital of France.',
    'A recipe for sourdough bread.',
    'Kittens drink milk from their mother.',
    'The stock market closed higher today.',
  ]

  test('one result per document, scores in [0, 1], best first', async () => {
    const results = await model.rerank(QUERY, DOCUMENTS)
    assert.equal(results.length, DOCUMENTS.length)
    assert.deepEqual(results.map((r) => r.index).sort(), DOCUMENTS.map((_, i) => i))
    for (const r of results) {
      assert.ok(Number.isInteger(r.index))
      assert.ok(r.score >= 0 && r.score <= 1, `score ${r.score}`)
      assert.equal(r.document, DOCUMENTS[r.index])
    }
    for (let i = 1; i < results.length; i++) assert.ok(results[i - 1].score >= results[i].score, 'not sorted')
  })

  test('topN keeps the best', async () => {
    const all = await model.rerank(QUERY, DOCUMENTS)
    const best = await model.rerank(QUERY, DOCUMENTS, { topN: 2 })
    assert.equal(best.length, 2)
    for (let i = 0; i < 2; i++) {
      assert.equal(best[i].index, all[i].index)
      assert.ok(Math.abs(best[i].score - all[i].score) < 1e-4)
    }
    assert.equal((await model.rerank(QUERY, DOCUMENTS, { topN: 50 })).length, DOCUMENTS.length)
  })

  test('batched scores equal one-by-one scores', async () => {
    const batched = await model.rerank(QUERY, DOCUMENTS)
    for (const r of batched) {
      const [alone] = await model.rerank(QUERY, [DOCUMENTS[r.index]])
      assert.equal(alone.index, 0)
      // F16 on ggml's kernels: the batch width changes the summation order (about 1e-4 on AVX-512)
      assert.ok(Math.abs(alone.score - r.score) < 1e-3, `document ${r.index}: ${alone.score} vs ${r.score}`)
    }
  })

  test('no documents: no results', async () => {
    assert.deepEqual(await model.rerank(QUERY, []), [])
  })

  test('bad arguments and options', async () => {
    await rejectsWith(assert, model.rerank(QUERY, ['']), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.rerank('', DOCUMENTS), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.rerank(7, DOCUMENTS), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.rerank(QUERY, 'one document'), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.rerank(QUERY, ['ok', 3]), InvalidArgumentError, 'invalid_argument')
    for (const options of [{ topN: 0 }, { topN: -1 }, { topN: 1.5 }, { topN: Number.NaN }, { top_n: 2 }, { pooling: 'mean' }]) {
      await rejectsWith(assert, model.rerank(QUERY, DOCUMENTS, options), InvalidArgumentError, 'invalid_argument')
    }
    const long = 'word '.repeat(2000)
    await rejectsWith(assert, model.rerank(QUERY, [long]), ContextOverflowError, 'context_overflow')
    const [cut] = await model.rerank(QUERY, [long], { truncate: true })
    assert.ok(cut.score >= 0 && cut.score <= 1)
    await assert.rejects(model.rerank(QUERY, DOCUMENTS, { signal: AbortSignal.abort() }), AbortError)
    assert.equal((await model.rerank(QUERY, DOCUMENTS)).length, DOCUMENTS.length)
  })

  test('a reranker embeds too', async () => {
    const [v] = await model.embed('Hello world')
    assert.equal(v.length, 384)
  })
})

describe('embed (default chat model)', () => {
  let model
  sharedModel(() => loadModel({ contextLength: 512, threads: 2 }), (loaded) => (model = loaded))

  test('embeds while a generation runs', async () => {
    const [completion, vectors] = await within(
      120_000,
      Promise.all([
        model.complete('Once upon a time', { maxTokens: 32, ...GREEDY }),
        model.embed(['Hello world', 'A man is eating food.']),
      ]),
      'generation and embedding',
    )
    assert.equal(completion.usage.completionTokens, 32)
    assert.equal(completion.finishReason, 'length')
    assert.equal(vectors.length, 2)
    for (const v of vectors) {
      assert.equal(v.length, 576)
      assert.ok(v.every(Number.isFinite))
      assert.ok(Math.abs(norm(v) - 1) < 1e-4)
    }
    // The generation is the same as when it runs alone.
    const alone = await model.complete('Once upon a time', { maxTokens: 32, ...GREEDY })
    assert.equal(alone.text, completion.text)
  })

  test('a chat model is not a reranker', async () => {
    await rejectsWith(assert, model.rerank('query', ['a document']), UnsupportedError, 'unsupported')
  })
})
