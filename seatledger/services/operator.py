"""The operator's commands (licence and sites), applied by whoever may write the store now.

While a master runs it is the store's only writer, so a command goes to it over its admin
socket and is committed in its batches; with no master running the command takes the data
directory's lock and writes the store itself. Either way the caller gets the same answers.

On a PostgreSQL ledger shared by several masters, the active master (the lease's holder) is
the writer: a standby's admin socket refuses, naming it, and with no master on this host a
command still refuses while another host's master holds the lease.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ledger import LedgerApp, LedgerError
from seatledger.config.keys import export_public_key_text, load_signing_key
from seatledger.config.licence_file import LicenceRequest
from seatledger.config.lock import DataDirBusyError, DataDirLock
from seatledger.config.settings import Config
from seatledger.config.store import open_ledger
from seatledger.master.admin import OPERATIONS, STANDBY
from seatledger.master.lease import LeaseError, LeaseState, is_postgres, read_lease
from seatledger.services.errors import Refused
from transport.local_socket import StaleSocketError, request


class OperatorError(LedgerError):
    """The running master refused an operator's command (its message is the master's)."""


class LedgerPort(Protocol):
    """What an operator can do to the ledger; each call returns JSON-ready summaries."""

    def call(self, op: str, **args: Any) -> dict[str, Any]: ...


class DirectPort:
    """No master runs: this process holds the lock and writes the store itself."""

    def __init__(self, app: LedgerApp):
        self.app = app

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        return OPERATIONS[op](self.app, args)


class AdminPort:
    """A master runs: ask it over its admin socket."""

    def __init__(self, config: Config, holder: str):
        self.path = config.layout.admin_socket
        self.holder = holder

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        try:
            answer = request(self.path, {"op": op, "args": args})
        except (FileNotFoundError, StaleSocketError):
            raise Refused(f"{self.holder} holds the data directory but its admin socket "
                          f"{self.path} does not answer; try again when it has started") from None
        except OSError as e:
            raise Refused(f"cannot reach the master's admin socket {self.path}: "
                          f"{e.strerror or e}") from None
        if not answer.get("ok") and answer.get("reason") == STANDBY:
            raise Refused(str(answer.get("detail")))
        if not answer.get("ok"):
            raise OperatorError(str(answer.get("detail") or answer.get("reason")))
        return answer


@contextmanager
def operator_port(config: Config) -> Iterator[LedgerPort]:
    """The way to the ledger for one operator command (see the module docstring)."""
    lock = DataDirLock(config.layout.lock, "operator command", directory=config.root)
    try:
        lock.acquire()
    except DataDirBusyError as e:
        yield AdminPort(config, e.holder)
        return
    try:
        active = active_master(config)
        if active is not None and active.live and active.holder:
            raise Refused(f"the active master is {active.describe()}: run operator commands "
                          "on its host")
        with open_ledger(config) as app:
            app.start_trial()  # a data directory of an earlier version may hold no history
            yield DirectPort(app)
    finally:
        lock.release()


def active_master(config: Config) -> LeaseState | None:
    """The lease of a PostgreSQL ledger (who is active, since when); None for another store
    or when no master ever held it.

    Raises:
        Refused: the database cannot be reached.
    """
    if not is_postgres(config.store_url):
        return None
    try:
        return read_lease(config.store_url)
    except LeaseError as e:
        raise Refused(str(e)) from None


def install_licence(port: LedgerPort, config: Config, path: Path) -> dict[str, Any]:
    """Install the vendor-signed licence file at ``path``: its signature checked against the
    vendor key pinned at ``init``, then (in the store's writer) its binding, serial and dates.
    Returns ``{"installed": bool, "licence": summary}``; installing the installed file again
    records nothing.

    Raises:
        Refused: no vendor key pinned, or the file cannot be read. LicenceError: refused.
    """
    vendor_key = pinned_vendor_key(config)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Refused(f"cannot read licence file {path}: {e.strerror}") from None
    # Verified (again) and recorded -- installed, or refused -- by the store's writer.
    return port.call("licence.install", file_b64=base64.b64encode(data).decode("ascii"),
                     vendor_key=vendor_key)


def pinned_vendor_key(config: Config) -> str:
    """The vendor's public key this master pinned at ``init --vendor-key``."""
    path = config.layout.vendor_key
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise Refused(f"this master pinned no vendor key ({path} is missing): it was created "
                      "without 'seatledger init --vendor-key FILE'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Refused(f"cannot read the pinned vendor key {path}: {e}") from None


def licence_request(config: Config) -> LicenceRequest:
    """What the vendor needs to bind a licence to this master."""
    signing = load_signing_key(config.layout.signing_key).public_key()
    return LicenceRequest.for_master(config.origin, signing,
                                     export_public_key_text(config.layout))


def show_licence(port: LedgerPort) -> dict[str, Any]:
    summary: dict[str, Any] = port.call("licence.show")["licence"]
    return summary


def list_sites(port: LedgerPort) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = port.call("site.list")["sites"]
    return result


def revoke_site(port: LedgerPort, name: str) -> int:
    return int(port.call("site.revoke", name=name)["released"])


def site_seats(port: LedgerPort, name: str) -> dict[str, Any]:
    """Who holds which seat at site ``name``, since when, and the site's state
    (:func:`ledger.domain.summaries.seats_summary`). Raises UnknownSiteError (an
    OperatorError through a running master)."""
    answer = dict(port.call("site.seats", name=name))
    answer.pop("ok", None)  # the admin socket's, not the summary's
    return answer


def release_seats(port: LedgerPort, name: str, user: str | None) -> list[dict[str, Any]]:
    """Release ``user``'s seat at site ``name`` (None: every seat held there), recorded with
    reason ``operator``; a running master tells the site. Returns the seats released.
    Raises UnknownSiteError or UnknownSeatError (OperatorError through a running master)."""
    args: dict[str, Any] = {"all": True} if user is None else {"user": user}
    released: list[dict[str, Any]] = port.call("site.release", name=name, **args)["released"]
    return released


__all__ = ["AdminPort", "active_master", "DirectPort", "LedgerPort", "OperatorError", "install_licence",
           "licence_request", "list_sites", "operator_port", "pinned_vendor_key", "release_seats",
           "revoke_site", "show_licence", "site_seats"]
