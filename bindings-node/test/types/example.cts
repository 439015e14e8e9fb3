// A CommonJS user of the public types (type-checked, never run).
import corral = require('corral')

export async function complete(path: string): Promise<string> {
  const model = await corral.Model.load(path, { contextLength: 512 })
  try {
    const out: corral.Completion = await model.complete('Hello', { maxTokens: 4 })
    return out.text
  } catch (error) {
    if (error instanceof corral.InvalidArgumentError) return error.code
    throw error
  } finally {
    await model.dispose()
  }
}
