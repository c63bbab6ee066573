from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat import auth, services, storage
from chat.models import (
    Attachment,
    AuthToken,
    Ban,
    Block,
    Chat,
    Device,
    Membership,
    Message,
    Report,
    User,
)
from chat.selectors import MESSAGE_RELATED
from chat.services.chats import clean_room
from chat.services.slugs import clean_slug


def thumbnail_html(name: str, *, link: str | None = None, height: int = 80) -> str:
    """A stored image shown small, through a signed URL (staff are not chat members)."""
    if not name:
        return "—"
    image = format_html('<img src="{}" alt="" style="max-height:{}px">', storage.url(name), height)
    return format_html('<a href="{}">{}</a>', storage.url(link), image) if link else image


def attachment_html(attachment: Attachment | None) -> str:
    if attachment is None:
        return "—"
    if attachment.thumbnail:
        return thumbnail_html(attachment.thumbnail.name, link=attachment.file.name)
    url = storage.url(attachment.file.name, label=attachment.name)
    return format_html('<a href="{}">{}</a> ({} bytes)', url, attachment.name, attachment.size)


class AuthTokenInline(admin.TabularInline):
    model = AuthToken
    extra = 0
    can_delete = False
    fields = ("prefix", "user_agent", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "display_name")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    add_form = UserCreateForm
    form = UserEditForm
    ordering = ("email",)
    list_display = ("email", "display_name", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined")
    search_fields = ("email", "display_name")
    readonly_fields = ("date_joined", "last_login", "last_seen_at", "avatar_preview")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        # The avatar is set through the API (checked, re-encoded) and removed by an action.
        ("Profile", {"fields": ("display_name", "avatar_preview")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("date_joined", "last_login", "last_seen_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "display_name", "password1", "password2"),
            },
        ),
    )
    inlines = [AuthTokenInline]
    actions = ["revoke_tokens", "remove_avatars"]

    @admin.display(description="avatar")
    def avatar_preview(self, user: User) -> str:
        return thumbnail_html(user.avatar_thumbnail.name, link=user.avatar.name)

    @admin.action(description="Remove their avatars")
    def remove_avatars(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.remove_avatar(user=user)
        self.message_user(request, f"Removed avatars of {queryset.count()} users.")

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list:
        # A user being created has no tokens yet.
        return self.inlines if obj is not None else []

    @admin.action(description="Sign out everywhere (revoke all tokens)")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        count = sum(auth.revoke_user_tokens(user) for user in queryset)
        self.message_user(request, f"Revoked {count} tokens.", messages.SUCCESS)


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "user",
        "user_agent",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "created_at", "expires_at")
    list_select_related = ("user",)
    search_fields = ("user__email", "prefix")
    raw_id_fields = ("user",)
    readonly_fields = (
        "prefix",
        "user",
        "user_agent",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens are issued by `login`; a token made here could never be shown to anyone.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        for token in queryset:
            auth.revoke_token(token)
        self.message_user(request, f"Revoked {queryset.count()} tokens.", messages.SUCCESS)


class MembershipInline(admin.TabularInline):
    """Read-only: membership changes go through the services (joins and leaves are also
    SYSTEM messages in the timeline)."""

    model = Membership
    extra = 0
    can_delete = False
    fields = ("user", "role", "joined_at", "last_read_seq", "muted_until")
    readonly_fields = fields
    raw_id_fields = ("user",)
    ordering = ("joined_at",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ChatForm(forms.ModelForm):
    class Meta:
        model = Chat
        fields = ("kind", "name", "topic", "is_public", "slug", "created_by")

    def clean(self) -> dict:
        cleaned = super().clean()
        # The services' own rules, so the admin shows the error instead of failing on save.
        try:
            cleaned["name"], cleaned["topic"] = clean_room(
                cleaned.get("name", ""), cleaned.get("topic", "")
            )
            cleaned["slug"] = clean_slug(cleaned.get("slug") or "")
        except ValidationError as error:
            raise forms.ValidationError(error.message_dict) from None
        if self.instance._state.adding:
            if cleaned.get("kind") != Chat.Kind.GROUP:
                raise forms.ValidationError("Direct chats are opened by their users, not here.")
            if cleaned.get("created_by") is None:
                raise forms.ValidationError({"created_by": "A new room needs an owner."})
        return cleaned


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    form = ChatForm
    list_display = (
        "__str__",
        "kind",
        "is_public",
        "member_count",
        "last_seq",
        "last_message_at",
        "created_at",
    )
    list_filter = ("kind", "is_public", "archived_at", "created_at", "last_message_at")
    list_select_related = ("created_by",)
    search_fields = ("name", "slug", "topic", "memberships__user__email")
    raw_id_fields = ("created_by",)
    readonly_fields = (
        "last_seq",
        "last_message_at",
        "member_count",
        "direct_key",
        "created_at",
        "archived_at",
    )
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Chat | None = None) -> tuple:
        if obj is None:
            return self.readonly_fields
        return (*self.readonly_fields, "kind", "created_by")

    def save_model(
        self, request: HttpRequest, obj: Chat, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            services.update_room(
                chat_id=obj.pk,
                actor=None,
                name=data["name"],
                topic=data["topic"],
                is_public=data["is_public"],
                slug=data["slug"] or "",
            )
        else:
            room = services.create_room(
                owner=data["created_by"],
                name=data["name"],
                topic=data["topic"],
                is_public=data["is_public"],
                slug=data["slug"],
            )
            obj.pk = room.pk
            obj._state.adding = False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Where push notifications go. Staff can see why a device stopped receiving them
    (`last_error`), turn one off or back on, or delete it."""

    list_display = (
        "user",
        "kind",
        "name",
        "is_active",
        "updated_at",
        "last_success_at",
        "failures",
        "last_error",
    )
    list_filter = ("kind", "is_active", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__email", "user__display_name", "name")
    raw_id_fields = ("user", "auth_token")
    readonly_fields = (
        "user",
        "kind",
        "address",
        "p256dh",
        "auth",
        "auth_token",
        "created_at",
        "updated_at",
        "last_success_at",
        "failures",
        "last_error",
        "last_error_at",
    )
    actions = ["deactivate", "activate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Devices are registered by their browser or app (`registerDevice`).
        return False

    @admin.action(description="Stop notifying selected devices")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = services.set_devices_active(queryset, active=False)
        self.message_user(request, f"Deactivated {count} devices.", messages.SUCCESS)

    @admin.action(description="Notify selected devices again")
    def activate(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = services.set_devices_active(queryset, active=True)
        self.message_user(request, f"Reactivated {count} devices.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "chat", "role", "joined_at", "last_read_seq", "muted_until")
    list_filter = ("role", "joined_at")
    list_select_related = ("user", "chat")
    search_fields = ("user__email", "user__display_name", "chat__name")
    raw_id_fields = ("user", "chat")
    readonly_fields = ("user", "chat", "role", "joined_at", "last_read_seq", "muted_until")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "author",
        "short_body",
        "content",
        "created_at",
        "edited_at",
        "deleted_at",
    )
    list_filter = ("kind", "created_at", "edited_at", "deleted_at")
    list_select_related = ("author", "chat", "attachment")
    search_fields = ("body", "author__email", "author__display_name", "chat__name")
    raw_id_fields = ("chat", "author", "subject")
    readonly_fields = (
        "chat",
        "seq",
        "author",
        "kind",
        "body",
        "system_event",
        "subject",
        "client_id",
        "content",
        "created_at",
        "edited_at",
        "deleted_at",
    )
    exclude = ("attachment", "latitude", "longitude", "location_label")
    date_hierarchy = "created_at"
    actions = ["remove"]

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        return message.body[:80]

    @admin.display(description="attachment or location")
    def content(self, message: Message) -> str:
        if message.latitude is not None:
            label = f" {message.location_label}" if message.location_label else ""
            return f"{message.latitude:.5f}, {message.longitude:.5f}{label}"
        return attachment_html(message.attachment)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A hard delete would leave a gap in the chat's seqs; use the remove action.
        return False

    @admin.action(description="Remove selected messages (soft delete, shown as deleted)")
    def remove(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        for message in queryset.select_related(*MESSAGE_RELATED):
            services.remove_message(message=message)
        self.message_user(request, f"Removed {queryset.count()} messages.", messages.SUCCESS)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Read-only: an attachment goes with its message (remove the message to delete it)."""

    list_display = ("preview", "name", "content_type", "size", "width", "height", "created_at")
    list_filter = ("content_type", "created_at")
    list_select_related = ("uploaded_by",)
    search_fields = ("name", "uploaded_by__email", "uploaded_by__display_name")
    fields = (
        "preview",
        "name",
        "content_type",
        "size",
        "width",
        "height",
        "uploaded_by",
        "message_link",
        "file",
        "thumbnail",
        "created_at",
    )
    readonly_fields = fields
    date_hierarchy = "created_at"

    @admin.display(description="preview")
    def preview(self, attachment: Attachment) -> str:
        return attachment_html(attachment)

    @admin.display(description="message")
    def message_link(self, attachment: Attachment) -> str:
        message = Message.objects.filter(attachment=attachment).first()
        if message is None:
            return "—"
        url = reverse("admin:chat_message_change", args=[message.pk])
        return format_html('<a href="{}">{}</a>', url, message)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Members' reports of messages. Staff remove the message (the same soft delete the
    API does, heard by subscribers) or dismiss the report."""

    list_display = ("created_at", "status", "reporter", "message_author", "message_body", "reason")
    list_filter = ("status", "created_at")
    list_select_related = ("reporter", "message__author", "message__chat")
    search_fields = ("reason", "message__body", "reporter__email", "message__author__email")
    readonly_fields = (
        "message",
        "message_body",
        "reporter",
        "reason",
        "status",
        "created_at",
        "handled_by",
        "handled_at",
    )
    actions = ["remove_messages", "dismiss"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="author")
    def message_author(self, report: Report) -> str:
        return str(report.message.author or "—")

    @admin.display(description="message")
    def message_body(self, report: Report) -> str:
        return report.message.body[:200] or ("(deleted)" if report.message.is_deleted else "—")

    @admin.action(description="Remove the reported messages (resolves their reports)")
    def remove_messages(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        count = services.handle_reports(staff=request.user, reports=list(queryset), remove=True)
        self.message_user(request, f"Removed {count} messages.", messages.SUCCESS)

    @admin.action(description="Dismiss selected reports")
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        count = services.handle_reports(staff=request.user, reports=list(queryset), remove=False)
        self.message_user(request, f"Dismissed {count} reports.", messages.SUCCESS)


@admin.register(Ban)
class BanAdmin(admin.ModelAdmin):
    list_display = ("user", "chat", "banned_by", "until", "reason", "created_at")
    list_select_related = ("user", "chat", "banned_by")
    search_fields = ("user__email", "chat__name", "reason")
    readonly_fields = ("user", "chat", "banned_by", "until", "reason", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Bans are made in the room (`banMember`), where they remove the member and say so.
        return False


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("blocker", "blocked", "created_at")
    list_select_related = ("blocker", "blocked")
    search_fields = ("blocker__email", "blocked__email")
    readonly_fields = ("blocker", "blocked", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
