// node-llama-cpp's side of `corral bench-embed`: its embedding context, one text at a time
// as its API takes them (requests for one context queue behind each other).
//
//   node embed_node_llama_cpp.mjs NODE_LLAMA_CPP_DIR MODEL THREADS < {"texts": [...]}
// Prints {"seconds": <embed time of all texts>, "vectors": [[...], ...]} (unit length).
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [dir, modelPath, threads] = process.argv.slice(2)
let input = ''
for await (const chunk of process.stdin) input += chunk
const { texts } = JSON.parse(input)

const { getLlama } = await import(pathToFileURL(join(dir, 'node_modules/node-llama-cpp/dist/index.js')).href)
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' })
const model = await llama.loadModel({ modelPath, gpuLayers: 0 })
const context = await model.createEmbeddingContext({ threads: Number(threads) })
for (const text of texts.slice(0, 8)) await context.getEmbeddingFor(text) // warm-up, as corral's side gets

const started = performance.now()
const embeddings = await Promise.all(texts.map((text) => context.getEmbeddingFor(text)))
const seconds = (performance.now() - started) / 1000
const unit = (v) => {
  const norm = Math.hypot(...v)
  return Array.from(v, (x) => x / norm)
}
process.stdout.write(JSON.stringify({ seconds, vectors: embeddings.map((e) => unit(e.vector)) }))
await context.dispose()
await model.dispose()
await llama.dispose()
