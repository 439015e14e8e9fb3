#!/usr/bin/env node
// Builds the package: the native addon (native/corral.<platform>.node) and the TypeScript
// layer (dist/); the addon's loader, native/index.js, is written by hand. It is the package's
// `install` script, so `npm install ./bindings-node` from a fresh clone produces a working
// package.
//
//   node scripts/build.mjs                 addon + TS layer (what `npm install` runs)
//   node scripts/build.mjs --native        addon only
//   node scripts/build.mjs --ts            TS layer only (the addon must be built: the ESM
//                                          entry is written from what the CommonJS one exports)
//   node scripts/build.mjs --codegen DIR   addon, then its typings (index.d.ts) into DIR
//                                          (`npm run codegen` writes native/; the drift test
//                                          writes a temporary DIR and diffs)
//
// Why not `napi build`: it always passes `--target <host triple>`, which moves every artifact
// to target/<triple>/release and so compiles llama.cpp a second time (minutes). This script
// runs the same cargo build the rest of the workspace uses (`cargo build --release`, shared
// target/, no RUSTFLAGS) and then uses @napi-rs/cli's own generator for the typings, with the
// environment variables napi-derive reads.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const CRATE = 'corral-node'
const BINARY_NAME = 'corral'

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: pkgDir, stdio: 'inherit', ...options })
  if (result.error) throw result.error
  if (result.status !== 0) {
    console.error(`corral: \`${command} ${args.join(' ')}\` failed (exit ${result.status})`)
    process.exit(result.status ?? 1)
  }
  return result
}

/** The pinned build tools (@napi-rs/cli, typescript) from package-lock.json. */
function ensureBuildTools() {
  const has = (name) => existsSync(join(pkgDir, 'node_modules', name, 'package.json'))
  if (has('@napi-rs/cli') && has('typescript')) return
  // `npm install ./bindings-node` links the folder and runs this script, but npm does not
  // install a linked package's own dependencies: fetch the build tools here, without scripts
  // (which would run this one again).
  console.error('corral: installing build tools (npm ci --ignore-scripts)')
  run('npm', ['ci', '--ignore-scripts', '--include=dev', '--no-audit', '--no-fund', '--prefix', pkgDir])
}

async function napiCli() {
  return import(pathToFileURL(join(pkgDir, 'node_modules/@napi-rs/cli/dist/index.js')).href)
}

function hostTriple() {
  const out = execFileSync('rustc', ['-vV'], { encoding: 'utf8' })
  const host = out.split('\n').find((l) => l.startsWith('host: '))
  if (!host) throw new Error('cannot read the host triple from `rustc -vV`')
  return host.slice('host: '.length).trim()
}

async function buildNative() {
  const metadata = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: pkgDir, encoding: 'utf8' }),
  )
  const typeDefDir = join(metadata.target_directory, 'napi-rs', `${CRATE}-type-def`)
  mkdirSync(typeDefDir, { recursive: true })
  const env = { ...process.env, NAPI_TYPE_DEF_TMP_FOLDER: typeDefDir }
  // napi-derive writes the type definitions while it compiles the crate; when cargo has
  // nothing to recompile and none were written yet, force that crate (only) to rebuild.
  if (!existsSync(join(typeDefDir, CRATE))) env[`NAPI_FORCE_BUILD_${CRATE.replace(/-/g, '_').toUpperCase()}`] = String(Date.now())
  const cargo = spawnSync(
    'cargo',
    ['build', '--release', '-p', CRATE, '--message-format=json-render-diagnostics'],
    { cwd: pkgDir, env, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 30 },
  )
  if (cargo.error) throw cargo.error
  if (cargo.status !== 0) process.exit(cargo.status ?? 1)
  const library = cargo.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((m) => m.reason === 'compiler-artifact' && m.target?.kind?.includes('cdylib'))
    .flatMap((m) => m.filenames)
    .find((f) => /\.(so|dylib|dll)$/.test(f))
  if (!library) throw new Error(`cargo did not report the ${CRATE} cdylib`)

  const { parseTriple } = await napiCli()
  const platform = parseTriple(hostTriple()).platformArchABI
  const dest = join(pkgDir, 'native', `${BINARY_NAME}.${platform}.node`)
  // Copy then rename: a running process may have the old file mapped.
  mkdirSync(dirname(dest), { recursive: true })
  const tmp = `${dest}.${process.pid}.tmp`
  copyFileSync(library, tmp)
  renameSync(tmp, dest)
  console.error(`corral: built ${dest}`)
  return typeDefDir
}

async function codegen(typeDefDir, outDir) {
  const { generateTypeDef } = await napiCli()
  const { dts } = await generateTypeDef({ typeDefDir, cwd: pkgDir, declareBindingTarget: false })
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'index.d.ts'), dts)
  console.error(`corral: wrote ${join(outDir, 'index.d.ts')}`)
}

function buildTs() {
  rmSync(join(pkgDir, 'dist'), { recursive: true, force: true })
  run(process.execPath, [join(pkgDir, 'node_modules/typescript/bin/tsc'), '-p', join(pkgDir, 'tsconfig.json')])
  writeEsmEntry()
}

/**
 * The ESM entry point (dist/index.mjs, index.d.mts). It re-exports the CommonJS build instead
 * of being a second build, so `import` and `require` share one instance of every class
 * (`instanceof` works across both). Its names are those the CommonJS build exports (read by
 * loading it, so the addon must be built), less TypeScript's `__esModule` marker, which a bare
 * `export *` would re-export too.
 */
function writeEsmEntry() {
  const cjs = createRequire(import.meta.url)(join(pkgDir, 'dist/index.js'))
  const names = Object.keys(cjs).filter((name) => name !== '__esModule')
  writeFileSync(join(pkgDir, 'dist/index.mjs'), `export { ${names.join(', ')} } from './index.js'\n`)
  writeFileSync(join(pkgDir, 'dist/index.d.mts'), `export * from './index.js'\n`)
}

const args = process.argv.slice(2)
const codegenAt = args.indexOf('--codegen')
const only = (flag) => args.includes(flag)
ensureBuildTools()
if (codegenAt >= 0) {
  const outDir = resolve(args[codegenAt + 1] ?? join(pkgDir, 'native'))
  await codegen(await buildNative(), outDir)
} else {
  if (!only('--ts')) await buildNative()
  if (!only('--native')) buildTs()
}
