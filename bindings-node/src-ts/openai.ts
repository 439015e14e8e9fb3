// OpenAI-shaped results (the JSON of OpenAI's chat completions API, snake_case), so code
// written against OpenAI's response objects ports directly. corral-core writes them, the same
// for every language; this file only fills in what a hand-made result may leave out.
import native = require('./native.js')
import type { Chunk, Completion } from './types.js'

export type OpenAIOptions = native.OpenAIOptions

/** A fresh `chatcmpl-...` id, for the chunks of one stream. */
export function openAIId(): string {
  return native.openAIId()
}

/** A `chat.completion` object from a chat result. */
export function toOpenAIChatCompletion(completion: Completion, options: OpenAIOptions) {
  const whole = { ...completion, tokens: completion.tokens ?? [], toolCalls: completion.toolCalls ?? [], reasoning: completion.reasoning ?? '' }
  return native.toOpenAIChatCompletion(whole as native.Completion, options)
}

/** A `chat.completion.chunk` object from a chat stream's chunk; `first` adds the role. */
export function toOpenAIChatCompletionChunk(chunk: Chunk, options: OpenAIOptions & { first?: boolean }) {
  const { first, ...envelope } = options
  return native.toOpenAIChatCompletionChunk({ ...chunk, tokens: chunk.tokens ?? [] } as native.Chunk, envelope, first)
}
