"""A loopback TCP proxy that cuts connections in the middle of responses and throttles.

It stands between boto3 and the S3 server (moto) to prove reads resume: every
``cut_every``-th connection is closed after ``cut_after`` bytes have gone
back to the client, wherever that falls (often inside an object body).
Bounded: it serves only loopback and stops with the test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_every: int = 2, cut_after: int = 3000,
                 throttle_bytes_per_s: int | None = None) -> None:
        self.upstream = upstream
        self.cut_every = cut_every
        self.cut_after = cut_after
        self.throttle = throttle_bytes_per_s
        self.connections = 0
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            cut = self.connections % self.cut_every != 0  # the first connection is always cut
            threading.Thread(target=self._serve, args=(client, cut), daemon=True).start()

    def _serve(self, client: socket.socket, cut: bool) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket, downstream: bool) -> None:
            sent = 0
            try:
                while True:
                    data = src.recv(4096)
                    if not data:
                        break
                    if downstream and cut and sent + len(data) > self.cut_after:
                        dst.sendall(data[: max(0, self.cut_after - sent)])
                        self.cuts += 1
                        break
                    dst.sendall(data)
                    sent += len(data)
                    if downstream and self.throttle:
                        time.sleep(len(data) / self.throttle)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

        threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
        pump(upstream, client, True)

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
