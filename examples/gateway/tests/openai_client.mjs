// llmfast-gateway driven by the official `openai` npm client: streaming, non-streaming, include_usage,
// embeddings and error objects. Usage: node openai_client.mjs <node_modules dir> <base URL>
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import path from 'node:path';

const [modules, baseURL] = process.argv.slice(2);
const require = createRequire(path.join(modules, 'noop.js'));
const OpenAI = require('openai');
const client = new (OpenAI.default ?? OpenAI)({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 20000 });
const messages = [{ role: 'user', content: 'hello there' }];

const stream = await client.chat.completions.create({ model: 'llmfast-sim', messages, stream: true, max_tokens: 5,
                                                      stream_options: { include_usage: true } });
let text = '', usage = null, finish = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    text += choice.delta?.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
}
assert.equal(text, 'Large language models spend most');
assert.equal(finish, 'length');
assert.deepEqual(usage && usage.completion_tokens, 5);
assert.equal(usage.total_tokens, usage.prompt_tokens + 5);
console.log(`stream: ${chunks} chunks, ${JSON.stringify(text)}, usage ${JSON.stringify(usage)}`);

const completion = await client.chat.completions.create({ model: 'llmfast-sim', messages, max_tokens: 3 });
assert.equal(completion.object, 'chat.completion');
assert.equal(completion.choices[0].message.content, 'Large language models');
assert.equal(completion.usage.completion_tokens, 3);
console.log('non-stream:', completion.choices[0].message.content);

// The client asks for base64 by default and decodes it; ask for float too.
const b64 = await client.embeddings.create({ model: 'llmfast-hashing', input: ['a cat sat', 'on the mat'] });
assert.equal(b64.data.length, 2);
assert.equal(b64.data[0].embedding.length, 384);
const floats = await client.embeddings.create({ model: 'llmfast-hashing', input: 'a cat sat', encoding_format: 'float' });
for (let i = 0; i < 384; i++) assert.ok(Math.abs(floats.data[0].embedding[i] - b64.data[0].embedding[i]) < 1e-6);
console.log('embeddings: base64 and float agree');

const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === 'llmfast-sim'));

for (const [body, status, param] of [
  [{ model: 'llmfast-sim', messages: [] }, 400, 'messages'],
  [{ model: 'no-such-model', messages }, 404, null],
  [{ model: 'llmfast-sim', messages, max_tokens: 0 }, 400, 'max_tokens'],
]) {
  try {
    await client.chat.completions.create(body);
    assert.fail('expected an error');
  } catch (error) {
    assert.ok(error instanceof (OpenAI.APIError ?? OpenAI.default.APIError), String(error));
    assert.equal(error.status, status);
    if (param) assert.equal(error.param, param);
    assert.ok(error.type && error.code, 'type and code present');
  }
}
console.log('errors: OpenAI error objects with status, type, param, code');
