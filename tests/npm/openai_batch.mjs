// openai_batch.mjs - a batch of prompts through the official `openai` npm client's typed API (run
// by tests/serve_batch_check.py for tests/test_cluster_serve_batch.sh). Environment: DSINFER_URL,
// DSINFER_MODEL, PROMPTS (a JSON array of strings), IDS (their token ids, a JSON array of
// arrays). Prints {"strings", "ids", "stream"}: the texts of n=2 at temperature 0 by index, for
// the prompts as strings, as token-id arrays, and streamed, for the test to compare.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.DSINFER_URL + '/v1',
  apiKey: 'none',
  maxRetries: 0,
  timeout: 120000,
});
const prompts = JSON.parse(process.env.PROMPTS);
const ask = { model: process.env.DSINFER_MODEL, max_tokens: 8, temperature: 0, n: 2 };

const texts = (r) => {
  if (r.choices.some((c, i) => c.index !== i))
    throw new Error(`unexpected indexes ${JSON.stringify(r.choices)}`);
  return r.choices.map((c) => c.text);
};
const strings = texts(await client.completions.create({ ...ask, prompt: prompts }));
const ids = texts(
  await client.completions.create({ ...ask, prompt: JSON.parse(process.env.IDS) }),
);
const stream = await client.completions.create({ ...ask, prompt: prompts, stream: true });
const parts = Array(prompts.length * 2).fill('');
for await (const chunk of stream) {
  for (const c of chunk.choices) parts[c.index] += c.text;
}
console.log(JSON.stringify({ strings, ids, stream: parts }));
