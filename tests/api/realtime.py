"""What the real-time API tests share: operations, and a client's side of a subscription."""

import asyncio

from schema import fanout
from tests.graphql_client import GraphQLClient
from tests.ws import TRANSPORT_WS, GraphQLSocket

MESSAGE_FIELDS = """
  id chatId seq kind body clientId isDeleted editedAt createdAt systemEvent
  author { id displayName joinedAt } subject { id displayName }
"""
CHAT_EVENTS = f"""
subscription($chatId: ID!, $after: Int) {{
  chatEvents(chatId: $chatId, after: $after) {{
    __typename
    ... on MessageAdded {{ message {{ {MESSAGE_FIELDS} }} }}
    ... on MessageEdited {{ message {{ seq body editedAt }} }}
    ... on MessageDeleted {{ message {{ seq body isDeleted }} }}
    ... on MemberJoined {{ chatId memberCount user {{ displayName }} }}
    ... on MemberLeft {{ chatId memberCount user {{ displayName }} }}
    ... on TypingChanged {{ chatId typing expiresAt user {{ displayName }} }}
    ... on ReadUpTo {{ chatId seq user {{ displayName }} }}
    ... on PresenceChanged {{ online user {{ displayName }} }}
  }}
}}
"""
INBOX = """
subscription {
  inbox {
    __typename
    ... on MessageAdded { message { chatId seq body author { displayName } } }
    ... on AddedToChat { chat { id kind name } }
    ... on RemovedFromChat { chatId }
  }
}
"""
SEND = """
mutation($chatId: ID!, $body: String!) {
  sendMessage(input: {chatId: $chatId, body: $body}) { __typename }
}
"""
TYPING = "mutation($c: ID!, $t: Boolean!) { setTyping(chatId: $c, typing: $t) { __typename } }"
MARK_READ = "mutation($c: ID!, $s: Int!) { markRead(chatId: $c, seq: $s) { __typename } }"
LOGOUT = "mutation { logout { __typename } }"
ONLINE = "query($c: ID!) { onlineUsers(chatId: $c) { displayName } }"


async def http(app, query: str, variables: dict, token: str) -> dict:
    client = GraphQLClient(app)
    response = await client._post(
        {"query": query, "variables": variables}, {"Authorization": f"Bearer {token}"}
    )
    return response.json


async def signed_in(app, token: str, protocol=TRANSPORT_WS) -> GraphQLSocket:
    """A socket past `connection_init` with `token` (a tab, for presence)."""
    socket = GraphQLSocket(app, protocol)
    await socket.connect()
    await socket.init({"authorization": f"Bearer {token}"})
    return socket


async def subscribed(
    app, token: str, query: str, variables: dict, protocol=TRANSPORT_WS, *, held: bool = False
):
    """A socket with subscription "s" started (see `subscribe`); `held`: only asked for,
    for a test that holds the subscription's start (its replay, say) itself."""
    socket = await signed_in(app, token, protocol)
    if held:
        await socket.subscribe("s", query, variables)
    else:
        await subscribe(socket, "s", query, variables)
    return socket


async def subscribe(socket: GraphQLSocket, op_id: str, query: str, variables: dict) -> None:
    """Subscribe, and return once the subscription has started (as `joined` waits for
    every subscription of one group): it waits for its next event in groups the process
    has joined, past any replay, so whatever the test commits from then on reaches it. Or
    it has answered without staying in a group (an error). Sending right after the
    subscribe frame raced the membership check, which reads where "from now" is."""
    before = _listeners()
    await socket.subscribe(op_id, query, variables)
    for _ in range(500):
        new = _listeners() - before
        if any(_started(x) for x in new):
            return
        if not new and not socket.communicator.output_queue.empty():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"subscription {op_id} never started")


def _listeners() -> set[fanout.Listener]:
    return {
        x
        for feed in fanout.hub().feeds.values()
        for x in feed.listeners
        if isinstance(x, fanout.Listener)
    }


def _started(listener: fanout.Listener) -> bool:
    feeds = fanout.hub().feeds
    return listener.waiting and all(
        group in feeds and feeds[group].joined.done() for group in listener.groups
    )


async def events(socket, count: int, *, presence: bool = False) -> list[dict]:
    """The next `count` events; presence changes are skipped unless asked for (sockets
    coming and going in a test announce themselves to the chat)."""
    received = []
    while len(received) < count:
        data = (await socket.next_payload("s"))["data"]
        event = next(iter(data.values()))
        if presence or event.get("__typename") != "PresenceChanged":
            received.append(data)
    return received


async def arrivals(socket, timeout: float = 0.3) -> list[str]:
    """The typenames of what arrives within `timeout`, presence changes left out (sockets
    coming and going in a test announce themselves to the chat)."""
    names = []
    while not await socket.communicator.receive_nothing(timeout=timeout):
        data = (await socket.next_payload("s"))["data"]
        name = next(iter(data.values()))["__typename"]
        if name != "PresenceChanged":
            names.append(name)
    return names


async def send(app, token, chat, body):
    result = await http(app, SEND, {"chatId": str(chat.id), "body": body}, token)
    assert result == {"data": {"sendMessage": {"__typename": "Message"}}}


async def joined(group: str) -> None:
    """Until the process listens to `group` and every subscription in it waits for its
    next event: each has read where it starts (without `after`, the revision its membership
    check read), so whatever is committed from then on reaches it. The group's join alone
    came before that read, and a change committed between the two was never delivered.
    `subscribed` waits so for its own subscription; this is for the others (over
    multipart HTTP, say)."""
    for _ in range(100):
        feed = fanout.hub().feeds.get(group)
        if feed is not None and feed.joined.done() and all(_waiting(x) for x in feed.listeners):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never joined {group}")


def _waiting(listener: object) -> bool:
    # The session listeners of sockets have no generator and no queue.
    return not isinstance(listener, fanout.Listener) or listener.waiting
