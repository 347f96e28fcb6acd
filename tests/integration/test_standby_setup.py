"""Setting up a standby: the master certificate names the standby's address (at ``init``, or
re-issued from the same CA for an existing data directory), a bad name is one line and
creates nothing, and a copied data directory's certificate still verifies against the CA
the sites trust."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from seatledger.cli.main import main
from seatledger.config.ca import reissue_master_certificate
from transport.pki import certificate_from_pem


def _names(ca_dir: Path) -> tuple[set[str], set[str]]:
    cert = certificate_from_pem((ca_dir / "master.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(ip) for ip in san.get_values_for_type(x509.IPAddress)})


def test_init_names_the_standby_in_the_master_certificate(tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert main(["init", "--also-name", "standby.example", "--also-name", "10.0.0.12",
                 "--data-dir", str(root)]) == 0
    dns, ips = _names(root / "ca")
    assert {"localhost", "standby.example"} <= dns
    assert ips == {"127.0.0.1", "10.0.0.12"}


def test_a_bad_name_is_one_line_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    assert main(["init", "--also-name", "not a host", "--data-dir", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a host" in err[0], err
    assert not root.exists()


def test_an_existing_master_certificate_is_reissued_from_the_same_ca(tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert main(["init", "--data-dir", str(root)]) == 0
    ca_before = (root / "ca" / "ca.crt").read_bytes()
    names = reissue_master_certificate(root / "ca", ["standby.example", "::1"])
    assert "standby.example" in names and str(ipaddress.ip_address("::1")) in names
    dns, ips = _names(root / "ca")
    assert "standby.example" in dns and "::1" in ips
    assert (root / "ca" / "ca.crt").read_bytes() == ca_before  # sites' bundles stay valid
    ca = certificate_from_pem(ca_before)
    master = certificate_from_pem((root / "ca" / "master.crt").read_bytes())
    master.verify_directly_issued_by(ca)
    with pytest.raises(ValueError, match="neither"):
        reissue_master_certificate(root / "ca", ["bad/name"])


def test_ha_settings_are_read_and_checked(tmp_path: Path) -> None:
    from seatledger.config.settings import ConfigError, load_config
    from seatledger.master.lease import HaSettings, ha_settings

    root = tmp_path / "data"
    assert main(["init", "--data-dir", str(root)]) == 0
    assert ha_settings(load_config(root)) == HaSettings()
    toml = root / "seatledger.toml"
    text = toml.read_text()
    toml.write_text(text + '\n[ha]\nlease_seconds = 8\nrenew_seconds = 2\nname = "primary"\n')
    settings = ha_settings(load_config(root))
    assert (settings.lease_seconds, settings.renew_seconds, settings.name) == (8.0, 2.0, "primary")
    assert settings.holder("0.0.0.0:7600", 42) == "primary (pid 42)"
    toml.write_text(text + "\n[ha]\nlease_seconds = 1\nrenew_seconds = 1\n")
    with pytest.raises(ConfigError, match="renew_seconds"):
        ha_settings(load_config(root))
    toml.write_text(text + '\n[ha]\nlease_seconds = "5s"\n')
    with pytest.raises(ConfigError, match="lease_seconds"):
        ha_settings(load_config(root))
