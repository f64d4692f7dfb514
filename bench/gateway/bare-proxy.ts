// The floor of bench/gateway: a pass-through proxy with no logic at all (node:http in,
// undici out, the gateway's own HTTP stack minus fastify), so that the machine's cost of
// one more hop is measured in the same run as the gateway. Prints its port on stdout.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";

const upstream = new Pool(process.argv[2]!, { connections: 64 });
const server = createServer((request, response) => {
  let body = "";
  request.setEncoding("utf8");
  request.on("data", (part: string) => (body += part));
  request.on("end", () => {
    upstream
      .request({ path: request.url!, method: "POST", headers: { "content-type": "application/json" }, body })
      .then(async (answer) => {
        response.writeHead(answer.statusCode, { "content-type": String(answer.headers["content-type"] ?? "application/json") }).end(await answer.body.text());
      })
      .catch((error: unknown) => response.writeHead(502).end(String(error)));
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
