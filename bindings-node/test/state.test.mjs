// Saved sessions: state() and save(), restoreSession() and loadSession() in a new model,
// continuing with the saved tokens cached; damaged and foreign states.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { InvalidArgumentError, InvalidStateError, Model } from 'corral'

import { MODEL_PATH, rejectsWith } from './helpers.mjs'

const DOCUMENT = Array.from({ length: 40 }, (_, i) => `Entry ${i}: the harbour master logged ${i * 3 + 1} ships. `).join('')
const QUESTION = `${DOCUMENT}\nQuestion: how many ships did entry 12 log? Answer:`
const greedy = { maxTokens: 8, temperature: 0 }

describe('saved sessions', () => {
  let dir
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'corral-state-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('a restored session continues with its tokens cached', async () => {
    const model = await Model.load(MODEL_PATH, { contextLength: 1024, threads: 2 })
    const session = model.session()
    const first = await session.complete(DOCUMENT, { maxTokens: 1, temperature: 0 })
    const state = await session.state()
    assert.ok(Buffer.isBuffer(state) && state.length > 1000)
    await session.save(join(dir, 'session.state'))
    const expected = await session.complete(QUESTION, greedy)

    const other = await Model.load(MODEL_PATH, { contextLength: 1024, threads: 2 })
    const restored = await other.restoreSession(state)
    const resumed = await restored.complete(QUESTION, greedy)
    assert.equal(resumed.usage.cachedTokens, first.usage.promptTokens)
    assert.equal(resumed.text, expected.text)
    const fromFile = await other.loadSession(join(dir, 'session.state'))
    assert.ok((await fromFile.complete(QUESTION, { maxTokens: 1 })).usage.cachedTokens > 0)
    await model.dispose()
    await other.dispose()
  })

  test('damaged or foreign states reject with InvalidStateError', async () => {
    const model = await Model.load(MODEL_PATH, { contextLength: 512, threads: 2 })
    const session = model.session()
    await session.complete('The quick brown fox', { maxTokens: 2 })
    const state = await session.state()
    await rejectsWith(assert, model.restoreSession(state.subarray(0, state.length >> 1)), InvalidStateError, 'invalid_state')
    const flipped = Buffer.from(state)
    flipped[flipped.length >> 1] ^= 0xff
    await rejectsWith(assert, model.restoreSession(flipped), InvalidStateError, 'invalid_state')
    const bigger = await Model.load(MODEL_PATH, { contextLength: 1024, threads: 2 })
    await rejectsWith(assert, bigger.restoreSession(state), InvalidStateError, 'invalid_state')
    await assert.rejects(model.restoreSession('text'), { code: 'invalid_argument' })
    await rejectsWith(assert, model.loadSession(join(dir, 'missing.state')), InvalidArgumentError, 'invalid_argument')
    assert.ok((await model.complete('Hello', { maxTokens: 2 })).usage.completionTokens > 0)
    await model.dispose()
    await bigger.dispose()
  })
})
