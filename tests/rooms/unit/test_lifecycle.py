"""Every (from, to, actor) triple of the lifecycle: the five allowed ones and nothing else."""

from __future__ import annotations

import itertools

import pytest

from homeserver.rooms.lifecycle import (
    INITIAL_STATUS,
    TERMINAL_STATUSES,
    Actor,
    InvalidTransition,
    RoomStatus,
    can_transition,
    transition,
)

A, U, T = RoomStatus.ACTIVE, RoomStatus.UPGRADING, RoomStatus.TOMBSTONED
ALLOWED = {
    (A, U, Actor.REQUESTER),
    (U, A, Actor.SYSTEM),
    (U, T, Actor.SYSTEM),
    (A, T, Actor.SYSTEM),
    (A, T, Actor.FEDERATION),
}
ALL = list(itertools.product(RoomStatus, RoomStatus, Actor))


@pytest.mark.parametrize(("source", "target", "actor"), ALL, ids=lambda x: str(x))
def test_transition_table(source, target, actor):
    allowed = (source, target, actor) in ALLOWED
    assert can_transition(source, target, actor) is allowed
    if allowed:
        assert transition(source, target, actor).target is target
    else:
        with pytest.raises(InvalidTransition):
            transition(source, target, actor)


def test_initial_and_terminal():
    assert INITIAL_STATUS is A
    assert TERMINAL_STATUSES == {T}
    assert not any(can_transition(T, target, actor) for target in RoomStatus for actor in Actor)


def test_refused_transitions_are_logged(caplog):
    with (
        caplog.at_level("WARNING", logger="homeserver.rooms.lifecycle"),
        pytest.raises(InvalidTransition),
    ):
        transition(T, A, Actor.SYSTEM)
    assert "refused room lifecycle transition tombstoned -> active" in caplog.text
