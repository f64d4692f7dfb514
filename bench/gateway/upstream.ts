// A trivial OpenAI-compatible upstream for bench/gateway: canned answers, no model,
// so that what is measured is the gateway. Prints its port on stdout.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

const completion = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 0,
  model: "bench",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello there, friend." }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
});
const chunk = (delta: object, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "bench", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const streamBody = [
  chunk({ role: "assistant", content: "" }),
  chunk({ content: "Hello" }),
  chunk({ content: " there," }),
  chunk({ content: " friend." }),
  chunk({}, "stop"),
].join("");
const usageEvent = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "bench", choices: [], usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 } })}\n\n`;

const server = createServer((request, response) => {
  if (request.method === "GET") {
    response
      .writeHead(200, { "content-type": "application/json" })
      .end('{"object":"list","data":[{"id":"bench","object":"model"}]}');
    return;
  }
  let body = "";
  request.setEncoding("utf8");
  request.on("data", (part: string) => (body += part));
  request.on("end", () => {
    if (body.includes('"stream":true')) {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(streamBody);
      response.end(`${body.includes("include_usage") ? usageEvent : ""}data: [DONE]\n\n`);
      return;
    }
    response.writeHead(200, { "content-type": "application/json" }).end(completion);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
