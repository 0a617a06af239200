// Every HTTP operation the live system describes, over HTTP/JSON and as its rpc over gRPC and
// gRPC-Web, with the generated package. Runs against USER_SERVICE_URL (`just test-clients`
// starts a private system). The operations come from the served /openapi.json and the rpcs
// from the package's service descriptors, so a new rpc is tested here without an edit: each
// operation, called without credentials and with an empty request, must reach its rpc over
// all three (no 404, 405 or 501, no UNIMPLEMENTED) and fail the same way, with the contract's
// HTTP status for the gRPC code. The service-only rpcs without an HTTP route are called on
// auth-service (AUTH_SERVICE_URL) with the service credential (GRIMOS_SERVICE_TOKEN).
import assert from "node:assert/strict";

import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@grimos/proto/auth/v1";
import { UserService } from "@grimos/proto/user/v1";

const baseUrl = (process.env.USER_SERVICE_URL ?? "").replace(/\/$/, "");
assert.ok(baseUrl, "USER_SERVICE_URL is unset: run under tools/with-system.sh (just test-clients)");

// The contract's mapping of gRPC codes to HTTP statuses.
const httpStatus: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 412,
  [Code.ResourceExhausted]: 429,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};

// Every rpc of the package, by the document's operation id (`Service_Method`).
const rpcs = new Map<string, { service: typeof AuthService | typeof UserService; method: DescMethod }>();
for (const service of [AuthService, UserService]) {
  for (const method of service.methods) {
    rpcs.set(`${service.name}_${method.name}`, { service, method });
  }
}

/** The rpc with an empty request and no credentials: the code it answers. */
async function grpcCode(transport: Transport, service: typeof AuthService | typeof UserService, method: DescMethod): Promise<Code | "ok"> {
  const client = createClient(service, transport) as unknown as Record<
    string,
    (request: unknown, options: { timeoutMs: number }) => Promise<unknown>
  >;
  try {
    await client[method.localName](create(method.input as DescMessage), { timeoutMs: 10_000 });
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

type Operation = { operationId: string; requestBody?: unknown };
const document = (await (await fetch(`${baseUrl}/openapi.json`)).json()) as {
  paths: Record<string, Record<string, Operation>>;
};
const transports: [string, Transport][] = [
  ["gRPC", createGrpcTransport({ baseUrl })],
  ["gRPC-Web", createGrpcWebTransport({ baseUrl })],
];
let checked = 0;
for (const [path, item] of Object.entries(document.paths)) {
  for (const [verb, operation] of Object.entries(item)) {
    const rpc = rpcs.get(operation.operationId);
    assert.ok(rpc, `${verb} ${path}: ${operation.operationId} is no rpc of the package`);
    const codes = new Set<Code | "ok">();
    for (const [name, transport] of transports) {
      const code = await grpcCode(transport, rpc.service, rpc.method);
      assert.ok(code !== "ok" && code !== Code.Unimplemented, `${operation.operationId} over ${name}: ${code}`);
      codes.add(code);
    }
    assert.equal(codes.size, 1, `${operation.operationId}: gRPC and gRPC-Web disagree (${[...codes]})`);
    const code = [...codes][0] as Code;
    const response = await fetch(baseUrl + path.replace(/\{[^}]+\}/g, "x"), {
      method: verb.toUpperCase(),
      headers: { "content-type": "application/json" },
      body: operation.requestBody === undefined ? undefined : "{}",
    });
    const body = (await response.json()) as { code: number; message: unknown; details: unknown };
    assert.equal(response.status, httpStatus[code], `${verb} ${path}: ${JSON.stringify(body)} vs ${Code[code]}`);
    assert.equal(body.code, code, `${verb} ${path}`);
    assert.ok(typeof body.message === "string" && Array.isArray(body.details), `${verb} ${path}`);
    checked += 1;
  }
}
assert.ok(checked > 0, "the served document has no operations");
console.log(`typescript live test: ${checked} passed, 0 failed`);

// ChangePassword end to end with the generated client, over gRPC-Web (as a browser would) and
// gRPC: the new session works, the old one and the old password do not.
{
  const email = `change-ts-${process.pid}@example.com`;
  const web = createGrpcWebTransport({ baseUrl });
  const users = createClient(UserService, web);
  const auth = createClient(AuthService, web);
  await users.createUser({ email, password: "first password", displayName: "Changer" });
  const login = await auth.login({ email, password: "first password" });
  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const changed = await auth.changePassword(
    { currentPassword: "first password", newPassword: "second password" },
    bearer(login.accessToken),
  );
  assert.equal(changed.userId, login.userId);
  const grpcUsers = createClient(UserService, createGrpcTransport({ baseUrl }));
  const me = await grpcUsers.getCurrentUser({}, bearer(changed.accessToken));
  assert.equal(me.user?.email, email);
  await assert.rejects(grpcUsers.getCurrentUser({}, bearer(login.accessToken)), (error: unknown) => {
    assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
    return true;
  });
  await assert.rejects(auth.login({ email, password: "first password" }), (error: unknown) => {
    assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
    return true;
  });
  await auth.login({ email, password: "second password" });
  console.log("typescript live test: ChangePassword over gRPC-Web and gRPC passed");
}

// The service-only rpcs a service that verifies tokens itself calls on auth-service, over gRPC
// with the service credential: the verification keys, and the first messages of the
// revocation stream (the whole set, then a heartbeat).
{
  const authUrl = (process.env.AUTH_SERVICE_URL ?? "").replace(/\/$/, "");
  const token = process.env.GRIMOS_SERVICE_TOKEN ?? "";
  assert.ok(authUrl && token, "AUTH_SERVICE_URL or GRIMOS_SERVICE_TOKEN is unset: run under tools/with-system.sh");
  const routed = new Set(
    Object.values(document.paths).flatMap((item) => Object.values(item).map((operation) => operation.operationId)),
  );
  for (const name of ["GetVerificationKeys", "WatchRevocations"]) {
    assert.ok(!routed.has(`AuthService_${name}`), `${name} is service-only: no HTTP route`);
  }
  const auth = createClient(AuthService, createGrpcTransport({ baseUrl: authUrl }));
  const credential = { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 };
  const keys = await auth.getVerificationKeys({}, credential);
  assert.ok(keys.issuer && keys.audience && keys.leeway?.seconds === 5n);
  assert.ok(keys.keys.length > 0);
  for (const key of keys.keys) {
    assert.deepEqual([key.kty, key.crv, key.alg, key.use], ["OKP", "Ed25519", "EdDSA", "sig"]);
    assert.ok(key.kid && key.x);
  }
  await assert.rejects(auth.getVerificationKeys({}, { timeoutMs: 10_000 }), (error: unknown) => {
    assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
    return true;
  });
  const cancel = new AbortController();
  const stream = auth.watchRevocations({}, { ...credential, signal: cancel.signal })[Symbol.asyncIterator]();
  const first = await stream.next();
  assert.ok(!first.done && first.value.reset && first.value.cursor && first.value.heartbeatInterval);
  const heartbeat = await stream.next();
  assert.ok(!heartbeat.done && heartbeat.value.revocations.length === 0);
  assert.equal(heartbeat.value.cursor, first.value.cursor);
  cancel.abort();
  console.log("typescript live test: GetVerificationKeys and WatchRevocations on auth-service passed");
}
