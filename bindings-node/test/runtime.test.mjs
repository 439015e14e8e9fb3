// The event loop stays free, concurrent requests, logs, garbage collection.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, describe, test } from 'node:test'

import { setLogger } from 'corral'

import { GREEDY, MODEL_PATH, PKG_DIR, loadModel } from './helpers.mjs'

let model
before(async () => {
  model = await loadModel()
})
after(async () => {
  await model?.dispose()
})

/** Runs `script` (ESM) in a fresh Node with the package importable; returns its output. */
function node(script, args = []) {
  const result = spawnSync(process.execPath, [...args, '--input-type=module', '-e', script], {
    cwd: PKG_DIR,
    encoding: 'utf8',
    env: { ...process.env, CORRAL_TEST_MODEL: MODEL_PATH, CORRAL_LOG: '' },
    timeout: 120_000,
  })
  assert.equal(result.status, 0, `child failed:\n${result.stdout}\n${result.stderr}`)
  return result
}

describe('event loop', () => {
  test('a 10 ms interval keeps firing during loading, prompt processing and generation', async () => {
    let last = performance.now()
    let worst = 0
    let ticks = 0
    const timer = setInterval(() => {
      const now = performance.now()
      worst = Math.max(worst, now - last)
      last = now
      ticks++
    }, 10)
    try {
      // One llama.cpp thread leaves a core for the event loop: with every core spinning in
      // llama.cpp (and a busy machine), the OS alone can delay the main thread, which is CPU
      // contention, not the blocking this test is about.
      const other = await loadModel({ contextLength: 1024, threads: 1 })
      const prompt = 'The history of computing is a story of people and machines. '.repeat(40)
      const out = await other.complete(prompt, { maxTokens: 100, ignoreEos: true, ...GREEDY })
      let streamed = 0
      for await (const chunk of other.completeStream('Once upon a time', { maxTokens: 60, ignoreEos: true, ...GREEDY })) {
        streamed += chunk.tokens.length
      }
      await other.dispose()
      assert.equal(out.usage.completionTokens, 100)
      assert.equal(streamed, 60)
    } finally {
      clearInterval(timer)
    }
    assert.ok(ticks > 20, `only ${ticks} ticks`)
    assert.ok(worst < 50, `the event loop stalled for ${worst.toFixed(1)} ms`)
  })
})

describe('concurrency', () => {
  test('eight completions at once on one model', async () => {
    const prompts = Array.from({ length: 8 }, (_, i) => `Fact number ${i + 1} about the sea:`)
    const results = await Promise.all(prompts.map((p) => model.complete(p, { maxTokens: 12, ignoreEos: true, ...GREEDY })))
    for (const out of results) {
      assert.equal(out.finishReason, 'length')
      assert.equal(out.usage.completionTokens, 12)
      assert.ok(out.text.length > 0)
    }
  })

  test('streams, chats and completions interleaved', async () => {
    const collect = async (stream) => {
      let text = ''
      for await (const chunk of stream) text += chunk.text
      return text
    }
    const messages = [{ role: 'user', content: 'Hi!' }]
    const [a, b, c, d] = await Promise.all([
      collect(model.chatStream(messages, { maxTokens: 10, ...GREEDY })),
      model.chat(messages, { maxTokens: 10, ...GREEDY }),
      collect(model.completeStream('Once upon a time', { maxTokens: 10, ...GREEDY })),
      model.session().complete('Once upon a time', { maxTokens: 10, ...GREEDY }),
    ])
    assert.ok(a.length > 0 && b.text.length > 0 && c.length > 0 && d.text.length > 0)
  })
})

describe('logs', () => {
  test('setLogger receives llama.cpp lines at the chosen level, null stops them', async () => {
    const lines = []
    setLogger((level, source, message) => lines.push({ level, source, message }), 'debug')
    try {
      const m = await loadModel({ contextLength: 256 })
      await m.dispose()
      await new Promise((r) => setTimeout(r, 100)) // lines are delivered through the event loop
      assert.ok(lines.length > 0, 'no log lines')
      assert.ok(lines.some((l) => l.source === 'llama.cpp'))
      assert.ok(lines.every((l) => ['debug', 'info', 'warn', 'error'].includes(l.level)))
      assert.ok(lines.every((l) => typeof l.message === 'string' && !l.message.endsWith('\n')))
    } finally {
      setLogger(null)
    }
    await new Promise((r) => setTimeout(r, 100))
    const count = lines.length
    const m = await loadModel({ contextLength: 256 })
    await m.dispose()
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(lines.length, count, 'lines after setLogger(null)')
  })

  test('warn level filters out info lines', async () => {
    const lines = []
    setLogger((level) => lines.push(level), 'warn')
    try {
      const m = await loadModel({ contextLength: 256 })
      await m.dispose()
      await new Promise((r) => setTimeout(r, 100))
    } finally {
      setLogger(null)
    }
    assert.ok(lines.every((l) => l === 'warn' || l === 'error'), lines.join())
  })

  test('silent by default', () => {
    const { stdout, stderr } = node(`
      import { Model } from 'corral'
      const m = await Model.load(process.env.CORRAL_TEST_MODEL, { contextLength: 256 })
      await m.complete('Hi', { maxTokens: 2 })
      await m.dispose()
    `)
    assert.equal(stdout + stderr, '')
  })
})

describe('memory', () => {
  test('garbage collection of a forgotten model stops its engine and frees it', () => {
    // The engine thread is named corral-engine; count it through /proc.
    const { stdout } = node(
      `
      import { readdirSync, readFileSync } from 'node:fs'
      import { setTimeout as sleep } from 'node:timers/promises'
      import { Model } from 'corral'
      const engines = () => readdirSync('/proc/self/task').filter((t) => {
        try { return readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'corral-engine' } catch { return false }
      }).length
      const rss = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096
      const before = rss()
      let model = await Model.load(process.env.CORRAL_TEST_MODEL, { contextLength: 2048, useMmap: false })
      let session = model.session()
      let stream = model.completeStream('Hi', { maxTokens: 1 })
      await model.complete('Hi', { maxTokens: 2 })
      const loaded = rss()
      const running = engines()
      model = session = stream = null
      for (let i = 0; i < 20 && engines() > 0; i++) { globalThis.gc(); await sleep(50) }
      console.log(JSON.stringify({ running, after: engines(), loadedMb: (loaded - before) / 1e6, freedMb: (loaded - rss()) / 1e6 }))
    `,
      ['--expose-gc'],
    )
    const r = JSON.parse(stdout)
    assert.ok(r.running >= 1, `${r.running} engine threads`) // llama.cpp workers inherit the name
    assert.equal(r.after, 0, 'the engine thread is gone')
    assert.ok(r.freedMb > 0.5 * r.loadedMb, `loaded ${r.loadedMb.toFixed(0)} MB, freed ${r.freedMb.toFixed(0)} MB`)
  })
})
