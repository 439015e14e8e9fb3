#!/usr/bin/env node
// Streams a chat answer, with a progress bar while the model loads.
//
//   cd examples/node && npm install
//   node chat.mjs ../../models/SmolLM2-135M-Instruct.Q4_1.gguf "Why is the sky blue?"
//
// Ctrl-C stops the answer (an AbortSignal), not the process.
import { AbortError, Model } from 'corral'

const [modelPath, question = 'Explain in two sentences why the sky is blue.'] = process.argv.slice(2)
if (!modelPath) {
  console.error('usage: node chat.mjs MODEL.gguf [QUESTION]')
  process.exit(2)
}

let shown = -1
function progressBar(fraction) {
  const percent = Math.round(fraction * 100)
  if (percent === shown) return
  shown = percent
  const width = 30
  const done = Math.round(fraction * width)
  process.stderr.write(`\rloading [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${percent}%`)
}

const model = await Model.load(modelPath, { contextLength: 2048, onProgress: progressBar })
process.stderr.write(`\n${model.info.name} (${model.info.architecture}, ${(model.info.parameters / 1e6).toFixed(0)}M parameters, ${model.info.quantization})\n\n`)

const ac = new AbortController()
process.once('SIGINT', () => ac.abort())
const messages = [{ role: 'user', content: question }]
let last
try {
  for await (const chunk of model.chatStream(messages, { maxTokens: 200, temperature: 0.7, seed: 1, signal: ac.signal })) {
    process.stdout.write(chunk.text)
    last = chunk
  }
} catch (error) {
  if (!(error instanceof AbortError)) throw error
  process.stdout.write(' [stopped]')
}
process.stdout.write('\n')
if (last?.usage) {
  const u = last.usage
  process.stderr.write(
    `\n${u.completionTokens} tokens (${last.finishReason}), first after ${u.timeToFirstTokenMs.toFixed(0)} ms, ${u.generationTokensPerS.toFixed(1)} tokens/s\n`,
  )
}
await model.dispose()
