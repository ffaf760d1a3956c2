// Drives Cohere's TypeScript SDK (cohere-ai, pinned in scripts/test, installed in .cache/npm) against the
// proxy for tests/test_clients.py, and prints what the SDK made of each answer as one JSON document:
//   node tests/clients/cohere_ts.mjs <base_url> <token> chat|chat-stream <model>
//   node tests/clients/cohere_ts.mjs <base_url> <token> models-list
//   node tests/clients/cohere_ts.mjs <base_url> <token> embed <model> <texts as JSON>
//   node tests/clients/cohere_ts.mjs <base_url> <token> rerank <model> <query> <documents as JSON> <topN>
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(repo, ".cache", "npm", "package.json"));
const { CohereClientV2 } = await import(pathToFileURL(require.resolve("cohere-ai")).href);

const [baseUrl, token, action, model, ...args] = process.argv.slice(2);
const client = new CohereClientV2({ token, baseUrl, maxRetries: 0, timeoutInSeconds: 30 });
const messages = [{ role: "user", content: "hi" }];
let result;
if (action === "chat") {
  const answer = await client.chat({ model, messages });
  result = { text: answer.message.content[0].text, finishReason: answer.finishReason, usage: answer.usage };
} else if (action === "chat-stream") {
  const events = [];
  let text = "";
  for await (const event of await client.chatStream({ model, messages })) {
    events.push(event.type);
    if (event.type === "content-delta") text += event.delta.message.content.text;
    if (event.type === "message-end") result = { finishReason: event.delta.finishReason };
  }
  result = { ...result, events, text };
} else if (action === "models-list") {
  const listed = await client.models.list({ endpoint: "chat", pageSize: 1000 });
  result = { models: listed.models.map((m) => ({ name: m.name, endpoints: m.endpoints,
                                                 defaultEndpoints: m.defaultEndpoints })) };
} else if (action === "embed") {
  const answer = await client.embed({ model, texts: JSON.parse(args[0]), inputType: "search_document",
                                      embeddingTypes: ["float", "int8"] });
  result = { id: answer.id, embeddings: answer.embeddings, texts: answer.texts,
             inputTokens: answer.meta.billedUnits.inputTokens };
} else if (action === "rerank") {
  const answer = await client.rerank({ model, query: args[0], documents: JSON.parse(args[1]),
                                       topN: Number(args[2]) });
  result = { id: answer.id, results: answer.results.map((r) => [r.index, r.relevanceScore]),
             searchUnits: answer.meta.billedUnits.searchUnits };
} else {
  throw new Error(`unknown action ${action}`);
}
console.log(JSON.stringify(result));
