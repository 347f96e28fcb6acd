"""Vendor-signed licences for tests: a vendor's home, and licences it signs for a data directory.

What a customer's operator does (``seatledger init --vendor-key``, ``licence request``,
``licence install``) goes through the real command line; the vendor's side goes through the
vendor's use cases, as ``seatledger vendor ...`` does.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ledger import parse_limits
from ledger.domain.values import GracePolicy
from seatledger.cli.main import main
from seatledger.config.settings import load_config
from seatledger.services.operator import licence_request
from seatledger.vendor.home import VendorConfig, init_vendor_home, load_vendor_config
from seatledger.vendor.licensing import issue_licence
from seatledger.vendor.registry import VendorStore


class Vendor:
    """A vendor's home under ``root`` with one customer, issuing licences to data directories."""

    def __init__(self, root: Path, customer: str = "Acme", *, destination: str | None = None,
                 host_key: str = ""):
        self.root = root
        self.customer = customer
        if not (root / "vendor.toml").exists():
            init_vendor_home(root, name="Test Vendor", destination=destination,
                             host_key=host_key)
        self.config: VendorConfig = load_vendor_config(root)
        with VendorStore.open(self.config) as store:
            if not store.has_customer(customer):
                store.add_customer(customer)

    @property
    def key_file(self) -> Path:
        return self.config.layout.licence_pub

    def init_master(self, data_dir: Path, *extra: str) -> None:
        """``seatledger init --vendor-key`` for a new data directory."""
        assert main(["init", "--data-dir", str(data_dir), "--vendor-key", str(self.key_file),
                     *extra]) == 0

    def licence_for(self, data_dir: Path, seats: str = "PRED=100,ACD=20", *,
                    out: Path | None = None, grace: int = 48 * 3600, rearm: int = 30 * 86400,
                    ceiling: int | None = None, campaigns: int | None = None,
                    total_pred_acd: int | None = None, expires_at: datetime | None = None,
                    tolerated_days: int | None = None, now: datetime | None = None) -> Path:
        """A licence signed for the master of ``data_dir`` (its request read directly)."""
        request = licence_request(load_config(data_dir))
        with VendorStore.open(self.config) as store:
            signed = issue_licence(
                self.config, store, customer=self.customer, request=request,
                limits=parse_limits(seats), total_pred_acd=total_pred_acd,
                policy=GracePolicy(grace, rearm, ceiling), campaigns=campaigns,
                expires_at=expires_at, tolerated_days=tolerated_days, now=now)
        path = out or data_dir.parent / f"{self.customer}-{signed.terms.serial:04d}.licence"
        path.write_text(signed.text, encoding="utf-8")
        return path

    def install(self, data_dir: Path, seats: str = "PRED=100,ACD=20", **terms: object) -> Path:
        """Issue a licence for ``data_dir`` and install it there (``seatledger licence install``)."""
        path = self.licence_for(data_dir, seats, **terms)  # type: ignore[arg-type]
        assert main(["licence", "install", "--data-dir", str(data_dir), str(path)]) == 0
        return path


def licensed_data_dir(tmp_path: Path, seats: str = "PRED=100,ACD=20",
                      name: str = "data") -> tuple[Path, Vendor]:
    """A new data directory with a vendor-signed licence installed."""
    vendor = Vendor(tmp_path / "vendor")
    root = tmp_path / name
    vendor.init_master(root)
    vendor.install(root, seats)
    return root, vendor
