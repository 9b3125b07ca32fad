"""Reading a request's body whole, within a size limit and a deadline, before any work starts.

Detection requests are buffered here before they take an admission place
(server/admission.py): a client that trickles its upload holds a thread,
never a place another request could use, and loses the thread at
``REQUEST_DEADLINE_S`` however steadily it sends. The body is read from the
WSGI input ourselves, so that

- a chunked body over ``MAX_CONTENT_LENGTH`` is a 413 naming the limit
  (Werkzeug would cut it at the limit and parse what is left);
- a malformed one (a chunk size of ``zz``), a body shorter than its
  Content-Length or a connection that breaks is a 400, and a deadline or
  socket timeout a 408, instead of the server's exception becoming a 500.

The body then replaces the WSGI input, with its length, so that Werkzeug's
form parser and ``get_data`` read it from memory.
"""

from __future__ import annotations

import io
import time

from flask import Request, g

from server.exceptions import ApiError, too_large_message

CHUNK = 64 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(413, "request_entity_too_large", too_large_message(limit))


def buffer_body(request: Request, limit: int, deadline_s: float) -> None:
    """Read the whole body into memory (see the module docstring), or raise an ApiError.

    After an error the connection is closed (``g.close_connection``): what is
    left of the body is not worth reading.
    """
    try:
        _buffer(request, limit, deadline_s)
    except ApiError:
        g.close_connection = True
        raise


def _buffer(request: Request, limit: int, deadline_s: float) -> None:
    environ = request.environ
    declared = request.headers.get("Content-Length")
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if declared is not None and not chunked:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared[:40]!r} is not a number") from None
        if length < 0:
            raise ApiError(400, "bad_request", "Content-Length is negative")
        if length > limit:
            raise too_large(limit)
        wanted = length
    elif environ.get("wsgi.input_terminated") or chunked:
        wanted = limit + 1  # read to the end, one byte past the limit to notice a body over it
    else:
        wanted = 0  # no length and nothing marking an end: no body (RFC 9112)
    deadline = time.monotonic() + deadline_s
    stream = environ["wsgi.input"]
    parts, received = [], 0
    try:
        while received < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError
            part = stream.read(min(CHUNK, wanted - received))
            if not part:
                break
            parts.append(part)
            received += len(part)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the request body did not arrive within {deadline_s:g} s") from None
    except Exception as error:  # the server's parser: bad chunk sizes, missing terminators, a broken connection
        raise ApiError(400, "bad_request", f"malformed or incomplete request body: {type(error).__name__}") from None
    if received > limit:
        raise too_large(limit)
    if declared is not None and not chunked and received < wanted:
        raise ApiError(400, "bad_request", f"the body ended after {received:,} of its {wanted:,} bytes")
    body = b"".join(parts)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input_terminated"] = False
