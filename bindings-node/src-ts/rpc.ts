// `serveRpc`: this process as an RPC worker for models loaded elsewhere with `rpcServers`.
import { InternalError, toCorralError } from './errors.js'
import { checkOptions } from './model.js'
import native = require('./native.js')

/** Where and how `serveRpc` serves (every field optional). */
export type RpcServerOptions = native.RpcServerOptions

const RPC_SERVER_KEYS: Record<keyof RpcServerOptions, true> = { host: true, port: true, threads: true }

/**
 * Serves this process's CPU to models loaded with `rpcServers: ['host:port']`: llama.cpp's RPC
 * server (one client process at a time), on a native thread of its own, so the event loop goes
 * on. It serves until the process ends; the pending promise keeps Node running. The promise
 * rejects with `WorkerUnavailableError` when the server cannot listen (the port is taken, the
 * host is not this machine's), with `InvalidArgumentError` for bad options, and otherwise never
 * settles. The protocol has no authentication: keep the default host `127.0.0.1`, or listen
 * on a private network only.
 */
export async function serveRpc(options?: RpcServerOptions): Promise<never> {
  const rest = checkOptions(options, RPC_SERVER_KEYS, 'serveRpc')
  try {
    await native.serveRpc(rest)
  } catch (error) {
    throw toCorralError(error)
  }
  // The native promise settles only with an error.
  throw new InternalError('the RPC server stopped')
}
