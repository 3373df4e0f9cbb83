/**
 * The gRPC interop client cases a browser can run (grpc's
 * doc/interop-test-descriptions.md), written against Connect-ES over any Transport.
 * Browser-safe (no Node modules): the Node test runs them, and the Chromium page
 * (test/browser/interop-page.ts) bundles them.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { PayloadSchema } from "../gen/src/proto/grpc/testing/messages_pb.js";
import { TestService, UnimplementedService } from "../gen/src/proto/grpc/testing/test_pb.js";
import { RequestQueue } from "../helpers/sync.js";

const ECHO_INITIAL = "x-grpc-test-echo-initial";
const ECHO_TRAILING = "x-grpc-test-echo-trailing-bin";
const INITIAL_VALUE = "test_initial_metadata_value";
const TRAILING_VALUE = "q6ur"; // base64 of 0xababab, as Connect shows -bin values
const SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \ud83d\ude08\t\n";

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
}

function payload(size: number) {
  return create(PayloadSchema, { body: new Uint8Array(size) });
}

function isZeros(bytes: Uint8Array, size: number): boolean {
  return bytes.length === size && bytes.every((byte) => byte === 0);
}

async function expectError(what: string, code: Code, run: () => Promise<unknown>, message?: string): Promise<ConnectError> {
  try {
    await run();
  } catch (error) {
    const connectError = ConnectError.from(error);
    check(connectError.code === code, `${what}: code ${Code[connectError.code]} (${connectError.rawMessage}), expected ${Code[code]}`);
    if (message !== undefined) check(connectError.rawMessage === message, `${what}: message ${JSON.stringify(connectError.rawMessage)}`);
    return connectError;
  }
  throw new Error(`${what}: succeeded, expected ${Code[code]}`);
}

const REQUEST_SIZES = [27182, 8, 1828, 45904];
const RESPONSE_SIZES = [31415, 9, 2653, 58979];

/** Case name -> the case, run against a transport connected to the interop service. */
export const interopCases: Record<string, (transport: Transport) => Promise<void>> = {
  async empty_unary(transport) {
    const response = await createClient(TestService, transport).emptyCall({});
    check(response.$typeName === "grpc.testing.Empty", "an Empty response");
  },

  async large_unary(transport) {
    const response = await createClient(TestService, transport).unaryCall({ responseSize: 314159, payload: payload(271828) });
    check(isZeros(response.payload!.body, 314159), "314159 zero bytes back");
  },

  async client_streaming(transport) {
    async function* requests() {
      for (const size of REQUEST_SIZES) yield { payload: payload(size) };
    }
    const response = await createClient(TestService, transport).streamingInputCall(requests());
    check(response.aggregatedPayloadSize === 74922, `aggregated size ${response.aggregatedPayloadSize}`);
  },

  async server_streaming(transport) {
    const sizes: number[] = [];
    const stream = createClient(TestService, transport).streamingOutputCall({
      responseParameters: RESPONSE_SIZES.map((size) => ({ size })),
    });
    for await (const response of stream) {
      check(isZeros(response.payload!.body, response.payload!.body.length), "zero bytes");
      sizes.push(response.payload!.body.length);
    }
    check(JSON.stringify(sizes) === JSON.stringify(RESPONSE_SIZES), `sizes ${sizes}`);
  },

  async ping_pong(transport) {
    const requests = new RequestQueue<{ responseParameters: { size: number }[]; payload: ReturnType<typeof payload> }>();
    const responses = createClient(TestService, transport).fullDuplexCall(requests)[Symbol.asyncIterator]();
    for (let index = 0; index < REQUEST_SIZES.length; index++) {
      requests.push({ responseParameters: [{ size: RESPONSE_SIZES[index]! }], payload: payload(REQUEST_SIZES[index]!) });
      const next = await responses.next();
      check(next.done !== true && next.value.payload!.body.length === RESPONSE_SIZES[index], `response ${index}`);
    }
    requests.close();
    check((await responses.next()).done === true, "the stream ends after the half-close");
  },

  async empty_stream(transport) {
    let count = 0;
    for await (const _ of createClient(TestService, transport).fullDuplexCall((async function* () {})())) count++;
    check(count === 0, `${count} responses`);
  },

  async cancel_after_begin(transport) {
    const controller = new AbortController();
    const requests = new RequestQueue<{ payload: ReturnType<typeof payload> }>();
    const call = createClient(TestService, transport).streamingInputCall(requests, { signal: controller.signal });
    controller.abort();
    await expectError("cancel_after_begin", Code.Canceled, () => call);
  },

  async cancel_after_first_response(transport) {
    const controller = new AbortController();
    const requests = new RequestQueue<{ responseParameters: { size: number }[]; payload: ReturnType<typeof payload> }>();
    const responses = createClient(TestService, transport)
      .fullDuplexCall(requests, { signal: controller.signal })
      [Symbol.asyncIterator]();
    requests.push({ responseParameters: [{ size: 31415 }], payload: payload(27182) });
    const first = await responses.next();
    check(first.done !== true && first.value.payload!.body.length === 31415, "first response");
    controller.abort();
    await expectError("cancel_after_first_response", Code.Canceled, () => responses.next());
  },

  async timeout_on_sleeping_server(transport) {
    const requests = new RequestQueue<{ payload: ReturnType<typeof payload> }>();
    requests.push({ payload: payload(27182) });
    await expectError("timeout_on_sleeping_server", Code.DeadlineExceeded, async () => {
      for await (const _ of createClient(TestService, transport).fullDuplexCall(requests, { timeoutMs: 1 })) {
        // the server sleeps (waits for more requests): nothing arrives before the deadline
      }
    });
  },

  async custom_metadata(transport) {
    const client = createClient(TestService, transport);
    const headers = { [ECHO_INITIAL]: INITIAL_VALUE, [ECHO_TRAILING]: TRAILING_VALUE };
    const unary: { header?: Headers; trailer?: Headers } = {};
    await client.unaryCall(
      { responseSize: 314159, payload: payload(271828) },
      { headers, onHeader: (h) => (unary.header = h), onTrailer: (t) => (unary.trailer = t) },
    );
    check(unary.header?.get(ECHO_INITIAL) === INITIAL_VALUE, `unary initial metadata ${unary.header?.get(ECHO_INITIAL)}`);
    check(unary.trailer?.get(ECHO_TRAILING) === TRAILING_VALUE, `unary trailing metadata ${unary.trailer?.get(ECHO_TRAILING)}`);
    const streaming: { header?: Headers; trailer?: Headers } = {};
    const requests = new RequestQueue<{ responseParameters: { size: number }[]; payload: ReturnType<typeof payload> }>();
    requests.push({ responseParameters: [{ size: 314159 }], payload: payload(271828) });
    requests.close();
    const options = { headers, onHeader: (h: Headers) => (streaming.header = h), onTrailer: (t: Headers) => (streaming.trailer = t) };
    for await (const _ of client.fullDuplexCall(requests, options)) {
      // drain
    }
    check(streaming.header?.get(ECHO_INITIAL) === INITIAL_VALUE, "streaming initial metadata");
    check(streaming.trailer?.get(ECHO_TRAILING) === TRAILING_VALUE, "streaming trailing metadata");
  },

  async status_code_and_message(transport) {
    const client = createClient(TestService, transport);
    const responseStatus = { code: 2, message: "test status message" };
    await expectError("unary", Code.Unknown, () => client.unaryCall({ responseStatus }), "test status message");
    await expectError(
      "full duplex",
      Code.Unknown,
      async () => {
        for await (const _ of client.fullDuplexCall((async function* () {
          yield { responseStatus };
        })())) {
          // the status ends the stream
        }
      },
      "test status message",
    );
  },

  async special_status_message(transport) {
    await expectError(
      "special_status_message",
      Code.Unknown,
      () => createClient(TestService, transport).unaryCall({ responseStatus: { code: 2, message: SPECIAL_MESSAGE } }),
      SPECIAL_MESSAGE,
    );
  },

  async unimplemented_method(transport) {
    await expectError("unimplemented_method", Code.Unimplemented, () => createClient(TestService, transport).unimplementedCall({}));
  },

  async unimplemented_service(transport) {
    await expectError("unimplemented_service", Code.Unimplemented, () =>
      createClient(UnimplementedService, transport).unimplementedCall({}),
    );
  },
};
