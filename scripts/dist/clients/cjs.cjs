// corral from CommonJS (scripts/dist/test.sh): require('corral'), a chat, a stream, an error code.
const assert = require('node:assert')
const { Model } = require('corral')

async function main() {
  const model = await Model.load(process.argv[2], { contextLength: 512 })
  const out = await model.chat([{ role: 'user', content: 'Say hello.' }], { maxTokens: 8, temperature: 0 })
  assert.ok(out.text.length > 0 && out.usage.completionTokens > 0)
  let streamed = ''
  for await (const chunk of model.completeStream('Once upon a time', { maxTokens: 8, temperature: 0 })) streamed += chunk.text
  assert.ok(streamed.length > 0)
  await assert.rejects(model.complete('x', { maxTokens: -1 }), (err) => err.code === 'invalid_argument')
  await model.close()
  console.log(`cjs: ${JSON.stringify(out.text)} / ${JSON.stringify(streamed)}`)
}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
