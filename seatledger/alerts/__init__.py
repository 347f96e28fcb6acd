"""Alerts to people: what the master observes (notices, site cut-off and reconnection,
export and follower failures) sent to a webhook and by e-mail, as ``[alerts]`` configures.

A failing alert channel never holds up licensing: the master hands each alert to
:meth:`Dispatcher.submit`, which never waits; each channel's worker delivers from a bounded
queue with retries and backoff, and drops (and counts) what it cannot deliver.
"""

from seatledger.alerts._alert import Alert
from seatledger.alerts.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Channel,
    DeliveryError,
    EmailChannel,
    WebhookChannel,
    sign,
)
from seatledger.alerts.dispatcher import ChannelStatistics, Dispatcher
from seatledger.alerts.observer import child_alert, export_failed_alert, observed_alert
from seatledger.alerts.settings import AlertSettings, load_alert_settings

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Alert", "AlertSettings", "Channel",
           "ChannelStatistics", "DeliveryError", "Dispatcher", "EmailChannel", "WebhookChannel",
           "child_alert", "export_failed_alert", "load_alert_settings", "observed_alert", "sign"]
