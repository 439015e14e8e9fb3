#!/usr/bin/env node
// corral-rpc-server: this machine's CPU as an RPC worker for models loaded elsewhere with
// `rpcServers: ['host:port']` (the Node twin of `corral rpc-server`). Runs until killed.
import { parseArgs } from 'node:util'

import { serveRpc } from '../dist/index.mjs'

const USAGE = `usage: corral-rpc-server [--host 127.0.0.1] [--port 50052] [--threads N]

Serves this machine's CPU to corral models loaded with rpcServers: ['host:port'].
The protocol has no authentication: listen on a private network only.`

let values
try {
  ;({ values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }))
} catch (error) {
  console.error(`corral-rpc-server: ${error.message}\n\n${USAGE}`)
  process.exit(2)
}
if (values.help) {
  console.log(USAGE)
  process.exit(0)
}

// Numbers are checked by serveRpc, which names the option it refuses.
const number = (text) => (text === undefined ? undefined : Number(text))
try {
  await serveRpc({ host: values.host, port: number(values.port), threads: number(values.threads) })
} catch (error) {
  console.error(`corral-rpc-server: ${error.message}`)
  process.exit(error.code === 'invalid_argument' ? 2 : 1)
}
