// openai_tools.mjs - tool calling through the official `openai` npm client (run by
// tests/test_cli_api_tools.sh against the API on its echo backend, which answers with the last
// message's words: a user message holding a tool call in DeepSeek-V3.1's format makes the
// "model" call it). Environment: DSINFER_URL, DSINFER_KEY, DSINFER_MODEL, CALL_TEXT. Checks the
// typed response (message.tool_calls, finish_reason), the client's stream helper putting the
// tool-call deltas together (finalChatCompletion equals the whole response), and the client's
// runTools loop: it runs the function, sends the result back as a tool message, and gets the
// answer. Exits 1 on the first mismatch.
import OpenAI from 'openai';

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const client = new OpenAI({ baseURL: env('DSINFER_URL') + '/v1', apiKey: env('DSINFER_KEY'),
  maxRetries: 0, timeout: 60000 });
const model = env('DSINFER_MODEL');
const messages = [{ role: 'user', content: env('CALL_TEXT') }];
const parameters = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
const tools = [{ type: 'function',
  function: { name: 'get_weather', description: 'Weather of a city', parameters } }];

let failed = 0;
const check = (cond, what, detail) => {
  if (cond) {
    console.log(`ok: ${what}`);
  } else {
    failed++;
    console.log(`FAIL: ${what}: ${JSON.stringify(detail)}`);
  }
};
const noIds = (calls) => (calls || []).map(({ id, ...rest }) => rest);

const whole = await client.chat.completions.create({ model, messages, tools });
const w = whole.choices[0];
check(w.finish_reason === 'tool_calls', 'finish_reason tool_calls', w.finish_reason);
const call = (w.message.tool_calls || [])[0];
check(call && call.type === 'function' && call.function.name === 'get_weather',
  'one get_weather call', w.message);
check(call && /^call_[A-Za-z0-9]{24}$/.test(call.id), 'the call id looks like OpenAI\'s', call);
check(call && JSON.parse(call.function.arguments).city === 'Paris', 'its arguments parse', call);
check(w.message.content === 'Let me check. ', 'the text before the call is the content',
  w.message.content);

// The client's own accumulation of streamed deltas.
const stream = client.chat.completions.stream({ model, messages, tools, stream: true });
const final = await stream.finalChatCompletion();
const f = final.choices[0];
check(f.finish_reason === 'tool_calls', 'stream: finish_reason tool_calls', f.finish_reason);
check(JSON.stringify(noIds(f.message.tool_calls)) === JSON.stringify(noIds(w.message.tool_calls)),
  'stream: the deltas put together equal the whole response\'s tool_calls',
  { stream: f.message.tool_calls, whole: w.message.tool_calls });
check(f.message.content === w.message.content, 'stream: the same content', f.message.content);

// runTools: call, tool result back in, answer out.
const runner = client.chat.completions.runTools({
  model,
  messages,
  tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters, parse: JSON.parse, function: ({ city }) => `It is 18 C in ${city}` } }],
});
const answer = await runner.finalContent();
check(answer === 'It is 18 C in Paris', 'runTools: the tool result in, the answer out', answer);
const roles = runner.messages.map((m) => m.role);
check(JSON.stringify(roles) === JSON.stringify(['user', 'assistant', 'tool', 'assistant']),
  'runTools: user, assistant call, tool result, assistant answer', roles);

process.exit(failed ? 1 : 0);
