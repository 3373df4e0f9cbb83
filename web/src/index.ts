/**
 * syncwire-web: a Connect-ES transport running every gRPC call kind over one WebSocket
 * (the `syncwire-protobuf` framing), plus the generated syncwire service descriptors.
 */
export { createWebSocketTransport } from "./transport.js";
export type { WebSocketTransport, WebSocketTransportOptions } from "./transport.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
export { SUBPROTOCOL } from "./connection.js";
export { SyncService } from "./gen/syncwire/v1/sync_pb.js";
export * from "./sync/index.js";
