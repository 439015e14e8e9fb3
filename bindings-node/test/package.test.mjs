// The package itself: both module systems, the published types, the native module's
// generated typings (drift check), and the example.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { describe, test } from 'node:test'

import * as esm from 'corral'

import { MODEL_PATH, PKG_DIR, REPO_DIR } from './helpers.mjs'

const require = createRequire(import.meta.url)

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: PKG_DIR, encoding: 'utf8', timeout: 600_000, ...options })
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`)
  return result
}

describe('package', () => {
  test('require and import expose the same objects', () => {
    const cjs = require('corral')
    const names = (m) => Object.keys(m).filter((k) => k !== 'default' && k !== '__esModule').sort()
    assert.deepEqual(names(esm), names(cjs))
    for (const name of names(cjs)) assert.equal(esm[name], cjs[name], name)
    assert.equal(typeof cjs.Model.load, 'function')
  })

  test('the packed package ships llama.cpp, the CPU variants and the RPC backend beside the addon, and its bin', () => {
    const [packed] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts']).stdout)
    const files = packed.files.map((f) => f.path)
    const shipped = ['native/libllama.so.0', 'native/libggml.so.0', 'native/libggml-base.so.0', 'native/libggml-cpu-x64.so', 'native/libggml-rpc.so']
    for (const file of [...shipped, 'bin/rpc-server.mjs']) {
      assert.ok(files.includes(file), `${file} missing from the package`)
    }
    const pkg = JSON.parse(readFileSync(join(PKG_DIR, 'package.json'), 'utf8'))
    assert.equal(pkg.bin['corral-rpc-server'], 'bin/rpc-server.mjs')
    assert.ok(files.filter((f) => f.startsWith('native/libggml-cpu-')).length >= 3)
    assert.match(esm.cpuVariant(), /^[a-z0-9]+$/)
  })

  test('the public types check (tsc --noEmit on the examples)', () => {
    run(process.execPath, [join(PKG_DIR, 'node_modules/typescript/bin/tsc'), '-p', 'test/types/tsconfig.json'])
  })

  test('native/index.d.ts matches what the Rust code generates', () => {
    const out = mkdtempSync(join(tmpdir(), 'corral-codegen-'))
    try {
      run(process.execPath, ['scripts/build.mjs', '--codegen', out])
      for (const file of ['index.d.ts']) {
        const committed = readFileSync(join(PKG_DIR, 'native', file), 'utf8')
        const generated = readFileSync(join(out, file), 'utf8')
        assert.ok(committed === generated, `native/${file} is stale: run \`npm run codegen\` in bindings-node and commit it`)
      }
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })
})

describe('examples', () => {
  test('examples/node/chat.mjs streams an answer', () => {
    const exampleDir = join(REPO_DIR, 'examples/node')
    // What `npm install` in examples/node does: link the package.
    const link = join(exampleDir, 'node_modules/corral')
    if (!existsSync(link)) {
      mkdirSync(join(exampleDir, 'node_modules'), { recursive: true })
      symlinkSync(relative(join(exampleDir, 'node_modules'), PKG_DIR), link, 'dir')
    }
    const { stdout, stderr } = run(process.execPath, ['chat.mjs', MODEL_PATH, 'Say hello.'], { cwd: exampleDir })
    assert.ok(stdout.trim().length > 0, 'no answer')
    assert.match(stderr, /loading \[#+\] 100%/)
    assert.match(stderr, /tokens \((stop|length)\)/)
  })
})
