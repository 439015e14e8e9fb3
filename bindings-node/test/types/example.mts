// An ESM user of the public types (type-checked, never run).
import {
  AbortError,
  ClosedError,
  CompletionStream,
  CorralError,
  InsufficientMemoryError,
  Model,
  ModelNotFoundError,
  Session,
  UnsupportedError,
  WorkerUnavailableError,
  estimateMemory,
  serveRpc,
  setLogger,
  version,
  type Chunk,
  type Completion,
  type EmbedOptions,
  type ErrorCode,
  type FinishReason,
  type GenerateOptions,
  type LoadOptions,
  type MemoryEstimate,
  type ModelInfo,
  type Pooling,
  type RerankOptions,
  type RerankResult,
  type RpcServerOptions,
  type Usage,
} from 'corral'

declare const bar: { update(fraction: number): void }

export async function main(): Promise<string> {
  const loadOptions: LoadOptions = { contextLength: 4096, threads: 2, onProgress: (p) => bar.update(p) }
  const estimate: MemoryEstimate = await estimateMemory('model.gguf', { contextLength: 'auto' })
  if (!estimate.fits) throw new InsufficientMemoryError(`needs ${estimate.requiredBytes} bytes, ${estimate.availableBytes ?? 0} available`)
  const model = await Model.load('model.gguf', loadOptions)
  const info: ModelInfo = model.info
  console.log(info.architecture, info.parameters, info.metadata['general.name'], version)

  const ids: number[] = model.tokenize('Hello', { addSpecial: false })
  const text: string = model.detokenize(ids, { renderSpecial: true })

  const options: GenerateOptions = { maxTokens: 16, temperature: 0, stop: ['\n'], timeout: 5_000 }
  const out: Completion = await model.complete('The capital of France is', options)
  const reason: FinishReason = out.finishReason
  const usage: Usage = out.usage
  console.log(out.text, reason, usage.promptTokens, usage.completionTokens, usage.timeToFirstTokenMs)

  const ac = new AbortController()
  const stream: CompletionStream = model.chatStream([{ role: 'user', content: 'Hi!' }], { maxTokens: 64, signal: ac.signal })
  for await (const chunk of stream) {
    const piece: Chunk = chunk
    process.stdout.write(piece.text)
    if (piece.finishReason !== undefined) console.log(piece.usage?.generationTokensPerS)
  }

  const adapted = await Model.load('model.gguf', { adapters: { formal: 'formal-lora.gguf' } })
  await adapted.loadAdapter('terse', 'terse-lora.gguf')
  const adapterNames: string[] = adapted.adapters()
  const adapterOptions: GenerateOptions = { maxTokens: 8, adapters: [{ name: 'formal', scale: 0.8 }, { name: 'terse' }] }
  console.log(adapterNames, (await adapted.complete('Hi', adapterOptions)).text)
  adapted.removeAdapter('terse')
  await adapted.dispose()

  const spread = await Model.load('model.gguf', { contextLength: 4096, rpcServers: ['10.0.0.2:50052', '10.0.0.3:50052'], rpcSplit: [1, 1, 2] })
  try {
    await spread.complete('Hi', { maxTokens: 8 })
  } catch (error) {
    if (error instanceof WorkerUnavailableError) {
      const code: 'worker_unavailable' = error.code
      console.log(code, error.message)
      await spread.dispose()
    }
  }
  const serverOptions: RpcServerOptions = { host: '10.0.0.2', port: 50052, threads: 4 }
  serveRpc(serverOptions).catch((error: unknown) => console.error(error))
  const serving: Promise<never> = serveRpc()
  void serving

  const session: Session = model.session()
  const reply = await session.chat([{ role: 'user', content: 'Hi' }], { maxTokens: 8 })
  await session.dispose()

  try {
    await model.complete('x', { signal: AbortSignal.timeout(10) })
  } catch (error) {
    if (error instanceof AbortError) console.log('aborted', error.code)
    else if (error instanceof ModelNotFoundError) {
      const code: 'model_not_found' = error.code
      console.log(code)
    } else if (error instanceof CorralError) {
      const code: ErrorCode = error.code
      console.log(code, error instanceof ClosedError)
    }
  }

  const embedOptions: EmbedOptions = { normalize: true, truncate: true, pooling: 'mean', timeout: 1_000, signal: ac.signal }
  const vectors: Float32Array[] = await model.embed(['first text', 'second text'], embedOptions)
  const [single]: Float32Array[] = await model.embed('one text')
  const pooling: Pooling = 'cls'
  console.log(vectors[0].length, single[0], (await model.embed([], { pooling }))[0])
  const rerankOptions: RerankOptions = { topN: 3, truncate: false, timeout: 1_000, signal: ac.signal }
  try {
    const ranked: RerankResult[] = await model.rerank('query', ['a', 'b'], rerankOptions)
    for (const { index, score, document } of ranked) console.log(index.toFixed(0), score.toFixed(3), document.length)
  } catch (error) {
    if (error instanceof UnsupportedError) {
      const code: 'unsupported' = error.code
      console.log(code)
    }
  }

  setLogger((level, source, message) => console.log(level, source, message), 'debug')
  setLogger(null)

  // @ts-expect-error maxTokens is a number
  await model.complete('x', { maxTokens: 'many' })
  // @ts-expect-error a misspelt option
  await model.complete('x', { maxToken: 1 })
  // @ts-expect-error a message needs a role
  await model.chat([{ content: 'x' }])
  // @ts-expect-error an adapter is chosen by name
  await model.complete('x', { adapters: [{ scale: 1 }] })
  // @ts-expect-error adapter paths are strings
  await Model.load('model.gguf', { adapters: { formal: 1 } })
  // @ts-expect-error not a pooling
  await model.embed('x', { pooling: 'max' })
  // @ts-expect-error texts are strings
  await model.embed([1, 2])
  // @ts-expect-error a misspelt rerank option
  await model.rerank('q', ['d'], { top_n: 1 })
  // @ts-expect-error worker addresses are strings
  await Model.load('model.gguf', { rpcServers: [50052] })
  // @ts-expect-error the port is a number
  await serveRpc({ port: '50052' })
  // @ts-expect-error not a log level
  setLogger(null, 'loud')

  {
    await using scoped = await Model.load('other.gguf')
    console.log(scoped.info.name)
  }
  await model.dispose()
  return text + reply.text
}
