/**
 * corral: run GGUF language models in-process (llama.cpp).
 *
 * ```js
 * import { Model } from 'corral'
 * const model = await Model.load('model.gguf', { contextLength: 4096 })
 * for await (const chunk of model.chatStream([{ role: 'user', content: 'Hi!' }])) process.stdout.write(chunk.text)
 * await model.dispose()
 * ```
 * @packageDocumentation
 */
import { call } from './errors.js'
import native = require('./native.js')

export { Model, Session } from './model.js'
export { estimateMemory, type MemoryEstimate } from './fit.js'
export { serveRpc, type RpcServerOptions } from './rpc.js'
export { CompletionStream } from './stream.js'
export { openAIId, toOpenAIChatCompletion, toOpenAIChatCompletionChunk, type OpenAIOptions } from './openai.js'
export { setLogger, type Logger } from './log.js'
export {
  AbortError,
  BusyError,
  CancelledError,
  ClosedError,
  ContextOverflowError,
  CorralError,
  DeadlineExceededError,
  DecodeFailedError,
  InternalError,
  InvalidArgumentError,
  InvalidGrammarError,
  InvalidModelError,
  ModelNotFoundError,
  NoChatTemplateError,
  TemplateError,
  UnsupportedArchitectureError,
  UnsupportedError,
  InvalidStateError,
  InsufficientMemoryError,
  WorkerUnavailableError,
  errorClass,
  type ErrorCode,
} from './errors.js'
export type {
  ChatMessage,
  ChatTemplateOptions,
  ChatToolCall,
  Chunk,
  Completion,
  DetokenizeOptions,
  EmbedOptions,
  EngineStats,
  FinishReason,
  GenerateOptions,
  LoadOptions,
  Logprob,
  LogLevel,
  ModelInfo,
  Pooling,
  RerankOptions,
  RerankResult,
  ResponseFormat,
  SpecialToken,
  TokenLogprob,
  TokenizeOptions,
  Tool,
  ToolCall,
  ToolCallDelta,
  ToolChoice,
  Usage,
} from './types.js'

/** corral's version. */
export const version: string = native.version()

/** Whether this build can offload layers to a GPU. */
export function supportsGpuOffload(): boolean {
  return native.supportsGpuOffload()
}

/** The ggml CPU library in use (`sapphirerapids`, `zen4`, `haswell`, ...): the best of those
 * shipped in the package for this CPU. */
export function cpuVariant(): string {
  return call(() => native.cpuVariant())
}

/** The default thread count (physical cores). */
export function defaultThreads(): number {
  return native.defaultThreads()
}
