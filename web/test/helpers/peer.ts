/**
 * A scripted framing server on a real loopback WebSocket (the `ws` package), for
 * connection-level behaviour the Python server does not show on demand: settings,
 * pings, silence, concurrency limits, malformed frames. It speaks the framing with the
 * package's own codec and records every frame the client sent, message by message.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WebSocketServer, type WebSocket } from "ws";
import { concatBytes, decodeBatch, encodeRecord, FrameDecodeError } from "../../src/codec.js";
import { FrameSchema, type Frame } from "../../src/gen/syncwire/ws/v1/frame_pb.js";
import { SUBPROTOCOL } from "../../src/connection.js";

export type FrameInit = MessageInitShape<typeof FrameSchema>;

export class ScriptedPeer {
  readonly messages: Frame[][] = [];
  socket: WebSocket | undefined;
  private readonly server: WebSocketServer;
  private readonly listeners: ((frame: Frame) => void)[] = [];
  private connected: (() => void) | undefined;

  private constructor(onConnect: (peer: ScriptedPeer) => void) {
    this.server = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => SUBPROTOCOL });
    this.server.on("connection", (socket) => {
      this.socket = socket;
      socket.on("message", (data: Buffer) => {
        const frames = decodeBatch(new Uint8Array(data)).filter((item): item is Frame => !(item instanceof FrameDecodeError));
        this.messages.push(frames);
        for (const frame of frames) for (const listener of this.listeners) listener(frame);
      });
      onConnect(this);
      this.connected?.();
    });
  }

  /** Starts a peer; `onConnect` runs when the client's socket opens (send settings there). */
  static async start(onConnect: (peer: ScriptedPeer) => void = () => undefined): Promise<ScriptedPeer> {
    const peer = new ScriptedPeer(onConnect);
    await new Promise<void>((resolve) => peer.server.once("listening", () => resolve()));
    return peer;
  }

  get url(): string {
    const address = this.server.address();
    if (typeof address === "string" || address === null) throw new Error("not listening");
    return `ws://127.0.0.1:${address.port}`;
  }

  /** Every frame the client sent, in order. */
  get frames(): Frame[] {
    return this.messages.flat();
  }

  /** Sends frames to the client in one WebSocket message. */
  send(...frames: FrameInit[]): void {
    this.socket!.send(concatBytes(frames.map((frame) => encodeRecord(create(FrameSchema, frame)))));
  }

  /** Sends raw bytes as one WebSocket message. */
  sendRaw(bytes: Uint8Array): void {
    this.socket!.send(bytes);
  }

  /** Resolves with the next client frame that satisfies `match` (or one already seen). */
  nextFrame(match: (frame: Frame) => boolean): Promise<Frame> {
    const seen = this.frames.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const listener = (frame: Frame): void => {
        if (match(frame)) {
          this.listeners.splice(this.listeners.indexOf(listener), 1);
          resolve(frame);
        }
      };
      this.listeners.push(listener);
    });
  }

  async close(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The settings frame (call 0) with the given fields. */
export function settings(fields: Record<string, unknown>): FrameInit {
  return { callId: 0, kind: { case: "settings", value: fields } } as FrameInit;
}
