"""A loopback TCP proxy that cuts connections in the middle of responses and throttles.

It stands between boto3 and the S3 server (moto) to prove reads resume: of
the connections that carry more than ``cut_after`` bytes back to the client,
all but every ``cut_every``-th (the first always) are closed at that byte,
wherever it falls (often inside an object body).  It
throttles two ways, as S3 does under load: responses trickle at
``throttle_bytes_per_s``, and every ``slow_down_every``-th connection is
answered ``503 SlowDown`` without reaching the server.
Bounded: it serves only loopback and stops with the test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_every: int | None = 2, cut_after: int = 3000,
                 throttle_bytes_per_s: int | None = None, slow_down_every: int | None = None) -> None:
        self.upstream = upstream
        self.cut_every = cut_every
        self.cut_after = cut_after
        self.throttle = throttle_bytes_per_s
        self.slow_down_every = slow_down_every
        self.connections = 0
        self.cuts = 0
        self.heavy = 0
        self._lock = threading.Lock()
        self.slow_downs = 0
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
            if self.slow_down_every and (self.connections - 1) % self.slow_down_every == 0:  # 1st too
                threading.Thread(target=self._slow_down, args=(client,), daemon=True).start()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _slow_down(self, client: socket.socket) -> None:
        """S3's throttling answer to one request; the client must back off and retry."""
        try:
            client.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                data = client.recv(4096)
                if not data:
                    return
                request += data
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            self.slow_downs += 1
        except OSError:
            pass
        finally:
            client.close()

    def _cut_this_one(self) -> bool:
        """Whether a connection about to pass ``cut_after`` bytes is cut: the first such one is.

        Counted among the connections that carry that much, not among all: a client may open a
        connection per small request (HEAD, manifests) and per object, alternating, and counting all
        of them could spare every large body and prove nothing.
        """
        with self._lock:
            self.heavy += 1
            return self.cut_every is not None and self.heavy % self.cut_every != 0

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket, downstream: bool) -> None:
            sent = 0
            cut: bool | None = None
            try:
                while True:
                    data = src.recv(4096)
                    if not data:
                        break
                    if downstream and cut is None and sent + len(data) > self.cut_after:
                        cut = self._cut_this_one()
                    if downstream and cut:
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
