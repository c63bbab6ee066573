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

import { HTTP_URL, WS_URL, graphql, twoPeopleInAChat, withTimeout } from "./people.mjs";


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

// Subscriptions over plain HTTP, for proxies that forbid WebSockets: Apollo's HttpLink
// asks for multipart/mixed, urql's fetchSubscriptions for text/event-stream.
const RESUMING = `subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) {
    __typename
    ... on MessageAdded { revision message { seq body } }
  }
}`;

function nextEvents(subscribeTo, count, what) {
  const received = [];
  let stop;
  const done = new Promise((resolve, reject) => {
    stop = subscribeTo((event) => {
      received.push(event);
      if (received.length === count) resolve(received);
    }, reject);
  });
  return { done: withTimeout(done, 8000, what), stop: () => stop() };
}

test("urql fetchSubscriptions over HTTP (event stream): live, abort, resume with after", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const client = new Client({
    url: HTTP_URL,
    fetchSubscriptions: true,
    fetchOptions: () => ({ headers: { authorization: `Bearer ${ada.token}` } }),
    exchanges: [fetchExchange],
  });
  const follow = (variables) => (onEvent, onError) => {
    const { unsubscribe } = client.subscription(RESUMING, variables).subscribe((result) => {
      if (result.error) onError(result.error);
      else if (result.data) onEvent(result.data.chatEvents);
    });
    return unsubscribe;
  };

  const live = nextEvents(follow({ chatId }), 1, "urql live");
  sendSoon(grace, chatId, "first");
  const [first] = await live.done;
  live.stop(); // the client goes away
  assert.deepEqual(first.message, { seq: 1, body: "first" });

  for (const body of ["missed 1", "missed 2"]) await graphql(SEND, { chatId, body }, grace.token);
  const resumed = nextEvents(follow({ chatId, after: first.revision }), 3, "urql resumed");
  sendSoon(grace, chatId, "live again");
  const events = await resumed.done;
  resumed.stop();
  assert.deepEqual(events.map((e) => e.message.body), ["missed 1", "missed 2", "live again"]);
  assert.deepEqual(events.map((e) => e.revision), [2, 3, 4]);
});

test("Apollo Client HttpLink over multipart HTTP: subscribe and receive", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const client = new ApolloClient({
    link: new HttpLink({ uri: HTTP_URL, headers: { authorization: `Bearer ${ada.token}` } }),
    cache: new InMemoryCache(),
  });
  try {
    const live = nextEvents((onEvent, onError) => {
      const subscription = client
        .subscribe({ query: gql(RESUMING), variables: { chatId } })
        .subscribe({ next: (result) => onEvent(result.data.chatEvents), error: onError });
      return () => subscription.unsubscribe();
    }, 1, "Apollo multipart");
    sendSoon(grace, chatId, "hello over multipart");
    const [event] = await live.done;
    live.stop();
    assert.equal(event.__typename, "MessageAdded");
    assert.deepEqual(event.message, { __typename: "Message", seq: 1, body: "hello over multipart" });
  } finally {
    client.stop();
  }
});

test("graphql-ws configured as the README says: 4403 stops retrying and signs out", async () => {
  let connecting = 0;
  let signedOut = 0;
  const client = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authorization: "Bearer ct_revoked" }),
    retryAttempts: Infinity,
    shouldRetry: (event) => event?.code !== 4403,
    on: {
      connecting: () => { connecting += 1; },
      closed: (event) => { if (event?.code === 4403) signedOut += 1; },
    },
  });
  const failed = new Promise((resolve) => {
    client.subscribe({ query: ME }, { next: () => {}, error: resolve, complete: () => {} });
  });
  const error = await withTimeout(failed, 5000, "4403");
  await new Promise((resolve) => setTimeout(resolve, 1500));  // any retry would show by now
  assert.equal(error.code, 4403);
  assert.equal(connecting, 1);
  assert.equal(signedOut, 1);
  await client.dispose();
});
