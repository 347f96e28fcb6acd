from .build import BuiltExport, build_day
from .chain import ChainState
from .daily import DailyExport, DayResult, DayStatus, due_days, exported_days, first_day
from .envelope import (
    AgeIdentity,
    SigningKey,
    decrypt_export,
    generate_age_identity,
    generate_signing_key,
    load_signing_key,
    verify_signature,
    write_age_identity,
)
from .errors import (
    BuildError,
    ExportConfigError,
    ExportError,
    ReplayError,
    SinkError,
    VerifyError,
)
from .manifest import FORMAT, Manifest, decode_manifest
from .naming import ExportNames
from .outbox import Outbox
from .replay import ImportSummary, import_verified
from .settings import ExportSettings, SinkSettings, make_sink, parse_export_settings
from .verify import Verifier, VerifyReport, locate

__all__ = [
    "FORMAT",
    "AgeIdentity",
    "BuildError",
    "BuiltExport",
    "ChainState",
    "DailyExport",
    "DayResult",
    "DayStatus",
    "ExportConfigError",
    "ExportError",
    "ExportNames",
    "ExportSettings",
    "ImportSummary",
    "Manifest",
    "Outbox",
    "ReplayError",
    "SigningKey",
    "SinkError",
    "SinkSettings",
    "Verifier",
    "VerifyError",
    "VerifyReport",
    "build_day",
    "decode_manifest",
    "decrypt_export",
    "due_days",
    "exported_days",
    "first_day",
    "generate_age_identity",
    "generate_signing_key",
    "import_verified",
    "load_signing_key",
    "locate",
    "make_sink",
    "parse_export_settings",
    "verify_signature",
    "write_age_identity",
]
