// A small chat page on urql and graphql-ws: the reference for frontends using this API.
// Open index.html?api=http://127.0.0.1:8000 from any origin listed in ALLOWED_ORIGINS.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";

const api = new URLSearchParams(location.search).get("api") ?? location.origin;
const token = () => sessionStorage.getItem("token");

// --- clients -------------------------------------------------------------------------

const ws = createClient({
  url: `${api.replace(/^http/, "ws")}/graphql/`,
  connectionParams: () => ({ authorization: `Bearer ${token()}` }), // read on every connect
  retryAttempts: Infinity, // 1012 (deploy), 1013 (try later) and lost networks
  shouldRetry: (event) => event?.code !== 4403, // 4403: the token will not work again
  on: {
    connected: () => status("Online"),
    closed: (event) => {
      if (event?.code === 4403) signOut();
      else status("Offline: reconnecting…");
    },
  },
});

const client = new Client({
  url: `${api}/graphql/`,
  fetchOptions: () => ({ headers: { authorization: `Bearer ${token()}` } }),
  requestPolicy: "network-only",
  exchanges: [
    cacheExchange,
    fetchExchange,
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? "" }, sink) }),
      }),
    }),
  ],
});

async function run(query, variables = {}) {
  const { data, error } = await client.query(query, variables).toPromise();
  if (error) throw error;
  return data;
}

async function mutate(query, variables = {}) {
  const { data, error } = await client.mutation(query, variables).toPromise();
  if (error) throw error;
  return data;
}

// --- operations ----------------------------------------------------------------------

const LOGIN = `mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    ... on AuthPayload { token user { id } }
    ... on OperationInfo { messages { message } }
  }
}`;
const CHATS = `{ me { id } chats(first: 50) { edges { node {
  id name kind unreadCount peer { displayName } } } } }`;
const MESSAGE = "id seq body kind author { id displayName }";
const HISTORY = `query($chatId: ID!, $before: String) {
  chat(id: $chatId) { revision }
  onlineUsers(chatId: $chatId) { id displayName }
  messages(chatId: $chatId, last: 30, before: $before) {
    edges { node { ${MESSAGE} } }
    pageInfo { hasPreviousPage startCursor }
  }
}`;
const EVENTS = `subscription($chatId: ID!, $after: Int) {
  chatEvents(chatId: $chatId, after: $after) {
    __typename
    ... on MessageAdded { revision message { ${MESSAGE} } }
    ... on MessageEdited { revision message { ${MESSAGE} } }
    ... on MessageDeleted { revision message { ${MESSAGE} } }
    ... on TypingChanged { typing user { id displayName } }
    ... on PresenceChanged { online user { id displayName } }
  }
}`;
const INBOX = `subscription { inbox { __typename ... on MessageAdded { message { chatId } } } }`;
const SEND = `mutation($chatId: ID!, $body: String!, $clientId: String) {
  sendMessage(input: { chatId: $chatId, body: $body, clientId: $clientId }) { __typename }
}`;
const TYPING = `mutation($chatId: ID!, $typing: Boolean!) {
  setTyping(chatId: $chatId, typing: $typing) { __typename }
}`;
const MARK_READ = `mutation($chatId: ID!, $seq: Int!) { markRead(chatId: $chatId, seq: $seq) { __typename } }`;

// --- state and rendering -------------------------------------------------------------

const $ = (id) => document.getElementById(id);
let me = null;
let open = null; // { id, after, cursor, subscription, online: Map, typing: Map }

function status(text) { $("connection").textContent = text; }

function chatItem(chat) {
  const item = document.createElement("li");
  item.dataset.chatId = chat.id;
  item.innerHTML = `<span class="name"></span><span class="unread"></span>`;
  item.querySelector(".name").textContent = chat.name || chat.peer?.displayName || "Chat";
  item.querySelector(".unread").textContent = chat.unreadCount || "";
  item.onclick = () => openChat(chat.id, item.querySelector(".name").textContent);
  return item;
}

function messageItem(message) {
  const item = document.createElement("li");
  item.dataset.seq = message.seq;
  item.className = message.kind === "SYSTEM" ? "system" : "";
  item.textContent = message.author ? `${message.author.displayName}: ${message.body}` : message.body;
  return item;
}

function showMessage(message) {
  const list = $("messages");
  const existing = list.querySelector(`[data-seq="${message.seq}"]`);
  if (existing) existing.replaceWith(messageItem(message)); // an edit or a delete
  else list.append(messageItem(message)); // events arrive in order
  list.scrollTop = list.scrollHeight;
}

function showPresence() {
  const others = [...open.online.values()].filter((name) => name !== null);
  $("online").textContent = others.length ? `Online: ${others.join(", ")}` : "";
  const typing = [...open.typing.values()];
  $("typing").textContent = typing.length ? `${typing.join(", ")} typing…` : "";
}

// --- screens -------------------------------------------------------------------------

async function loadChats() {
  const data = await run(CHATS);
  me = data.me;
  $("chats").replaceChildren(...data.chats.edges.map(({ node }) => chatItem(node)));
}

async function openChat(chatId, name) {
  open?.subscription.unsubscribe();
  document.querySelectorAll("#chats li").forEach((li) => li.classList.toggle("open", li.dataset.chatId === chatId));
  $("chat").hidden = false;
  $("chat-name").textContent = name;
  $("messages").replaceChildren();
  const data = await run(HISTORY, { chatId });
  open = { id: chatId, after: data.chat.revision, cursor: null, online: new Map(), typing: new Map() };
  data.onlineUsers.filter((u) => u.id !== me.id).forEach((u) => open.online.set(u.id, u.displayName));
  prepend(data.messages);
  showPresence();
  // From the revision the history was read at: nothing falls between the two. On a
  // reconnect graphql-ws repeats this subscribe, so replays of what we have are skipped.
  const chat = open;
  chat.subscription = client.subscription(EVENTS, { chatId, after: chat.after }).subscribe(({ data }) => {
    if (data) onChatEvent(chat, data.chatEvents);
  });
  markRead();
}

function prepend(page) {
  const items = page.edges.map(({ node }) => messageItem(node));
  $("messages").prepend(...items);
  open.cursor = page.pageInfo.startCursor;
  $("older").hidden = !page.pageInfo.hasPreviousPage;
}

function onChatEvent(chat, event) {
  if (chat !== open) return;
  if (event.revision != null) {
    if (event.revision <= chat.after) return; // a replay of what is on screen
    chat.after = event.revision;
    showMessage(event.message);
    if (event.__typename === "MessageAdded") markRead(event.message.seq);
  } else if (event.__typename === "TypingChanged") {
    if (event.typing) chat.typing.set(event.user.id, event.user.displayName);
    else chat.typing.delete(event.user.id);
    showPresence();
  } else if (event.__typename === "PresenceChanged" && event.user.id !== me.id) {
    if (event.online) chat.online.set(event.user.id, event.user.displayName);
    else chat.online.delete(event.user.id);
    showPresence();
  }
}

function markRead(seq) {
  const last = seq ?? Number($("messages").lastElementChild?.dataset.seq ?? 0);
  if (last) mutate(MARK_READ, { chatId: open.id, seq: last });
  const badge = document.querySelector(`#chats li[data-chat-id="${open.id}"] .unread`);
  if (badge) badge.textContent = "";
}

function followInbox() {
  client.subscription(INBOX, {}).subscribe(({ data }) => {
    const chatId = data?.inbox.message?.chatId;
    if (!chatId || chatId === open?.id) return;
    const badge = document.querySelector(`#chats li[data-chat-id="${chatId}"] .unread`);
    if (badge) badge.textContent = String(Number(badge.textContent || 0) + 1);
    else loadChats(); // a chat we did not have yet
  });
}

async function start() {
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadChats();
  followInbox();
}

function signOut() {
  sessionStorage.removeItem("token");
  location.reload();
}

// --- events --------------------------------------------------------------------------

$("signin").onsubmit = async (event) => {
  event.preventDefault();
  const { login } = await mutate(LOGIN, { email: $("email").value, password: $("password").value });
  if (!login.token) {
    $("signin-error").textContent = login.messages.map((m) => m.message).join(" ");
    return;
  }
  sessionStorage.setItem("token", login.token);
  ws.terminate(); // the next connection signs in with the new token
  await start();
};

$("composer").onsubmit = async (event) => {
  event.preventDefault();
  const body = $("body").value.trim();
  if (!body || !open) return;
  $("body").value = "";
  // The clientId makes a retried send the same message, never a copy.
  await mutate(SEND, { chatId: open.id, body, clientId: crypto.randomUUID() });
  mutate(TYPING, { chatId: open.id, typing: false });
};

$("body").oninput = () => {
  if (open) mutate(TYPING, { chatId: open.id, typing: $("body").value.length > 0 });
};

$("older").onclick = async () => {
  const data = await run(HISTORY, { chatId: open.id, before: open.cursor });
  prepend(data.messages);
};

if (token()) start().catch(signOut);

// A socket can outlive a lost network for minutes before anything notices: drop it as
// soon as the browser knows, so graphql-ws reconnects (and resumes) when it is back.
window.addEventListener("offline", () => ws.terminate());
