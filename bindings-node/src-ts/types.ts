// Public option and result types. Fields left `undefined` take corral-core's defaults.
import type * as native from './native.js'

export type { ChatMessage, EngineStats, Logprob, SpecialToken, TokenLogprob, Usage } from './native.js'

/** Why a generation ended: an end-of-generation token or stop string, `maxTokens` (or a full
 * context), or cancellation. */
export type FinishReason = 'stop' | 'length' | 'cancelled'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Options of `Model.load`. */
export interface LoadOptions extends native.LoadOptions {
  /** Called with load progress in [0, 1]. If it throws, loading stops and `load` rejects
   * with that error. */
  onProgress?: (progress: number) => void
  /** Aborts loading: `load` rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** Options of one generation request. */
export interface GenerateOptions extends Omit<native.GenerateOptions, 'jsonSchema'> {
  /** Constrain the output to JSON valid against this JSON schema (an object or JSON text). */
  jsonSchema?: string | Record<string, unknown>
  /** Aborts the request (prompt processing or generation): the promise rejects, or the
   * stream throws, with an `AbortError`. */
  signal?: AbortSignal
}

/** A whole generation. */
export interface Completion extends Omit<native.Completion, 'finishReason'> {
  finishReason: FinishReason
}

/** One piece of streamed output. The last chunk carries `finishReason` and `usage` (its text
 * may be empty). */
export interface Chunk extends Omit<native.Chunk, 'finishReason'> {
  finishReason?: FinishReason
}

/** What a model is, from its GGUF metadata and llama.cpp. */
export interface ModelInfo extends Omit<native.ModelInfo, 'metadata'> {
  /** Every GGUF metadata key with its typed value (numbers, strings, booleans, arrays). */
  metadata: Record<string, unknown>
}

export interface TokenizeOptions {
  /** Add BOS/EOS as the model's metadata asks (default true). */
  addSpecial?: boolean
  /** Turn special-token text such as `<|im_start|>` into control tokens (default false). */
  parseSpecial?: boolean
}

export interface DetokenizeOptions {
  /** Render control tokens (BOS, EOS, ...) as text (default false). */
  renderSpecial?: boolean
}

export interface ChatTemplateOptions {
  /** End with the assistant's turn header (default true). */
  addGenerationPrompt?: boolean
}
