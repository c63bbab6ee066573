"""Who may do what in a room, and what owners and admins do to members: add, remove, ban,
change roles. Each action is a SYSTEM message in the timeline, so history shows it.

Ranks: the owner, then admins, then members. The owner may act on anyone but themself;
an admin only on members (acting on the owner or another admin is `outranked`)."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from chat import ratelimit
from chat.error_codes import ChatErrorCode
from chat.exceptions import Forbidden, field_error
from chat.models import Ban, Chat, Membership, Message, Report, User
from chat.selectors import is_banned, parse_id
from chat.services.chats import add_member, check_writable, drop_member, system_message
from chat.services.messages import visible_message
from chat.services.rooms import MANAGERS, managed_room

REASON_MAX = 500
ROLE_WORDS = {
    Membership.Role.OWNER: "the owner",
    Membership.Role.ADMIN: "an admin",
    Membership.Role.MEMBER: "a member",
}


def _role_of(chat: Chat, user: User) -> str | None:
    return Membership.objects.filter(chat=chat, user=user).values_list("role", flat=True).first()


def _check_outranks(actor_role: str, target_role: str | None) -> None:
    if actor_role != Membership.Role.OWNER and target_role in MANAGERS:
        raise Forbidden(
            "An admin cannot act on the owner or another admin.", code=ChatErrorCode.OUTRANKED
        )


def _target(chat: Chat, user_id: object) -> Membership:
    pk = parse_id(user_id)
    membership = (
        Membership.objects.select_related("user").filter(chat=chat, user_id=pk).first()
        if pk
        else None
    )
    if membership is None:
        raise field_error("user_id", "That user is not in this room.", ChatErrorCode.NOT_FOUND)
    return membership


def _user(user_id: object) -> User:
    pk = parse_id(user_id)
    user = User.objects.filter(pk=pk, is_active=True).first() if pk else None
    if user is None:
        raise field_error("user_id", "User not found.", ChatErrorCode.NOT_FOUND)
    return user


@transaction.atomic
def add_members(*, actor: User, chat_id: object, user_ids: list[object]) -> Chat:
    """Add users to a room (private rooms are joined this way): the owner and admins.
    Users already in it are skipped; a banned one refuses the whole call (`banned`)."""
    ratelimit.hit("membership", actor)
    chat = managed_room(user=actor, chat_id=chat_id, roles=MANAGERS)
    check_writable(chat)
    pks = [parse_id(value) for value in user_ids]
    users = {u.pk: u for u in User.objects.filter(pk__in=[p for p in pks if p], is_active=True)}
    if None in pks or len(users) != len(set(pks)):
        raise field_error("user_ids", "User not found.", ChatErrorCode.NOT_FOUND)
    present = set(
        Membership.objects.filter(chat=chat, user_id__in=users).values_list("user_id", flat=True)
    )
    if any(is_banned(chat=chat, user=users[pk]) for pk in users if pk not in present):
        raise field_error(
            "user_ids", "A user here is banned from this room.", ChatErrorCode.BANNED
        )
    for pk in dict.fromkeys(pks):
        if pk not in present:
            add_member(chat, users[pk], Message.SystemEvent.MEMBER_ADDED, actor=actor)
    return chat


@transaction.atomic
def remove_member(*, actor: User, chat_id: object, user_id: object) -> Chat:
    """Remove a member: the owner anyone, an admin only members. Their subscriptions to
    the room end."""
    ratelimit.hit("membership", actor)
    chat = managed_room(user=actor, chat_id=chat_id, roles=MANAGERS)
    if parse_id(user_id) == actor.pk:
        raise field_error(
            "user_id", "Use leaveRoom to leave a room.", ChatErrorCode.CANNOT_REMOVE_SELF
        )
    target = _target(chat, user_id)
    _check_outranks(_role_of(chat, actor), target.role)
    drop_member(chat, target, Message.SystemEvent.MEMBER_REMOVED, actor=actor)
    return chat


@transaction.atomic
def set_member_role(*, owner: User, chat_id: object, user_id: object, role: str) -> Membership:
    """Make a member an ADMIN or a MEMBER, or hand them the room (OWNER: the owner becomes
    an admin). The owner only."""
    if role not in Membership.Role.values:
        raise field_error("role", "Not a role.", ChatErrorCode.INVALID_ROLE)
    ratelimit.hit("membership", owner)
    chat = managed_room(user=owner, chat_id=chat_id, roles=frozenset({Membership.Role.OWNER}))
    if parse_id(user_id) == owner.pk:
        raise field_error(
            "user_id",
            "Hand the room to someone else to change your own role.",
            ChatErrorCode.CANNOT_CHANGE_OWN_ROLE,
        )
    target = _target(chat, user_id)
    if target.role != role:
        if role == Membership.Role.OWNER:
            Membership.objects.filter(chat=chat, user=owner).update(role=Membership.Role.ADMIN)
        Membership.objects.filter(pk=target.pk).update(role=role)
        target.role = role
        system_message(
            chat, Message.SystemEvent.ROLE_CHANGED, target.user, owner, role=ROLE_WORDS[role]
        )
    return target


def _clean_reason(reason: str, *, required: bool = False) -> str:
    reason = " ".join(reason.split())
    if required and not reason:
        raise field_error("reason", "Say what is wrong.", ChatErrorCode.REASON_REQUIRED)
    if len(reason) > REASON_MAX:
        raise field_error(
            "reason",
            f"A reason can be at most {REASON_MAX} characters.",
            ChatErrorCode.REASON_TOO_LONG,
        )
    return reason


@transaction.atomic
def ban_member(
    *,
    actor: User,
    chat_id: object,
    user_id: object,
    until: datetime | None = None,
    reason: str = "",
) -> Ban:
    """Keep a user out of a room until `until` (None: until unbanned): removed if they are
    in it, and refused by `joinRoom` and `addMembers`. Banning again updates the ban. The
    owner and admins (admins only members)."""
    reason = _clean_reason(reason)
    if until is not None and until <= timezone.now():
        raise field_error("until", "A ban must end in the future.", ChatErrorCode.BAN_IN_PAST)
    ratelimit.hit("membership", actor)
    chat = managed_room(user=actor, chat_id=chat_id, roles=MANAGERS)
    user = _user(user_id)
    if user.pk == actor.pk:
        raise field_error("user_id", "You cannot ban yourself.", ChatErrorCode.CANNOT_REMOVE_SELF)
    membership = Membership.objects.select_related("user").filter(chat=chat, user=user).first()
    _check_outranks(_role_of(chat, actor), membership.role if membership else None)
    ban, _ = Ban.objects.update_or_create(
        chat=chat,
        user=user,
        defaults={"banned_by": actor, "until": until, "reason": reason},
    )
    if membership is not None:
        drop_member(chat, membership, Message.SystemEvent.MEMBER_BANNED, actor=actor)
    else:
        system_message(chat, Message.SystemEvent.MEMBER_BANNED, user, actor)
    return ban


@transaction.atomic
def unban_member(*, actor: User, chat_id: object, user_id: object) -> Chat:
    """Lift a ban: the user may join (or be added) again. The owner and admins."""
    ratelimit.hit("membership", actor)
    chat = managed_room(user=actor, chat_id=chat_id, roles=MANAGERS)
    user = _user(user_id)
    deleted, _ = Ban.objects.filter(chat=chat, user=user).delete()
    if not deleted:
        raise field_error("user_id", "That user is not banned here.", ChatErrorCode.NOT_BANNED)
    system_message(chat, Message.SystemEvent.MEMBER_UNBANNED, user, actor)
    return chat


def report_message(*, reporter: User, message_id: object, reason: str) -> Report:
    """Report a message in a chat the reporter is in, for staff to review in the admin.
    Reporting it again updates the reason of an open report. Not one's own messages."""
    reason = _clean_reason(reason, required=True)
    message = visible_message(user=reporter, message_id=message_id)
    if message.author_id == reporter.pk:
        raise field_error(
            "message_id", "You cannot report your own message.", ChatErrorCode.OWN_MESSAGE
        )
    ratelimit.hit("report", reporter)
    report, created = Report.objects.get_or_create(
        message=message, reporter=reporter, defaults={"reason": reason}
    )
    if not created and report.status == Report.Status.OPEN and report.reason != reason:
        report.reason = reason
        report.save(update_fields=["reason"])
    return report


@transaction.atomic
def handle_reports(*, staff: User, reports: list[Report], remove: bool) -> int:
    """Staff's decision on open reports: remove the messages (a soft delete subscribers
    hear of) and mark them resolved, or dismiss them. Returns how many were handled."""
    from chat.services.messages import remove_message

    handled = 0
    for report in reports:
        if report.status != Report.Status.OPEN:
            continue
        if remove:
            remove_message(message=report.message)
        Report.objects.filter(message=report.message, status=Report.Status.OPEN).update(
            status=Report.Status.RESOLVED if remove else Report.Status.DISMISSED,
            handled_by=staff,
            handled_at=timezone.now(),
        )
        handled += 1
    return handled
