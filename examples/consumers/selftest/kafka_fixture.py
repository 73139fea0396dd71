#!/usr/bin/env python3
"""Test fixture for the example consumers: topics, transactional CloudEvents records, cleanup.

Runs as the admin principal (SCRAM-SHA-512) with the venv's confluent-kafka:

  kafka_fixture.py create  --prefix P            topics P<topic> for every topic below
  kafka_fixture.py produce --prefix P --scenario good|bad
  kafka_fixture.py hold    --prefix P --seconds N  keep a transaction open N seconds, then abort it
  kafka_fixture.py delete  --prefix P            topics, consumer groups and ACL bindings named P...

`produce` writes in Kafka transactions and aborts some of them (their records must never be
read under read_committed); it prints the counts a consumer must report as one JSON line.
"""

import argparse
import json
import os
import secrets
import signal
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

TOPICS = {"chorus.chat.messages": 3, "chorus.poi.scores": 2, "chorus.feedback": 1}  # feedback stays empty
CT = "application/cloudevents+json"


def uuid7() -> str:
    ms = int(time.time() * 1000)
    b = bytearray(ms.to_bytes(6, "big") + secrets.token_bytes(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def event(etype: str, subject: str, data: dict) -> dict:
    return {
        "specversion": "1.0",
        "id": uuid7(),
        "source": "ingest/host-1",
        "type": etype,
        "dataschema": f"urn:chorus:schema:{etype}",
        "subject": subject,
        "time": now(),
        "datacontenttype": "application/json",
        "data": data,
    }


def chat(conv: str, text: str) -> dict:
    return event("ai.chorus.chat.message.v1", conv, {
        "conversation_id": conv, "author_kind": "human", "author_id": "0xabc", "content": text,
        "hop": 0, "mentions": [], "reply_to": None, "job_id": None,
    })


def score(account: str, epoch: int) -> dict:
    return event("ai.chorus.poi.score.v1", account, {
        "epoch": epoch, "account": account, "role": "user", "points": 12, "items": 3,
        "amount_wei": "1000000000000000000",
    })


def config(args) -> dict:
    with open(args.password_file) as f:
        password = f.read().strip()
    return {
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": password,
    }


def create(args) -> None:
    admin = AdminClient(config(args))
    futures = admin.create_topics(
        [NewTopic(args.prefix + t, num_partitions=n, replication_factor=1) for t, n in TOPICS.items()])
    for topic, fut in futures.items():
        try:
            fut.result(30)
        except KafkaException as e:
            if e.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                raise
    print(f"topics: {', '.join(futures)}", file=sys.stderr)


def delete(args) -> None:
    admin = AdminClient(config(args))
    md = admin.list_topics(timeout=30)
    mine = [t for t in md.topics if t.startswith(args.prefix)]
    if mine:
        for fut in admin.delete_topics(mine, operation_timeout=30).values():
            fut.result(60)
    bindings = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY)).result(30)
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                b.operation, b.permission_type)
               for b in bindings if b.name.startswith(args.prefix)]
    removed = 0
    if filters:
        for fut in admin.delete_acls(filters).values():
            removed += len(fut.result(30))
    groups = [g.group_id for g in admin.list_consumer_groups().result(30).valid
              if g.group_id.startswith(args.prefix)]
    if groups:
        for fut in admin.delete_consumer_groups(groups, request_timeout=30).values():
            try:
                fut.result(60)
            except KafkaException as e:
                print(f"group: {e}", file=sys.stderr)
    print(f"deleted topics: {mine}; groups: {groups}; ACL bindings: {removed}", file=sys.stderr)


def produce(args) -> None:
    p = Producer({**config(args), "transactional.id": f"{args.prefix}fixture-{os.getpid()}",
                  "partitioner": "murmur2_random", "linger.ms": 5})
    p.init_transactions(30)
    chat_t, poi_t = args.prefix + "chorus.chat.messages", args.prefix + "chorus.poi.scores"
    expect = {chat_t: 0, poi_t: 0, args.prefix + "chorus.feedback": 0}
    valid = 0
    dupes = 0

    def send(topic, ev=None, *, key=None, value=None, headers=None):
        value = value if value is not None else json.dumps(ev, separators=(",", ":"))
        key = key if key is not None else ev["subject"]
        p.produce(topic, key=key, value=value, headers=headers if headers is not None else [("content-type", CT)])

    def txn(records, commit):
        nonlocal valid
        p.begin_transaction()
        for topic, ev in records:
            send(topic, ev)
            if commit:
                expect[topic] += 1
                valid += 1
        p.flush(30)  # an abort would purge what is still queued: the broker must have them
        (p.commit_transaction if commit else p.abort_transaction)(30)

    first = [(chat_t, chat(f"conv-{i % 4}", f"hello {i}")) for i in range(8)] + \
            [(poi_t, score(f"0xacc{i}", 7)) for i in range(4)]
    txn(first, True)
    txn([(chat_t, chat(f"conv-{i}", "aborted")) for i in range(4)] + [(poi_t, score("0xdead", 7))], False)
    txn([(chat_t, chat("conv-1", "after the abort")), (poi_t, score("0xacc9", 8))], True)

    bad = {}
    if args.scenario == "bad":
        # Each counted as a record; the comment says what it must fail.
        p.begin_transaction()
        dup = first[0][1]
        send(chat_t, dup); expect[chat_t] += 1; valid += 1; dupes += 1              # valid duplicate
        send(chat_t, key="conv-x", value=b"not json"); expect[chat_t] += 1          # not parsed
        ev = chat("conv-x", "no id"); del ev["id"]
        send(chat_t, ev); expect[chat_t] += 1                                       # not parsed (SDK)
        ev = chat("conv-x", "wrong header")
        send(chat_t, ev, headers=[("content-type", "application/json")]); expect[chat_t] += 1  # not parsed
        ev = chat("conv-x", "wrong key")
        send(chat_t, ev, key="conv-y"); expect[chat_t] += 1                         # parsed, not valid
        ev = chat("conv-x", "bad data"); del ev["data"]["author_id"]
        send(chat_t, ev); expect[chat_t] += 1                                       # parsed, not valid (schema)
        ev = score("0xacc1", 9); ev["data"]["epoch"] = -1
        send(poi_t, ev); expect[poi_t] += 1                                         # parsed, not valid (schema)
        ev = chat("conv-x", "bad id"); ev["id"] = "not-a-uuid"
        send(chat_t, ev); expect[chat_t] += 1                                       # parsed, not valid (format)
        p.commit_transaction(30)
        bad = {"parsed_less": 3}  # not json, no id, wrong header

    # The partitions end on an aborted transaction: offsets that never deliver a record.
    txn([(chat_t, chat(f"conv-{i}", "aborted at the end")) for i in range(4)]
        + [(poi_t, score(f"0xacc{i}", 9)) for i in range(4)], False)
    p.flush(30)

    records = sum(expect.values())
    parsed = records - bad.get("parsed_less", 0)
    print(json.dumps({"records": records, "parsed": parsed, "valid": valid, "duplicates": dupes,
                      "by_topic_records": expect}))


def hold(args) -> None:
    """An open transaction for --seconds (then aborted): its records are past the last stable
    offset, which read_committed consumers must stop at instead of waiting for them."""
    p = Producer({**config(args), "transactional.id": f"{args.prefix}fixture-hold-{os.getpid()}"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(args.prefix + "chorus.chat.messages", key=f"conv-{i}",
                  value=json.dumps(chat(f"conv-{i}", "still open")), headers=[("content-type", CT)])
    p.flush(30)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # SIGTERM: abort now
    print("open", flush=True)
    until = time.monotonic() + args.seconds
    while not stop and time.monotonic() < until:
        time.sleep(0.1)
    p.abort_transaction(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["create", "produce", "hold", "delete"])
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--password-file",
                    default=os.path.join(os.environ.get("CHORUS_HOME", os.path.expanduser("~/.chorus")),
                                         "kafka-secrets", "admin.password"))
    ap.add_argument("--scenario", choices=["good", "bad"], default="good")
    ap.add_argument("--seconds", type=float, default=30, help="hold: how long the transaction stays open")
    args = ap.parse_args()
    if not args.prefix or not args.prefix.endswith("."):
        sys.exit("--prefix must be non-empty and end with '.' (it must never touch real topics)")
    {"create": create, "produce": produce, "hold": hold, "delete": delete}[args.command](args)


if __name__ == "__main__":
    main()
