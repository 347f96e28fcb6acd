"""A TCP relay standing in for a WAN link, which the demo can cut and restore."""

from __future__ import annotations

import trio


class Relay:
    """A TCP relay standing in for east's WAN link, which the demo can cut and restore."""

    def __init__(self, target: int):
        self.target = target
        self.port = 0
        self.up = True
        self._scope = trio.CancelScope()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        if not self.up:
            await client.aclose()
            return
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await client.aclose()
            return
        with self._scope:
            async with trio.open_nursery() as n:
                n.start_soon(_pipe, client, server)
                n.start_soon(_pipe, server, client)
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)

    def cut(self) -> None:
        self.up = False
        self._scope.cancel()
        self._scope = trio.CancelScope()

    def restore(self) -> None:
        self.up = True


async def _pipe(a: trio.SocketStream, b: trio.SocketStream) -> None:
    try:
        while data := await a.receive_some(65536):
            await b.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


__all__ = ["Relay"]
