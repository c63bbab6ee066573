// Real JavaScript clients against a live daphne: graphql-ws, Apollo Client and urql, each
// configured as the README shows. Run by tests/system/test_js_clients.py, which starts the
// server and passes its address in CHAT_HTTP_URL and CHAT_WS_URL.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { ApolloClient, HttpLink, InMemoryCache, gql, split, ApolloLink } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const HTTP_URL = process.env.CHAT_HTTP_URL;
const WS_URL = process.env.CHAT_WS_URL;

const REGISTER = `mutation($email: String!, $name: String!) {
  register(email: $email, password: "correct horse battery staple", displayName: $name) {
    ... on AuthPayload { token user { id } }
    ... on OperationInfo { messages { code } }
  }
}`;
const OPEN = `mutation($userId: ID!) { openDirectChat(userId: $userId) { ... on Chat { id } } }`;
const SEND = `mutation($chatId: ID!, $body: String!, $clientId: String) {
  sendMessage(input: { chatId: $chatId, body: $body, clientId: $clientId }) {
    ... on Message { id seq body }
    ... on OperationInfo { messages { code } }
  }
}`;
const EVENTS = `subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) {
    __typename
    ... on MessageAdded { message { seq body author { displayName } } }
  }
}`;
const ME = `query { me { id displayName } }`;

async function graphql(query, variables, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(HTTP_URL, {
    method: "POST", headers, body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

async function twoPeopleInAChat() {
  const register = async (name) =>
    (await graphql(REGISTER, { email: `${name}-${randomUUID().slice(0, 8)}@example.com`, name }))
      .register;
  const ada = await register("Ada");
  const grace = await register("Grace");
  const chat = (await graphql(OPEN, { userId: ada.user.id }, grace.token)).openDirectChat;
  return { ada, grace, chatId: chat.id };
}

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

const sendSoon = (grace, chatId, body) =>
  setTimeout(() => graphql(SEND, { chatId, body, clientId: randomUUID() }, grace.token), 300);

test("graphql-ws createClient: sign in, subscribe, receive", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const client = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${ada.token}` },
  });
  try {
    const me = await withTimeout(new Promise((resolve, reject) => {
      client.subscribe({ query: ME }, { next: resolve, error: reject, complete: () => {} });
    }), 5000, "me");
    assert.deepEqual(me.data.me, { id: ada.user.id, displayName: "Ada" });

    const events = client.iterate({ query: EVENTS, variables: { chatId } });
    sendSoon(grace, chatId, "hello from graphql-ws");
    const { value } = await withTimeout(events.next(), 5000, "chatEvents");
    assert.deepEqual(value.data.chatEvents, {
      __typename: "MessageAdded",
      message: { seq: 1, body: "hello from graphql-ws", author: { displayName: "Grace" } },
    });
    await events.return();
  } finally {
    await client.dispose();
  }
});

test("graphql-ws: a bad token is refused with 4403", async () => {
  let client;
  const closed = new Promise((resolve) => {
    client = createClient({
      url: WS_URL,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: "Bearer ct_not_a_token" },
      retryAttempts: 0,
      on: { closed: (event) => resolve(event.code) },
    });
  });
  const failed = new Promise((resolve) => {
    client.subscribe({ query: ME }, { next: () => {}, error: resolve, complete: () => {} });
  });
  assert.equal(await withTimeout(closed, 5000, "close"), 4403);
  const error = await withTimeout(failed, 5000, "subscription error");
  assert.equal(error.code, 4403);
  await client.dispose();
});

test("Apollo Client with GraphQLWsLink: sign in, subscribe, receive", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const token = ada.token;
  const auth = new ApolloLink((operation, forward) => {
    operation.setContext(({ headers = {} }) => ({
      headers: { ...headers, authorization: `Bearer ${token}` },
    }));
    return forward(operation);
  });
  const wsClient = createClient({
    url: WS_URL, webSocketImpl: WebSocket,
    connectionParams: () => ({ authorization: `Bearer ${token}` }),
  });
  const client = new ApolloClient({
    link: split(
      ({ query }) => {
        const definition = getMainDefinition(query);
        return definition.kind === "OperationDefinition" && definition.operation === "subscription";
      },
      new GraphQLWsLink(wsClient),
      auth.concat(new HttpLink({ uri: HTTP_URL })),
    ),
    cache: new InMemoryCache(),
  });
  try {
    const me = await client.query({ query: gql(ME) });
    assert.equal(me.data.me.displayName, "Ada");

    const received = new Promise((resolve, reject) => {
      const subscription = client
        .subscribe({ query: gql(EVENTS), variables: { chatId } })
        .subscribe({
          next: (result) => { subscription.unsubscribe(); resolve(result.data.chatEvents); },
          error: reject,
        });
    });
    sendSoon(grace, chatId, "hello from Apollo");
    const event = await withTimeout(received, 5000, "Apollo chatEvents");
    assert.equal(event.__typename, "MessageAdded");
    assert.equal(event.message.body, "hello from Apollo");
    assert.equal(event.message.author.displayName, "Grace");
  } finally {
    client.stop();
    await wsClient.dispose();
  }
});

test("urql with subscriptionExchange: sign in, subscribe, receive", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const wsClient = createClient({
    url: WS_URL, webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${ada.token}` },
  });
  const client = new Client({
    url: HTTP_URL,
    fetchOptions: () => ({ headers: { authorization: `Bearer ${ada.token}` } }),
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({
            unsubscribe: wsClient.subscribe({ ...request, query: request.query || "" }, sink),
          }),
        }),
      }),
    ],
  });
  try {
    const me = await client.query(ME, {}).toPromise();
    assert.equal(me.data.me.displayName, "Ada");

    const received = new Promise((resolve) => {
      const { unsubscribe } = client.subscription(EVENTS, { chatId }).subscribe((result) => {
        if (result.data) { unsubscribe(); resolve(result.data.chatEvents); }
      });
    });
    sendSoon(grace, chatId, "hello from urql");
    const event = await withTimeout(received, 5000, "urql chatEvents");
    assert.equal(event.message.body, "hello from urql");
  } finally {
    await wsClient.dispose();
  }
});
