// openai_logprobs.mjs - logprobs through the official `openai` npm client's typed API (run by
// tests/serve_params_ref.py for tests/test_cluster_serve_params.sh). Environment: DSINFER_URL,
// DSINFER_MODEL, PROMPT. Prints {"chat": choices[0].logprobs.content, "completion":
// choices[0].logprobs} of two greedy requests for the test to compare with what curl gets.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.DSINFER_URL + '/v1',
  apiKey: 'unused',
  maxRetries: 0,
  timeout: 120000,
});
const model = process.env.DSINFER_MODEL;

const chat = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'hello there' }],
  max_tokens: 5,
  temperature: 0,
  logprobs: true,
  top_logprobs: 2,
});
// ChatCompletionTokenLogprob[]: token, logprob, bytes, top_logprobs
const content = chat.choices[0].logprobs?.content ?? [];
for (const t of content) {
  if (typeof t.token !== 'string' || typeof t.logprob !== 'number' || !Array.isArray(t.bytes) ||
      t.top_logprobs.length !== 2)
    throw new Error(`unexpected logprob entry ${JSON.stringify(t)}`);
}
const completion = await client.completions.create({
  model,
  prompt: process.env.PROMPT,
  max_tokens: 5,
  temperature: 0,
  logprobs: 2,
});
// Completion.choices[].logprobs: tokens, token_logprobs, top_logprobs, text_offset
const lp = completion.choices[0].logprobs;
if (!lp || lp.tokens.length !== lp.token_logprobs.length || lp.text_offset.length !== 5)
  throw new Error(`unexpected completion logprobs ${JSON.stringify(lp)}`);
console.log(JSON.stringify({ chat: content, completion: lp }));
