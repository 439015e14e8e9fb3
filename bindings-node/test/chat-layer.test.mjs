// Structured output, tool calls, logprobs and per-call templates: the chat layer from Node.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { InvalidArgumentError, InvalidGrammarError, TemplateError, openAIId, toOpenAIChatCompletion, toOpenAIChatCompletionChunk } from 'corral'

import { loadModel, rejectsWith, sharedModel } from './helpers.mjs'

let model
sharedModel(() => loadModel({ threads: 2 }), (loaded) => (model = loaded))

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city', 'unit'],
      },
    },
  },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] } } },
]
const ASK = [{ role: 'user', content: "What's the weather in Paris?" }]

describe('structured output', () => {
  test('responseFormat json_schema output parses and matches the schema', async () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string', maxLength: 30 }, age: { type: 'integer', minimum: 0, maximum: 120 } },
      required: ['name', 'age'],
      additionalProperties: false,
    }
    const out = await model.chat([{ role: 'user', content: 'Describe a person.' }], {
      responseFormat: { type: 'json_schema', json_schema: { name: 'person', schema } },
      maxTokens: 200,
      seed: 3,
    })
    assert.equal(out.finishReason, 'stop', out.text)
    const value = JSON.parse(out.text)
    assert.deepEqual(Object.keys(value).sort(), ['age', 'name'])
    assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 120)
  })

  test('bad constraints are typed errors', async () => {
    await rejectsWith(assert, model.chat(ASK, { grammar: 'root ::= (' }), InvalidGrammarError, 'invalid_grammar')
    await rejectsWith(assert, model.chat(ASK, { responseFormat: { type: 'yaml' } }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(
      assert,
      model.chat(ASK, { grammar: 'root ::= "a"', responseFormat: { type: 'json_object' } }),
      InvalidArgumentError,
      'invalid_argument',
    )
  })
})

describe('tool calls', () => {
  test('required: a parsed call with valid arguments', async () => {
    const out = await model.chat(ASK, { tools: TOOLS, toolChoice: 'required', maxTokens: 64, temperature: 0 })
    assert.equal(out.finishReason, 'tool_calls')
    assert.equal(out.toolCalls.length, 1)
    const [call] = out.toolCalls
    assert.match(call.id, /^call_/)
    const args = JSON.parse(call.arguments)
    if (call.name === 'get_weather') assert.ok(typeof args.city === 'string' && ['celsius', 'fahrenheit'].includes(args.unit))
    else assert.equal(typeof args.tz, 'string')
  })

  test('a named tool, streamed as deltas', async () => {
    const deltas = []
    let finishReason
    for await (const chunk of model.chatStream(ASK, {
      tools: TOOLS,
      toolChoice: { type: 'function', function: { name: 'get_time' } },
      maxTokens: 64,
      temperature: 0,
    })) {
      deltas.push(...(chunk.toolCalls ?? []))
      finishReason = chunk.finishReason ?? finishReason
    }
    assert.equal(finishReason, 'tool_calls')
    assert.equal(deltas[0].name, 'get_time')
    assert.match(deltas[0].id, /^call_/)
    assert.ok(deltas.length >= 2)
    assert.equal(typeof JSON.parse(deltas.map((d) => d.arguments).join('')).tz, 'string')
  })

  test('tool results go back as messages', async () => {
    const first = await model.chat(ASK, { tools: TOOLS, toolChoice: 'required', maxTokens: 64, temperature: 0 })
    const [call] = first.toolCalls
    const messages = [
      ...ASK,
      { role: 'assistant', content: null, toolCalls: first.toolCalls },
      { role: 'tool', toolCallId: call.id, name: call.name, content: '18 C, sunny' },
    ]
    assert.match(model.applyChatTemplate(messages, { tools: TOOLS }), /18 C, sunny/)
    const answer = await model.chat(messages, { tools: TOOLS, toolChoice: 'none', maxTokens: 16 })
    assert.deepEqual(answer.toolCalls, [])
    await rejectsWith(assert, model.chat(ASK, { tools: TOOLS, toolChoice: 'sometimes' }), InvalidArgumentError, 'invalid_argument')
    await rejectsWith(assert, model.complete('Hi', { tools: TOOLS }), InvalidArgumentError, 'invalid_argument')
  })
})

test('logprobs: true with topLogprobs', async () => {
  const out = await model.chat(ASK, { maxTokens: 4, temperature: 0, logprobs: true, topLogprobs: 2 })
  assert.equal(out.logprobs.length, out.usage.completionTokens)
  assert.ok(out.logprobs.every((l) => l.token.logprob <= 0 && l.top.length === 2))
})

test('per-call templates', async () => {
  const template = '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}'
  assert.equal(model.applyChatTemplate([{ role: 'user', content: 'hi' }], { template }), '<user>hi<assistant>')
  assert.throws(() => model.applyChatTemplate(ASK, { template: "{{ raise_exception('nope') }}" }), TemplateError)
  const out = await model.chat(ASK, { template, maxTokens: 2 })
  assert.ok(out.usage.completionTokens > 0)
})

test('OpenAI shapes, with tool calls and logprobs', async () => {
  const out = await model.chat(ASK, { tools: TOOLS, toolChoice: 'required', maxTokens: 64, temperature: 0, logprobs: true, topLogprobs: 2 })
  const openai = toOpenAIChatCompletion(out, { model: model.info.name })
  assert.equal(openai.object, 'chat.completion')
  assert.match(openai.id, /^chatcmpl-/)
  const [choice] = openai.choices
  assert.equal(choice.finish_reason, 'tool_calls')
  assert.equal(choice.message.content, null)
  assert.deepEqual(choice.message.tool_calls[0], {
    id: out.toolCalls[0].id,
    type: 'function',
    function: { name: out.toolCalls[0].name, arguments: out.toolCalls[0].arguments },
  })
  assert.equal(choice.logprobs.content.length, out.usage.completionTokens)
  assert.equal(choice.logprobs.content[0].top_logprobs.length, 2)
  assert.equal(openai.usage.total_tokens, out.usage.promptTokens + out.usage.completionTokens)
  const id = openAIId()
  const chunks = []
  let first = true
  for await (const chunk of model.chatStream(ASK, { tools: TOOLS, toolChoice: 'required', maxTokens: 64, temperature: 0 })) {
    chunks.push(toOpenAIChatCompletionChunk(chunk, { model: model.info.name, id, first }))
    first = false
  }
  assert.ok(chunks.every((c) => c.id === id && c.object === 'chat.completion.chunk'))
  assert.equal(chunks[0].choices[0].delta.role, 'assistant')
  const deltas = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? [])
  assert.equal(deltas[0].type, 'function')
  assert.ok(deltas[0].function.name)
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls')
  assert.ok(chunks.at(-1).usage.completion_tokens > 0)
})
