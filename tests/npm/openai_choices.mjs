// openai_choices.mjs - several choices through the official `openai` npm client's typed API (run
// by tests/serve_choices_check.py for tests/test_cluster_serve_choices.sh). Environment:
// DSINFER_URL, DSINFER_KEY, DSINFER_MODEL, PROMPT. Prints {"completion": [texts of n=2, seed 7,
// by index], "stream": [the same streamed]} for the test to compare with what curl gets.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.DSINFER_URL + '/v1',
  apiKey: process.env.DSINFER_KEY,
  maxRetries: 0,
  timeout: 120000,
});
const model = process.env.DSINFER_MODEL;
const ask = { model, prompt: process.env.PROMPT, max_tokens: 8, temperature: 1, seed: 7, n: 2 };

const whole = await client.completions.create(ask);
if (whole.choices.length !== 2 || whole.choices.some((c, i) => c.index !== i))
  throw new Error(`unexpected choices ${JSON.stringify(whole.choices)}`);
const stream = await client.completions.create({ ...ask, stream: true });
const parts = ['', ''];
for await (const chunk of stream) {
  for (const c of chunk.choices) parts[c.index] += c.text;
}
const best = await client.completions.create({ ...ask, n: 1, best_of: 3 });
if (best.choices.length !== 1) throw new Error('best_of: expected one choice');
console.log(JSON.stringify({ completion: whole.choices.map((c) => c.text), stream: parts }));
