// A CommonJS user of the public types (type-checked, never run).
import corral = require('corral')

export async function complete(path: string): Promise<string> {
  const model = await corral.Model.load(path, { contextLength: 512 })
  try {
    const out: corral.Completion = await model.complete('Hello', { maxTokens: 4 })
    const vectors: Float32Array[] = await model.embed(out.text, { normalize: false })
    return out.text + vectors.length
  } catch (error) {
    if (error instanceof corral.InvalidArgumentError) return error.code
    if (error instanceof corral.UnsupportedError) return error.code
    throw error
  } finally {
    await model.dispose()
  }
}
