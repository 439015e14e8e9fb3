// Thinking models: `<think>...</think>` comes back as `reasoning`, apart from the answer. No
// thinking model is reachable offline: a grammar scripts the default model's output.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { InvalidArgumentError, toOpenAIChatCompletion, toOpenAIChatCompletionChunk } from 'corral'

import { loadModel, rejectsWith, sharedModel } from './helpers.mjs'

const THINK_THEN_ANSWER = 'root ::= "<think>" "I should add two and two." "</think>" "\\n\\nFour."'
const OPENING_TEMPLATE =
  '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: <think>\n{% endif %}'
const question = [{ role: 'user', content: 'What is two plus two?' }]

let model
sharedModel(() => loadModel({ threads: 2 }), (loaded) => (model = loaded))

test('reasoning is apart from the answer, in results, streams and OpenAI shapes', async () => {
  const reply = await model.chat(question, { grammar: THINK_THEN_ANSWER, maxTokens: 48 })
  assert.equal(reply.reasoning, 'I should add two and two.')
  assert.equal(reply.text, 'Four.')
  const message = toOpenAIChatCompletion(reply, { model: 'm' }).choices[0].message
  assert.equal(message.reasoning_content, 'I should add two and two.')
  let reasoning = ''
  let text = ''
  let fromDeltas = ''
  for await (const chunk of model.chatStream(question, { grammar: THINK_THEN_ANSWER, maxTokens: 48 })) {
    reasoning += chunk.reasoning ?? ''
    text += chunk.text
    fromDeltas += toOpenAIChatCompletionChunk(chunk, { model: 'm' }).choices[0].delta.reasoning_content ?? ''
  }
  assert.equal(reasoning, reply.reasoning)
  assert.equal(fromDeltas, reply.reasoning)
  assert.equal(text, reply.text)
  const plain = await model.chat(question, { grammar: 'root ::= "Four."', maxTokens: 8 })
  assert.equal(plain.reasoning, '')
})

test('an opened block and a reasoning budget', async () => {
  const opened = await model.chat(question, { template: OPENING_TEMPLATE, grammar: 'root ::= "plan first" "</think>" "answer"', maxTokens: 32 })
  assert.deepEqual([opened.reasoning, opened.text], ['plan first', 'answer'])
  const capped = await model.chat(question, { template: OPENING_TEMPLATE, reasoningBudget: 6, ignoreEos: true, maxTokens: 24, temperature: 0 })
  assert.ok(capped.reasoning.length > 0 && model.tokenize(capped.reasoning, { addSpecial: false }).length <= 8)
  assert.ok(capped.text.length > 0 && !capped.text.includes('</think>'))
  await rejectsWith(assert, model.complete('Hi', { reasoningBudget: 4, maxTokens: 2 }), InvalidArgumentError, 'invalid_argument')
})
