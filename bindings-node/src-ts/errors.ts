// Error classes. The native module rejects with `[code] message` (see src/error.rs, where the
// core's error kinds are mapped once); `toCorralError` turns that into the class of the code,
// with `err.code` set to the stable code string.

/** The stable error codes (corral-core `ErrorKind::code`). */
export type ErrorCode =
  | 'model_not_found'
  | 'invalid_model'
  | 'unsupported_architecture'
  | 'invalid_argument'
  | 'context_overflow'
  | 'cancelled'
  | 'decode_failed'
  | 'no_chat_template'
  | 'template_error'
  | 'closed'
  | 'busy'
  | 'deadline_exceeded'
  | 'invalid_grammar'
  | 'internal'
  | 'unsupported'
  | 'invalid_state'
  | 'insufficient_memory'
  | 'worker_unavailable'

/** Every corral error: `err.code` is one of the stable {@link ErrorCode}s. */
export class CorralError extends Error {
  /** The code of instances of this class. */
  static readonly code: ErrorCode = 'internal'
  readonly code: ErrorCode

  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    const cls = new.target as typeof CorralError
    this.name = cls.name
    this.code = cls.code
  }
}

/** The model path does not exist or is not a regular file. */
export class ModelNotFoundError extends CorralError {
  static override readonly code = 'model_not_found'
  declare readonly code: 'model_not_found'
}
/** The file is not a usable GGUF model (bad magic, truncated, corrupt). */
export class InvalidModelError extends CorralError {
  static override readonly code = 'invalid_model'
  declare readonly code: 'invalid_model'
}
/** A valid GGUF whose architecture this llama.cpp build cannot run. */
export class UnsupportedArchitectureError extends CorralError {
  static override readonly code = 'unsupported_architecture'
  declare readonly code: 'unsupported_architecture'
}
/**
 * An argument or option is out of range, malformed or of the wrong type (`maxTokens: 'x'`,
 * `messages` not an array, an unknown option name). corral reports wrong types with this class
 * too, rather than a `TypeError`, so every bad input has the same `code`.
 */
export class InvalidArgumentError extends CorralError {
  static override readonly code = 'invalid_argument'
  declare readonly code: 'invalid_argument'
}
/** The prompt does not fit in the context window, or the shared KV cache is full. */
export class ContextOverflowError extends CorralError {
  static override readonly code = 'context_overflow'
  declare readonly code: 'context_overflow'
}
/** The operation was cancelled. */
export class CancelledError extends CorralError {
  static override readonly code = 'cancelled'
  declare readonly code: 'cancelled'
}
/** llama.cpp failed to evaluate a batch. */
export class DecodeFailedError extends CorralError {
  static override readonly code = 'decode_failed'
  declare readonly code: 'decode_failed'
}
/** Chat was requested but the model has no chat template (pass `chatTemplate` at load). */
export class NoChatTemplateError extends CorralError {
  static override readonly code = 'no_chat_template'
  declare readonly code: 'no_chat_template'
}
/** The chat template failed to parse or render, or raised an exception. */
export class TemplateError extends CorralError {
  static override readonly code = 'template_error'
  declare readonly code: 'template_error'
}
/** The model or session was disposed. */
export class ClosedError extends CorralError {
  static override readonly code = 'closed'
  declare readonly code: 'closed'
}
/** The request queue is full. */
export class BusyError extends CorralError {
  static override readonly code = 'busy'
  declare readonly code: 'busy'
}
/** The request ran past its `timeout`. */
export class DeadlineExceededError extends CorralError {
  static override readonly code = 'deadline_exceeded'
  declare readonly code: 'deadline_exceeded'
}
/** A grammar or JSON schema could not be compiled. */
export class InvalidGrammarError extends CorralError {
  static override readonly code = 'invalid_grammar'
  declare readonly code: 'invalid_grammar'
}
/** A bug or unexpected failure inside corral or llama.cpp. */
export class InternalError extends CorralError {
  static override readonly code = 'internal'
  declare readonly code: 'internal'
}

/** The model cannot do this: `rerank` on a model that is not a reranker, generation on an
 * encoder-only (embedding) model. */
export class UnsupportedError extends CorralError {
  static override readonly code = 'unsupported'
  declare readonly code: 'unsupported'
}
/** A saved session state is corrupt or truncated, or was saved from another model or
 * configuration (the message says what differs). */
export class InvalidStateError extends CorralError {
  static override readonly code = 'invalid_state'
  declare readonly code: 'invalid_state'
}

/** Loading with these options needs more memory than the process has available (its cgroup's
 * limit, else the machine's available memory): refused before anything was allocated. */
export class InsufficientMemoryError extends CorralError {
  static override readonly code = 'insufficient_memory'
  declare readonly code: 'insufficient_memory'
}

/** An RPC worker of the model (`rpcServers`) cannot be used: down, refusing or speaking
 * another protocol version at load, or lost while the model ran. A model that lost a worker
 * fails every request with this error: dispose of it and load it again. `serveRpc` rejects with
 * it when the server cannot listen. */
export class WorkerUnavailableError extends CorralError {
  static override readonly code = 'worker_unavailable'
  declare readonly code: 'worker_unavailable'
}

/**
 * An `AbortSignal` stopped the operation (name `AbortError`, like the DOM's). Its `cause` is
 * the signal's `reason`.
 */
export class AbortError extends CancelledError {
  constructor(message = 'The operation was aborted', options?: ErrorOptions) {
    super(message, options)
    this.name = 'AbortError'
  }
}

const CLASSES: Record<ErrorCode, typeof CorralError> = {
  model_not_found: ModelNotFoundError,
  invalid_model: InvalidModelError,
  unsupported_architecture: UnsupportedArchitectureError,
  invalid_argument: InvalidArgumentError,
  context_overflow: ContextOverflowError,
  cancelled: CancelledError,
  decode_failed: DecodeFailedError,
  no_chat_template: NoChatTemplateError,
  template_error: TemplateError,
  closed: ClosedError,
  busy: BusyError,
  deadline_exceeded: DeadlineExceededError,
  invalid_grammar: InvalidGrammarError,
  internal: InternalError,
  unsupported: UnsupportedError,
  invalid_state: InvalidStateError,
  insufficient_memory: InsufficientMemoryError,
  worker_unavailable: WorkerUnavailableError,
}

/** The class for a code (`CorralError` itself for a code this version does not know). */
export function errorClass(code: string): typeof CorralError {
  return Object.hasOwn(CLASSES, code) ? CLASSES[code as ErrorCode] : CorralError
}

// napi-rs statuses for a JS value of the wrong type (thrown before corral sees the call).
const NAPI_TYPE_ERRORS = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
  'DateExpected',
])
const PREFIXED = /^\[([a-z_]+)\] ([\s\S]*)$/

/** A native error as a corral error class; anything else unchanged. */
export function toCorralError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof CorralError) return error
  const prefixed = PREFIXED.exec(error.message)
  if (prefixed && Object.hasOwn(CLASSES, prefixed[1])) {
    const cls = CLASSES[prefixed[1] as ErrorCode]
    return new cls(prefixed[2])
  }
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && NAPI_TYPE_ERRORS.has(code)) return new InvalidArgumentError(error.message)
  // napi-rs converts arguments before corral sees them; a value it cannot read at all (e.g.
  // `null` where an object belongs) surfaces as a plain TypeError.
  if (error instanceof TypeError) return new InvalidArgumentError(error.message, { cause: error })
  return error
}

/** Calls a native function, re-throwing its errors as corral classes. */
export function call<T>(f: () => T): T {
  try {
    return f()
  } catch (error) {
    throw toCorralError(error)
  }
}

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError('The operation was aborted', { cause: signal.reason })
}
