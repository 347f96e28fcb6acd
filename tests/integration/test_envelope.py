"""The export envelope: age encryption plus a minisign signature, checked by our own code and
by the standard ``age`` and ``minisign`` tools (Debian packages; required, never skipped)."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path

import minisign
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporters.envelope import (
    AgeIdentity,
    SigningKey,
    decrypt_export,
    export_comment,
    generate_age_identity,
    generate_signing_key,
    load_signing_key,
    seal_export,
    verify_signature,
    write_age_identity,
)
from exporters.errors import DecryptError, KeyMaterialError, SignatureError

DAY = datetime.date(2024, 3, 1)
FILE = "audit-2024-03-01.jsonl.zst.age"
PAYLOAD = os.urandom(100_000)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    secret, public = folder / "master.key", folder / "master.pub"
    return generate_signing_key(secret, public), secret, public


@pytest.fixture(scope="module")
def vendor() -> AgeIdentity:
    return generate_age_identity()


@pytest.fixture(scope="module")
def sealed(keys: tuple[SigningKey, Path, Path], vendor: AgeIdentity) -> tuple[bytes, bytes]:
    return seal_export(PAYLOAD, [vendor.recipient], keys[0], file_name=FILE, day=DAY)


def _public_text(keys: tuple[SigningKey, Path, Path]) -> str:
    return keys[2].read_text()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the {name} tool is required (apt-get install {name})", pytrace=False)
    return found


# --- Our own round trip -------------------------------------------------------------------


def test_round_trip_verifies_then_decrypts(
    keys: tuple[SigningKey, Path, Path], vendor: AgeIdentity, sealed: tuple[bytes, bytes]
) -> None:
    ciphertext, signature = sealed

    comment = verify_signature(
        ciphertext, signature, _public_text(keys), expected_comment=export_comment(FILE, DAY)
    )

    assert comment == f"file:{FILE}\tday:2024-03-01"
    assert decrypt_export(ciphertext, vendor.file_text) == PAYLOAD
    assert PAYLOAD not in ciphertext


def test_every_recipient_can_decrypt(keys: tuple[SigningKey, Path, Path]) -> None:
    first, second = generate_age_identity(), generate_age_identity()
    ciphertext, _ = seal_export(
        b"records", [first.recipient, second.recipient], keys[0], file_name=FILE, day=DAY
    )

    assert decrypt_export(ciphertext, first.file_text) == b"records"
    assert decrypt_export(ciphertext, second.file_text) == b"records"


@settings(max_examples=50, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_altered_ciphertext_byte_fails_the_signature(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes], position: int, flip: int
) -> None:
    ciphertext, signature = sealed
    altered = bytearray(ciphertext)
    altered[position % len(altered)] ^= flip

    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(bytes(altered), signature, _public_text(keys))


def test_truncated_ciphertext_fails_the_signature(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes]
) -> None:
    ciphertext, signature = sealed
    with pytest.raises(SignatureError):
        verify_signature(ciphertext[:-1], signature, _public_text(keys))


def test_edited_trusted_comment_fails_the_signature(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes]
) -> None:
    ciphertext, signature = sealed
    moved = signature.replace(b"day:2024-03-01", b"day:2024-03-02")

    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(ciphertext, moved, _public_text(keys))


def test_signature_for_another_file_is_refused_when_a_comment_is_expected(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes]
) -> None:
    ciphertext, signature = sealed
    with pytest.raises(SignatureError, match="expected"):
        verify_signature(
            ciphertext,
            signature,
            _public_text(keys),
            expected_comment=export_comment(FILE, DAY + datetime.timedelta(days=1)),
        )


def test_wrong_public_key_fails(sealed: tuple[bytes, bytes], tmp_path: Path) -> None:
    other = generate_signing_key(tmp_path / "other.key", tmp_path / "other.pub")
    ciphertext, signature = sealed

    with pytest.raises(SignatureError, match="another key"):
        verify_signature(ciphertext, signature, other.public_key_text)


def test_malformed_signature_and_public_key_are_reported(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes]
) -> None:
    ciphertext, signature = sealed
    with pytest.raises(SignatureError, match="malformed"):
        verify_signature(ciphertext, signature[:40], _public_text(keys))
    with pytest.raises(KeyMaterialError):
        verify_signature(ciphertext, signature, "RWQnot-a-key")


def test_wrong_identity_fails_decryption(sealed: tuple[bytes, bytes]) -> None:
    with pytest.raises(DecryptError, match="not encrypted to this identity"):
        decrypt_export(sealed[0], generate_age_identity().file_text)


def test_damaged_ciphertext_fails_decryption(
    vendor: AgeIdentity, sealed: tuple[bytes, bytes]
) -> None:
    damaged = bytearray(sealed[0])
    damaged[-20] ^= 0x01
    with pytest.raises(DecryptError, match="damaged"):
        decrypt_export(bytes(damaged), vendor.file_text)


def test_bad_key_material_is_refused(keys: tuple[SigningKey, Path, Path]) -> None:
    with pytest.raises(KeyMaterialError, match="no age recipients"):
        seal_export(b"x", [], keys[0], file_name=FILE, day=DAY)
    with pytest.raises(KeyMaterialError, match="not an age"):
        seal_export(b"x", ["age1notakey"], keys[0], file_name=FILE, day=DAY)
    with pytest.raises(KeyMaterialError, match="no AGE-SECRET-KEY"):
        decrypt_export(b"x", "# nothing here\n")


# --- Key files ------------------------------------------------------------------------------


def test_key_files_are_private_reloadable_and_never_overwritten(
    keys: tuple[SigningKey, Path, Path], vendor: AgeIdentity, tmp_path: Path
) -> None:
    key, secret, public = keys
    assert secret.stat().st_mode & 0o777 == 0o600
    assert public.read_text() == key.public_key_text

    reloaded = load_signing_key(secret)
    signature = reloaded.sign(b"data", "c")
    assert verify_signature(b"data", signature, public.read_text()) == "c"

    with pytest.raises(KeyMaterialError, match="already exists"):
        generate_signing_key(secret, tmp_path / "new.pub")
    identity_file = tmp_path / "vendor.txt"
    write_age_identity(identity_file, vendor)
    assert identity_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyMaterialError, match="already exists"):
        write_age_identity(identity_file, vendor)


def test_password_protected_or_damaged_signing_keys_are_refused(tmp_path: Path) -> None:
    protected = minisign.KeyPair.generate().secret_key
    protected.encrypt("pw", opslimit=32768, memlimit=8 * 1024 * 1024)
    (tmp_path / "protected.key").write_bytes(bytes(protected))
    with pytest.raises(KeyMaterialError, match="password-protected"):
        load_signing_key(tmp_path / "protected.key")

    with pytest.raises(KeyMaterialError, match="cannot read"):
        load_signing_key(tmp_path / "absent.key")
    (tmp_path / "junk.key").write_text("untrusted comment: x\nnot base64\n")
    with pytest.raises(KeyMaterialError, match="not a minisign secret key"):
        load_signing_key(tmp_path / "junk.key")


def test_age_identity_repr_hides_the_secret(vendor: AgeIdentity) -> None:
    assert vendor.secret not in repr(vendor)


# --- The standard tools accept what we produce ----------------------------------------------


def _write_sealed(folder: Path, sealed: tuple[bytes, bytes]) -> Path:
    path = folder / FILE
    path.write_bytes(sealed[0])
    Path(f"{path}.minisig").write_bytes(sealed[1])
    return path


def test_age_tool_decrypts_the_export(
    vendor: AgeIdentity, sealed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    identity = tmp_path / "vendor.txt"
    write_age_identity(identity, vendor)
    path = _write_sealed(tmp_path, sealed)

    result = subprocess.run(
        [_tool("age"), "-d", "-i", str(identity), str(path)], capture_output=True, check=False
    )

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == PAYLOAD


def test_minisign_tool_verifies_the_export_and_shows_the_comment(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    path = _write_sealed(tmp_path, sealed)

    result = subprocess.run(
        [_tool("minisign"), "-V", "-p", str(keys[2]), "-m", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"Trusted comment: file:{FILE}\tday:2024-03-01" in result.stdout


def test_minisign_tool_rejects_an_altered_export(
    keys: tuple[SigningKey, Path, Path], sealed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    path = _write_sealed(tmp_path, (sealed[0][:-1] + bytes([sealed[0][-1] ^ 1]), sealed[1]))

    result = subprocess.run(
        [_tool("minisign"), "-V", "-p", str(keys[2]), "-m", str(path)],
        capture_output=True,
        check=False,
    )

    assert result.returncode != 0


def test_minisign_tool_signs_with_our_key_file(
    keys: tuple[SigningKey, Path, Path], tmp_path: Path
) -> None:
    """Our password-less secret key file is one the standard tool can use too."""
    data = tmp_path / "data"
    data.write_bytes(b"signed by the minisign tool")

    result = subprocess.run(
        [_tool("minisign"), "-S", "-s", str(keys[1]), "-m", str(data), "-t", "by the tool"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    signature = Path(f"{data}.minisig").read_bytes()
    assert verify_signature(data.read_bytes(), signature, _public_text(keys)) == "by the tool"


def test_key_made_by_minisign_tool_without_password_loads_and_signs(tmp_path: Path) -> None:
    secret, public = tmp_path / "tool.key", tmp_path / "tool.pub"
    result = subprocess.run(
        [_tool("minisign"), "-G", "-W", "-s", str(secret), "-p", str(public)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    key = load_signing_key(secret)

    assert verify_signature(b"x", key.sign(b"x", "c"), public.read_text()) == "c"
