"""Runs moto server, the AWS API emulator, for the tests.

Usage: aws-emulator.py PORT

It serves moto's application as `moto_server` does, with one difference:
DynamoDB calls are handled one at a time. DynamoDB isolates concurrent
transactions (a TransactWriteItems sees no other's partial effects); moto's
threaded server does not, so concurrent conditional transactions could both
pass a condition that only one of them should. Serialising DynamoDB calls
restores the isolation the ledger relies on. Other services (SQS long polls
among them) still run concurrently.

Cancelled transactions are rolled back item by item. moto rolls a cancelled
TransactWriteItems back by deep-copying every table it touches before it
starts, so each transaction costs time in proportion to the whole table and
a run of a few thousand requests slows to a crawl. Here the table copy is
skipped and the items the transaction names are saved and put back instead,
which is the same rollback (calls are serialised, so nothing else changes
them in between). Likewise a Query on the table's own key reads the items
under that partition key, where moto would sort the whole table first. And
SQS's ReceiveMessage checks each message's retention by computing every
attribute of the queue, message counts included, so each message received
cost time in proportion to the queue's backlog; here the retention is read
from the queue alone (the same check).

It also records, per access key id, the IAM actions the calls it serves need
(a TransactWriteItems needs the action of each item it writes), and answers
GET /_pointsflow/calls/<access key id> with them as a JSON list: tests run a
function with its own key and compare what it called with what its policy
grants. For DynamoDB it records each call's partition key too (the value of
`pk` in an item or key, or in a table query's key condition; an index
query's index; a scan has none), as [action, resource, partition key] at
GET /_pointsflow/keys/<access key id>: tests compare them with the
`dynamodb:LeadingKeys` conditions of the function's policy.
"""

import copy
import io
import json
import re
import sys
import threading
from collections import defaultdict

from werkzeug.serving import run_simple

from moto.core.utils import unix_time
from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
import moto.dynamodb.models as dynamodb_models
import moto.sqs.models as sqs_models
from moto.dynamodb.models.table import Table

DYNAMODB = threading.Lock()
CALLS = defaultdict(set)
KEYS = defaultdict(set)
CALLS_LOCK = threading.Lock()
SERVICES = {"DynamoDB_20120810": "dynamodb", "DynamoDBStreams_20120810": "dynamodb",
            "AmazonSQS": "sqs", "secretsmanager": "secretsmanager", "AWSEvents": "events"}
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


def _pk(value):
    """The string in an attribute value ({"S": ...})."""
    if isinstance(value, dict):
        return value.get("S") or value.get("N") or ""
    return ""


def partition_keys(target, body):
    """(action, resource, partition key) for each item a DynamoDB call
    reads or writes: resource is "table" or "index/<name>"; the partition
    key is the table's `pk` (none for an index query or a scan)."""
    prefix, _, operation = target.partition(".")
    if not prefix.startswith("DynamoDB"):
        return []
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return []
    action = f"dynamodb:{operation}"
    if operation == "TransactWriteItems":
        out = []
        for item in request.get("TransactItems", []):
            for kind, op in item.items():
                keys = op.get("Key") or op.get("Item") or {}
                out.append((TRANSACT.get(kind, f"dynamodb:{kind}"), "table", _pk(keys.get("pk"))))
        return out
    if operation == "BatchGetItem":
        return [(action, "table", _pk(key.get("pk")))
                for wanted in request.get("RequestItems", {}).values()
                for key in wanted.get("Keys", [])]
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        return [(action, "table", _pk(request.get("Key", {}).get("pk")))]
    if operation == "PutItem":
        return [(action, "table", _pk(request.get("Item", {}).get("pk")))]
    if operation == "Query":
        index = request.get("IndexName")
        if index:
            return [(action, f"index/{index}", "")]
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        for name, placeholder in re.findall(r"(#?\w+)\s*=\s*(:\w+)", request.get("KeyConditionExpression", "")):
            if names.get(name, name) == "pk":
                return [(action, "table", _pk(values.get(placeholder)))]
        return [(action, "table", "")]
    if operation == "Scan":
        return [(action, f"index/{request['IndexName']}" if request.get("IndexName") else "table", "")]
    return [(action, "table", "")]


class _TablesAreNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: a
    table "copied" for rollback is the table itself; everything else is
    copied as before."""

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _touched_items(backend, transact_items):
    """(table, hash key, range key, a copy of the item or None) for each action."""
    saved = []
    for action in transact_items:
        try:
            _, op = next(iter(action.items()))
            table = backend.get_table(op["TableName"])
            keys = op.get("Key")
            if keys is None:
                names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                keys = {name: op["Item"][name] for name in names}
            hash_key, range_key = backend.get_keys_value(table, keys)
            item = table.get_item(hash_key, range_key)
        except Exception:
            continue  # a malformed action: moto rejects the call itself
        saved.append((table, hash_key, range_key, copy.deepcopy(item)))
    return saved


def _put_back(table, hash_key, range_key, item):
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
    elif item is None:
        table.items.get(hash_key, {}).pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


def roll_back_items_not_tables():
    dynamodb_models.copy = _TablesAreNotCopied
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        saved = _touched_items(self, transact_items)
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                _put_back(table, hash_key, range_key, item)
            raise

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


def query_one_partition():
    original = Table.query

    def query(self, hash_key, *args, **kwargs):
        # moto's backend passes the index name as the eighth positional argument.
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None or not self.range_key_attr:
            return original(self, hash_key, *args, **kwargs)
        partition = sorted(self.items.get(hash_key, {}).values(), key=lambda item: item.range_key)
        # Safe: DynamoDB calls are serialised (isolate_dynamodb).
        self.all_items = lambda: partition
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def retention_without_counting():
    def valid(self, queue_name, message):
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > unix_time()

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = valid


def record_calls(app):
    def serve(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_pointsflow/calls/") or path.startswith("/_pointsflow/keys/"):
            key = path.rsplit("/", 1)[-1]
            recorded = CALLS if path.startswith("/_pointsflow/calls/") else KEYS
            with CALLS_LOCK:
                body = json.dumps(sorted(recorded.get(key, set()))).encode()
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
                KEYS[credential.group(1)].update(partition_keys(target, body))
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
    roll_back_items_not_tables()
    query_one_partition()
    retention_without_counting()
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
