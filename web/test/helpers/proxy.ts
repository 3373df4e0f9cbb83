/**
 * A loopback TCP proxy the tests put between a client and the server (as
 * tests/tcp_proxy.py does for the Python tests): `cut()` closes every connection and
 * refuses new ones, `restore()` forwards again, `retarget()` points it at a restarted
 * server's new port.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export class TcpProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private refusing = false;
  port = 0;

  constructor(private targetPort: number) {
    this.server = createServer((client) => this.accept(client));
  }

  /** Starts listening on an ephemeral loopback port; resolves with the proxy's ws:// URL. */
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Closes every forwarded connection and refuses new ones until `restore()`. */
  cut(): void {
    this.refusing = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.refusing = false;
  }

  /** Forwards new connections to `port` from now on. */
  retarget(port: number): void {
    this.targetPort = port;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: "127.0.0.1", port: this.targetPort });
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

/** The port of a ws://host:port URL. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}
