// Writes the package.json files of the two npm packages (scripts/dist/build.sh), in napi-rs's
// pattern: `corral` (the TypeScript layer and the loader) depends optionally on
// `corral-linux-x64-gnu` (the addon and its libraries), which npm installs only on a matching
// machine. Neither has an install script; building from a clone stays the fallback.
//   node scripts/dist/npm-manifests.mjs bindings-node/package.json MAIN_DIR PLATFORM_DIR
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const [source, mainDir, platformDir] = process.argv.slice(2)
const pkg = JSON.parse(readFileSync(source, 'utf8'))
const platformName = `${pkg.name}-linux-x64-gnu`
const common = {
  version: pkg.version,
  license: pkg.license,
  engines: pkg.engines,
}

const main = {
  name: pkg.name,
  ...common,
  description: pkg.description,
  main: pkg.main,
  types: pkg.types,
  exports: pkg.exports,
  bin: pkg.bin,
  files: ['dist', 'bin', 'native/index.js', 'native/index.d.ts'],
  optionalDependencies: { [platformName]: pkg.version },
}
writeFileSync(join(mainDir, 'package.json'), JSON.stringify(main, null, 2) + '\n')

// npm packs no symbolic links: the libraries are files named by their sonames.
const files = readdirSync(platformDir).filter((name) => name.endsWith('.node') || /^lib.*\.so(\.\d+)?$/.test(name))
const platform = {
  name: platformName,
  ...common,
  description: `${pkg.name}'s native addon and llama.cpp libraries for Linux x64 (glibc >= 2.31)`,
  os: ['linux'],
  cpu: ['x64'],
  libc: ['glibc'],
  main: `${pkg.napi.binaryName}.linux-x64-gnu.node`,
  files,
}
writeFileSync(join(platformDir, 'package.json'), JSON.stringify(platform, null, 2) + '\n')
