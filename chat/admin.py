from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import auth
from chat.models import AuthToken, User


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
    readonly_fields = ("date_joined", "last_login", "last_seen_at")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name",)}),
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
    actions = ["revoke_tokens"]

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
