"""Runs moto server, the AWS API emulator, for the tests.

Usage: aws-emulator.py PORT

It serves moto's application as `moto_server` does, with one difference:
DynamoDB calls are handled one at a time. DynamoDB isolates concurrent
transactions (a TransactWriteItems sees no other's partial effects); moto's
threaded server does not, so concurrent conditional transactions could both
pass a condition that only one of them should. Serialising DynamoDB calls
restores the isolation the ledger relies on. Other services (SQS long polls
among them) still run concurrently.
"""

import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

DYNAMODB = threading.Lock()


def isolate_dynamodb(app):
    def serve(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return app(environ, start_response)
        with DYNAMODB:
            result = app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()

    return serve


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        port,
        isolate_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
