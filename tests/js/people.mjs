// What the Node client tests share: the server's address (CHAT_HTTP_URL, CHAT_WS_URL, set
// by tests/system/test_js_clients.py), plain GraphQL over fetch, and two new people with a
// direct chat.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

export const HTTP_URL = process.env.CHAT_HTTP_URL;
export const WS_URL = process.env.CHAT_WS_URL;

const REGISTER = `mutation($email: String!, $name: String!) {
  register(email: $email, password: "correct horse battery staple", displayName: $name) {
    ... on AuthPayload { token user { id } }
    ... on OperationInfo { messages { code } }
  }
}`;
const OPEN = `mutation($userId: ID!) { openDirectChat(userId: $userId) { ... on Chat { id } } }`;

/** `data` of a JSON POST; fails the test on any GraphQL error. */
export async function graphql(query, variables, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(HTTP_URL, {
    method: "POST", headers, body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

/** Ada and Grace, just registered, and the id of their direct chat. */
export async function twoPeopleInAChat() {
  const register = async (name) =>
    (await graphql(REGISTER, { email: `${name}-${randomUUID().slice(0, 8)}@example.com`, name }))
      .register;
  const ada = await register("Ada");
  const grace = await register("Grace");
  const chat = (await graphql(OPEN, { userId: ada.user.id }, grace.token)).openDirectChat;
  return { ada, grace, chatId: chat.id };
}

export function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}
