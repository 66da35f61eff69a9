"""Runs moto server, the AWS API emulator, for the tests.

Usage: aws-emulator.py PORT

It serves moto's application as `moto_server` does, with one difference:
DynamoDB calls are handled one at a time. DynamoDB isolates concurrent
transactions (a TransactWriteItems sees no other's partial effects); moto's
threaded server does not, so concurrent conditional transactions could both
pass a condition that only one of them should. Serialising DynamoDB calls
restores the isolation the ledger relies on. Other services (SQS long polls
among them) still run concurrently.

It also records, per access key id, the IAM actions the calls it serves need
(a TransactWriteItems needs the action of each item it writes), and answers
GET /_pointsflow/calls/<access key id> with them as a JSON list: tests run a
function with its own key and compare what it called with what its policy
grants.
"""

import io
import json
import re
import sys
import threading
from collections import defaultdict

from werkzeug.serving import run_simple

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

DYNAMODB = threading.Lock()
CALLS = defaultdict(set)
CALLS_LOCK = threading.Lock()
SERVICES = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs", "AmazonSSM": "ssm"}
# Batch calls are authorised as their single-message action.
BATCH = {"sqs:SendMessageBatch": "sqs:SendMessage", "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
         "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}
TRANSACT = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
            "Delete": "dynamodb:DeleteItem", "ConditionCheck": "dynamodb:ConditionCheckItem"}


def actions(target, body):
    prefix, _, operation = target.partition(".")
    service = SERVICES.get(prefix)
    if not service:
        return []
    action = f"{service}:{operation}"
    if action == "dynamodb:TransactWriteItems":
        try:
            items = json.loads(body or b"{}").get("TransactItems", [])
        except ValueError:
            items = []
        return sorted({TRANSACT[k] for item in items for k in item if k in TRANSACT})
    return [BATCH.get(action, action)]


def record_calls(app):
    def serve(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_pointsflow/calls/"):
            key = path.rsplit("/", 1)[-1]
            with CALLS_LOCK:
                body = json.dumps(sorted(CALLS.get(key, set()))).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        credential = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        if target and credential:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            with CALLS_LOCK:
                CALLS[credential.group(1)].update(actions(target, body))
        return app(environ, start_response)

    return serve


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
        record_calls(isolate_dynamodb(app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
