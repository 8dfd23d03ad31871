"""The pure per-event history visibility rule, table-driven over the spec's cases (no database)."""

from __future__ import annotations

import pytest

from homeserver.visibility.rules import (
    EventFacts,
    effective_visibility,
    event_visible,
    state_visible_at,
)

#: The user's story after the event, and whether it means "joined at some point at or after it".
LATER = {
    "join": True,  # currently joined
    "rejoined-then-left": True,  # joined after the event, has left since
    "leave": False,  # left, no join since the event
    "none": False,  # never a member
}
LATER_COLUMNS = tuple(LATER)

#: (history_visibility at the event, membership at the event) → visible for each column of
#: LATER ("Y"/"N"), in its order: join, rejoined-then-left, leave, none.
TABLE: list[tuple[str, str | None, str]] = [
    ("world_readable", None, "YYYY"),
    ("world_readable", "invite", "YYYY"),
    ("world_readable", "join", "YYYY"),
    ("world_readable", "leave", "YYYY"),
    ("world_readable", "ban", "YYYY"),
    ("shared", None, "YYNN"),
    ("shared", "invite", "YYNN"),
    ("shared", "join", "YYYY"),
    ("shared", "leave", "YYNN"),
    ("shared", "ban", "YYNN"),
    ("invited", None, "NNNN"),
    ("invited", "invite", "YYYY"),
    ("invited", "join", "YYYY"),
    ("invited", "leave", "NNNN"),
    ("invited", "ban", "NNNN"),
    ("joined", None, "NNNN"),
    ("joined", "invite", "NNNN"),
    ("joined", "join", "YYYY"),
    ("joined", "leave", "NNNN"),
    ("joined", "ban", "NNNN"),
]

CASES = [
    pytest.param(vis, membership, later, expected[i] == "Y", id=f"{vis}-{membership}-{later}")
    for vis, membership, expected in TABLE
    for i, later in enumerate(LATER_COLUMNS)
]


@pytest.mark.parametrize(("visibility", "membership", "later", "visible"), CASES)
def test_ordinary_event(visibility: str, membership: str | None, later: str, visible: bool):
    facts = EventFacts(visibility, membership, joined_later=LATER[later])
    assert event_visible(facts) is visible


@pytest.mark.parametrize(
    ("content", "effective"),
    [
        ("joined", "joined"),
        ("world_readable", "world_readable"),
        (None, "shared"),
        ("bogus", "shared"),
        (42, "shared"),
        (["joined"], "shared"),
    ],
)
def test_missing_or_unknown_visibility_is_shared(content: object, effective: str):
    assert effective_visibility(content) == effective


@pytest.mark.parametrize(
    ("before", "sets", "membership", "visible"),
    [
        # The change is seen by whoever could see either side of it.
        ("joined", "world_readable", None, True),
        ("world_readable", "joined", None, True),
        ("shared", "joined", "leave", False),  # shared, but the user never joined later
        ("joined", "shared", None, False),
        ("joined", "invited", "invite", True),
        ("invited", "joined", "invite", True),
        ("joined", "joined", "invite", False),
        ("joined", "bogus", None, False),  # unknown counts as shared: not a stranger's
        ("joined", "joined", "join", True),
    ],
)
def test_history_visibility_event_itself(
    before: str, sets: str, membership: str | None, visible: bool
):
    facts = EventFacts(
        before, membership, joined_later=False, sets_visibility=sets, is_visibility_event=True
    )
    assert event_visible(facts) is visible


@pytest.mark.parametrize(
    ("visibility", "before", "own", "visible"),
    [
        ("joined", None, "join", True),  # one's own join
        ("joined", "invite", "join", True),
        ("joined", "join", "leave", True),  # one sees oneself leave
        ("joined", "invite", "leave", True),  # a rejected invite
        ("joined", "join", "ban", True),  # banned while joined: joined before it
        ("joined", None, "invite", False),  # invited while history is for joined members
        ("invited", None, "invite", True),  # the invite opens invited history
        ("joined", None, "ban", False),  # banned without ever joining
        ("joined", None, "leave", False),
        ("joined", "leave", "knock", False),
        ("joined", None, "bogus", False),
        ("world_readable", None, "ban", True),
    ],
)
def test_own_membership_event(visibility: str, before: str | None, own: str, visible: bool):
    facts = EventFacts(
        visibility,
        before,
        joined_later=False,
        own_membership=own,
        is_own_membership_event=True,
    )
    assert event_visible(facts) is visible


#: (history_visibility at the point, membership at the point) → may the state there be read, for
#: a user joined at some point since / not (Synapse's ``_user_can_see_state_at_event``).
STATE_TABLE: list[tuple[str, str | None, str]] = [
    ("world_readable", None, "YY"),
    ("world_readable", "leave", "YY"),
    ("shared", None, "YN"),
    ("shared", "invite", "YY"),
    ("shared", "join", "YY"),
    ("shared", "leave", "YN"),
    ("invited", None, "NN"),
    ("invited", "invite", "YY"),
    ("invited", "join", "YY"),
    ("joined", None, "NN"),
    ("joined", "invite", "NN"),
    ("joined", "join", "YY"),
    ("joined", "ban", "NN"),
    ("bogus", None, "YN"),
]


@pytest.mark.parametrize(
    ("visibility", "membership", "joined_later", "visible"),
    [
        (v, m, later, flags[i] == "Y")
        for v, m, flags in STATE_TABLE
        for i, later in enumerate((True, False))
    ],
)
def test_state_visible_at(
    visibility: str, membership: str | None, joined_later: bool, visible: bool
):
    assert state_visible_at(visibility, membership, joined_later=joined_later) is visible
