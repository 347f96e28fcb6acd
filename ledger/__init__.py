"""The licensing ledger: licences, sites, seats, the grace policy, and a sealed event store.

Synchronous; imports stdlib, attrs, eventsourcing, sqlalchemy and cryptography only.
"""

from ledger.application import ImportedRecord, LedgerApp
from ledger.clock import Clock, ManualClock, SystemClock
from ledger.domain.commands import (
    AcquireSeat,
    AssessSeat,
    Command,
    ConnectSite,
    DisconnectSite,
    LinkUpstream,
    ReleaseSeat,
    SyncSite,
    Tick,
)
from ledger.domain.licence import LICENCE_ID, Licence, Seat, Site
from ledger.domain.notices import grace_opened_text
from ledger.domain.outcomes import (
    UPSTREAM_PREFIX,
    Assessment,
    Failure,
    Grant,
    HeldSeat,
    Notice,
    OfflineEvent,
    Outcome,
    Refusal,
    Release,
    SyncResult,
)
from ledger.domain.pools import Pool, PoolEventKind, PoolState, apply_pool_event, within_local_limit
from ledger.domain.values import (
    AGENT_CLASSES,
    GracePolicy,
    RefusalReason,
    ReleaseReason,
    Severity,
    SiteState,
    check_site_name,
    parse_duration,
    parse_limits,
)
from ledger.errors import (
    BadSiteNameError,
    CheckpointError,
    KeyFileError,
    LedgerError,
    LicenceError,
    LicenceNotFoundError,
    LicenceTooSmallError,
    SealError,
    SiteExistsError,
    StoreError,
    UnknownSeatError,
    UnknownSiteError,
)
from ledger.persistence.store import create_key_file, load_key_file
from ledger.seal.seal import Problem, VerifyReport

__all__ = [
    "AGENT_CLASSES", "LICENCE_ID", "AcquireSeat", "BadSiteNameError", "CheckpointError", "Clock", "Command",
    "ConnectSite", "DisconnectSite", "Failure", "Grant", "GracePolicy", "HeldSeat", "ImportedRecord",
    "KeyFileError", "LedgerApp", "LedgerError", "Licence", "LicenceError",
    "LicenceNotFoundError", "LicenceTooSmallError", "ManualClock", "Notice", "OfflineEvent",
    "Problem", "Refusal", "RefusalReason", "Release", "ReleaseReason", "ReleaseSeat",
    "SealError", "Seat", "Severity", "Site", "SiteExistsError", "StoreError", "SyncResult",
    "SyncSite", "SystemClock", "Tick", "UnknownSeatError", "UnknownSiteError", "VerifyReport",
    "create_key_file", "load_key_file", "parse_duration", "parse_limits",
    "Outcome", "Pool", "PoolEventKind", "PoolState", "SiteState", "apply_pool_event",
    "check_site_name", "grace_opened_text", "within_local_limit",
    "UPSTREAM_PREFIX", "Assessment", "AssessSeat", "LinkUpstream",
]
