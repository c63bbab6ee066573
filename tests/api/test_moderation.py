"""Roles, bans, removals and reports in a room; blocking; hiding a direct chat."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import services
from chat.models import Ban, Block, Membership, Message, Report
from tests.factories import UserFactory, token_for

SET_ROLE = """
mutation($c: ID!, $u: ID!, $role: MemberRole!) {
  setMemberRole(chatId: $c, userId: $u, role: $role) {
    ... on Member { role user { id } }
    ... on OperationInfo { messages { field code } }
  }
}
"""
REMOVE = """
mutation($c: ID!, $u: ID!) {
  removeMember(chatId: $c, userId: $u) {
    ... on Chat { memberCount }
    ... on OperationInfo { messages { field code } }
  }
}
"""
BAN = """
mutation($c: ID!, $u: ID!, $until: DateTime, $reason: String! = "") {
  banMember(chatId: $c, userId: $u, until: $until, reason: $reason) {
    ... on Ban { reason until user { id } bannedBy { id } }
    ... on OperationInfo { messages { field code } }
  }
}
"""
UNBAN = """
mutation($c: ID!, $u: ID!) {
  unbanMember(chatId: $c, userId: $u) {
    ... on Chat { bans { user { id } } }
    ... on OperationInfo { messages { field code } }
  }
}
"""
JOIN = """
mutation($c: ID!) {
  joinRoom(chatId: $c) { ... on Chat { id } ... on OperationInfo { messages { field code } } }
}
"""
ADD = """
mutation($c: ID!, $u: [ID!]!) {
  addMembers(chatId: $c, userIds: $u) {
    ... on Chat { memberCount }
    ... on OperationInfo { messages { field code } }
  }
}
"""
DELETE = """
mutation($m: ID!) {
  deleteMessage(messageId: $m) {
    ... on Message { isDeleted }
    ... on OperationInfo { messages { field code } }
  }
}
"""
REPORT = """
mutation($m: ID!, $reason: String!) {
  reportMessage(messageId: $m, reason: $reason) {
    ... on ReportReceived { messageId }
    ... on OperationInfo { messages { field code } }
  }
}
"""
HISTORY = """
query($c: ID!) {
  messages(chatId: $c, last: 20) {
    edges { node { kind systemEvent body author { id isBlockedByMe } subject { id } } }
  }
}
"""
BLOCK = """
mutation($u: ID!) {
  blockUser(userId: $u) {
    ... on User { id isBlockedByMe }
    ... on OperationInfo { messages { field code } }
  }
}
"""
UNBLOCK = "mutation($u: ID!) { unblockUser(userId: $u) { ... on User { isBlockedByMe } } }"
OPEN_DIRECT = """
mutation($u: ID!) {
  openDirectChat(userId: $u) {
    ... on Chat { id }
    ... on OperationInfo { messages { field code } }
  }
}
"""
SEND = """
mutation($c: ID!) {
  sendMessage(input: { chatId: $c, body: "hi" }) {
    ... on Message { seq }
    ... on OperationInfo { messages { field code } }
  }
}
"""
BLOCKED_USERS = "query { me { blockedUsers { id } } }"
HIDE = """
mutation($c: ID!) {
  hideChat(chatId: $c) { ... on Chat { id } ... on OperationInfo { messages { field code } } }
}
"""
CHATS = "query { chats { edges { node { id } } } }"


def _codes(response, name: str) -> list[dict]:
    return response.data[name]["messages"]


@pytest.fixture
def crew(user, settings):
    """Ada owns a public room; Ben is an admin, Cy and Dee are members."""
    settings.MEMBERSHIP_RATE_BURST = settings.SEND_RATE_BURST = 1000
    room = services.create_room(owner=user, name="Crew", is_public=True)
    ben, cy, dee = (UserFactory(display_name=name) for name in ("Ben", "Cy", "Dee"))
    for member in (ben, cy, dee):
        services.join_room(user=member, chat_id=room.id)
    services.set_member_role(owner=user, chat_id=room.id, user_id=ben.id, role="ADMIN")
    tokens = {"ada": token_for(user), "ben": token_for(ben), "cy": token_for(cy)}
    return {"room": room, "ada": user, "ben": ben, "cy": cy, "dee": dee, "tokens": tokens}


def _vars(crew, who, **more) -> dict:
    return {"c": str(crew["room"].id), "u": str(crew[who].id), **more}


@pytest.mark.django_db
def test_every_role_check(gql, crew):
    tokens = crew["tokens"]

    member_removes = gql.execute(REMOVE, _vars(crew, "dee"), token=tokens["cy"])
    admin_demotes_owner = gql.execute(
        SET_ROLE, _vars(crew, "ada", role="MEMBER"), token=tokens["ben"]
    )
    admin_removes_owner = gql.execute(REMOVE, _vars(crew, "ada"), token=tokens["ben"])
    admin_bans_owner = gql.execute(BAN, _vars(crew, "ada"), token=tokens["ben"])
    owner_changes_self = gql.execute(
        SET_ROLE, _vars(crew, "ada", role="ADMIN"), token=tokens["ada"]
    )
    admin_removes_member = gql.execute(REMOVE, _vars(crew, "dee"), token=tokens["ben"])

    assert _codes(member_removes, "removeMember") == [{"field": None, "code": "admin_only"}]
    assert _codes(admin_demotes_owner, "setMemberRole") == [{"field": None, "code": "owner_only"}]
    assert _codes(admin_removes_owner, "removeMember") == [{"field": None, "code": "outranked"}]
    assert _codes(admin_bans_owner, "banMember") == [{"field": None, "code": "outranked"}]
    assert _codes(owner_changes_self, "setMemberRole") == [
        {"field": "userId", "code": "cannot_change_own_role"}
    ]
    assert admin_removes_member.data == {"removeMember": {"memberCount": 3}}
    roles = dict(Membership.objects.filter(chat=crew["room"]).values_list("user", "role"))
    assert roles == {crew["ada"].id: "OWNER", crew["ben"].id: "ADMIN", crew["cy"].id: "MEMBER"}


@pytest.mark.django_db
def test_handing_the_room_over_and_the_role_changes_in_history(gql, crew):
    tokens = crew["tokens"]

    handed = gql.execute(SET_ROLE, _vars(crew, "cy", role="OWNER"), token=tokens["ada"])
    history = gql.execute(HISTORY, {"c": str(crew["room"].id)}, token=tokens["ada"])

    assert handed.data == {"setMemberRole": {"role": "OWNER", "user": {"id": str(crew["cy"].id)}}}
    assert Membership.objects.get(chat=crew["room"], user=crew["ada"]).role == "ADMIN"
    changes = [
        e["node"]["body"]
        for e in history.data["messages"]["edges"]
        if e["node"]["systemEvent"] == "ROLE_CHANGED"
    ]
    assert changes == [
        f"{crew['ada'].display_name} made Ben an admin",
        f"{crew['ada'].display_name} made Cy the owner",
    ]


@pytest.mark.django_db
def test_a_banned_user_is_removed_cannot_rejoin_or_be_added_until_unbanned(gql, crew):
    tokens, room = crew["tokens"], crew["room"]
    until = (timezone.now() + timedelta(days=1)).replace(microsecond=0)

    banned = gql.execute(
        BAN, _vars(crew, "cy", until=until.isoformat(), reason="  spam  "), token=tokens["ben"]
    )
    rejoin = gql.execute(JOIN, {"c": str(room.id)}, token=tokens["cy"])
    added = gql.execute(ADD, {"c": str(room.id), "u": [str(crew["cy"].id)]}, token=tokens["ada"])
    bans_seen_by_admin = gql.execute(
        "query($c: ID!) { chat(id: $c) { bans { user { id } reason } } }",
        {"c": str(room.id)},
        token=tokens["ben"],
    )
    unbanned = gql.execute(UNBAN, _vars(crew, "cy"), token=tokens["ben"])
    unban_again = gql.execute(UNBAN, _vars(crew, "cy"), token=tokens["ben"])
    back = gql.execute(JOIN, {"c": str(room.id)}, token=tokens["cy"])
    history = gql.execute(HISTORY, {"c": str(room.id)}, token=tokens["ada"])

    assert banned.data == {
        "banMember": {
            "reason": "spam",
            "until": until.isoformat(),
            "user": {"id": str(crew["cy"].id)},
            "bannedBy": {"id": str(crew["ben"].id)},
        }
    }
    assert _codes(rejoin, "joinRoom") == [{"field": "chatId", "code": "banned"}]
    assert _codes(added, "addMembers") == [{"field": "userIds", "code": "banned"}]
    assert bans_seen_by_admin.data == {
        "chat": {"bans": [{"user": {"id": str(crew["cy"].id)}, "reason": "spam"}]}
    }
    assert unbanned.data == {"unbanMember": {"bans": []}}
    assert _codes(unban_again, "unbanMember") == [{"field": "userId", "code": "not_banned"}]
    assert back.data == {"joinRoom": {"id": str(room.id)}}
    events = [
        (e["node"]["systemEvent"], e["node"]["subject"]["id"])
        for e in history.data["messages"]["edges"]
        if e["node"]["systemEvent"] in {"MEMBER_BANNED", "MEMBER_UNBANNED", "MEMBER_JOINED"}
    ][-3:]
    cy = str(crew["cy"].id)
    assert events == [("MEMBER_BANNED", cy), ("MEMBER_UNBANNED", cy), ("MEMBER_JOINED", cy)]


@pytest.mark.django_db
def test_ban_refusals_and_a_lapsed_ban(gql, crew):
    tokens, room = crew["tokens"], crew["room"]
    past = (timezone.now() - timedelta(minutes=1)).isoformat()

    in_the_past = gql.execute(BAN, _vars(crew, "cy", until=past), token=tokens["ada"])
    too_long = gql.execute(BAN, _vars(crew, "cy", reason="x" * 501), token=tokens["ada"])
    by_member = gql.execute(BAN, _vars(crew, "dee"), token=tokens["cy"])
    assert _codes(in_the_past, "banMember") == [{"field": "until", "code": "ban_in_past"}]
    assert _codes(too_long, "banMember") == [{"field": "reason", "code": "reason_too_long"}]
    assert _codes(by_member, "banMember") == [{"field": None, "code": "admin_only"}]
    assert not Ban.objects.exists()

    gql.execute(BAN, _vars(crew, "cy"), token=tokens["ada"])
    Ban.objects.update(until=timezone.now() - timedelta(seconds=1))  # it has lapsed
    assert gql.execute(JOIN, {"c": str(room.id)}, token=tokens["cy"]).data == {
        "joinRoom": {"id": str(room.id)}
    }


@pytest.mark.django_db
def test_admins_delete_anyones_message_and_members_only_their_own(gql, crew):
    tokens, room = crew["tokens"], crew["room"]
    by_dee = services.send_message(author=crew["dee"], chat_id=room.id, body="rude")
    by_ada = services.send_message(author=crew["ada"], chat_id=room.id, body="rules")

    by_member = gql.execute(DELETE, {"m": str(by_dee.id)}, token=tokens["cy"])
    by_admin = gql.execute(DELETE, {"m": str(by_dee.id)}, token=tokens["ben"])
    admin_on_owner = gql.execute(DELETE, {"m": str(by_ada.id)}, token=tokens["ben"])

    assert _codes(by_member, "deleteMessage") == [{"field": None, "code": "not_author"}]
    assert by_admin.data == admin_on_owner.data == {"deleteMessage": {"isDeleted": True}}


@pytest.mark.django_db
def test_a_report_reaches_the_admin_where_staff_remove_the_message(gql, crew, make_user):
    tokens, room = crew["tokens"], crew["room"]
    rude = services.send_message(author=crew["dee"], chat_id=room.id, body="something rude")
    own = services.send_message(author=crew["cy"], chat_id=room.id, body="mine")
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))

    reported = gql.execute(REPORT, {"m": str(rude.id), "reason": "insults"}, token=tokens["cy"])
    again = gql.execute(
        REPORT, {"m": str(rude.id), "reason": "insults, twice"}, token=tokens["cy"]
    )
    empty = gql.execute(REPORT, {"m": str(rude.id), "reason": "  "}, token=tokens["ben"])
    mine = gql.execute(REPORT, {"m": str(own.id), "reason": "oops"}, token=tokens["cy"])
    stranger = gql.execute(
        REPORT, {"m": str(rude.id), "reason": "x"}, token=token_for(make_user())
    )
    listing = staff.get(reverse("admin:chat_report_changelist")).content.decode()
    staff.post(
        reverse("admin:chat_report_changelist"),
        {"action": "remove_messages", "_selected_action": [Report.objects.get().pk]},
    )

    assert reported.data == again.data == {"reportMessage": {"messageId": str(rude.id)}}
    assert _codes(empty, "reportMessage") == [{"field": "reason", "code": "reason_required"}]
    assert _codes(mine, "reportMessage") == [{"field": "messageId", "code": "own_message"}]
    assert _codes(stranger, "reportMessage") == [{"field": "messageId", "code": "not_found"}]
    assert "insults, twice" in listing
    assert "something rude" in listing
    report = Report.objects.get()
    assert (report.status, report.handled_by.is_staff) == ("RESOLVED", True)
    assert Message.objects.get(pk=rude.pk).is_deleted


@pytest.mark.django_db
def test_blocking_stops_direct_messages_both_ways_without_saying_who(gql, user, token, grace):
    grace_token = token_for(grace)
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)

    blocked = gql.execute(BLOCK, {"u": str(grace.id)}, token=token)
    her_send = gql.execute(SEND, {"c": str(chat.id)}, token=grace_token)
    my_send = gql.execute(SEND, {"c": str(chat.id)}, token=token)
    her_open = gql.execute(OPEN_DIRECT, {"u": str(user.id)}, token=grace_token)
    mine = gql.execute(BLOCKED_USERS, token=token)
    self_block = gql.execute(BLOCK, {"u": str(user.id)}, token=token)
    gql.execute(UNBLOCK, {"u": str(grace.id)}, token=token)
    after = gql.execute(SEND, {"c": str(chat.id)}, token=grace_token)

    assert blocked.data == {"blockUser": {"id": str(grace.id), "isBlockedByMe": True}}
    refused = [{"field": "chatId", "code": "cannot_message_user"}]
    assert _codes(her_send, "sendMessage") == _codes(my_send, "sendMessage") == refused
    assert _codes(her_open, "openDirectChat") == [
        {"field": "userId", "code": "cannot_message_user"}
    ]
    assert mine.data == {"me": {"blockedUsers": [{"id": str(grace.id)}]}}
    assert _codes(self_block, "blockUser") == [{"field": "userId", "code": "cannot_block_self"}]
    assert after.data == {"sendMessage": {"seq": 1}}
    assert not Block.objects.exists()


@pytest.mark.django_db
def test_in_a_shared_room_blocked_authors_messages_still_come_flagged(gql, crew):
    tokens, room = crew["tokens"], crew["room"]
    services.block_user(user=crew["cy"], user_id=crew["dee"].id)
    services.send_message(author=crew["dee"], chat_id=room.id, body="from Dee")
    services.send_message(author=crew["ben"], chat_id=room.id, body="from Ben")

    seen_by_cy = gql.execute(HISTORY, {"c": str(room.id)}, token=tokens["cy"])
    seen_by_ben = gql.execute(HISTORY, {"c": str(room.id)}, token=tokens["ben"])

    def flags(response):
        return [
            (e["node"]["body"], e["node"]["author"]["isBlockedByMe"])
            for e in response.data["messages"]["edges"]
            if e["node"]["kind"] == "TEXT"
        ]

    assert flags(seen_by_cy) == [("from Dee", True), ("from Ben", False)]
    assert flags(seen_by_ben) == [("from Dee", False), ("from Ben", False)]


@pytest.mark.django_db
def test_a_hidden_direct_chat_comes_back_with_a_new_message(gql, user, token, grace, crew):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)
    services.send_message(author=grace, chat_id=chat.id, body="old")

    hidden = gql.execute(HIDE, {"c": str(chat.id)}, token=token)
    listed_hidden = gql.execute(CHATS, token=token)
    room = gql.execute(HIDE, {"c": str(crew["room"].id)}, token=token)
    seen_by_grace = gql.execute(CHATS, token=token_for(grace))
    services.send_message(author=grace, chat_id=chat.id, body="new")
    listed_again = gql.execute(CHATS, token=token)

    assert hidden.data == {"hideChat": {"id": str(chat.id)}}
    assert {e["node"]["id"] for e in listed_hidden.data["chats"]["edges"]} == {
        str(crew["room"].id)
    }
    assert _codes(room, "hideChat") == [{"field": "chatId", "code": "not_direct"}]
    assert str(chat.id) in {e["node"]["id"] for e in seen_by_grace.data["chats"]["edges"]}
    assert str(chat.id) in {e["node"]["id"] for e in listed_again.data["chats"]["edges"]}


@pytest.mark.django_db
def test_the_remaining_refusals(gql, crew, make_user):
    tokens, room = crew["tokens"], crew["room"]
    outsider = make_user()
    nobody = "00000000-0000-0000-0000-000000000000"
    services.archive_room(owner=crew["ada"], chat_id=room.id)

    cases = [
        (
            SET_ROLE,
            {**_vars(crew, "ada", role="ADMIN"), "u": str(outsider.id)},
            "ada",
            "setMemberRole",
            [{"field": "userId", "code": "not_found"}],
        ),
        (UNBAN, _vars(crew, "dee"), "cy", "unbanMember", [{"field": None, "code": "admin_only"}]),
        (
            BAN,
            {**_vars(crew, "dee"), "u": nobody},
            "ada",
            "banMember",
            [{"field": "userId", "code": "not_found"}],
        ),
        (
            BAN,
            _vars(crew, "ada"),
            "ada",
            "banMember",
            [{"field": "userId", "code": "cannot_remove_self"}],
        ),
        (
            REMOVE,
            {**_vars(crew, "dee"), "u": str(outsider.id)},
            "ada",
            "removeMember",
            [{"field": "userId", "code": "not_found"}],
        ),
        (
            ADD,
            {"c": str(room.id), "u": [str(outsider.id)]},
            "ada",
            "addMembers",
            [{"field": "chatId", "code": "room_archived"}],
        ),
        (BLOCK, {"u": nobody}, "cy", "blockUser", [{"field": "userId", "code": "not_found"}]),
        (HIDE, {"c": nobody}, "cy", "hideChat", [{"field": "chatId", "code": "not_found"}]),
        (
            REPORT,
            {"m": nobody, "reason": "x"},
            "cy",
            "reportMessage",
            [{"field": "messageId", "code": "not_found"}],
        ),
    ]
    for query, variables, who, name, expected in cases:
        assert _codes(gql.execute(query, variables, token=tokens[who]), name) == expected, name
    assert gql.execute(
        'mutation($c: ID!) { updateRoom(chatId: $c, name: "x") { ... on OperationInfo '
        "{ messages { field code } } } }",
        {"c": str(room.id)},
        token=tokens["ada"],
    ).data == {"updateRoom": {"messages": [{"field": "chatId", "code": "room_archived"}]}}
