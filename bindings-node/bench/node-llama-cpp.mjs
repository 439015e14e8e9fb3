// The node-llama-cpp that bench.mjs and concurrency.mjs compare corral with (installed under
// `dir` by scripts/bench-node.sh), loaded with corral's settings: CPU only, the same context
// length, 512-token batches and thread count, `sequences` parallel sequences.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/** `{ model, context }`, or undefined when node-llama-cpp is not installed in `dir`. */
export async function loadNodeLlamaCpp(dir, { modelPath, contextLength, threads, sequences }) {
  const entry = join(dir, 'node_modules/node-llama-cpp/dist/index.js')
  if (!existsSync(entry)) return undefined
  const { getLlama } = await import(pathToFileURL(entry).href)
  // Prebuilt CPU binaries only: never download or compile llama.cpp.
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' })
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 })
  const context = await model.createContext({
    contextSize: contextLength,
    batchSize: 512,
    threads: { ideal: threads, min: threads },
    sequences,
  })
  return { model, context }
}
