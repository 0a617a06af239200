// Sign up, sign in and show the current user over gRPC-Web, with the generated client of
// @grimos/proto and Connect. user-service serves both UserService and AuthService (Login is
// forwarded to auth-service) on one port, so one transport serves both clients.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "@grimos/proto/auth/v1";
import { UserService, type User } from "@grimos/proto/user/v1";

// The API's base URL comes from `?api=`, so one bundle works against any port.
const apiUrl = new URL(location.href).searchParams.get("api") ?? "http://127.0.0.1:8080";

const transport = createGrpcWebTransport({ baseUrl: apiUrl, defaultTimeoutMs: 10_000 });
const users = createClient(UserService, transport);
const auth = createClient(AuthService, transport);

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`index.html has no #${id}`);
  return found as T;
}

function input(id: string): string {
  return element<HTMLInputElement>(id).value;
}

const status = element("status");
const error = element("error");

function showStatus(text: string): void {
  status.textContent = text;
  error.textContent = "";
}

// A ConnectError carries a gRPC code: show its name ("Unauthenticated") and the server's message.
function showError(err: unknown): void {
  const e = ConnectError.from(err);
  status.textContent = "";
  error.textContent = `${Code[e.code]}: ${e.rawMessage}`;
}

function showUser(user: User | undefined): void {
  element("user").hidden = user === undefined;
  element("user-display-name").textContent = user?.displayName ?? "";
  element("user-email").textContent = user?.email ?? "";
  element("user-id").textContent = user?.id ?? "";
  element("user-roles").textContent = user?.roles.join(", ") ?? "";
}

// Disables a form's button while its call runs, and reports any failure.
function onSubmit(formId: string, action: () => Promise<void>): void {
  const form = element<HTMLFormElement>(formId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      await action();
    } catch (err) {
      showError(err);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

onSubmit("signup-form", async () => {
  const { user } = await users.createUser({
    email: input("signup-email"),
    password: input("signup-password"),
    displayName: input("signup-display-name"),
  });
  element<HTMLInputElement>("signin-email").value = user?.email ?? "";
  showStatus(`Signed up as ${user?.email} (id ${user?.id}). Now sign in.`);
});

onSubmit("signin-form", async () => {
  showUser(undefined);
  const { accessToken } = await auth.login({
    email: input("signin-email"),
    password: input("signin-password"),
  });
  // Every authenticated call carries the access token as a bearer token.
  const { user } = await users.getCurrentUser(
    {},
    { headers: { Authorization: `Bearer ${accessToken}` } },
  );
  showUser(user);
  showStatus(`Signed in as ${user?.email}.`);
});

element("api").textContent = apiUrl;
