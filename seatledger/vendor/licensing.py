"""The vendor issues licences: terms bound to one customer master, signed, registered.

Each licence gets the next serial of its customer inside the transaction that records it,
so serials only grow, and two issues at once cannot share one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ledger.domain.terms import ExportObligation, LicenceTerms, check_terms
from ledger.domain.values import DEFAULT_POLICY, GracePolicy
from seatledger.config.licence_file import LicenceRequest, SignedLicence, open_licence, sign_licence
from seatledger.vendor.home import VendorConfig
from seatledger.vendor.registry import RegistryError, VendorStore

DEFAULT_DAYS = 365

__all__ = ["DEFAULT_DAYS", "issue_licence", "licence_id_for"]


def licence_id_for(customer: str, serial: int) -> str:
    prefix = re.sub(r"[^A-Z0-9]+", "-", customer.upper()).strip("-")[:24] or "LIC"
    return f"{prefix}-{serial:04d}"


def issue_licence(config: VendorConfig, store: VendorStore, *, customer: str,
                  request: LicenceRequest, limits: Mapping[str, int],
                  total_pred_acd: int | None = None, policy: GracePolicy = DEFAULT_POLICY,
                  campaigns: int | None = None, expires_at: datetime | None = None,
                  tolerated_days: int | None = None,
                  now: datetime | None = None,
                  hours: Mapping[str, int] | None = None) -> SignedLicence:
    """Sign and register the next licence of ``customer`` for the master of ``request``;
    ``hours``: agent-hours per class, which the master adds to what is left.

    Raises:
        RegistryError: the customer is unknown. LicenceError (incl. too small, dates): the
        terms break a licence rule; nothing is recorded then.
    """
    if not store.has_customer(customer):
        raise RegistryError(f"unknown customer {customer!r}: add it first with "
                            f"'seatledger vendor customer add {customer!r}'")
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    key = config.signing_key()
    with store.transaction() as conn:
        serial = store.next_serial(conn, customer)
        terms = LicenceTerms(
            customer=customer,
            licence_id=licence_id_for(customer, serial),
            serial=serial,
            issued_at=issued_at,
            expires_at=(expires_at or issued_at + timedelta(days=DEFAULT_DAYS)),
            limits=dict(limits),
            total_pred_acd=total_pred_acd,
            policy=policy,
            campaigns=campaigns,
            hours=dict(hours or {}),
            master_origin=request.origin,
            master_key=request.fingerprint,
            export=ExportObligation(
                (config.recipient(),),
                tolerated_days or config.tolerated_days,
                config.export_destination,
                config.export_host_key,
            ),
        )
        check_terms(terms)
        text = sign_licence(terms, key)
        signed = open_licence(text.encode("utf-8"), key.public_key_text)
        store.record_licence(conn, signed, request.export_key)
    return signed
