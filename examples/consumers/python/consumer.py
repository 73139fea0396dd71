#!/usr/bin/env python3
"""Chorus example consumer (Python): CloudEvents 1.0 over Kafka, structured mode.

Reads Chorus topics as the read-only principal, read_committed, from the earliest offset;
parses each record with the CNCF CloudEvents SDK, checks the Kafka binding (content-type
header, key == subject), validates the record against its JSON Schema from the schema
registry (subject <topic>-<type>, TopicRecordNameStrategy) and deduplicates by id.
See ../README.md for the command line, the output and the exit codes.
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

CONSUMER = "python"
CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_TOPICS = "chorus.chat.messages,chorus.poi.scores"
REQUIRED = ("specversion", "id", "source", "type")


class Fatal(Exception):
    """A usage or connection error: exit code 2."""


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="chorus-consumer-python", description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--username", default="reader")
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--mechanism", default="SCRAM-SHA-512", choices=["SCRAM-SHA-512", "PLAIN"])
    ap.add_argument("--registry", default="http://127.0.0.1:8082")
    ap.add_argument("--schema-file-dir", default=None,
                    help="fallback: read the schema of type T from DIR/T.json instead of the registry")
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--group", default="chorus-reader-python",
                    help="consumer group, after the topic prefix (the reader may use <prefix>chorus-reader*)")
    ap.add_argument("--topics", default=DEFAULT_TOPICS, help="comma-separated, without the prefix")
    ap.add_argument("--until-end", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--timeout-seconds", type=float, default=120.0)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        sys.exit(0 if e.code == 0 else 2)
    args.topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    if not args.topics:
        ap.print_usage(sys.stderr)
        sys.exit(2)
    return args


class Schemas:
    """JSON Schema validators per registry subject, fetched once each (failures too)."""

    def __init__(self, registry, schema_dir):
        self.registry = registry.rstrip("/")
        self.schema_dir = schema_dir
        self.cache = {}  # subject -> (validator or None, error or None)

    def _fetch(self, subject, etype):
        if self.schema_dir:
            path = os.path.join(self.schema_dir, etype + ".json")
            if "/" in etype or not os.path.isfile(path):
                raise LookupError(f"no schema file {path}")
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        url = f"{self.registry}/apis/ccompat/v7/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest"
        try:
            with urllib.request.urlopen(url, timeout=15) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:
            raise LookupError(f"registry: subject {subject}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise Fatal(f"schema registry {self.registry} unreachable: {e}") from None
        return json.loads(body["schema"])

    def validator(self, subject, etype):
        if subject not in self.cache:
            try:
                schema = self._fetch(subject, etype)
                # The dialect its $schema names (draft-07 too); 2020-12 when it names none.
                cls = validator_for(schema, default=Draft202012Validator)
                cls.check_schema(schema)
                # Every format jsonschema knows, whatever the draft (draft-07 has no "uuid");
                # unknown ones (schemars' uint64, int64, double...) are annotations.
                v = cls(schema, format_checker=FormatChecker())
                self.cache[subject] = (v, None)
            except (LookupError, ValueError, KeyError, SchemaError) as e:
                self.cache[subject] = (None, f"schema {subject}: {str(e).splitlines()[0]}")
        return self.cache[subject]


class Counts:
    def __init__(self, topics):
        self.records = self.parsed = self.valid = self.duplicates = 0
        self.by_topic = {t: {"records": 0, "parsed": 0, "valid": 0} for t in topics}

    def summary(self):
        return json.dumps({"consumer": CONSUMER, "records": self.records, "parsed": self.parsed,
                           "valid": self.valid, "duplicates": self.duplicates,
                           "by_topic": self.by_topic}, separators=(",", ":"))

    def ok(self):
        return self.records == self.parsed == self.valid


def header(msg, name):
    for k, v in msg.headers() or []:
        if k.lower() == name:
            return v
    return None


def check_record(msg, prefix, schemas):
    """(event or None, parsed, valid, reason): one record through the binding and the schema."""
    value = msg.value() or b""
    ct = header(msg, "content-type")
    ct_text = ct.decode("utf-8", "replace") if ct is not None else None
    if ct_text is None or ct_text.split(";")[0].strip().lower() != CONTENT_TYPE:
        return None, False, False, f"content-type header is {ct_text!r}, not {CONTENT_TYPE}"
    try:
        raw = json.loads(value)
    except ValueError as e:
        return None, False, False, f"not JSON: {e}"
    # Strict: the SDK fills in a missing id/specversion/time; a record must carry its own.
    if not isinstance(raw, dict):
        return None, False, False, "not a JSON object"
    missing = [a for a in REQUIRED if a not in raw]
    if missing:
        return None, False, False, f"missing required attribute(s): {', '.join(missing)}"
    if "data" in raw and "data_base64" in raw:
        return None, False, False, "both data and data_base64"
    try:
        event = from_structured(KafkaMessage(headers={"content-type": ct}, key=msg.key(), value=value),
                                JSONFormat(), CloudEvent)
    except Exception as e:  # the SDK raises CloudEventValidationError, ValueError, TypeError...
        return None, False, False, f"CloudEvents SDK: {type(e).__name__}: {e}"

    attrs = event.get_attributes()
    key = msg.key().decode("utf-8", "replace") if msg.key() is not None else None
    if key != attrs.get("subject"):
        return event, True, False, f"record key {key!r} != subject {attrs.get('subject')!r}"
    subject = f"{msg.topic()}-{attrs['type']}"
    validator, error = schemas.validator(subject, attrs["type"])
    if validator is None:
        return event, True, False, error
    err = next(iter(validator.iter_errors(raw)), None)
    if err is not None:
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        return event, True, False, f"schema {subject}: at {where}: {err.message}"
    return event, True, True, None


def run(args):
    with open(args.password_file, encoding="utf-8") as f:
        password = f.read().rstrip("\r\n")
    deadline = time.monotonic() + args.timeout_seconds  # with --until-end: from the start
    prefix = args.topic_prefix
    topics = [prefix + t for t in args.topics]
    fatal = []

    def on_error(err):
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) or err.fatal():
            fatal.append(err.str())

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": args.mechanism,
        "sasl.username": args.username,
        "sasl.password": password,
        "group.id": prefix + args.group,
        "client.id": f"chorus-consumer-{CONSUMER}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": args.until_end,
        "enable.auto.commit": not args.until_end,  # --until-end reads everything, commits nothing
        "error_cb": on_error,
    })
    counts = Counts(topics)
    schemas = Schemas(args.registry, args.schema_file_dir)
    seen = set()
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        # Metadata first: an unknown topic, a refused login or no broker is exit 2.
        parts = {}
        for topic in topics:
            try:
                md = consumer.list_topics(topic, timeout=20)
            except KafkaException as e:
                raise Fatal(f"metadata for {topic}: {fatal[0] if fatal else e}") from None
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                raise Fatal(f"topic {topic}: {t.error if t is not None else 'not in metadata'}")
            parts[topic] = sorted(t.partitions)
        if args.until_end:
            # Every partition from the beginning; done when each has reported EOF, which
            # librdkafka raises at the last stable offset under read_committed, past any
            # transaction markers and aborted records.
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in parts[t]])
            pending = {(t, p) for t in topics for p in parts[t]}
        else:
            consumer.subscribe(topics)
            pending = None
        while not stop and (pending is None or pending):
            if fatal:
                raise Fatal(fatal[0])
            if pending is not None and time.monotonic() > deadline:
                left = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                print(f"timeout: the end was not reached within {args.timeout_seconds:g}s; "
                      f"partitions not at their end: {left}", file=sys.stderr)
                print(counts.summary(), flush=True)
                return 1
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if pending is not None:
                            pending.discard((msg.topic(), msg.partition()))
                        continue
                    if err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                      KafkaError.GROUP_AUTHORIZATION_FAILED,
                                      KafkaError.UNKNOWN_TOPIC_OR_PART) or err.fatal():
                        raise Fatal(f"{msg.topic()}: {err.str()}")
                    print(f"kafka: {err.str()}", file=sys.stderr)
                    continue
                handle(msg, prefix, schemas, counts, seen, args.quiet)
    finally:
        consumer.close()
    print(counts.summary(), flush=True)
    return 0 if counts.ok() else 1


def handle(msg, prefix, schemas, counts, seen, quiet):
    topic = msg.topic()
    event, parsed, valid, reason = check_record(msg, prefix, schemas)
    per = counts.by_topic[topic]
    counts.records += 1
    per["records"] += 1
    status = "unparsed"
    if parsed:
        counts.parsed += 1
        per["parsed"] += 1
        status = "invalid"
    if valid:
        counts.valid += 1
        per["valid"] += 1
        status = "ok"
    where = f"{topic} p{msg.partition()}@{msg.offset()}"
    if event is not None:
        a = event.get_attributes()
        if a["id"] in seen:
            counts.duplicates += 1
            status += " duplicate"
        seen.add(a["id"])
        line = f"{where} {a['type']} subject={a.get('subject')} id={a['id']} {status}"
    else:
        line = f"{where} - subject=- id=- {status}"
    if reason:
        print(f"{where}: {reason}", file=sys.stderr)
    if not quiet:
        print(line)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sys.exit(run(args))
    except Fatal as e:
        print(f"chorus-consumer-{CONSUMER}: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # the password file
        print(f"chorus-consumer-{CONSUMER}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
