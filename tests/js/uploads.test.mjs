// Photos sent the way frontends send them, against a live daphne: Apollo Client with
// apollo-upload-client's UploadHttpLink, and urql, whose fetchExchange turns a File in the
// variables into a GraphQL multipart request by itself. Each time the other member, on a
// graphql-ws subscription, receives the photo live with a URL that downloads it. Run by
// tests/system/test_js_clients.py, which passes the server's address and a phone photo
// (EXIF GPS, XMP, orientation 6) in CHAT_PHOTO_PATH.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

import { ApolloClient, ApolloLink, InMemoryCache, gql } from "@apollo/client";
import { Client, cacheExchange, fetchExchange } from "@urql/core";
import UploadHttpLink from "apollo-upload-client/UploadHttpLink.mjs";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { HTTP_URL, WS_URL, twoPeopleInAChat, withTimeout } from "./people.mjs";

const PHOTO = await readFile(process.env.CHAT_PHOTO_PATH);

const SEND_ATTACHMENT = `mutation($input: SendAttachmentInput!) {
  sendAttachment(input: $input) {
    __typename
    ... on Message { id kind body attachment { name contentType size width height url } }
    ... on OperationInfo { messages { field code } }
  }
}`;
const EVENTS = `subscription($chatId: ID!) {
  chatEvents(chatId: $chatId) {
    __typename
    ... on MessageAdded {
      message { kind body author { displayName } attachment { contentType size width height url thumbnailUrl } }
    }
  }
}`;

/** Grace's first IMAGE message on chatEvents over graphql-ws, once she is subscribed. */
async function subscribeForAPhoto(grace, chatId) {
  const client = createClient({
    url: WS_URL, webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${grace.token}` },
  });
  let subscribed;
  const ready = new Promise((resolve) => { subscribed = resolve; });
  const photo = new Promise((resolve, reject) => {
    client.on("connected", () => setTimeout(subscribed, 300));
    client.subscribe({ query: EVENTS, variables: { chatId } }, {
      next: ({ data }) => {
        if (data.chatEvents.message?.kind === "IMAGE") resolve(data.chatEvents.message);
      },
      error: reject,
      complete: () => {},
    });
  });
  await withTimeout(ready, 5000, "subscribed");
  return { photo: withTimeout(photo, 8000, "the photo on chatEvents"), client };
}

/** The URL serves the stored photo: upright, its size, and no EXIF or XMP left in it. */
async function assertDownloads(heard, sent) {
  assert.equal(heard.contentType, "image/jpeg");
  assert.equal(heard.size, sent.size);
  assert.deepEqual([heard.width, heard.height], [600, 800]);
  assert.ok(heard.thumbnailUrl);
  const response = await fetch(heard.url);  // no credentials, as an <img src>
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/jpeg");
  assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(bytes.length, heard.size);
  assert.equal(bytes.indexOf("Exif"), -1);
  assert.equal(bytes.indexOf("Home sweet home"), -1);
  assert.ok(PHOTO.indexOf("Exif") > -1, "the uploaded photo carried EXIF");
}

test("Apollo Client with apollo-upload-client: send a photo, the other member sees it live", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const { photo, client: wsClient } = await subscribeForAPhoto(grace, chatId);
  const client = new ApolloClient({
    link: ApolloLink.from([
      new ApolloLink((operation, forward) => {
        operation.setContext(({ headers = {} }) => ({
          headers: {
            ...headers,
            authorization: `Bearer ${ada.token}`,
            // As Apollo's docs advise for uploads; required with cookie sessions.
            "Apollo-Require-Preflight": "true",
          },
        }));
        return forward(operation);
      }),
      new UploadHttpLink({ uri: HTTP_URL }),
    ]),
    cache: new InMemoryCache(),
  });
  try {
    const file = new File([PHOTO], "IMG_0001.jpg", { type: "image/jpeg" });
    const { data } = await client.mutate({
      mutation: gql(SEND_ATTACHMENT),
      variables: { input: { chatId, file, caption: "From Apollo" } },
    });
    const sent = data.sendAttachment;
    assert.equal(sent.__typename, "Message", JSON.stringify(sent));
    assert.equal(sent.kind, "IMAGE");
    assert.equal(sent.attachment.name, "IMG_0001.jpg");

    const heard = await photo;
    assert.equal(heard.body, "From Apollo");
    assert.equal(heard.author.displayName, "Ada");
    await assertDownloads(heard.attachment, sent.attachment);
  } finally {
    client.stop();
    await wsClient.dispose();
  }
});

test("urql multipart upload: send a photo, the other member sees it live", async () => {
  const { ada, grace, chatId } = await twoPeopleInAChat();
  const { photo, client: wsClient } = await subscribeForAPhoto(grace, chatId);
  const client = new Client({
    url: HTTP_URL,
    fetchOptions: () => ({ headers: { authorization: `Bearer ${ada.token}` } }),
    exchanges: [cacheExchange, fetchExchange],
  });
  try {
    const file = new File([PHOTO], "IMG_0002.jpg", { type: "image/jpeg" });
    const result = await client
      .mutation(SEND_ATTACHMENT, { input: { chatId, file, caption: "From urql" } })
      .toPromise();
    assert.equal(result.error, undefined, result.error?.message);
    const sent = result.data.sendAttachment;
    assert.equal(sent.__typename, "Message", JSON.stringify(sent));
    assert.equal(sent.kind, "IMAGE");

    const heard = await photo;
    assert.equal(heard.body, "From urql");
    await assertDownloads(heard.attachment, sent.attachment);
  } finally {
    await wsClient.dispose();
  }
});
