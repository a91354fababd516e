"""The internet in a download test: a local HTTP server on 127.0.0.1 serving one folder."""
from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager
from functools import partial
from typing import Iterator


@contextmanager
def serve_folder(folder) -> Iterator[str]:
    """Serve ``folder``'s files on a free port of 127.0.0.1 for the ``with`` block; yields the base URL."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
