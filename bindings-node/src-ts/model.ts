// `Model` and `Session`: the public classes over the native module.
import { abortError, call, InvalidArgumentError, toCorralError } from './errors.js'
import native = require('./native.js')
import { CompletionStream } from './stream.js'
import type {
  ChatMessage,
  ChatTemplateOptions,
  Completion,
  EngineStats,
  DetokenizeOptions,
  EmbedOptions,
  GenerateOptions,
  LoadOptions,
  ModelInfo,
  RerankOptions,
  RerankResult,
  TokenizeOptions,
} from './types.js'

// Every load option name, so a typo (`contextLenght`) is an error instead of silently ignored.
// The `Record<keyof ...>` type makes the compiler keep this list in step with the interface.
// Generation options have no list here: corral-core reads them, and rejects unknown names.
export const LOAD_KEYS: Record<keyof LoadOptions, true> = {
  contextLength: true,
  threads: true,
  gpuLayers: true,
  useMmap: true,
  useMlock: true,
  maxSequences: true,
  batchSize: true,
  flashAttention: true,
  chatTemplate: true,
  maxQueued: true,
  onKvFull: true,
  adapters: true,
  rpcServers: true,
  rpcSplit: true,
  onProgress: true,
  signal: true,
}
export function checkOptions<T extends object>(options: T | undefined | null, keys: Record<string, true> | undefined, what: string): T {
  if (options === undefined || options === null) return {} as T
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(`${what} options must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`)
  }
  if (keys !== undefined) {
    for (const key of Object.keys(options)) {
      if (!Object.hasOwn(keys, key)) throw new InvalidArgumentError(`unknown ${what} option ${JSON.stringify(key)}`)
    }
  }
  return options
}

function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined || signal === null) return undefined
  if (!(signal instanceof AbortSignal)) throw new InvalidArgumentError('signal must be an AbortSignal')
  return signal
}

/** Splits request options into the signal and the rest, which corral-core reads (and whose
 * names it checks). */
function requestOptions<T extends { signal?: AbortSignal }>(options: T | undefined | null, what: string): [Omit<T, 'signal'>, AbortSignal | undefined] {
  const { signal, ...rest } = checkOptions(options, undefined, what)
  // Options cross to corral-core as JSON, which has no NaN or Infinity: name the option here.
  for (const [name, value] of Object.entries(rest)) {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new InvalidArgumentError(`${name} must be a finite number, got ${value}`)
  }
  return [rest, checkSignal(signal)]
}

/** Splits generation options into the signal and the rest, which corral-core reads. */
function generateOptions(options: GenerateOptions | undefined | null): [Omit<GenerateOptions, 'signal'>, AbortSignal | undefined] {
  const [rest, signal] = requestOptions(options, 'generation')
  // An adapter's scale crosses as JSON too, which has no NaN or Infinity (napi would fail with
  // a generic error): name it here.
  const adapters: unknown = rest.adapters
  if (Array.isArray(adapters)) {
    adapters.forEach((adapter: unknown, i) => {
      const scale = (adapter as { scale?: unknown } | null)?.scale
      if (typeof scale === 'number' && !Number.isFinite(scale)) {
        throw new InvalidArgumentError(`adapters[${i}].scale must be a finite number, got ${scale}`)
      }
    })
  }
  return [rest, signal]
}

/** The `adapters` load option: an object of name -> path strings. */
function checkAdapterFiles(adapters: unknown): void {
  if (adapters === undefined || adapters === null) return
  if (typeof adapters !== 'object' || Array.isArray(adapters)) {
    throw new InvalidArgumentError(`adapters must be an object of name -> path, got ${describe(adapters)}`)
  }
  for (const [name, path] of Object.entries(adapters)) {
    if (typeof path !== 'string') throw new InvalidArgumentError(`adapters[${JSON.stringify(name)}] must be a path string, got ${describe(path)}`)
  }
}

/** `what` as an array of strings (one string: a one-element array). */
function checkStrings(value: unknown, what: string, single: boolean): string[] {
  if (single && typeof value === 'string') return [value]
  const expected = single ? 'a string or an array of strings' : 'an array of strings'
  if (!Array.isArray(value)) throw new InvalidArgumentError(`${what} must be ${expected}, got ${describe(value)}`)
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== 'string') throw new InvalidArgumentError(`${what}[${i}] must be a string, got ${describe(value[i])}`)
  }
  return value
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}

/**
 * Runs a native async call with an optional `AbortSignal`: the signal cancels it through a
 * native `CancelToken`, and the call then rejects with an `AbortError`.
 */
async function cancellable<T>(
  signal: AbortSignal | undefined,
  run: (token: native.CancelToken | undefined) => Promise<T>,
): Promise<T> {
  if (signal === undefined) {
    try {
      return await run(undefined)
    } catch (error) {
      throw toCorralError(error)
    }
  }
  if (signal.aborted) throw abortError(signal)
  const token = new native.CancelToken()
  const onAbort = () => token.cancel()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const result = await run(token)
    // A generation stopped by the token resolves with `finishReason: 'cancelled'`.
    const finishReason = (result as { finishReason?: unknown } | null | undefined)?.finishReason
    if (finishReason === 'cancelled' && signal.aborted) throw abortError(signal)
    return result
  } catch (error) {
    throw signal.aborted ? abortError(signal) : toCorralError(error)
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * A loaded GGUF model and its engine. Every slow call returns a Promise and runs off the
 * event loop; concurrent requests are batched together. Call {@link Model.dispose} (or use
 * `await using`) to free it promptly; a model that is garbage collected is freed too.
 */
export class Model {
  readonly #native: native.NativeModel
  #info: ModelInfo | undefined

  private constructor(model: native.NativeModel) {
    this.#native = model
  }

  /** What the model is; `info.metadata` holds every GGUF key. (Built on first use: the
   * metadata includes the whole vocabulary.) */
  get info(): ModelInfo {
    this.#info ??= this.#native.info() as ModelInfo
    return this.#info
  }

  /** Loads a GGUF file. Rejects with `ModelNotFoundError`, `InvalidModelError`, ... */
  static async load(path: string, options?: LoadOptions): Promise<Model> {
    const { onProgress, signal: rawSignal, ...rest } = checkOptions(options, LOAD_KEYS, 'load')
    const signal = checkSignal(rawSignal)
    if (onProgress !== undefined && onProgress !== null && typeof onProgress !== 'function') {
      throw new InvalidArgumentError('onProgress must be a function')
    }
    checkAdapterFiles(rest.adapters)
    if (signal?.aborted) throw abortError(signal)
    const token = new native.CancelToken()
    const onAbort = () => token.cancel()
    signal?.addEventListener('abort', onAbort, { once: true })
    let progressError: { error: unknown } | undefined
    const progress = onProgress
      ? (p: number) => {
          try {
            onProgress(p)
          } catch (error) {
            progressError ??= { error }
            token.cancel()
          }
        }
      : undefined
    try {
      return new Model(await native.NativeModel.load(path, rest, progress, token))
    } catch (error) {
      if (signal?.aborted) throw abortError(signal)
      if (progressError) throw progressError.error
      throw toCorralError(error)
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Whether {@link Model.dispose} was called. */
  get closed(): boolean {
    return this.#native.closed
  }

  /** Text to token ids (synchronous: tokenizing is cheap). */
  tokenize(text: string, options?: TokenizeOptions): number[] {
    return call(() => this.#native.tokenize(text, options?.addSpecial, options?.parseSpecial))
  }

  /** Token ids to text. */
  detokenize(tokens: number[], options?: DetokenizeOptions): string {
    return call(() => this.#native.detokenize(tokens, options?.renderSpecial))
  }

  /** Renders messages with the model's chat template into a prompt string. */
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string {
    return call(() => this.#native.applyChatTemplate(messages, options?.addGenerationPrompt, options?.tools, options?.template))
  }

  /** Completes a raw prompt: text, or token ids used as they are (no BOS token added). */
  async complete(prompt: string | number[], options?: GenerateOptions): Promise<Completion> {
    return completion(options, (opts, token) => this.#native.complete(prompt, opts, token))
  }

  /** Streams the completion of a raw prompt (text or token ids). */
  completeStream(prompt: string | number[], options?: GenerateOptions): CompletionStream {
    return stream(options, (opts) => this.#native.completeStream(prompt, opts))
  }

  /** The assistant's reply to a conversation, using the model's chat template. */
  async chat(messages: ChatMessage[], options?: GenerateOptions): Promise<Completion> {
    return completion(options, (opts, token) => this.#native.chat(messages, opts, token))
  }

  /** Streams the assistant's reply to a conversation. */
  chatStream(messages: ChatMessage[], options?: GenerateOptions): CompletionStream {
    return stream(options, (opts) => this.#native.chatStream(messages, opts))
  }

  /** A conversation that keeps its KV cache between calls, so each turn only evaluates
   * what is new. */
  session(): Session {
    return new Session(call(() => this.#native.session()))
  }

  /** A session continuing a saved one (`Session.state()`, from this process or another): its
   * next call evaluates only what is new. Rejects with `InvalidStateError` for a state from
   * another model or configuration, or a damaged one. */
  async restoreSession(state: Uint8Array): Promise<Session> {
    if (!(state instanceof Uint8Array)) throw new InvalidArgumentError('state must be a Uint8Array (a Buffer from session.state())')
    try {
      return new Session(await this.#native.sessionFromState(Buffer.from(state.buffer, state.byteOffset, state.byteLength)))
    } catch (error) {
      throw toCorralError(error)
    }
  }

  /** `restoreSession` with the state `Session.save(path)` wrote. */
  async loadSession(path: string): Promise<Session> {
    if (typeof path !== 'string') throw new InvalidArgumentError('path must be a string')
    try {
      return new Session(await this.#native.loadSession(path))
    } catch (error) {
      throw toCorralError(error)
    }
  }


  /** Log-probability of each token given those before it (`tokens.length - 1` values). */
  async score(tokens: number[]): Promise<number[]> {
    try {
      return await this.#native.score(tokens)
    } catch (error) {
      throw toCorralError(error)
    }
  }

  /**
   * One vector per text (a single string: a one-element array), unit length unless
   * `normalize: false`, so a dot product is the cosine similarity. Any model can embed: an
   * embedding model (BERT, ...) or a chat model (mean pooling). Texts are batched together
   * and with other requests; a text longer than the context rejects with
   * `ContextOverflowError` unless `truncate: true`, an empty text with `InvalidArgumentError`.
   */
  async embed(texts: string | string[], options?: EmbedOptions): Promise<Float32Array[]> {
    const list = checkStrings(texts, 'texts', true)
    const [opts, signal] = requestOptions(options, 'embed')
    return cancellable(signal, (token) => this.#native.embed(list, opts, token))
  }

  /**
   * Scores each document's relevance to `query` with a reranker model (a GGUF with a rank
   * head, such as bge-reranker): results best first, each with the document's index in
   * `documents`. Rejects with `UnsupportedError` on a model that is not a reranker.
   */
  async rerank(query: string, documents: string[], options?: RerankOptions): Promise<RerankResult[]> {
    if (typeof query !== 'string') throw new InvalidArgumentError(`query must be a string, got ${describe(query)}`)
    const docs = checkStrings(documents, 'documents', false)
    const [opts, signal] = requestOptions(options, 'rerank')
    return cancellable(signal, (token) => this.#native.rerank(query, docs, opts, token))
  }

  /**
   * Loads a LoRA adapter (a GGUF made for this model) under `name`; requests choose it from
   * then on with the `adapters` generation option. Rejects with `ModelNotFoundError` for a
   * missing file, `InvalidModelError` for a file that is not a LoRA adapter of this model,
   * `InvalidArgumentError` for a name already loaded or an empty one.
   */
  async loadAdapter(name: string, path: string): Promise<void> {
    if (typeof name !== 'string') throw new InvalidArgumentError(`name must be a string, got ${describe(name)}`)
    if (typeof path !== 'string') throw new InvalidArgumentError(`path must be a string, got ${describe(path)}`)
    try {
      await this.#native.loadAdapter(name, path)
    } catch (error) {
      throw toCorralError(error)
    }
  }

  /** Unloads an adapter: new requests can no longer choose it, running ones finish with it.
   * Throws `InvalidArgumentError` when no adapter of that name is loaded. */
  removeAdapter(name: string): void {
    if (typeof name !== 'string') throw new InvalidArgumentError(`name must be a string, got ${describe(name)}`)
    call(() => this.#native.removeAdapter(name))
  }

  /** The names of the loaded LoRA adapters, sorted. */
  adapters(): string[] {
    return call(() => this.#native.adapters())
  }

  /** Request, token and prefix-cache totals since the model was loaded. */
  stats(): EngineStats {
    return call(() => this.#native.stats())
  }

  /** Drops the KV of every idle cached prefix. */
  clearCache(): void {
    call(() => this.#native.clearCache())
  }

  /** Stops the engine and frees the model (running requests fail with `ClosedError`; later
   * calls too). Idempotent. */
  async dispose(): Promise<void> {
    try {
      await this.#native.close()
    } catch (error) {
      throw toCorralError(error)
    }
  }

  /** Same as {@link Model.dispose}. */
  close(): Promise<void> {
    return this.dispose()
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose()
  }
}

/**
 * A conversation bound to one engine sequence: each call passes the whole prompt or message
 * list, and what the session already evaluated is reused.
 */
export class Session {
  readonly #native: native.NativeSession

  /** @internal */
  constructor(session: native.NativeSession) {
    this.#native = session
  }

  get closed(): boolean {
    return this.#native.closed
  }

  /** The session's tokens and KV cache, with a fingerprint of the model and configuration
   * they fit: give it to `model.restoreSession(state)`, in this process or another. Rejects
   * with `BusyError` while the session is generating. */
  async state(): Promise<Buffer> {
    try {
      return await this.#native.state()
    } catch (error) {
      throw toCorralError(error)
    }
  }

  /** Writes `state()` to a file (`model.loadSession(path)` reads it back). */
  async save(path: string): Promise<void> {
    if (typeof path !== 'string') throw new InvalidArgumentError('path must be a string')
    try {
      await this.#native.save(path)
    } catch (error) {
      throw toCorralError(error)
    }
  }

  async complete(prompt: string, options?: GenerateOptions): Promise<Completion> {
    return completion(options, (opts, token) => this.#native.complete(prompt, opts, token))
  }

  completeStream(prompt: string, options?: GenerateOptions): CompletionStream {
    return stream(options, (opts) => this.#native.completeStream(prompt, opts))
  }

  async chat(messages: ChatMessage[], options?: GenerateOptions): Promise<Completion> {
    return completion(options, (opts, token) => this.#native.chat(messages, opts, token))
  }

  chatStream(messages: ChatMessage[], options?: GenerateOptions): CompletionStream {
    return stream(options, (opts) => this.#native.chatStream(messages, opts))
  }

  /** Releases the session's KV cache for other requests; later calls fail with
   * `ClosedError`. Idempotent. */
  async dispose(): Promise<void> {
    this.#native.close()
  }

  /** Same as {@link Session.dispose}. */
  close(): Promise<void> {
    return this.dispose()
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose()
  }
}

/** The body of `complete` and `chat` on a model or a session: the options checked, then the
 * native call, cancellable by the options' signal. */
function completion(
  options: GenerateOptions | undefined | null,
  run: (opts: Omit<GenerateOptions, 'signal'>, token: native.CancelToken | undefined) => Promise<native.Completion>,
): Promise<Completion> {
  const [opts, signal] = generateOptions(options)
  return cancellable(signal, (token) => run(opts, token)) as Promise<Completion>
}

/** A stream that reports argument errors (and an already aborted signal) from its first
 * `next()`, so `for await` sees every failure in one place. */
function stream(options: GenerateOptions | undefined | null, start: (opts: Omit<GenerateOptions, 'signal'>) => native.TokenStream): CompletionStream {
  let opts: Omit<GenerateOptions, 'signal'>
  let signal: AbortSignal | undefined
  let tokens: native.TokenStream
  try {
    ;[opts, signal] = generateOptions(options)
    tokens = start(opts)
  } catch (error) {
    return new CompletionStream(failed(toCorralError(error)))
  }
  return new CompletionStream(tokens, signal)
}

/** A native-shaped stream that rejects once with `error`. */
function failed(error: unknown): native.TokenStream {
  let thrown = false
  return {
    next: async () => {
      if (thrown) return null
      thrown = true
      throw error
    },
    cancel: () => undefined,
    close: () => undefined,
  } as unknown as native.TokenStream
}
