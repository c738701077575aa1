// The Node clients against a running `autan serve` (its URL is the first argument): the openai
// package and the Vercel AI SDK, for tools, streaming and embeddings. Prints one JSON document of
// what each returned; tests/server/test_node_clients.py checks it.
import OpenAI from "openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { embed, embedMany, generateText, streamText, tool } from "ai";
import { z } from "zod";

const [url, chatModel, toolModel] = process.argv.slice(2);
const ask = "What is the weather in Paris?";
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const out = {};

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "EMPTY" });
const called = await client.chat.completions.create({
  model: toolModel, messages: [{ role: "user", content: ask }], tools: [weather], temperature: 0, max_tokens: 64,
});
out.openai_tool_calls = called.choices[0].message.tool_calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
let text = "";
const stream = await client.chat.completions.create({
  model: chatModel, messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0,
  max_tokens: 12, stream: true,
});
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
out.openai_streamed = text;
const whole = await client.chat.completions.create({
  model: chatModel, messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0, max_tokens: 12,
});
out.openai_whole = whole.choices[0].message.content;
const vectors = await client.embeddings.create({ model: "all-minilm-l6-v2", input: ["hello world", "a cat"] });
out.openai_embeddings = vectors.data.map((d) => d.embedding);

const autan = createOpenAICompatible({ name: "autan", baseURL: `${url}/v1`, apiKey: "EMPTY" });
const tools = { get_weather: tool({ description: "Get the current weather in a city", inputSchema: z.object({ city: z.string() }) }) };
const generated = await generateText({ model: autan(toolModel), prompt: ask, tools, temperature: 0, maxOutputTokens: 64 });
out.ai_tool_calls = generated.toolCalls.map((c) => [c.toolName, c.input]);
const streamed = streamText({ model: autan(chatModel), prompt: "What is the capital of France?", temperature: 0, maxOutputTokens: 12 });
out.ai_streamed = "";
for await (const piece of streamed.textStream) out.ai_streamed += piece;
const one = await embed({ model: autan.textEmbeddingModel("all-minilm-l6-v2"), value: "hello world" });
const many = await embedMany({ model: autan.textEmbeddingModel("all-minilm-l6-v2"), values: ["hello world", "a cat"] });
out.ai_embedding = one.embedding;
out.ai_embeddings = many.embeddings;
console.log(JSON.stringify(out));
