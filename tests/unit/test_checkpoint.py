"""Signed checkpoints: C2SP signed-note and tlog-checkpoint, against published vectors."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import CheckpointError
from ledger.seal.checkpoint import (
    Checkpoint,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from ledger.seal.merkle import EMPTY_ROOT, leaf_hash
from tests.strategies import note_texts

# --- Published vectors -------------------------------------------------------------------
# golang/mod, sumdb/note/note_test.go (commit 02c991387e35f9e4c0a9b7ce137717055f8d716d):
# TestSign, TestOpen, TestVerifierList. The Go note package is the reference signed-note
# implementation that C2SP signed-note describes.

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)

# C2SP tlog-checkpoint.md: the example checkpoint's note text.
C2SP_EXAMPLE_BODY = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def peter_private_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert seed[0] == 0x01  # Ed25519
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def public_key_of(vkey: str) -> Ed25519PublicKey:
    encoded = base64.b64decode(vkey.split("+", 2)[2])
    assert encoded[0] == 0x01
    return Ed25519PublicKey.from_public_bytes(encoded[1:])


ORIGIN = "seatledger.test/acme"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ROOT = leaf_hash(b"some tree")
CHECKPOINT = Checkpoint(ORIGIN, 1024, ROOT)


def non_canonical_base64(data: bytes) -> str:
    """Another base64 spelling of ``data``: set unused low bits of the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    encoded = base64.b64encode(data).decode()
    body = encoded.rstrip("=")
    assert len(body) != len(encoded), "needs padding, so the last character has spare bits"
    last = alphabet[alphabet.index(body[-1]) | 1]
    spelled = body[:-1] + last + encoded[len(body) :]
    assert spelled != encoded and base64.b64decode(spelled) == data
    return spelled


def signed() -> str:
    return sign_checkpoint(CHECKPOINT, ORIGIN, KEY)


# --- Signed notes: published vectors -------------------------------------------------------


def test_verifier_key_matches_published_vkey() -> None:
    assert verifier_key("PeterNeumann", peter_private_key().public_key()) == PETER_VKEY


def test_sign_note_matches_published_signature() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_private_key()) == TEXT + "\n" + PETER_SIG


def test_open_note_verifies_published_note_and_ignores_other_keys() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, "PeterNeumann", public_key_of(PETER_VKEY)) == TEXT
    assert open_note(note, "EnochRoot", public_key_of(ENOCH_VKEY)) == TEXT


def test_open_note_rejects_published_invalid_signature() -> None:
    note = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(CheckpointError, match="bad signature by key PeterNeumann\\+c74f20a3"):
        open_note(note, "PeterNeumann", public_key_of(PETER_VKEY))


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_open_note_rejects_published_malformed_notes(note: str) -> None:
    with pytest.raises(CheckpointError, match="malformed note"):
        open_note(note, "PeterNeumann", public_key_of(PETER_VKEY))


def test_open_note_without_a_signature_by_the_key_is_refused() -> None:
    with pytest.raises(CheckpointError, match="no signature by key EnochRoot\\+af0cfe78"):
        open_note(TEXT + "\n" + PETER_SIG, "EnochRoot", public_key_of(ENOCH_VKEY))


# --- Checkpoint bodies -------------------------------------------------------------------


def test_c2sp_example_body_parses_and_prints_back_byte_for_byte() -> None:
    checkpoint = Checkpoint.from_body(C2SP_EXAMPLE_BODY)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root.hex() == (
        "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    )
    assert checkpoint.body() == C2SP_EXAMPLE_BODY


def test_body_is_origin_size_root_then_extensions() -> None:
    checkpoint = Checkpoint("o", 0, EMPTY_ROOT, ("ext one", "ext two"))
    assert checkpoint.body() == (
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next two\n"
    )


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        ("tab\there", 1, ROOT, ()),
        ("lone \ud800 surrogate", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
    ],
)
def test_checkpoint_refuses_values_it_could_not_print(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        Checkpoint(origin, size, root, extensions)


# --- Signed checkpoints --------------------------------------------------------------------


def test_checkpoint_round_trips_through_a_signed_note() -> None:
    note = signed()
    assert note.startswith(CHECKPOINT.body() + "\n\u2014 " + ORIGIN + " ")
    assert open_checkpoint(note, ORIGIN, KEY.public_key()) == CHECKPOINT


@given(
    origin=note_texts,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        note_texts, max_size=3
    ),
)
def test_any_checkpoint_round_trips(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    note = sign_checkpoint(checkpoint, "seatledger.test/key", KEY)
    assert open_checkpoint(note, "seatledger.test/key", KEY.public_key()) == checkpoint


def test_note_names_the_key_by_its_published_key_id() -> None:
    vkey_id = verifier_key(ORIGIN, KEY.public_key()).split("+")[1]
    signature = base64.b64decode(signed().rsplit(" ", 1)[1])
    assert signature[:4].hex() == vkey_id
    assert len(signature) == 4 + 64


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n1024\n", "\n1025\n"),
        (f"{ORIGIN}\n", "seatledger.test/other\n"),
        (base64.b64encode(ROOT).decode(), base64.b64encode(EMPTY_ROOT).decode()),
    ],
    ids=["size", "origin", "root"],
)
def test_changed_size_origin_or_root_fails_the_signature(old: str, new: str) -> None:
    note = signed()
    assert old in note
    with pytest.raises(CheckpointError, match="bad signature"):
        open_checkpoint(note.replace(old, new, 1), ORIGIN, KEY.public_key())


@given(st.integers(0, 63), st.integers(0, 7))
def test_any_flipped_signature_bit_fails(byte: int, bit: int) -> None:
    note = signed()
    head, encoded = note[:-1].rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[4 + byte] ^= 1 << bit
    tampered = f"{head} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(CheckpointError, match="bad signature"):
        open_checkpoint(tampered, ORIGIN, KEY.public_key())


def test_non_canonical_signature_encoding_is_malformed() -> None:
    head, encoded = signed()[:-1].rsplit(" ", 1)
    respelled = f"{head} {non_canonical_base64(base64.b64decode(encoded))}\n"
    with pytest.raises(CheckpointError, match="malformed note"):
        open_checkpoint(respelled, ORIGIN, KEY.public_key())


def test_wrong_key_finds_no_signature() -> None:
    with pytest.raises(CheckpointError, match="no signature by key"):
        open_checkpoint(signed(), ORIGIN, OTHER_KEY.public_key())
    with pytest.raises(CheckpointError, match="no signature by key"):
        open_checkpoint(signed(), "seatledger.test/other", KEY.public_key())


def test_signature_by_another_key_under_our_key_id_is_refused() -> None:
    # Same name and key id as ours, but made by another key: it must not pass as ours.
    note = signed()
    head, encoded = note[:-1].rsplit(" ", 1)
    key_id = base64.b64decode(encoded)[:4]
    forged = OTHER_KEY.sign(CHECKPOINT.body().encode())
    tampered = f"{head} {base64.b64encode(key_id + forged).decode()}\n"
    with pytest.raises(CheckpointError, match="bad signature"):
        open_checkpoint(tampered, ORIGIN, KEY.public_key())


@pytest.mark.parametrize(
    "body",
    [
        "just one line\n",
        f"{ORIGIN}\n1024\n",
        f"{ORIGIN}\n01024\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n\u0661\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n1024\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n1024\n{base64.b64encode(ROOT).decode().rstrip('=')}\n",
        f"{ORIGIN}\n1024\nnot base64!\n",
        f"{ORIGIN}\n1024\n{non_canonical_base64(ROOT)}\n",
        f"{ORIGIN}\n1024\n{base64.b64encode(ROOT).decode()}\n\nextension after a blank\n",
    ],
)
def test_signed_but_malformed_body_is_refused(body: str) -> None:
    note = sign_note(body, ORIGIN, KEY)
    with pytest.raises(CheckpointError, match="malformed checkpoint body"):
        open_checkpoint(note, ORIGIN, KEY.public_key())


@given(st.text(st.characters(exclude_categories=())))  # surrogates and controls too
def test_garbage_only_raises_checkpoint_error(garbage: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(garbage, ORIGIN, KEY.public_key())


@pytest.mark.parametrize(
    "garbage",
    ["", "\n", "\n\n", "\n\n\u2014 \n", "\ud800\n\n\u2014 k AAAAAAA=\n", "a\r\n\r\n"],
)
def test_garbage_examples_raise_checkpoint_error(garbage: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(garbage, ORIGIN, KEY.public_key())
    with pytest.raises(CheckpointError):
        open_checkpoint(signed() + garbage + "x", ORIGIN, KEY.public_key())


@given(st.data())
def test_any_edit_of_a_signed_note_is_refused(data: st.DataObject) -> None:
    note = signed()
    start = data.draw(st.integers(0, len(note)), label="start")
    end = data.draw(st.integers(start, len(note)), label="end")
    insert = data.draw(st.text(max_size=4), label="insert")
    edited = note[:start] + insert + note[end:]
    if edited == note:
        return
    with pytest.raises(CheckpointError):
        open_checkpoint(edited, ORIGIN, KEY.public_key())


@pytest.mark.parametrize("name", ["", "two words", "plus+sign", "new\nline"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        sign_checkpoint(CHECKPOINT, name, KEY)
    with pytest.raises(ValueError, match="key name"):
        verifier_key(name, KEY.public_key())
