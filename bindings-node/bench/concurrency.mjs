#!/usr/bin/env node
// Eight requests on one loaded model, served concurrently and one after another: corral's Node
// binding (continuous batching in its engine) next to node-llama-cpp serving them through one
// context with eight sequences (its batching). Same model, threads, distinct prompts, 128
// greedy tokens each (end-of-generation ignored). A benchmark, not a test: run it with
// scripts/bench-node.sh --concurrency.
//
//   node bench/concurrency.mjs [--model PATH] [--threads N] [--node-llama-cpp DIR] [--json]
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Model, defaultThreads } from 'corral'

import { loadNodeLlamaCpp } from './node-llama-cpp.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const REQUESTS = 8
const GENERATED_TOKENS = 128
const CONTEXT_LENGTH = 4096
// Raw-text continuations: node-llama-cpp's evaluate() stops at end-of-generation, so prompts
// the model will not end at once; both sides count the tokens they actually generated.
const TOPICS = ['the ocean', 'a mountain village', 'the first computer', 'a lost cat', 'the history of bread',
  'a journey to Mars', 'an old lighthouse', 'the city at night']
const prompts = TOPICS.map((t) => `The story of ${t} begins on a cold morning, when`)

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf') },
    threads: { type: 'string', default: String(defaultThreads()) },
    'node-llama-cpp': { type: 'string', default: join(ROOT, 'target/node-bench') },
    json: { type: 'boolean', default: false },
  },
})
const threads = Number(args.threads)

/** Generated tokens per second over the wall-clock time of `run`. */
async function throughput(run) {
  const started = performance.now()
  const tokens = await run()
  return (tokens * 1000) / (performance.now() - started)
}

async function corral() {
  const model = await Model.load(args.model, { contextLength: CONTEXT_LENGTH, threads, maxSequences: REQUESTS })
  const options = { maxTokens: GENERATED_TOKENS, temperature: 0, ignoreEos: true }
  const one = async (prompt) => (await model.complete(prompt, options)).usage.completionTokens
  await one('Hello') // warm-up
  model.clearCache()
  const concurrent = await throughput(async () => (await Promise.all(prompts.map(one))).reduce((a, b) => a + b, 0))
  model.clearCache()
  const sequential = await throughput(async () => {
    let total = 0
    for (const prompt of prompts) total += await one(prompt)
    return total
  })
  await model.dispose()
  return { concurrent, sequential }
}

async function nodeLlamaCpp() {
  const options = { modelPath: args.model, contextLength: CONTEXT_LENGTH, threads, sequences: REQUESTS }
  const loaded = await loadNodeLlamaCpp(args['node-llama-cpp'], options)
  if (!loaded) return undefined
  const { model, context } = loaded
  const sequences = Array.from({ length: REQUESTS }, () => context.getSequence())
  const one = async (sequence, prompt) => {
    await sequence.clearHistory()
    let n = 0
    // evaluate() never stops at end-of-generation by itself: like ignoreEos.
    for await (const _ of sequence.evaluate(model.tokenize(prompt), { temperature: 0 })) {
      if (++n === GENERATED_TOKENS) break
    }
    return n
  }
  await one(sequences[0], 'Hello') // warm-up
  const concurrent = await throughput(async () =>
    (await Promise.all(prompts.map((p, i) => one(sequences[i], p)))).reduce((a, b) => a + b, 0),
  )
  const sequential = await throughput(async () => {
    let total = 0
    for (const prompt of prompts) total += await one(sequences[0], prompt)
    return total
  })
  await context.dispose()
  await model.dispose()
  return { concurrent, sequential }
}

const results = { 'corral Node': await corral() }
const peer = await nodeLlamaCpp()
if (peer) results['node-llama-cpp 3.21.1'] = peer
else console.error(`node-llama-cpp not found in ${args['node-llama-cpp']}: skipped (scripts/bench-node.sh installs it)`)

if (args.json) {
  console.log(JSON.stringify({ threads, requests: REQUESTS, tokens: GENERATED_TOKENS, results }, null, 2))
} else {
  console.log(`${REQUESTS} requests x ${GENERATED_TOKENS} tokens, threads: ${threads}   aggregate generated tok/s`)
  console.log(`${''.padEnd(24)} ${'concurrent'.padStart(11)} ${'sequential'.padStart(11)} ${'ratio'.padStart(7)}`)
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name.padEnd(24)} ${r.concurrent.toFixed(1).padStart(11)} ${r.sequential.toFixed(1).padStart(11)} ${(r.concurrent / r.sequential).toFixed(2).padStart(7)}`)
  }
  if (peer) {
    const ours = results['corral Node']
    console.log(`corral / node-llama-cpp, concurrent: ${(ours.concurrent / peer.concurrent).toFixed(2)}x`)
  }
}
