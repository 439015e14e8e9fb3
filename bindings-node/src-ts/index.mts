// The ESM entry point. It re-exports the CommonJS build instead of being a second build, so
// `import` and `require` share one instance of every class (`instanceof` works across both).
export {
  AbortError,
  BusyError,
  CancelledError,
  ClosedError,
  CompletionStream,
  ContextOverflowError,
  CorralError,
  DeadlineExceededError,
  DecodeFailedError,
  InternalError,
  InvalidArgumentError,
  InvalidGrammarError,
  InvalidModelError,
  Model,
  ModelNotFoundError,
  NoChatTemplateError,
  Session,
  TemplateError,
  UnsupportedArchitectureError,
  defaultThreads,
  errorClass,
  setLogger,
  supportsGpuOffload,
  version,
} from './index.js'
export type * from './index.js'
