#!/usr/bin/env node
// Prompt and generation speed through corral's Node binding, next to the Rust core and
// node-llama-cpp: same model, threads, prompt (512 tokens) and output (128 greedy tokens,
// end-of-generation ignored), interleaved round by round so machine noise hits every side
// alike; medians and best rounds are reported. A benchmark, not a test: run it with scripts/bench-node.sh.
//
//   node bench/bench.mjs [--model PATH] [--threads N] [--rounds 3] [--node-llama-cpp DIR] [--json]
//
// Rows:
//   corral core         `target/release/corral bench --repeats 1 --json` each round (its own
//                       process): the engine's own figures, and its plain llama-cpp-2 loop.
//   corral Node         this process: `complete()` with the figures the engine reports in
//                       `usage` (same definitions as the core), and wall-clock figures of a
//                       stream consumed by `for await`.
//   node-llama-cpp      wall clock around `LlamaContextSequence.evaluate` (prompt: start to
//                       first token; generation: tokens after the first over the time since it),
//                       from DIR/node_modules (default target/node-bench); skipped if missing.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Model, defaultThreads } from 'corral'

import { loadNodeLlamaCpp } from './node-llama-cpp.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const CORRAL_CLI = join(ROOT, 'target/release/corral')
// The text `corral bench` builds its prompt from (core/src/bench.rs): identical prompts.
const PARAGRAPH =
  'The history of computing is a story of people, ideas and machines. Early calculating ' +
  'devices gave way to programmable computers, then to personal computers and phones. '
const PROMPT_TOKENS = 512
const GENERATED_TOKENS = 128
const CONTEXT_LENGTH = 2048

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf') },
    threads: { type: 'string', default: String(defaultThreads()) },
    rounds: { type: 'string', default: '3' },
    'node-llama-cpp': { type: 'string', default: join(ROOT, 'target/node-bench') },
    json: { type: 'boolean', default: false },
  },
})
const threads = Number(args.threads)
const rounds = Number(args.rounds)

function benchPrompt(model, n) {
  let text = ''
  let tokens = []
  while (tokens.length < n) {
    text += PARAGRAPH
    tokens = model.tokenize(text)
  }
  return tokens.slice(0, n)
}

/** Prompt: start to first token. Generation: tokens after the first over the time since it. */
function wallClock(promptTokens, tokenTimes, started) {
  const first = tokenTimes[0]
  const last = tokenTimes.at(-1)
  return {
    promptTokensPerS: (promptTokens * 1000) / (first - started),
    generationTokensPerS: ((tokenTimes.length - 1) * 1000) / Math.max(last - first, 1e-6),
  }
}

async function corralNode(model, prompt) {
  const options = { maxTokens: GENERATED_TOKENS, temperature: 0, ignoreEos: true }
  model.clearCache() // nothing cached: the whole prompt is evaluated, as in the core bench
  const { usage } = await model.complete(prompt, options)
  model.clearCache()
  const tokenTimes = []
  const started = performance.now()
  for await (const chunk of model.completeStream(prompt, options)) {
    const now = performance.now()
    for (const _ of chunk.tokens) tokenTimes.push(now)
  }
  return {
    usage: { promptTokensPerS: usage.promptTokensPerS, generationTokensPerS: usage.generationTokensPerS },
    wall: wallClock(prompt.length, tokenTimes, started),
  }
}

function corralCore() {
  const cmd = ['bench', args.model, '--threads', String(threads), '--repeats', '1', '--json']
  const result = spawnSync(CORRAL_CLI, cmd, { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`corral bench failed: ${result.stderr}`)
  const r = JSON.parse(result.stdout)
  return {
    core: { promptTokensPerS: r.prompt_tokens_per_s, generationTokensPerS: r.generation_tokens_per_s },
    plain: { promptTokensPerS: r.plain_prompt_tokens_per_s, generationTokensPerS: r.plain_generation_tokens_per_s },
  }
}

async function nodeLlamaCppRunner(dir) {
  const loaded = await loadNodeLlamaCpp(dir, { modelPath: args.model, contextLength: CONTEXT_LENGTH, threads, sequences: 1 })
  if (!loaded) return undefined
  const sequence = loaded.context.getSequence()
  return async (prompt) => {
    await sequence.clearHistory() // nothing reused from the previous round
    const tokenTimes = []
    const started = performance.now()
    // evaluate() never stops at end-of-generation by itself: like ignoreEos.
    for await (const _ of sequence.evaluate(prompt, { temperature: 0 })) {
      tokenTimes.push(performance.now())
      if (tokenTimes.length === GENERATED_TOKENS) break
    }
    return { 'node-llama-cpp': wallClock(prompt.length, tokenTimes, started) }
  }
}

const ROWS = [
  ['core', 'corral core (Rust engine)'],
  ['usage', 'corral Node complete()'],
  ['wall', 'corral Node stream (wall)'],
  ['plain', 'plain llama-cpp-2 loop'],
  ['node-llama-cpp', 'node-llama-cpp 3.21.1 (wall clock)'],
]

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

if (!existsSync(CORRAL_CLI)) {
  console.error(`${CORRAL_CLI} is missing: cargo build --release -p corral-cli`)
  process.exit(1)
}
const model = await Model.load(args.model, { contextLength: CONTEXT_LENGTH, threads })
const prompt = benchPrompt(model, PROMPT_TOKENS)
const sides = [() => corralNode(model, prompt), () => corralCore()]
const runNodeLlamaCpp = await nodeLlamaCppRunner(args['node-llama-cpp'])
if (runNodeLlamaCpp) sides.push(() => runNodeLlamaCpp(prompt))
else console.error(`node-llama-cpp not found in ${args['node-llama-cpp']}: skipped (scripts/bench-node.sh installs it)`)

for (const side of sides) await side() // warm-up round: page in the model, start threads
const samples = {}
for (let round = 0; round < rounds; round++) {
  for (const side of sides) {
    for (const [name, figures] of Object.entries(await side())) (samples[name] ??= []).push(figures)
  }
  console.error(`round ${round + 1}/${rounds} done`)
}
await model.dispose()

// Interference from other load only ever slows a run down: the best round of each side is the
// steadiest figure on a shared machine, the median the typical one.
const summarize = (pick) =>
  Object.fromEntries(
    Object.entries(samples).map(([name, runs]) => [
      name,
      {
        promptTokensPerS: pick(runs.map((r) => r.promptTokensPerS)),
        generationTokensPerS: pick(runs.map((r) => r.generationTokensPerS)),
      },
    ]),
  )
const medians = summarize(median)
const bests = summarize((values) => Math.max(...values))
if (args.json) {
  console.log(JSON.stringify({ threads, rounds, medians, bests }, null, 2))
} else {
  console.log(
    `model: ${args.model.split('/').at(-1)}   threads: ${threads}   prompt: ${PROMPT_TOKENS} tokens   ` +
      `generated: ${GENERATED_TOKENS} tokens   ${rounds} interleaved rounds`,
  )
  for (const [title, table] of [['median of the rounds', medians], ['best round', bests]]) {
    const core = table.core
    console.log(`${title.padEnd(38)} ${'prompt tok/s'.padStart(13)} ${'gen tok/s'.padStart(10)} ${'prompt ratio'.padStart(13)} ${'gen ratio'.padStart(10)}`)
    for (const [key, label] of ROWS) {
      const m = table[key]
      if (!m) continue
      console.log(
        `  ${label.padEnd(36)} ${m.promptTokensPerS.toFixed(1).padStart(13)} ${m.generationTokensPerS.toFixed(1).padStart(10)} ` +
          `${(m.promptTokensPerS / core.promptTokensPerS).toFixed(3).padStart(13)} ${(m.generationTokensPerS / core.generationTokensPerS).toFixed(3).padStart(10)}`,
      )
    }
  }
  console.log('ratios are against the corral core row')
}
