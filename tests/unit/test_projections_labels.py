"""How the views seal labels: deterministic (so they match and group), reversible with the
key, bound to their kind, and refused under another key."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.dialects import sqlite

from ledger.persistence.codec import RowCipher
from projections.errors import ProjectionError, ViewStoreError
from projections.labels import Labels, bind, labels_for, view_secret
from projections.schema import TABLES_BY_PROJECTION, fingerprint

KEY = bytes(range(32))
labels_of_key = Labels.for_cipher(RowCipher(KEY))


@given(st.text())
def test_a_label_opens_to_itself_and_always_seals_the_same(value: str) -> None:
    sealed = labels_of_key.user.seal(value)
    assert Labels.for_cipher(RowCipher(KEY)).user.seal(value) == sealed  # a fresh cache
    assert Labels.for_cipher(RowCipher(KEY)).user.open(sealed) == value
    if len(value.encode()) >= 8:  # shorter ones may turn up among random bytes
        assert value.encode() not in sealed


def test_the_same_name_seals_apart_in_each_kind() -> None:
    sealed = {labels_of_key.for_dimension(dim).seal("north")
              for dim in ("site", "tenant", "campaign", "class")}
    assert len(sealed) == 4
    with pytest.raises(ViewStoreError, match="tenant label does not open"):
        labels_of_key.tenant.open(labels_of_key.campaign.seal("north"))


def test_another_key_neither_opens_the_labels_nor_shares_their_check() -> None:
    other = Labels.for_cipher(RowCipher(os.urandom(32)))
    assert other.check != labels_of_key.check
    with pytest.raises(ViewStoreError, match="rebuild the views"):
        other.site.open(labels_of_key.site.seal("north"))


def test_a_tampered_label_is_refused() -> None:
    sealed = bytearray(labels_of_key.user.seal("u1"))
    sealed[-1] ^= 1
    with pytest.raises(ViewStoreError):
        Labels.for_cipher(RowCipher(KEY)).user.open(bytes(sealed))


def test_the_views_secret_is_the_keys_alone() -> None:
    assert view_secret(RowCipher(KEY)) == view_secret(RowCipher(KEY))
    assert view_secret(RowCipher(KEY)) != view_secret(RowCipher(bytes(32)))
    assert KEY not in view_secret(RowCipher(KEY))


def test_without_an_at_rest_key_labels_are_plain_text() -> None:
    plain = Labels.for_cipher(None)
    assert plain.check == "plain"
    assert plain.site.seal("north") == b"north"
    assert plain.site.open(b"north") == "north"


def test_a_connection_of_an_engine_no_runner_made_cannot_open_labels() -> None:
    stranger, known = create_engine("sqlite://"), create_engine("sqlite://")
    bind(known, labels_of_key)
    with known.connect() as conn:
        assert labels_for(conn) is labels_of_key
    with stranger.connect() as conn, pytest.raises(ProjectionError, match="sealed"):
        labels_for(conn)


def test_views_sealed_under_another_key_have_another_fingerprint() -> None:
    tables = TABLES_BY_PROJECTION["usage"]
    other = Labels.for_cipher(RowCipher(os.urandom(32)))
    assert (fingerprint(tables, sqlite.dialect(), labels_of_key.check)
            != fingerprint(tables, sqlite.dialect(), other.check))
