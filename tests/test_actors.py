"""One actor, one label: audit rows, timelines and signatures name the same actor the same way."""

from portal.accounts.services import api_token_create
from portal.actors import SYSTEM, Actor
from portal.audit.services import audit_record


def test_a_user_is_labelled_by_username(lead):
    actor = Actor.of(lead)
    assert (actor.kind, actor.label, actor.person, actor.is_system) == ("user", lead.username, lead, False)
    assert Actor.of(actor) is actor


def test_a_token_is_labelled_by_name_and_stands_for_its_creator(lead):
    token, _raw = api_token_create(name="ci", scope="lead", actor=lead)
    actor = Actor.of(token)
    assert (actor.kind, actor.label, actor.user, actor.person) == ("token", "token:ci", None, lead)


def test_system_actors_share_one_format():
    assert Actor.of("system:rollout") == Actor.system("rollout") == Actor.of("rollout")
    assert Actor.of("system:rollout").label == "system:rollout"
    assert Actor.of(None) is SYSTEM and SYSTEM.label == "system" and SYSTEM.is_system and SYSTEM.person is None


def test_audit_columns_come_from_the_actor(lead):
    token, _raw = api_token_create(name="ci", scope="lead", actor=lead)
    by_token = audit_record(actor=token, verb="test.token")
    by_system = audit_record(actor=Actor.system("rollout"), verb="test.system")
    assert (by_token.actor, by_token.actor_token, by_token.actor_label) == (None, token, "token:ci")
    assert (by_system.actor, by_system.actor_token, by_system.actor_label) == (None, None, "system:rollout")
