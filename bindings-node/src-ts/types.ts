// Public option and result types. Fields left `undefined` take corral-core's defaults.
import type * as native from './native.js'

export type { EngineStats, Logprob, SpecialToken, TokenLogprob, ToolCall, ToolCallDelta, Usage } from './native.js'

/** Why a generation ended: an end-of-generation token or stop string, `maxTokens` (or a full
 * context), the model calling tools, or cancellation. */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'cancelled'

/** A tool call inside an assistant message, in OpenAI's shape (`arguments`: JSON text or an
 * object). `Completion.toolCalls` entries are accepted too. */
export type ChatToolCall =
  | { id?: string; type?: 'function'; function: { name: string; arguments?: string | Record<string, unknown> } }
  | native.ToolCall

/** One chat message, in OpenAI's shape (camelCase). */
export interface ChatMessage {
  /** `system`, `user`, `assistant`, `tool`, ... (whatever the model's template knows). */
  role: string
  /** May be `null` in an assistant message that only calls tools. */
  content?: string | null
  /** The tools an assistant message called. */
  toolCalls?: ChatToolCall[]
  /** A `tool` message: the id of the call it answers. */
  toolCallId?: string
  /** A `tool` message: the tool's name. */
  name?: string
}

/** A tool the model may call, in OpenAI's function format. */
export interface Tool {
  type: 'function'
  function: { name: string; description?: string; parameters?: Record<string, unknown> }
}

/** Whether and which tool the model may call. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } }

/** OpenAI's `response_format`. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object'; schema?: Record<string, unknown> }
  | { type: 'json_schema'; json_schema: { name?: string; schema: Record<string, unknown>; strict?: boolean } }

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Options of `Model.load`. */
export interface LoadOptions extends native.LoadOptions {
  /** Called with load progress in [0, 1]. If it throws, loading stops and `load` rejects
   * with that error. */
  onProgress?: (progress: number) => void
  /** Aborts loading: `load` rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** Options of one generation request (read by corral-core, which rejects unknown names). */
export interface GenerateOptions {
  /** Most tokens to generate. Default: until end of generation or a full context. */
  maxTokens?: number
  /** 0 = greedy. */
  temperature?: number
  /** 0 = disabled. */
  topK?: number
  /** In (0, 1]; 1 = disabled. */
  topP?: number
  /** In [0, 1]; 0 = disabled. */
  minP?: number
  /** > 0; 1 = disabled. */
  repeatPenalty?: number
  /** How many recent tokens the penalties look at. */
  repeatLastN?: number
  frequencyPenalty?: number
  presencePenalty?: number
  /** Fixed seed for reproducible sampling. Default: random. */
  seed?: number
  /** Strings that end generation (never part of the output). */
  stop?: string | Array<string>
  /** Milliseconds before the request fails with `deadline_exceeded`. */
  timeout?: number
  /** Keep generating past end-of-generation tokens. */
  ignoreEos?: boolean
  /** Parse special-token text in a raw prompt as control tokens (chat always does). */
  parseSpecial?: boolean
  /** Constrain the output with a GBNF grammar (llama.cpp's format, with a `root` rule). */
  grammar?: string
  /** Constrain the output to JSON valid against this JSON schema (an object or JSON text). */
  jsonSchema?: string | Record<string, unknown>
  /** Constrain the output to any JSON object. */
  jsonObject?: boolean
  /** OpenAI's `response_format` (the same constraint as `jsonSchema` / `jsonObject`). */
  responseFormat?: ResponseFormat
  /** Report each generated token's log-probability (`true`, with `topLogprobs` alternatives),
   * or a number: that many alternatives (0-20). */
  logprobs?: boolean | number
  /** Most likely alternatives per token (0-20) with `logprobs: true`. */
  topLogprobs?: number
  /** Chat only: tools the model may call; calls come back in `toolCalls`. */
  tools?: Tool[]
  /** Chat only: whether and which tool the model may call (default `auto`). */
  toolChoice?: ToolChoice
  /** Chat only: one of the model's named templates (e.g. `tool_use`) or Jinja source. */
  template?: string
  /** LoRA adapters this request runs with, by the name they were loaded under (`adapters`
   * load option, `model.loadAdapter`), each with its `scale` (default 1; 0 = the base model).
   * Scales go from -100 to 100. An unknown name, a name given twice or a bad scale rejects
   * with `InvalidArgumentError`. */
  adapters?: Array<{ name: string; scale?: number }>
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
  /** Tools for the template to describe. */
  tools?: Tool[]
  /** One of the model's named templates (e.g. `tool_use`) or Jinja source. */
  template?: string
}

/** How an embedding model turns its token vectors into one vector per text. */
export type Pooling = 'mean' | 'cls' | 'last'

/** Options of `Model.embed` (read by corral-core, which rejects unknown names). */
export interface EmbedOptions {
  /** Scale each vector to unit length (L2), so a dot product is the cosine similarity.
   * Default true. */
  normalize?: boolean
  /** Cut a text that does not fit in the context to its first tokens instead of failing
   * with `ContextOverflowError`. Default false. */
  truncate?: boolean
  /** Override the model's pooling: `mean` of the token vectors, `cls` (the first token's,
   * BERT's `[CLS]`) or `last` (the last token's, causal embedding models). Default: the GGUF's
   * `pooling_type`, or mean for models that declare none (such as chat models). */
  pooling?: Pooling
  /** Milliseconds before the request fails with `deadline_exceeded`. */
  timeout?: number
  /** Aborts the request: the promise rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** Options of `Model.rerank` (read by corral-core, which rejects unknown names). */
export interface RerankOptions {
  /** Keep only the best `topN` results. Default: all of them. */
  topN?: number
  /** Cut a query plus document that does not fit in the context (the document loses its
   * end) instead of failing with `ContextOverflowError`. Default false. */
  truncate?: boolean
  /** Milliseconds before the request fails with `deadline_exceeded`. */
  timeout?: number
  /** Aborts the request: the promise rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** One document's relevance to the query (`Model.rerank` returns them best first). */
export interface RerankResult extends native.RerankResult {
  /** The document's position in the `documents` passed to `rerank`. */
  index: number
  /** Relevance in [0, 1] (higher is more relevant). */
  score: number
  /** The document's text, as passed. */
  document: string
}
