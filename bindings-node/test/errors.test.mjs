// Bad inputs: each asserts the exact error class and `code`, never "some exception".
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, test } from 'node:test'

import {
  ClosedError,
  ContextOverflowError,
  CorralError,
  InvalidArgumentError,
  InvalidGrammarError,
  InvalidModelError,
  Model,
  ModelNotFoundError,
  TemplateError,
  errorClass,
  setLogger,
} from 'corral'

import { GREEDY, MODEL_PATH, loadModel, rejectsWith, sharedModel } from './helpers.mjs'

const scratch = mkdtempSync(join(tmpdir(), 'corral-node-test-'))

let model
sharedModel(() => loadModel({ contextLength: 256, threads: 2 }), (loaded) => (model = loaded))

describe('loading', () => {
  test('missing file', async () => {
    await rejectsWith(assert, Model.load(join(scratch, 'nope.gguf')), ModelNotFoundError, 'model_not_found')
  })

  test('directory', async () => {
    await rejectsWith(assert, Model.load(scratch), ModelNotFoundError, 'model_not_found')
  })

  test('garbage file', async () => {
    const garbage = join(scratch, 'garbage.gguf')
    writeFileSync(garbage, Buffer.from('this is not a gguf model at all, just some text'.repeat(100)))
    await rejectsWith(assert, Model.load(garbage), InvalidModelError, 'invalid_model')
  })

  test('empty and truncated files', async () => {
    const empty = join(scratch, 'empty.gguf')
    writeFileSync(empty, '')
    await rejectsWith(assert, Model.load(empty), InvalidModelError, 'invalid_model')
    const truncated = join(scratch, 'truncated.gguf')
    writeFileSync(truncated, Buffer.from('GGUF\x03\x00\x00\x00', 'latin1'))
    await rejectsWith(assert, Model.load(truncated), InvalidModelError, 'invalid_model')
  })

  test('bad load options', async () => {
    for (const options of [
      { contextLength: -5 },
      { contextLength: 0 },
      { threads: 0 },
      { threads: 1.5 },
      { maxSequences: 0 },
      { batchSize: Number.NaN },
      { contextLength: 'big' },
      { useMmap: 'yes' },
      { onProgress: 'not a function' },
      { signal: {} },
      { contextLenght: 512 },
      { maxQueued: -1 },
      { onKvFull: 'retry' },
    ]) {
      await rejectsWith(assert, Model.load(MODEL_PATH, options), InvalidArgumentError, 'invalid_argument')
    }
    await rejectsWith(assert, Model.load(MODEL_PATH, 'fast'), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, Model.load(42), InvalidArgumentError, 'invalid_argument')
  })

  test('a broken chat template', async () => {
    await rejectsWith(assert, Model.load(MODEL_PATH, { chatTemplate: '{% for %}' }), TemplateError, 'template_error')
  })
})

describe('generation options', () => {
  const bad = {
    'negative maxTokens': { maxTokens: -1 },
    'fractional maxTokens': { maxTokens: 2.5 },
    'string maxTokens': { maxTokens: 'x' },
    'NaN temperature': { temperature: Number.NaN },
    'negative temperature': { temperature: -0.5 },
    'infinite temperature': { temperature: Infinity },
    'topP above 1': { topP: 1.5 },
    'topP of 0': { topP: 0 },
    'minP above 1': { minP: 2 },
    'repeatPenalty of 0': { repeatPenalty: 0 },
    'negative topK': { topK: -3 },
    'seed beyond u32': { seed: 2 ** 40 },
    'empty stop string': { stop: '' },
    'empty stop in a list': { stop: ['ok', ''] },
    'stop of the wrong type': { stop: 7 },
    'zero timeout': { timeout: 0 },
    'negative timeout': { timeout: -10 },
    'unknown option': { maxToken: 5 },
    'signal that is not an AbortSignal': { signal: 'stop' },
    'two constraints': { grammar: 'root ::= "a"', jsonObject: true },
    'too many logprobs alternatives': { logprobs: 21 },
    'negative logprobs': { logprobs: -1 },
  }
  for (const [name, options] of Object.entries(bad)) {
    test(name, async () => {
      await rejectsWith(assert, model.complete('Hi', options), InvalidArgumentError, 'invalid_argument')
      await rejectsWith(assert, model.chat([{ role: 'user', content: 'Hi' }], options), InvalidArgumentError, 'invalid_argument')
      // Streams report the error from their first next(), so `for await` sees it.
      await rejectsWith(
        assert,
        (async () => {
          for await (const _ of model.completeStream('Hi', options)) assert.fail('no chunk expected')
        })(),
        InvalidArgumentError,
        'invalid_argument',
      )
    })
  }
  test('a non-finite number names its option', async () => {
    await assert.rejects(model.complete('Hi', { topP: Number.NaN }), /topP must be a finite number/)
    await assert.rejects(model.complete('Hi', { temperature: -Infinity }), /temperature must be a finite number/)
  })

  test('options that are not an object', async () => {
    await rejectsWith(assert, model.complete('Hi', 'fast'), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.complete('Hi', [1]), InvalidArgumentError, 'invalid_argument')
  })

  test('prompt of the wrong type', async () => {
    await rejectsWith(assert, model.complete(42), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.complete(), InvalidArgumentError, 'invalid_argument')
  })

  test('empty prompt', async () => {
    // This model adds no BOS token, so an empty prompt has no tokens at all.
    assert.equal(model.info.addBosToken, false)
    await rejectsWith(assert, model.complete(''), InvalidArgumentError, 'invalid_argument')
  })
})

describe('constraints', () => {
  test('an invalid grammar or schema', async () => {
    await rejectsWith(assert, model.complete('Hi', { grammar: 'root ::= (' }), InvalidGrammarError, 'invalid_grammar')
    await rejectsWith(assert, model.complete('Hi', { jsonSchema: '{not json' }), InvalidGrammarError, 'invalid_grammar')
  })
})

describe('messages', () => {
  test('not an array', async () => {
    await rejectsWith(assert, model.chat('Hi'), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.chat({ role: 'user', content: 'Hi' }), InvalidArgumentError, 'invalid_argument')
    assert.throws(() => model.applyChatTemplate('Hi'), InvalidArgumentError)
  })

  test('malformed message', async () => {
    await rejectsWith(assert, model.chat([{ role: 'user' }]), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.chat([{ role: 'user', content: 5 }]), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.chat([null]), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.chat([{ role: '', content: 'Hi' }]), InvalidArgumentError, 'invalid_argument')
  })
})

describe('limits', () => {
  test('prompt longer than the context', async () => {
    const long = 'The history of computing is long. '.repeat(100)
    assert.ok(model.tokenize(long).length > 256)
    await rejectsWith(assert, model.complete(long), ContextOverflowError, 'context_overflow')
    await rejectsWith(
      assert,
      (async () => {
        for await (const _ of model.completeStream(long)) assert.fail('no chunk expected')
      })(),
      ContextOverflowError,
      'context_overflow',
    )
  })

  test('token ids out of range', () => {
    assert.throws(() => model.detokenize([1, -1]), (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument')
    assert.throws(() => model.detokenize([model.info.vocabSize]), InvalidArgumentError)
    assert.throws(() => model.detokenize(['a']), InvalidArgumentError)
    assert.throws(() => model.tokenize(7), InvalidArgumentError)
  })

  test('score needs two tokens', async () => {
    await rejectsWith(assert, model.score([1]), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.score([1, 1e9]), InvalidArgumentError, 'invalid_argument')
  })

  test('unknown log level', () => {
    assert.throws(() => setLogger(() => {}, 'loud'), InvalidArgumentError)
    assert.throws(() => setLogger('console'), InvalidArgumentError)
    assert.throws(() => setLogger(console.log, 7), InvalidArgumentError)
  })
})

describe('classes', () => {
  test('every code has its class, all CorralErrors', () => {
    const codes = [
      'model_not_found', 'invalid_model', 'unsupported_architecture', 'invalid_argument', 'context_overflow', 'cancelled',
      'decode_failed', 'no_chat_template', 'template_error', 'closed', 'busy', 'deadline_exceeded', 'invalid_grammar', 'internal',
      'unsupported', 'invalid_state', 'insufficient_memory', 'worker_unavailable',
    ]
    // The same list, in the same order, as corral-core's (through the native module).
    // The package's own native loader, wherever the package is installed.
    const require = createRequire(import.meta.url)
    const native = require(join(dirname(require.resolve('corral')), '../native/index.js'))
    assert.deepEqual(native.errorCodes(), codes)
    for (const code of codes) {
      const cls = errorClass(code)
      assert.notEqual(cls, CorralError, code)
      const error = new cls('x')
      assert.ok(error instanceof CorralError && error instanceof Error)
      assert.equal(error.code, code)
      assert.equal(error.name, cls.name)
    }
    assert.equal(errorClass('something_new'), CorralError)
  })
})

describe('after dispose', () => {
  test('every call fails with ClosedError', async () => {
    const doomed = await loadModel({ contextLength: 128 })
    const session = doomed.session()
    await doomed.dispose()
    await doomed.dispose() // idempotent
    assert.equal(doomed.closed, true)
    await rejectsWith(assert, doomed.complete('Hi'), ClosedError, 'closed')
    await rejectsWith(assert, doomed.chat([{ role: 'user', content: 'Hi' }]), ClosedError, 'closed')
    await rejectsWith(assert, doomed.score([1, 2]), ClosedError, 'closed')
    await rejectsWith(assert, doomed.embed('Hi'), ClosedError, 'closed')
    await rejectsWith(
      assert,
      (async () => {
        for await (const _ of doomed.chatStream([{ role: 'user', content: 'Hi' }])) assert.fail('no chunk expected')
      })(),
      ClosedError,
      'closed',
    )
    assert.throws(() => doomed.tokenize('Hi'), ClosedError)
    assert.throws(() => doomed.session(), ClosedError)
    await rejectsWith(assert, session.complete('Hi'), ClosedError, 'closed')
    assert.equal(doomed.info.architecture, 'llama', 'info stays readable')
  })

  test('a disposed session fails with ClosedError', async () => {
    const session = model.session()
    await session.dispose()
    await rejectsWith(assert, session.complete('Hi'), ClosedError, 'closed')
    await rejectsWith(assert, session.chat([{ role: 'user', content: 'Hi' }]), ClosedError, 'closed')
  })

  test('requests running at dispose fail with ClosedError', async () => {
    const doomed = await loadModel({ contextLength: 512 })
    const running = rejectsWith(
      assert,
      doomed.complete('Once upon a time', { maxTokens: 400, ignoreEos: true, ...GREEDY }),
      ClosedError,
      'closed',
    )
    await new Promise((r) => setTimeout(r, 200))
    await doomed.dispose()
    await running
  })
})
