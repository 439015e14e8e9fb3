// `CompletionStream`: the native `next(): Promise<Chunk | null>` as an async iterator.
import { abortError, toCorralError } from './errors.js'
import type * as native from './native.js'
import type { Chunk } from './types.js'

/**
 * A running generation: `for await (const chunk of stream)`. Leaving the loop early (`break`,
 * `return`, an exception) cancels the generation. At most one chunk is requested from the
 * engine at a time; the engine pauses the request while the consumer is behind.
 */
export class CompletionStream implements AsyncIterableIterator<Chunk> {
  readonly #native: native.TokenStream
  readonly #signal: AbortSignal | undefined
  readonly #onAbort: () => void
  #done = false
  #tail: Promise<unknown> = Promise.resolve()

  /** @internal */
  constructor(stream: native.TokenStream, signal?: AbortSignal) {
    this.#native = stream
    this.#signal = signal
    this.#onAbort = () => stream.cancel()
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  /** The next chunk. Calls made before the previous one settled wait their turn. */
  next(): Promise<IteratorResult<Chunk, undefined>> {
    const result = this.#tail.then(() => this.#next())
    this.#tail = result.catch(() => undefined)
    return result
  }

  async #next(): Promise<IteratorResult<Chunk, undefined>> {
    if (this.#done) return { done: true, value: undefined }
    const signal = this.#signal
    if (signal?.aborted) {
      this.#finish()
      throw abortError(signal)
    }
    let chunk: native.Chunk | null
    try {
      chunk = await this.#native.next()
    } catch (error) {
      this.#finish()
      throw signal?.aborted ? abortError(signal) : toCorralError(error)
    }
    if (chunk === null) {
      this.#finish()
      return { done: true, value: undefined }
    }
    if (chunk.finishReason !== undefined && chunk.finishReason !== null) {
      this.#finish()
      if (chunk.finishReason === 'cancelled' && signal?.aborted) throw abortError(signal)
    }
    return { done: false, value: chunk as Chunk }
  }

  /** Ends the iteration early and cancels the generation (what `break` calls). */
  async return(): Promise<IteratorResult<Chunk, undefined>> {
    this.#finish()
    return { done: true, value: undefined }
  }

  /** Stops generating; the stream then ends with a chunk whose `finishReason` is
   * `cancelled`. */
  cancel(): void {
    this.#native.cancel()
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.return()
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#native.close()
  }
}
