"""The parsers' copies in :mod:`seatledger.cli._names` (kept there so that ``--help`` loads no
heavy package) equal the values they copy."""

from __future__ import annotations

import argparse

from seatledger.cli import _names


def test_the_report_dimensions_and_projection_names_match_the_read_models() -> None:
    import projections

    assert _names.DIMENSIONS == projections.DIMENSIONS
    assert _names.PROJECTION_NAMES == tuple(projections.PROJECTIONS)


def test_the_billing_formats_and_expiry_window_match_the_vendor_reports() -> None:
    from seatledger.vendor import reports

    assert _names.BILLING_FORMATS == reports.BILLING_FORMATS
    assert _names.EXPIRY_WINDOW_DAYS == reports.EXPIRY_WINDOW_DAYS


def test_the_licence_issue_grace_defaults_match_the_ledger_s() -> None:
    from ledger import GracePolicy

    policy = GracePolicy()
    assert _names.DEFAULT_GRACE_SECONDS == policy.grace_seconds
    assert _names.DEFAULT_REARM_SECONDS == policy.rearm_seconds


def test_the_log_formats_are_the_daemons_own() -> None:
    """(``seatledger.daemons.logs`` is light: the parser imports it, no copy.)"""
    from seatledger.cli import daemons
    from seatledger.daemons import logs

    assert daemons.LOG_FORMATS is logs.LOG_FORMATS


def test_the_parsers_offer_the_copied_choices() -> None:
    from seatledger.cli.main import build_parser

    def child(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
        for name in path:
            [action] = [a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction)]
            parser = action.choices[name]
        return parser

    def option(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
        [action] = [a for a in parser._actions if a.dest == dest]
        return action

    import projections
    from ledger import GracePolicy
    from seatledger.vendor import reports

    parser = build_parser()
    usage = child(parser, "report", "usage")
    assert tuple(option(usage, "by").choices or ()) == projections.DIMENSIONS
    rebuild = child(parser, "projections", "rebuild")
    assert list(option(rebuild, "name").choices or ()) == list(projections.PROJECTIONS)
    billing = child(parser, "vendor", "report", "billing")
    assert tuple(option(billing, "format").choices or ()) == reports.BILLING_FORMATS
    expiring = child(parser, "vendor", "report", "expiring")
    assert option(expiring, "days").default == reports.EXPIRY_WINDOW_DAYS
    issue = child(parser, "vendor", "licence", "issue")
    assert option(issue, "grace").default == GracePolicy().grace_seconds
    assert option(issue, "rearm").default == GracePolicy().rearm_seconds
