// openai_client.mjs - the official `openai` npm client against `dsinfer serve` (run by
// tests/test_cluster_serve.sh). Environment: DSINFER_URL (http://host:port), DSINFER_KEY,
// DSINFER_MODEL, PROMPT and CHAT_MSG (the inputs), EXPECT_COMPLETION and EXPECT_CHAT (the texts
// curl got for them at temperature 0). Checks models, completions and chat, whole and streamed,
// usage in streams, and the client's typed errors; exits 1 on the first mismatch.
import OpenAI from 'openai';

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const baseURL = env('DSINFER_URL') + '/v1';
const model = env('DSINFER_MODEL');
const client = new OpenAI({ baseURL, apiKey: env('DSINFER_KEY'), maxRetries: 0, timeout: 120000 });

let failed = 0;
const check = (cond, what, detail) => {
  if (cond) {
    console.log(`ok: ${what}`);
  } else {
    failed++;
    console.log(`FAIL: ${what}: ${JSON.stringify(detail)}`);
  }
};

async function expectError(what, status, fn) {
  try {
    await fn();
    check(false, what, 'no error');
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === status, `${what} -> ${status}`,
      { status: e.status, message: e.message });
    return e;
  }
}

const prompt = env('PROMPT');
const messages = [{ role: 'user', content: env('CHAT_MSG') }];

const models = await client.models.list();
check(models.data.some((m) => m.id === model), 'models.list has the model', models.data);

const c = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0 });
check(c.choices[0].text === env('EXPECT_COMPLETION'), 'completion equals curl',
  [c.choices[0].text, env('EXPECT_COMPLETION')]);
check(c.usage.completion_tokens >= 1 && c.usage.prompt_tokens >= 1, 'completion usage', c.usage);

let streamed = '';
let finish = null;
const cs = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0,
  stream: true });
for await (const chunk of cs) {
  streamed += chunk.choices[0]?.text ?? '';
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
check(streamed === c.choices[0].text, 'streamed completion equals whole', [streamed]);
check(finish === c.choices[0].finish_reason, 'streamed finish reason', finish);

const chat = await client.chat.completions.create({ model, messages, max_tokens: 12,
  temperature: 0 });
const answer = chat.choices[0].message.content;
check(answer === env('EXPECT_CHAT'), 'chat equals curl', [answer, env('EXPECT_CHAT')]);
check(chat.choices[0].message.role === 'assistant', 'chat role', chat.choices[0].message);

let chatStreamed = '';
let role = null;
let usage = null;
const st = await client.chat.completions.create({ model, messages, max_tokens: 12,
  temperature: 0, stream: true, stream_options: { include_usage: true } });
for await (const chunk of st) {
  if (chunk.usage) usage = chunk.usage;
  const d = chunk.choices[0]?.delta;
  if (d?.role) role = d.role;
  chatStreamed += d?.content ?? '';
}
check(chatStreamed === answer, 'streamed chat equals whole', [chatStreamed]);
check(role === 'assistant', 'streamed chat role', role);
check(usage !== null && usage.completion_tokens === chat.usage.completion_tokens &&
  usage.prompt_tokens === chat.usage.prompt_tokens, 'stream usage equals whole', [usage, chat.usage]);

await expectError('unknown model', 404, () =>
  client.completions.create({ model: 'no-such-model', prompt, max_tokens: 4 }));
const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
await expectError('wrong API key', 401, () => bad.models.list());
const e = await expectError('prompt over the context', 400, () =>
  client.completions.create({ model, prompt: 'word '.repeat(5000), max_tokens: 4 }));
check(e?.code === 'context_length_exceeded', 'context error code', e?.code);

console.log(failed ? `${failed} failed` : 'openai client: all passed');
process.exit(failed ? 1 : 0);
