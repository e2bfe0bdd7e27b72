"""The Python side of apache-python: a page naming its backend, and /health."""
import os


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        body = b"ok\n"
    else:
        backend = environ.get("BACKEND_URL") or os.environ.get("BACKEND_URL", "")
        body = f"apache-python in {os.uname().nodename}; backend: {backend or 'none'}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
