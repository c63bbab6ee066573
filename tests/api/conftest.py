"""Fixtures for the API tests."""

import pytest

from chat import services
from tests.factories import UserFactory, token_for


@pytest.fixture
def people(transactional_db, settings):
    """Ada and Grace, signed in, with a direct chat."""
    settings.SEND_RATE_BURST = 1000
    ada = UserFactory(email="ada@example.com", display_name="Ada")
    grace = UserFactory(email="grace@example.com", display_name="Grace")
    chat = services.open_direct_chat(user=ada, other_user_id=grace.id)
    return {
        "ada": ada,
        "grace": grace,
        "chat": chat,
        "ada_token": token_for(ada),
        "grace_token": token_for(grace),
    }
