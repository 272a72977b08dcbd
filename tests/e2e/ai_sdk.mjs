// End-to-end client check: the Vercel AI SDK (npm `ai`) with its OpenAI and Anthropic providers
// (`@ai-sdk/openai`, `@ai-sdk/anthropic`) against claudegate.
//
// Usage: node ai_sdk.mjs PROVIDER SCENARIO BASE_URL API_KEY MODEL
//   PROVIDER  chat       createOpenAI(...).chat(MODEL)       -> POST BASE_URL/chat/completions
//             responses  createOpenAI(...).responses(MODEL)  -> POST BASE_URL/responses
//             anthropic  createAnthropic(...)(MODEL)         -> POST BASE_URL/messages
//   SCENARIO  generate      generateText, a system prompt and a user prompt
//             stream        streamText: the text deltas, the finish reason, the usage
//             tools         generateText with a `get_weather` tool and stopWhen two steps: the
//                           model calls the tool, the SDK runs it and sends the result back
//             tools_stream  the same with streamText
//             tools_stored  (responses) `tools` with the provider's default `store: true`
//             image         generateText with a text part and an image part (a 1x1 PNG)
//             reasoning     (anthropic) streamText with thinking enabled, then generateText
//                           with that answer replayed as history (the thinking block goes back)
//   BASE_URL  the API root, e.g. http://127.0.0.1:8317/v1
//   The Node 22 that runs this finds the SDK through E2E_NODE_MODULES (the node_modules that
//   tests/e2e/install.sh filled, target/e2e/node22/node_modules).
//
// Prints one JSON object per line on stdout so the test can parse them; the first is always
//   {"step": "version", "ai": "X.Y.Z", "openai": ..., "anthropic": ..., "node": "v22..."}
// then one line per scenario step (named after the scenario; a second call adds "_final").
// An SDK error is printed as {"step": "error", "name": ..., "message": ..., "status": ...} and
// the script exits 1. Retries are off (maxRetries: 0), so the test sees the first failure.
//
// The test scripts the upstream (a mock Anthropic server behind claudegate); this script only
// drives the client, reports what the SDK made of the answers, and sends back what an app would.

import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.E2E_NODE_MODULES;
if (!modules) {
  console.error("E2E_NODE_MODULES must name the node_modules holding ai and @ai-sdk/*");
  process.exit(2);
}
// The SDK packages are ESM-only: resolve them from that node_modules, then import by URL.
const require = createRequire(join(modules, "package.json"));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const version = (name) => require(`${name}/package.json`).version;

const { generateText, streamText, tool, jsonSchema, isStepCount } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");
const { createAnthropic } = await load("@ai-sdk/anthropic");

// A 1x1 red PNG (the same one tests/e2e/openai_sdk.py sends).
const TINY_PNG_B64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

const emit = (fields) => process.stdout.write(JSON.stringify(fields) + "\n");

/** The fake tool: a fixed answer per city, so the test can find it upstream. */
const weatherTool = tool({
  description: "Get the current weather for a city.",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string", description: "The city name." } },
    required: ["city"],
    additionalProperties: false,
  }),
  execute: async ({ city }) => `weather-in-${city}: sunny, 21C`,
});

function model(provider, baseURL, apiKey, id) {
  // The key goes as the provider sends it: OpenAI's `Authorization: Bearer`, Anthropic's
  // `x-api-key`. No other header is added, so what claudegate sees is what apps send.
  if (provider === "anthropic") return createAnthropic({ baseURL, apiKey })(id);
  const openai = createOpenAI({ baseURL, apiKey });
  if (provider === "chat") return openai.chat(id);
  if (provider === "responses") return openai.responses(id);
  throw new Error(`unknown provider ${provider}`);
}

const common = { maxRetries: 0, maxOutputTokens: 256 };

// The Responses provider stores answers by default (`store: true`) and then sends earlier
// assistant text back as `item_reference`s to items the server kept. claudegate keeps no
// state, so a multi-step call through it needs `store: false` (the README says so); the
// `tools_stored` scenario shows what happens without it.
const stateless = { openai: { store: false } };

/** What a step's tool calls and results were, as the SDK parsed them. */
function toolView(step) {
  return {
    finishReason: step.finishReason,
    text: step.text,
    toolCalls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    toolResults: step.toolResults.map((r) => ({ id: r.toolCallId, name: r.toolName, output: r.output })),
  };
}

const scenarios = {
  async generate(m) {
    const r = await generateText({
      ...common,
      model: m,
      system: "You are terse.",
      prompt: "Say hello in five words.",
    });
    emit({
      step: "generate",
      text: r.text,
      finishReason: r.finishReason,
      usage: { input: r.usage.inputTokens, output: r.usage.outputTokens },
      responseModel: r.response.modelId,
      responseId: r.response.id,
      warnings: r.warnings ?? [],
    });
  },

  async stream(m) {
    const r = streamText({ ...common, model: m, prompt: "Say hello in five words." });
    const deltas = [];
    for await (const d of r.textStream) deltas.push(d);
    const [finishReason, usage, text] = await Promise.all([r.finishReason, r.usage, r.text]);
    emit({
      step: "stream",
      deltas,
      text,
      finishReason,
      usage: { input: usage.inputTokens, output: usage.outputTokens },
    });
  },

  async tools(m, providerOptions = stateless, step = "tools") {
    const r = await generateText({
      ...common,
      model: m,
      providerOptions,
      tools: { get_weather: weatherTool },
      stopWhen: isStepCount(2),
      prompt: "What's the weather in Paris?",
    });
    emit({ step, steps: r.steps.map(toolView), text: r.text, finishReason: r.finishReason });
  },

  async tools_stored(m) {
    await scenarios.tools(m, {}, "tools_stored");
  },

  async tools_stream(m) {
    const r = streamText({
      ...common,
      model: m,
      providerOptions: stateless,
      tools: { get_weather: weatherTool },
      stopWhen: isStepCount(2),
      prompt: "What's the weather in Paris?",
    });
    const types = [];
    const inputDeltas = [];
    for await (const part of r.fullStream) {
      if (part.type === "error") throw part.error;
      types.push(part.type);
      if (part.type === "tool-input-delta") inputDeltas.push(part.delta);
    }
    const steps = await r.steps;
    emit({
      step: "tools_stream",
      steps: steps.map(toolView),
      text: await r.text,
      finishReason: await r.finishReason,
      partTypes: [...new Set(types)],
      inputDeltas,
    });
  },

  async image(m) {
    const r = await generateText({
      ...common,
      model: m,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What colour is this pixel?" },
            { type: "image", image: Buffer.from(TINY_PNG_B64, "base64"), mediaType: "image/png" },
          ],
        },
      ],
    });
    emit({ step: "image", text: r.text, pngB64: TINY_PNG_B64 });
  },

  async reasoning(m) {
    const providerOptions = { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } };
    const messages = [{ role: "user", content: "Think, then say hi." }];
    const r = streamText({ model: m, maxRetries: 0, maxOutputTokens: 2048, providerOptions, messages });
    const reasoningDeltas = [];
    const textDeltas = [];
    for await (const part of r.fullStream) {
      if (part.type === "error") throw part.error;
      if (part.type === "reasoning-delta") reasoningDeltas.push(part.text);
      if (part.type === "text-delta") textDeltas.push(part.text);
    }
    const reasoning = await r.reasoning;
    emit({
      step: "reasoning",
      reasoningDeltas,
      reasoningText: await r.reasoningText,
      reasoning: reasoning.map((p) => ({ type: p.type, text: p.text, providerMetadata: p.providerMetadata })),
      text: textDeltas.join(""),
      finishReason: await r.finishReason,
    });
    // The next turn carries the answer as history: the Anthropic provider sends the thinking
    // block back with its signature, as the Messages API requires.
    const history = [...messages, ...(await r.response).messages, { role: "user", content: "And again." }];
    const again = await generateText({ model: m, maxRetries: 0, maxOutputTokens: 2048, providerOptions, messages: history });
    emit({ step: "reasoning_final", text: again.text, reasoningText: again.reasoningText });
  },
};

async function main() {
  const [provider, scenario, baseURL, apiKey, id] = process.argv.slice(2);
  if (!scenarios[scenario] || !id) {
    console.error(`usage: ai_sdk.mjs PROVIDER SCENARIO BASE_URL API_KEY MODEL\nSCENARIOS: ${Object.keys(scenarios).join(" ")}`);
    return 2;
  }
  emit({
    step: "version",
    ai: version("ai"),
    openai: version("@ai-sdk/openai"),
    anthropic: version("@ai-sdk/anthropic"),
    node: process.version,
  });
  try {
    await scenarios[scenario](model(provider, baseURL, apiKey, id));
  } catch (e) {
    emit({
      step: "error",
      name: e?.name,
      message: String(e?.message ?? e),
      status: e?.statusCode,
      body: e?.responseBody,
      cause: e?.cause ? String(e.cause?.message ?? e.cause) : undefined,
    });
    return 1;
  }
  return 0;
}

process.exitCode = await main();
