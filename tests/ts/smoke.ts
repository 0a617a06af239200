// Smoke test of the generated TypeScript package: both services get typed Connect v2
// clients, and messages encode to the same canonical JSON the Rust services speak.
// Type-checked by tsc, then run under node; it makes no network calls.
import assert from "node:assert/strict";

import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService, LoginRequestSchema, type LoginResponse } from "@grimos/proto/auth/v1";
import { UpdateUserRequestSchema, UserService, type User } from "@grimos/proto/user/v1";

const grpc = createGrpcTransport({ baseUrl: "http://127.0.0.1:50051" });
const grpcWeb = createGrpcWebTransport({ baseUrl: "http://127.0.0.1:8080" });
const auth: Client<typeof AuthService> = createClient(AuthService, grpc);
const users: Client<typeof UserService> = createClient(UserService, grpcWeb);

// The compiler checks these signatures; the assertions check the runtime descriptors.
const login: (email: string, password: string) => Promise<LoginResponse> = (email, password) =>
  auth.login({ email, password });
const currentUser: () => Promise<User | undefined> = async () =>
  (await users.getCurrentUser({})).user;
assert.equal(typeof login, "function");
assert.equal(typeof currentUser, "function");
// A client function for every rpc the descriptors name (so a new rpc needs no edit here).
for (const service of [AuthService, UserService]) {
  const client: Record<string, unknown> = createClient(service, grpc);
  assert.ok(service.methods.length > 0, `${service.typeName} has no rpcs`);
  for (const method of service.methods) {
    assert.equal(typeof client[method.localName], "function", `${service.typeName}.${method.name}`);
  }
}
assert.equal(AuthService.typeName, "grimos.auth.v1.AuthService");
assert.equal(UserService.typeName, "grimos.user.v1.UserService");

const request = create(LoginRequestSchema, { email: "ada@example.com", password: "correct horse" });
const decoded = fromBinary(LoginRequestSchema, toBinary(LoginRequestSchema, request));
assert.equal(decoded.email, "ada@example.com");

const update = create(UpdateUserRequestSchema, {
  user: { id: "u1", displayName: "Ada" },
  updateMask: { paths: ["display_name"] },
});
const json = toJsonString(UpdateUserRequestSchema, update);
assert.equal(json, '{"user":{"id":"u1","displayName":"Ada"},"updateMask":"displayName"}');
assert.deepEqual(fromJsonString(UpdateUserRequestSchema, json).updateMask?.paths, ["display_name"]);

console.log("typescript client smoke test: 1 passed, 0 failed");
