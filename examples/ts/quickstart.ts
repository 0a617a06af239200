// Quickstart: sign up, log in and read your own profile with @grimos/proto and Connect v2.
//
// Everything goes through user-service: it serves grimos.user.v1.UserService and the end-user
// rpcs of grimos.auth.v1.AuthService (Login, RefreshToken, RevokeToken, ValidateToken,
// CheckPermission) on one port, over gRPC and gRPC-Web. Set USER_SERVICE_URL (default http://127.0.0.1:8080).
//
//   node dist/quickstart.js [--transport grpc|grpc-web]   (default: both, one after the other)
import { parseArgs } from "node:util";

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@grimos/proto/auth/v1";
import { UserService } from "@grimos/proto/user/v1";

const baseUrl = process.env.USER_SERVICE_URL ?? "http://127.0.0.1:8080";
// Every call gets a deadline: without one a call to a stuck server waits forever.
const timeoutMs = 5_000;
const password = "correct horse battery"; // at least 8 characters

const transports: Record<string, () => Transport> = {
  // gRPC over HTTP/2, with Node's http2 module: for servers and scripts.
  grpc: () => createGrpcTransport({ baseUrl }),
  // gRPC-Web over fetch: the same code runs in a browser (the origin must be allowed by CORS).
  "grpc-web": () => createGrpcWebTransport({ baseUrl }),
};

/** Fails with a clear message when a returned value is not the one expected. */
function expect(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}

async function quickstart(transport: Transport): Promise<void> {
  const users = createClient(UserService, transport);
  const auth = createClient(AuthService, transport);
  const email = `ada+${crypto.randomUUID().replaceAll("-", "")}@example.com`; // unique per run
  const displayName = "Ada Lovelace";

  // 1. Sign up. CreateUser is the only call that needs no token.
  const { user: created } = await users.createUser(
    { email, password, displayName },
    { timeoutMs },
  );
  console.log(`signed up     ${created?.email} as user ${created?.id}`);

  // 2. A wrong password is Unauthenticated; any other error is a real failure.
  try {
    await auth.login({ email, password: "not the password" }, { timeoutMs });
    throw new Error("a wrong password was accepted");
  } catch (err) {
    if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated) {
      throw err;
    }
    console.log(`wrong password rejected: ${Code[err.code]}: ${err.rawMessage}`);
  }

  // 3. Log in for an access token (and a refresh token, unused here).
  const login = await auth.login({ email, password }, { timeoutMs });
  const expires = login.expireTime && timestampDate(login.expireTime).toISOString();
  console.log(`logged in     token expires ${expires}`);

  // 4. Authenticated calls carry the access token in the `authorization` header.
  const { user: me } = await users.getCurrentUser(
    {},
    { timeoutMs, headers: { authorization: `Bearer ${login.accessToken}` } },
  );
  console.log(`current user  ${me?.displayName} <${me?.email}> roles=${JSON.stringify(me?.roles)}`);

  expect("the signed-up email", created?.email, email);
  expect("the signed-up display name", created?.displayName, displayName);
  expect("the logged-in user id", login.userId, created?.id);
  expect("the current user's id", me?.id, created?.id);
  expect("the current user's email", me?.email, email);
  expect("the current user's display name", me?.displayName, displayName);
  expect("the current user's roles", me?.roles, ["user"]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { transport: { type: "string" } } });
  const names = values.transport === undefined ? Object.keys(transports) : [values.transport];
  for (const name of names) {
    const transport = transports[name];
    if (transport === undefined) {
      throw new Error(`unknown --transport ${name}: use ${Object.keys(transports).join(" or ")}`);
    }
    console.log(`--- ${name} ${baseUrl}`);
    await quickstart(transport());
  }
  console.log("quickstart: ok");
}

// Exit explicitly: the gRPC transport keeps its HTTP/2 session open for reuse.
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error("quickstart failed:", err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
