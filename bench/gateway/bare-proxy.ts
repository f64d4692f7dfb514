// The floor of bench/gateway: a pass-through proxy with no logic at all (node:http in,
// undici's dispatch API out: the gateway's own HTTP stack minus fastify), so that the
// machine's cost of one more hop is measured in the same run as the gateway. Prints its
// port on stdout.
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool, type Dispatcher } from "undici";

const upstream = new Pool(process.argv[2]!, { connections: 64 });

/** Gathers the upstream's answer and sends it on, whole. */
class PassThrough implements Dispatcher.DispatchHandler {
  private status = 502;
  private type = "application/json";
  private readonly chunks: Buffer[] = [];
  constructor(private readonly response: ServerResponse) {}
  /** (Its presence tells undici this is a handler of its current API.) */
  onRequestStart(): void {}
  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.status = statusCode;
    this.type = String(headers["content-type"] ?? this.type);
  }
  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
  }
  onResponseEnd(): void {
    this.response.writeHead(this.status, { "content-type": this.type }).end(Buffer.concat(this.chunks));
  }
  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.response.writeHead(502).end(String(error));
  }
}

const server = createServer((request, response) => {
  let body = "";
  request.setEncoding("utf8");
  request.on("data", (part: string) => (body += part));
  request.on("end", () => {
    upstream.dispatch(
      { path: request.url!, method: "POST", headers: { "content-type": "application/json" }, body },
      new PassThrough(response),
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
