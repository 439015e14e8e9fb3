// Loading, metadata, tokenizer, completion, chat, sessions: the happy paths.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { CompletionStream, Model, Session, defaultThreads, supportsGpuOffload, version } from 'corral'

import { GREEDY, MODEL_PATH, loadModel, sharedModel } from './helpers.mjs'

let model
sharedModel(() => loadModel({ threads: 2 }), (loaded) => (model = loaded))

describe('model', () => {
  test('info and metadata', () => {
    assert.equal(model.info.architecture, 'llama')
    assert.ok(model.info.parameters > 100e6 && model.info.parameters < 200e6, `${model.info.parameters}`)
    assert.equal(model.info.quantization, 'Q4_1')
    assert.equal(model.info.contextLength, 2048)
    assert.ok(model.info.vocabSize > 1000)
    assert.equal(model.info.metadata['general.architecture'], 'llama')
    assert.ok(Array.isArray(model.info.metadata['tokenizer.ggml.tokens']))
    assert.equal(typeof model.info.chatTemplate, 'string')
    assert.equal(model.info, model.info, 'info is cached')
    assert.match(version, /^\d+\.\d+\.\d+/)
    assert.equal(typeof supportsGpuOffload(), 'boolean')
    assert.ok(defaultThreads() >= 1)
  })

  test('tokenize and detokenize round trip', () => {
    const ids = model.tokenize('Hello world')
    assert.ok(ids.length >= 2)
    assert.ok(ids.every(Number.isInteger))
    assert.equal(model.detokenize(ids), 'Hello world')
    const special = model.tokenize('<|im_start|>', { parseSpecial: true })
    assert.equal(special.length, 1)
    assert.equal(model.detokenize(special, { renderSpecial: true }), '<|im_start|>')
    assert.equal(model.detokenize(special), '')
  })

  test('greedy completion is deterministic and reports usage', async () => {
    const out = await model.complete('The capital of France is', { maxTokens: 8, ...GREEDY })
    assert.match(out.text, /Paris/)
    assert.equal(out.finishReason, 'length')
    assert.equal(out.tokens.length, 8)
    assert.equal(out.usage.completionTokens, 8)
    assert.equal(out.usage.promptTokens, model.tokenize('The capital of France is').length)
    for (const key of ['cachedTokens', 'queueMs', 'timeToFirstTokenMs', 'promptMs', 'generationMs', 'promptTokensPerS', 'generationTokensPerS']) {
      assert.equal(typeof out.usage[key], 'number', key)
    }
    assert.ok(out.usage.generationTokensPerS > 0)
    const again = await model.complete('The capital of France is', { maxTokens: 8, ...GREEDY })
    assert.equal(again.text, out.text)
    assert.deepEqual(again.tokens, out.tokens)
  })

  test('a prompt of token ids', async () => {
    const ids = model.tokenize('The capital of France is')
    const fromText = await model.complete('The capital of France is', { maxTokens: 4, ...GREEDY })
    const fromIds = await model.complete(ids, { maxTokens: 4, ...GREEDY })
    assert.equal(fromIds.text, fromText.text)
    let streamed = ''
    for await (const chunk of model.completeStream(ids, { maxTokens: 4, ...GREEDY })) streamed += chunk.text
    assert.equal(streamed, fromText.text)
    await assert.rejects(model.complete([1, -5]), (e) => e.code === 'invalid_argument')
  })

  test('stop strings end generation and are not emitted', async () => {
    const out = await model.complete('1, 2, 3, 4,', { maxTokens: 32, stop: [' 7'], ...GREEDY })
    assert.equal(out.finishReason, 'stop')
    assert.ok(!out.text.includes(' 7'), out.text)
    const single = await model.complete('1, 2, 3, 4,', { maxTokens: 32, stop: ' 7', ...GREEDY })
    assert.equal(single.text, out.text)
  })

  test('chat uses the template and ends with stop', async () => {
    const messages = [{ role: 'user', content: 'What is the capital of France?' }]
    const prompt = model.applyChatTemplate(messages)
    assert.match(prompt, /<\|im_start\|>user\nWhat is the capital of France\?<\|im_end\|>/)
    assert.ok(prompt.endsWith('<|im_start|>assistant\n'))
    assert.ok(!model.applyChatTemplate(messages, { addGenerationPrompt: false }).endsWith('assistant\n'))
    const out = await model.chat(messages, { maxTokens: 24, ...GREEDY })
    assert.ok(out.text.trim().length > 0)
    assert.equal(out.usage.promptTokens, model.tokenize(prompt, { parseSpecial: true }).length)
    const short = await model.chat([{ role: 'user', content: 'Say hi.' }], { maxTokens: 64, ...GREEDY })
    assert.equal(short.finishReason, 'stop', short.text)
  })

  test('chatStream yields the same text as chat', async () => {
    const messages = [{ role: 'user', content: 'Say hello.' }]
    const whole = await model.chat(messages, { maxTokens: 32, ...GREEDY })
    const stream = model.chatStream(messages, { maxTokens: 32, ...GREEDY })
    assert.ok(stream instanceof CompletionStream)
    const chunks = []
    for await (const chunk of stream) chunks.push(chunk)
    assert.ok(chunks.length >= 2)
    assert.equal(chunks.map((c) => c.text).join(''), whole.text)
    assert.deepEqual(chunks.flatMap((c) => c.tokens), whole.tokens)
    const last = chunks.at(-1)
    assert.equal(last.finishReason, whole.finishReason)
    assert.equal(last.usage.completionTokens, whole.usage.completionTokens)
    for (const chunk of chunks.slice(0, -1)) {
      assert.equal(chunk.finishReason, undefined)
      assert.equal(chunk.usage, undefined)
    }
  })

  test('constrained output: JSON schema and grammar', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'] }
    const out = await model.chat([{ role: 'user', content: 'Describe a person as JSON.' }], { maxTokens: 60, jsonSchema: schema, ...GREEDY })
    const value = JSON.parse(out.text)
    assert.equal(typeof value.name, 'string')
    assert.ok(Number.isInteger(value.age))
    const asText = await model.chat([{ role: 'user', content: 'Describe a person as JSON.' }], { maxTokens: 60, jsonSchema: JSON.stringify(schema), ...GREEDY })
    assert.equal(asText.text, out.text)
    const yesNo = await model.complete('Is the sky blue? Answer:', { maxTokens: 5, grammar: 'root ::= " yes" | " no"', ...GREEDY })
    assert.ok([' yes', ' no'].includes(yesNo.text), yesNo.text)
    const object = await model.complete('A JSON object:', { maxTokens: 30, jsonObject: true, ...GREEDY })
    assert.equal(object.text.trim()[0], '{')
  })

  test('logprobs of generated tokens and alternatives', async () => {
    const out = await model.complete('The capital of France is', { maxTokens: 3, logprobs: 2, ...GREEDY })
    assert.equal(out.logprobs.length, 3)
    out.logprobs.forEach((entry, i) => {
      assert.equal(entry.token.token, out.tokens[i])
      assert.ok(entry.token.logprob <= 0)
      assert.equal(entry.top.length, 2)
    })
    const streamed = []
    for await (const chunk of model.completeStream('The capital of France is', { maxTokens: 3, logprobs: 0, ...GREEDY })) {
      streamed.push(...(chunk.logprobs ?? []))
    }
    assert.equal(streamed.length, 3)
    assert.ok(streamed.every((e) => e.top.length === 0))
    const plain = await model.complete('The capital of France is', { maxTokens: 3, ...GREEDY })
    assert.equal(plain.logprobs, undefined)
  })

  test('stats count requests and tokens', async () => {
    const before = model.stats()
    await model.complete('Hello', { maxTokens: 3, ignoreEos: true, ...GREEDY })
    const after = model.stats()
    assert.equal(after.requests, before.requests + 1)
    assert.equal(after.generatedTokens, before.generatedTokens + 3)
    assert.ok(after.promptTokens > before.promptTokens)
    assert.equal(typeof after.preemptions, 'number')
  })

  test('clearCache drops the prefix cache', async () => {
    const prompt = 'A long shared system prompt about the weather in Paris, then a question:'
    const options = { maxTokens: 2, ignoreEos: true, ...GREEDY }
    model.clearCache()
    const before = model.stats()
    await model.complete(prompt, options)
    const first = model.stats()
    assert.equal(first.cachedTokens, before.cachedTokens)
    const promptTokens = first.promptTokens - before.promptTokens
    await model.complete(prompt, options)
    const second = model.stats()
    assert.equal(second.cachedTokens - first.cachedTokens, promptTokens - 1)
    model.clearCache()
    await model.complete(prompt, options)
    assert.equal(model.stats().cachedTokens, second.cachedTokens)
  })

  test('score returns one log-probability per predicted token', async () => {
    const tokens = model.tokenize('The capital of France is Paris')
    const scores = await model.score(tokens)
    assert.equal(scores.length, tokens.length - 1)
    assert.ok(scores.every((s) => Number.isFinite(s) && s <= 0))
  })

  test('a session reuses its KV cache between turns', async () => {
    const session = model.session()
    assert.ok(session instanceof Session)
    const messages = [{ role: 'user', content: 'Name a color.' }]
    const first = await session.chat(messages, { maxTokens: 16, ...GREEDY })
    messages.push({ role: 'assistant', content: first.text }, { role: 'user', content: 'Another one.' })
    const second = await session.chat(messages, { maxTokens: 16, ...GREEDY })
    assert.ok(second.usage.cachedTokens > 0, `cached ${second.usage.cachedTokens}`)
    const streamed = []
    for await (const chunk of session.completeStream('Once upon a time', { maxTokens: 4, ...GREEDY })) streamed.push(chunk.text)
    assert.ok(streamed.join('').length > 0)
    await session.dispose()
    assert.equal(session.closed, true)
  })

  test('Model has no public constructor path and load validates the path type', async () => {
    assert.equal(typeof Model.load, 'function')
    assert.equal(MODEL_PATH.endsWith('.gguf'), true)
  })
})
