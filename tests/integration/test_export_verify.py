"""The recipient's side: verifying a run of exports, and replaying it into a ledger.

Tampering is tried two ways: by someone without the master's keys (any changed byte breaks a
signature) and, harder, by someone who can re-sign with the master's export key (then the
Merkle checks must catch what the signatures cannot).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporters import (
    AgeIdentity,
    DailyExport,
    ExportNames,
    Outbox,
    ReplayError,
    SigningKey,
    Verifier,
    VerifyError,
    decode_manifest,
    generate_age_identity,
    generate_signing_key,
    import_verified,
)
from exporters.envelope import export_comment, seal_export
from exporters.manifest import Manifest, encode_manifest
from exporters.sinks import LocalSink
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat

DAY1 = date(2026, 3, 2)
DAYS = [DAY1 + timedelta(i) for i in range(3)]


@pytest.fixture(scope="module")
def vendor() -> AgeIdentity:
    return generate_age_identity()


@pytest.fixture
def export_key(tmp_path: Path) -> SigningKey:
    return generate_signing_key(tmp_path / "export.key", tmp_path / "export.pub")


@pytest.fixture
def received(ledger: LedgerApp, clock: ManualClock, tmp_path: Path, vendor: AgeIdentity,
             export_key: SigningKey) -> Path:
    """Three days of exports, as they arrived in the vendor's folder."""
    for day in range(3):
        users = [f"d{day}u{i}" for i in range(12)]
        ledger.execute([AcquireSeat("north", u, "PRED", "acme", "outbound") for u in users])
        clock.advance(hours=4)
        ledger.execute([AcquireSeat("south", "s1", "ACD", "acme", "inbound")])
        ledger.execute([ReleaseSeat("north", u) for u in users[:8]])
        ledger.execute([ReleaseSeat("south", "s1")])
        clock.advance(hours=20)
    folder = tmp_path / "received"
    folder.mkdir()
    DailyExport(ledger, LocalSink(folder), Outbox(tmp_path / "exports"),
                recipients=[vendor.recipient], signing_key=export_key).run(DAYS[-1])
    return folder


def verifier(tmp_path: Path, vendor: AgeIdentity | None = None, **kwargs: object) -> Verifier:
    return Verifier((tmp_path / "export.pub").read_text(),
                    identity_text=vendor.file_text if vendor else None, **kwargs)  # type: ignore[arg-type]


def names(day: date, origin: str = "seatledger") -> ExportNames:
    return ExportNames(origin, day)


def fails(tmp_path: Path, vendor: AgeIdentity, folder: Path) -> str:
    with pytest.raises(VerifyError) as raised:
        verifier(tmp_path, vendor).verify([folder])
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- Re-signing with the master's export key ----------------------------------------------


def resign_manifest(folder: Path, day: date, key: SigningKey,
                    change: Callable[[Manifest], Manifest]) -> None:
    n = names(day)
    manifest = change(decode_manifest((folder / n.manifest).read_bytes()))
    data = encode_manifest(manifest)
    (folder / n.manifest).write_bytes(data)
    (folder / n.manifest_signature).write_bytes(key.sign(data, export_comment(n.manifest, day)))


def rewrite_records(folder: Path, day: date, key: SigningKey, vendor: AgeIdentity,
                    change: Callable[[list[bytes]], list[bytes]]) -> None:
    """Decrypt a day, change its lines, and seal and sign it all again, manifest included."""
    from exporters.envelope import decrypt_export

    n = names(day)
    plain = gzip.decompress(decrypt_export((folder / n.data).read_bytes(), vendor.file_text))
    jsonl = b"".join(change(plain.splitlines(keepends=True)))
    sealed = seal_export(gzip.compress(jsonl), [vendor.recipient], key, file_name=n.data,
                         day=day)
    (folder / n.data).write_bytes(sealed.ciphertext)
    (folder / n.data_signature).write_bytes(sealed.signature)

    def new_hashes(m: Manifest) -> Manifest:
        return msgspec.structs.replace(m, data=msgspec.structs.replace(
            m.data, size=len(sealed.ciphertext),
            sha256=hashlib.sha256(sealed.ciphertext).hexdigest(), jsonl_size=len(jsonl),
            jsonl_sha256=hashlib.sha256(jsonl).hexdigest()))

    resign_manifest(folder, day, key, new_hashes)


def set_field(line: bytes, key: str, value: object) -> bytes:
    record = json.loads(line)
    record[key] = value
    return json.dumps(record).encode() + b"\n"


# --- Verifying ----------------------------------------------------------------------------


def test_intact_exports_verify_as_one_chain_from_the_first_export(
    received: Path, tmp_path: Path, vendor: AgeIdentity, ledger: LedgerApp
) -> None:
    report = verifier(tmp_path, vendor).verify([received])

    assert [d.manifest.day for d in report.days] == DAYS
    assert report.from_first_export and report.records_checked
    last = report.days[-1].manifest
    assert report.records == last.checkpoint.size == last.records.last_id
    assert report.as_dict()["last_day"] == "2026-03-04"


def test_any_file_of_a_day_names_that_day(received: Path, tmp_path: Path,
                                          vendor: AgeIdentity) -> None:
    n = names(DAYS[1])

    report = verifier(tmp_path, vendor).verify(
        [received / names(DAYS[0]).data, received / n.manifest_signature,
         received / names(DAYS[2]).manifest])

    assert [d.manifest.day for d in report.days] == DAYS


def test_without_the_identity_the_chain_is_checked_but_not_the_records(
    received: Path, tmp_path: Path
) -> None:
    report = verifier(tmp_path).verify([received])

    assert not report.records_checked
    with pytest.raises(VerifyError, match="an age identity is needed"):
        list(verifier(tmp_path).records(report.days[0]))


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("data", "is not the file the manifest names"),
        ("data_signature", "signature"),
        ("manifest", "the signature does not match the file"),
        ("manifest_signature", "signature"),
    ],
)
def test_one_changed_byte_in_any_file_fails(
    received: Path, tmp_path: Path, vendor: AgeIdentity, file: str, reason: str
) -> None:
    path = received / getattr(names(DAYS[1]), file)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    message = fails(tmp_path, vendor, received)

    assert message.startswith("2026-03-03: ")
    assert reason in message


def test_a_missing_file_is_named(received: Path, tmp_path: Path, vendor: AgeIdentity) -> None:
    (received / names(DAYS[1]).data_signature).unlink()

    assert fails(tmp_path, vendor, received) == (
        f"2026-03-03: {names(DAYS[1]).data_signature} is missing")


def test_a_day_missing_from_the_chain_fails(received: Path, tmp_path: Path,
                                            vendor: AgeIdentity) -> None:
    for name in names(DAYS[1]).upload_order:
        (received / name).unlink()

    assert fails(tmp_path, vendor, received) == (
        "2026-03-04: the export of 2026-03-03 is missing "
        "(the chain goes 2026-03-02 -> 2026-03-03 -> 2026-03-04)")


def test_a_dropped_record_fails_even_when_everything_is_re_signed(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    rewrite_records(received, DAYS[1], export_key, vendor, lambda lines: lines[:5] + lines[6:])

    message = fails(tmp_path, vendor, received)

    first = decode_manifest((received / names(DAYS[1]).manifest).read_bytes()).records.first_id
    assert message == (f"2026-03-03: record {first + 5}: missing (the next record in the file "
                       f"is {first + 6})")


def test_a_dropped_last_record_fails_even_when_everything_is_re_signed(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    rewrite_records(received, DAYS[1], export_key, vendor, lambda lines: lines[:-1])

    assert "the file holds" in fails(tmp_path, vendor, received)


def test_reordered_records_fail(received: Path, tmp_path: Path, vendor: AgeIdentity,
                                export_key: SigningKey) -> None:
    rewrite_records(received, DAYS[0], export_key, vendor,
                    lambda lines: [lines[0], lines[2], lines[1], *lines[3:]])

    assert "record 2: missing" in fails(tmp_path, vendor, received)


def test_swapped_records_fail_against_the_signed_root(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    """Two records trade places, each keeping its position's id: every line still reads
    well, but the leaves are not the ones the master sealed."""

    def swap(lines: list[bytes]) -> list[bytes]:
        a, b = json.loads(lines[3]), json.loads(lines[4])
        a["id"], b["id"] = b["id"], a["id"]
        a["version"], b["version"] = b["version"], a["version"]
        return [*lines[:3], json.dumps(b).encode() + b"\n", json.dumps(a).encode() + b"\n",
                *lines[5:]]

    rewrite_records(received, DAYS[2], export_key, vendor, swap)

    assert "the records do not give the signed root" in fails(tmp_path, vendor, received)


def test_readable_fields_that_disagree_with_the_payload_fail(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    def rename_user(lines: list[bytes]) -> list[bytes]:
        record = json.loads(lines[2])
        record["fields"]["user"] = "someone-else"
        return [*lines[:2], json.dumps(record).encode() + b"\n", *lines[3:]]

    rewrite_records(received, DAYS[0], export_key, vendor, rename_user)

    assert "record 3: fields disagree with its payload" in fails(tmp_path, vendor, received)


def test_a_record_moved_to_another_day_fails(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    rewrite_records(received, DAYS[0], export_key, vendor,
                    lambda lines: [set_field(lines[0], "recorded_at", "2026-03-01T23:00:00Z"),
                                   *lines[1:]])

    assert "record 1: recorded_at 2026-03-01T23:00:00+00:00 disagrees with its payload" in fails(
        tmp_path, vendor, received)


def test_a_rewritten_history_fails_the_consistency_proof(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    resign_manifest(received, DAYS[1], export_key, lambda m: msgspec.structs.replace(
        m, consistency_proof=[os.urandom(32) for _ in m.consistency_proof]))

    assert "consistency proof" in fails(tmp_path, vendor, received)


def test_a_replaced_manifest_of_the_day_before_breaks_the_link(
    received: Path, tmp_path: Path, vendor: AgeIdentity, export_key: SigningKey
) -> None:
    resign_manifest(received, DAYS[0], export_key, lambda m: msgspec.structs.replace(
        m, created_at=m.created_at + timedelta(seconds=1)))

    assert fails(tmp_path, vendor, received) == (
        "2026-03-03: follows another manifest of 2026-03-02 than the one given (SHA-256 differs)")


def test_exports_signed_by_another_key_fail(received: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    generate_signing_key(other / "export.key", other / "export.pub")

    with pytest.raises(VerifyError, match="signed by another key"):
        verifier(other).verify([received])


def test_a_pinned_checkpoint_key_must_match(received: Path, tmp_path: Path) -> None:
    from ledger.seal.checkpoint import verifier_key

    stranger = verifier_key("seatledger", Ed25519PrivateKey.generate().public_key())

    with pytest.raises(VerifyError, match="the checkpoint key differs"):
        verifier(tmp_path, checkpoint_key=stranger).verify([received])


def test_the_wrong_identity_cannot_open_the_records(received: Path, tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="not encrypted to this identity"):
        verifier(tmp_path, generate_age_identity()).verify([received])


def test_files_that_are_not_exports_are_refused(received: Path, tmp_path: Path,
                                                vendor: AgeIdentity) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")

    with pytest.raises(VerifyError, match="notes.txt: not an export file"):
        verifier(tmp_path, vendor).verify([stray])
    with pytest.raises(VerifyError, match="no such file"):
        verifier(tmp_path, vendor).verify([tmp_path / "absent.manifest.json"])


# --- Importing ----------------------------------------------------------------------------


@pytest.fixture
def recipient(tmp_path: Path) -> LedgerApp:
    app = LedgerApp(f"sqlite:///{tmp_path}/vendor.db", key=os.urandom(32),
                    signing_key=Ed25519PrivateKey.generate())
    yield app  # type: ignore[misc]
    app.close()


def same_history(master: LedgerApp, recipient: LedgerApp, size: int) -> None:
    assert recipient.max_id() == size
    assert [(n.id, n.topic, p) for n, p in recipient.records()] == [
        (n.id, n.topic, p) for n, p in master.records(1, size)]


def test_import_reproduces_the_masters_history_seal_and_state(
    received: Path, tmp_path: Path, vendor: AgeIdentity, ledger: LedgerApp, recipient: LedgerApp
) -> None:
    check = verifier(tmp_path, vendor)

    summary = import_verified(recipient, check, check.verify([received]))

    assert summary.imported == tuple(DAYS)
    size = summary.tree_size
    same_history(ledger, recipient, size)
    assert recipient.sealer.frontier.root() == summary.root
    exported_since = [e for _, e in ledger.events(size + 1)]
    assert all(type(e).__name__ in ("AuditTrailExported", "AuditCheckpointSigned")
               for e in exported_since)
    assert recipient.licence.pools == ledger.licence.pools
    assert recipient.licence.sites == ledger.licence.sites


def test_import_day_by_day_continues_where_the_ledger_ends(
    received: Path, tmp_path: Path, vendor: AgeIdentity, ledger: LedgerApp, recipient: LedgerApp
) -> None:
    check = verifier(tmp_path, vendor)
    first = import_verified(recipient, check, check.verify(
        [received / names(d).manifest for d in DAYS[:2]]))

    rest = import_verified(recipient, check, check.verify([received]))
    again = import_verified(recipient, check, check.verify([received]))

    assert first.imported == tuple(DAYS[:2])
    assert (rest.imported, rest.skipped) == ((DAYS[2],), tuple(DAYS[:2]))
    assert (again.imported, again.records) == ((), 0)
    same_history(ledger, recipient, rest.tree_size)


def test_a_fresh_ledger_needs_the_exports_from_the_first_on(
    received: Path, tmp_path: Path, vendor: AgeIdentity, recipient: LedgerApp
) -> None:
    later = tmp_path / "later"
    later.mkdir()
    for name in names(DAYS[1]).upload_order + names(DAYS[2]).upload_order:
        shutil.copy(received / name, later / name)
    check = verifier(tmp_path, vendor)

    with pytest.raises(ReplayError, match="holds 0 records: give the exports from its first"):
        import_verified(recipient, check, check.verify([later]))
    assert recipient.max_id() == 0


def test_import_into_a_ledger_with_another_history_is_refused(
    received: Path, tmp_path: Path, vendor: AgeIdentity, recipient: LedgerApp
) -> None:
    recipient.issue_licence(customer="Other", limits={"PRED": 100, "ACD": 20})
    recipient.enrol_site("north")
    check = verifier(tmp_path, vendor)
    report = check.verify([received])

    with pytest.raises(ReplayError, match="not the history"):
        import_verified(recipient, check, report)


def test_only_exports_whose_records_were_checked_are_imported(
    received: Path, tmp_path: Path, recipient: LedgerApp
) -> None:
    check = verifier(tmp_path)

    with pytest.raises(ReplayError, match="only after their records were verified"):
        import_verified(recipient, check, check.verify([received]))
