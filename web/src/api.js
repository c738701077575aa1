// The server, as the app calls it: /api for accounts and conversations, /v1 for models and answers.
// Every call goes with the session cookie the sign-in set; no key is ever kept in the page.
import { EventSourceParserStream } from "eventsource-parser/stream";

const AUTH_PATHS = ["/api/login", "/api/register", "/api/session"];

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

let unauthorized = () => {};

// What to do when the server says the session is gone (show the sign-in).
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// The server's own words for a refusal (`message`, Mistral's and ours; `error.message`, OpenAI's).
async function refusal(response) {
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    message = body.message || body.error?.message || message;
  } catch {}
  return new ApiError(message, response.status);
}

function request(path, options = {}) {
  const { body } = options;
  return fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) },
    body: body !== undefined && typeof body !== "string" ? JSON.stringify(body) : body,
  });
}

// A JSON call to /api or /v1; a refusal is thrown as an ApiError with the server's message.
export async function api(path, options = {}) {
  const response = await request(path, options);
  if (response.status === 401 && path.startsWith("/api/") && !AUTH_PATHS.includes(path)) {
    unauthorized();
    throw new ApiError("sign in first", 401);
  }
  if (!response.ok) throw await refusal(response);
  return response.json();
}

// The served models that chat, as GET /v1/models describes them ([] when it cannot be read): not
// the sentence encoders it lists for /v1/embeddings.
export async function listModels() {
  try {
    return (await api("/v1/models")).data.filter((m) => !(m.capabilities && m.capabilities.embeddings));
  } catch {
    return [];
  }
}

// One chat completion, whole; given up after `timeoutMs` if that is given.
export function complete(body, timeoutMs) {
  const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
  return api("/v1/chat/completions", { method: "POST", body: { ...body, stream: false }, signal });
}

// A streamed chat completion: its chunks, parsed, as they come; an error chunk is thrown.
export async function* streamChat(body, signal) {
  const response = await request("/v1/chat/completions", { method: "POST", body: { ...body, stream: true }, signal });
  if (!response.ok) throw await refusal(response);
  yield* chunks(response.body);
}

// The JSON chunks of a server-sent event stream of bytes, up to `[DONE]`.
export async function* chunks(stream) {
  const events = stream.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
  const reader = events.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || value.data === "[DONE]") return;
      const chunk = JSON.parse(value.data);
      if (chunk.object === "error") throw new ApiError(chunk.message, chunk.code);
      yield chunk;
    }
  } finally {
    reader.cancel().catch(() => {}); // on stop, on an error, or at [DONE]: the connection goes
  }
}
