"""Rows loaded without `Model.__init__` (chat.loading) are the instances Django builds."""

import pytest
from django.apps import apps
from django.db.models import Model
from django.db.models.signals import post_init

from chat import loading, services
from chat.models import Chat, Membership, Message, User

pytestmark = pytest.mark.django_db


def django_built(instance: Model) -> Model:
    """The same row built by Django's own `Model.from_db`."""
    model = type(instance)
    names = [f.attname for f in model._meta.concrete_fields if f.attname in instance.__dict__]
    values = [instance.__dict__[name] for name in names]
    return Model.from_db.__func__(model, instance._state.db, names, values)


def same_instance(row: Model, expected: Model) -> None:
    assert type(row) is type(expected)
    assert {k: v for k, v in row.__dict__.items() if k != "_state"} == {
        k: v for k, v in expected.__dict__.items() if k != "_state"
    }
    assert (row._state.adding, row._state.db) == (expected._state.adding, expected._state.db)
    assert row.get_deferred_fields() == expected.get_deferred_fields()


@pytest.fixture
def room(user, grace) -> Chat:
    room = services.create_room(owner=user, name="Lounge", is_public=True)
    services.join_room(user=grace, chat_id=room.id)
    services.send_message(author=grace, chat_id=room.id, body="hello")
    return room


def hello(queryset):
    return queryset.get(body="hello")


def test_the_hot_models_take_the_direct_way(room, monkeypatch):
    for model in (User, Chat, Membership, Message):
        assert loading._plain_attnames(model) is not None, model
    constructed = []
    init = Model.__init__

    def counted(self, *args, **kwargs) -> None:
        constructed.append(type(self))
        init(self, *args, **kwargs)

    monkeypatch.setattr(Model, "__init__", counted)
    assert hello(Message.objects.select_related("author", "chat").filter(chat=room))
    assert constructed == []


def test_every_project_model_loads_as_django_would(room, user):
    user.avatar = "avatars/a.webp"
    user.save(update_fields=["avatar"])
    for model in apps.get_app_config("chat").get_models():
        for row in model.objects.all():
            same_instance(row, django_built(row))


def test_rows_loaded_in_part_defer_the_rest_as_django_does(room):
    message = hello(Message.objects.only("id", "body").filter(chat=room))
    same_instance(message, django_built(message))
    assert message.get_deferred_fields() >= {"seq", "author_id"}
    seq = Message.objects.filter(pk=message.pk).values_list("seq", flat=True).get()
    assert message.seq == seq  # a deferred column still loads on first use


def test_joined_rows_are_cached_and_file_fields_wrap_their_names(room, user):
    user.avatar = "avatars/a.webp"
    user.save(update_fields=["avatar"])
    message = hello(Message.objects.select_related("author").filter(chat=room))
    same_instance(message.author, django_built(message.author))
    membership = Membership.objects.select_related("user").get(chat=room, user=user)
    assert membership.user.avatar.name == "avatars/a.webp"
    assert not membership._state.adding


def test_a_model_with_init_receivers_is_built_by_django(room):
    seen = []

    def spy(sender, instance, **kwargs) -> None:
        seen.append(instance.pk)

    post_init.connect(spy, sender=Message)
    try:
        messages = list(Message.objects.filter(chat=room))
    finally:
        post_init.disconnect(spy, sender=Message)
    assert seen == [message.pk for message in messages]
