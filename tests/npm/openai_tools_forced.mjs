// openai_tools_forced.mjs - a forced tool call through the official `openai` npm client against
// `dsinfer serve` on a real (tiny) model (run by tests/test_cluster_serve_tools.sh). Environment:
// DSINFER_URL, DSINFER_MODEL. With tool_choice naming the function, constrained decoding makes
// the model call it: the typed response has the call with arguments the schema accepts, the
// client's stream helper puts the streamed deltas together into the same call (greedy), and
// runTools runs the function with the parsed arguments and sends the result back as a tool
// message. Exits 1 on the first mismatch.
import OpenAI from 'openai';

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const client = new OpenAI({ baseURL: env('DSINFER_URL') + '/v1', apiKey: 'unused', maxRetries: 0,
  timeout: 300000 });
const model = env('DSINFER_MODEL');
const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
const parameters = { type: 'object', additionalProperties: false, required: ['city'],
  properties: { city: { type: 'string', maxLength: 8 } } };
const tools = [{ type: 'function',
  function: { name: 'get_weather', description: 'Weather of a city', parameters } }];
const tool_choice = { type: 'function', function: { name: 'get_weather' } };
const body = { model, messages, tools, tool_choice, temperature: 0, max_tokens: 400 };

let failed = 0;
const check = (cond, what, detail) => {
  if (cond) {
    console.log(`ok: ${what}`);
  } else {
    failed++;
    console.log(`FAIL: ${what}: ${JSON.stringify(detail)}`);
  }
};

const whole = await client.chat.completions.create(body);
const w = whole.choices[0];
const call = (w.message.tool_calls || [])[0];
check(w.finish_reason === 'tool_calls' && call && call.function.name === 'get_weather',
  'the forced call', w);
let args = null;
try {
  args = JSON.parse(call.function.arguments);
} catch (e) {
  args = null;
}
check(args && typeof args.city === 'string' && Object.keys(args).length === 1,
  'its arguments follow the schema', call);

const final = await client.chat.completions.stream({ ...body, stream: true }).finalChatCompletion();
const f = final.choices[0];
check(f.finish_reason === 'tool_calls' && f.message.tool_calls?.length === 1 &&
  f.message.tool_calls[0].function.arguments === call.function.arguments,
  'the stream helper puts the deltas together into the same call', f);

let got = null;
const runner = client.chat.completions.runTools({
  ...body,
  tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters, parse: JSON.parse, function: (a) => { got = a; return '18 C'; } } }],
});
await runner.done();
// (runTools sends its tools with "strict": true: another prompt, so other arguments)
check(got && typeof got.city === 'string' && [...got.city].length <= 8,
  'runTools ran the function with the parsed arguments', got);
const roles = runner.messages.map((m) => m.role);
check(JSON.stringify(roles) === JSON.stringify(['user', 'assistant', 'tool']),
  'runTools: the forced call, then its result as a tool message', roles);

process.exit(failed ? 1 : 0);
