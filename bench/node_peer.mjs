// The Node peer for bench/fanout.py: graphql-js + graphql-ws on Node with an in-process
// pub/sub, serving the same operations the benchmark sends to daphne.
//
//   node bench/node_peer.mjs PORT
//
// The schema has the shape of the project's (chatEvents over a union, sendMessage with an
// input object, setTyping) and the same rules on the bench's path: a bearer token names
// the user, sendMessage numbers messages per chat, and a typist does not hear their own
// indicator. Nothing is stored: this is the floor a Node server reaches for the same
// fan-out, read beside the project's figure in the same run.
import http from "node:http";

import { buildSchema } from "graphql";
import { createHandler } from "graphql-http/lib/use/http";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";

const schema = buildSchema(`
  type User { id: ID! displayName: String! }
  type Message { id: ID! seq: Int! body: String! createdAt: String! author: User! }
  type MessageAdded { message: Message! }
  type TypingChanged { typing: Boolean! user: User! }
  union ChatEvent = MessageAdded | TypingChanged
  type Done { ok: Boolean! }
  input SendMessageInput { chatId: ID! body: String! }
  type Query { me: User }
  type Mutation {
    sendMessage(input: SendMessageInput!): Message!
    setTyping(chatId: ID!, typing: Boolean!): Done!
  }
  type Subscription { chatEvents(chatId: ID!): ChatEvent! }
`);

// Tokens are the bench's own (`ct_bench_<n>_<i>_<pid>`): user i is "Bench i".
function userFor(authorization) {
  const match = /^Bearer ct_bench_\d+_(\d+)_\d+$/.exec(authorization ?? "");
  return match ? { id: match[1], displayName: `Bench ${match[1]}` } : null;
}

const listeners = new Map(); // chatId -> Set of queues
const seqs = new Map();

function publish(chatId, event) {
  for (const queue of listeners.get(chatId) ?? []) queue.push(event);
}

// An async iterator fed by publish(), ended by return() when the client completes.
function subscribe(chatId, viewer) {
  const pending = [];
  let wake = null;
  const queue = {
    push(event) {
      if (event.__typename === "TypingChanged" && event.user.id === viewer.id) return;
      if (wake) {
        const resolve = wake;
        wake = null;
        resolve({ value: { chatEvents: event }, done: false });
      } else pending.push(event);
    },
  };
  const set = listeners.get(chatId) ?? new Set();
  listeners.set(chatId, set.add(queue));
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (pending.length) return Promise.resolve({ value: { chatEvents: pending.shift() }, done: false });
      return new Promise((resolve) => (wake = resolve));
    },
    return() {
      set.delete(queue);
      wake?.({ value: undefined, done: true });
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}

const root = {
  me: (_args, context) => context.user,
  sendMessage: ({ input }, context) => {
    if (!context.user) throw new Error("UNAUTHENTICATED");
    const seq = (seqs.get(input.chatId) ?? 0) + 1;
    seqs.set(input.chatId, seq);
    const message = {
      id: `${input.chatId}:${seq}`,
      seq,
      body: input.body,
      createdAt: new Date().toISOString(),
      author: context.user,
      __typename: "Message",
    };
    publish(input.chatId, { __typename: "MessageAdded", message });
    return message;
  },
  setTyping: ({ chatId, typing }, context) => {
    if (!context.user) throw new Error("UNAUTHENTICATED");
    publish(chatId, { __typename: "TypingChanged", typing, user: context.user });
    return { ok: true };
  },
  chatEvents: ({ chatId }, context) => subscribe(chatId, context.user),
};

const handler = createHandler({
  schema,
  rootValue: root,
  context: (req) => ({ user: userFor(req.raw.headers.authorization) }),
});

const server = http.createServer((req, res) => {
  if (req.url.startsWith("/graphql")) return handler(req, res);
  res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: "/graphql/" });
useServer(
  {
    schema,
    roots: { query: root, mutation: root, subscription: root },
    onConnect: (ctx) => {
      const user = userFor(ctx.connectionParams?.authorization);
      if (!user) return false;
      ctx.extra.user = user;
      return true;
    },
    context: (ctx) => ({ user: ctx.extra.user }),
  },
  wss,
);
server.listen(Number(process.argv[2]), "127.0.0.1");
