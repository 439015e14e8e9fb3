// `estimateMemory`: what loading a model takes in memory, before loading it.
import { toCorralError } from './errors.js'
import { checkOptions, LOAD_KEYS } from './model.js'
import native = require('./native.js')
import type { LoadOptions } from './types.js'

/** What a model takes in memory with given load options, in bytes. */
export type MemoryEstimate = native.MemoryEstimate

/**
 * What `Model.load(path, options)` would take in memory (weights, KV cache, compute buffers,
 * total), without loading the weights: llama.cpp sizes every buffer in a dry run.
 * `contextLength: 'auto'` is resolved as a load would resolve it now. A load whose options
 * cannot fit rejects with `InsufficientMemoryError` before allocating.
 */
export async function estimateMemory(path: string, options?: Omit<LoadOptions, 'onProgress' | 'signal'>): Promise<MemoryEstimate> {
  const { onProgress: _progress, signal: _signal, ...rest } = checkOptions(options as LoadOptions | undefined, LOAD_KEYS, 'load')
  try {
    return await native.estimateMemory(path, rest)
  } catch (error) {
    throw toCorralError(error)
  }
}
