"""What the runner needs from a read model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from sqlalchemy import Connection, Table

from .labels import Labels

Handler = Callable[[int, Any], None]


class Projection(ABC):
    """A read model fed from the notification log.

    The runner decodes each record once and calls the handler registered for the event's
    class with ``(notification_id, event)``. Handlers only change memory; :meth:`flush` then
    writes what the batch changed, inside the transaction that also moves the tracked
    position. After a failed batch the runner discards the memory state and calls
    :meth:`load` again, so the tables are the only truth.

    Memory holds labels (sites, users, ...) in clear; :meth:`flush` seals them with
    ``labels`` on the way into the tables and :meth:`load` opens them on the way back. The
    runner always passes the labels of its ledger; without them (a projection driven in
    memory only, as some unit tests do) labels would be stored in clear.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]

    def __init__(self, labels: Labels | None = None) -> None:
        self.labels = labels if labels is not None else Labels(None)

    @abstractmethod
    def handlers(self) -> Mapping[type, Handler]:
        """Event class -> handler. Classes not listed are ignored (exact class match)."""

    @abstractmethod
    def load(self, conn: Connection) -> None:
        """Replace the memory state with what the tables hold."""

    @abstractmethod
    def flush(self, conn: Connection) -> None:
        """Write what changed since the last flush or load."""
