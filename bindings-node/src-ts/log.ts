// Logs: llama.cpp's and corral's lines to one JS callback. Silent by default.
import { call, InvalidArgumentError } from './errors.js'
import native = require('./native.js')
import type { LogLevel } from './types.js'

/** `source` is `llama.cpp` or `corral`. */
export type Logger = (level: LogLevel, source: string, message: string) => void

/**
 * Sends log lines at `level` and above (default `info`) to `logger`; `null` silences them
 * again. One logger per process. Lines arrive asynchronously on the event loop. A logger that
 * throws is reported with `process.emitWarning` rather than crashing the process.
 */
export function setLogger(logger: Logger | null, level: LogLevel = 'info'): void {
  if (logger !== null && typeof logger !== 'function') throw new InvalidArgumentError('logger must be a function or null')
  const callback = logger
    ? (lvl: string, source: string, message: string) => {
        try {
          logger(lvl as LogLevel, source, message)
        } catch (error) {
          process.emitWarning(`corral: the logger threw: ${String(error)}`)
        }
      }
    : null
  call(() => native.setLogCallback(callback, level))
}
