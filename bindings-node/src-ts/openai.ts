// OpenAI-shaped results (the JSON of OpenAI's chat completions API, snake_case), so code
// written against OpenAI's response objects ports directly.
import type { Chunk, Completion, Logprob, TokenLogprob } from './types.js'

export interface OpenAIOptions {
  /** The `model` field (e.g. `model.info.name`). */
  model: string
  /** The response id; generated when left out. Give every chunk of one stream the same id. */
  id?: string
  /** Unix seconds; now when left out. */
  created?: number
}

let serial = 0

/** A fresh `chatcmpl-...` id, for the chunks of one stream. */
export function openAIId(): string {
  serial = (serial + 1) % 0x1000000
  return `chatcmpl-${Date.now().toString(16)}${serial.toString(16).padStart(6, '0')}`
}

// OpenAI has no "cancelled": a cancelled generation stopped, as far as a client can tell.
function finishReason(reason: string | undefined): string | null {
  if (reason === undefined) return null
  return reason === 'cancelled' ? 'stop' : reason
}

function tokenEntry(t: TokenLogprob) {
  return { token: t.text, logprob: t.logprob, bytes: [...Buffer.from(t.text, 'utf8')] }
}

function logprobs(entries: Logprob[] | undefined) {
  if (entries === undefined) return null
  return { content: entries.map((l) => ({ ...tokenEntry(l.token), top_logprobs: l.top.map(tokenEntry) })) }
}

function envelope(object: string, options: OpenAIOptions) {
  return {
    id: options.id ?? openAIId(),
    object,
    created: options.created ?? Math.floor(Date.now() / 1000),
    model: options.model,
  }
}

/** A `chat.completion` object from a chat result. */
export function toOpenAIChatCompletion(completion: Completion, options: OpenAIOptions) {
  const calls = completion.toolCalls ?? []
  const message: Record<string, unknown> = {
    role: 'assistant',
    content: calls.length > 0 && completion.text.trim() === '' ? null : completion.text,
  }
  if (calls.length > 0) {
    message.tool_calls = calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }))
  }
  const { promptTokens, completionTokens, cachedTokens } = completion.usage
  return {
    ...envelope('chat.completion', options),
    choices: [{ index: 0, message, finish_reason: finishReason(completion.finishReason), logprobs: logprobs(completion.logprobs) }],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: cachedTokens },
    },
  }
}

/** A `chat.completion.chunk` object from a chat stream's chunk; `first` adds the role. */
export function toOpenAIChatCompletionChunk(chunk: Chunk, options: OpenAIOptions & { first?: boolean }) {
  const delta: Record<string, unknown> = {}
  if (options.first) delta.role = 'assistant'
  delta.content = chunk.text
  if (chunk.toolCalls && chunk.toolCalls.length > 0) {
    delta.tool_calls = chunk.toolCalls.map((d) => ({
      index: d.index,
      ...(d.id === undefined || d.id === null ? {} : { id: d.id, type: 'function' }),
      function: { ...(d.name === undefined || d.name === null ? {} : { name: d.name }), arguments: d.arguments },
    }))
  }
  const usage = chunk.usage && {
    prompt_tokens: chunk.usage.promptTokens,
    completion_tokens: chunk.usage.completionTokens,
    total_tokens: chunk.usage.promptTokens + chunk.usage.completionTokens,
    prompt_tokens_details: { cached_tokens: chunk.usage.cachedTokens },
  }
  return {
    ...envelope('chat.completion.chunk', options),
    choices: [{ index: 0, delta, finish_reason: finishReason(chunk.finishReason), logprobs: logprobs(chunk.logprobs) }],
    usage: usage ?? null,
  }
}
