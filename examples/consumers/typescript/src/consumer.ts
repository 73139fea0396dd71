#!/usr/bin/env node
// Chorus example consumer (TypeScript, Node 20): CloudEvents 1.0 over Kafka, structured mode.
//
// Reads Chorus topics as the read-only principal, read_committed, from the earliest offset;
// parses each record with the CNCF CloudEvents SDK (strict), checks the Kafka binding
// (content-type header, key == subject), validates the record against its JSON Schema from
// the schema registry (subject <topic>-<type>, TopicRecordNameStrategy) and deduplicates by
// id. See ../README.md for the command line, the output and the exit codes.

import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Kafka, KafkaMessage as KjsMessage, logLevel, LogEntry } from "kafkajs";
import { CloudEvent, Kafka as CeKafka } from "cloudevents";
import type { KafkaMessage as CeKafkaMessage } from "cloudevents";
import Ajv, { ValidateFunction } from "ajv";
import Ajv2019 from "ajv/dist/2019";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { registerLz4 } from "./lz4";

const CONSUMER = "typescript";
const CONTENT_TYPE = "application/cloudevents+json";
const REQUIRED = ["specversion", "id", "source", "type"];
// Formats the three example consumers assert; anything else (schemars' uint64, int64,
// double, float, ...) is an annotation. ajv-formats would check int64 against JavaScript's
// safe-integer range, which a u64 may exceed.
const ASSERTED_FORMATS = ["date-time", "date", "time", "duration", "uuid", "uri", "uri-reference",
  "email", "hostname", "ipv4", "ipv6", "regex", "json-pointer", "relative-json-pointer"] as const;

class Fatal extends Error {}

interface Args {
  bootstrap: string; username: string; passwordFile: string; mechanism: "SCRAM-SHA-512" | "PLAIN";
  registry: string; schemaFileDir?: string; topicPrefix: string; group: string; topics: string[];
  untilEnd: boolean; quiet: boolean; timeoutSeconds: number;
}

const USAGE = `usage: chorus-consumer-typescript --password-file PATH [--bootstrap HOST:PORT] [--username NAME]
  [--mechanism SCRAM-SHA-512|PLAIN] [--registry URL] [--schema-file-dir DIR] [--topic-prefix P]
  [--group NAME] [--topics a,b] [--until-end] [--quiet] [--timeout-seconds N]`;

function parse(argv: string[]): Args {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false, options: {
        bootstrap: { type: "string", default: "127.0.0.1:9092" },
        username: { type: "string", default: "reader" },
        "password-file": { type: "string" },
        mechanism: { type: "string", default: "SCRAM-SHA-512" },
        registry: { type: "string", default: "http://127.0.0.1:8082" },
        "schema-file-dir": { type: "string" },
        "topic-prefix": { type: "string", default: "" },
        group: { type: "string", default: "chorus-reader-typescript" },
        topics: { type: "string", default: "chorus.chat.messages,chorus.poi.scores" },
        "until-end": { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        "timeout-seconds": { type: "string", default: "120" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    throw new Fatal(`${(e as Error).message}\n${USAGE}`);
  }
  if (v.help) { console.log(USAGE); process.exit(0); }
  const mechanism = v.mechanism as string;
  const timeoutSeconds = Number(v["timeout-seconds"]);
  const topics = (v.topics as string).split(",").map((t) => t.trim()).filter((t) => t);
  if (!v["password-file"] || (mechanism !== "SCRAM-SHA-512" && mechanism !== "PLAIN")
    || !(timeoutSeconds > 0) || topics.length === 0) {
    throw new Fatal(USAGE);
  }
  return {
    bootstrap: v.bootstrap as string, username: v.username as string, passwordFile: v["password-file"] as string,
    mechanism, registry: (v.registry as string).replace(/\/+$/, ""), schemaFileDir: v["schema-file-dir"] as string | undefined,
    topicPrefix: v["topic-prefix"] as string, group: v.group as string, topics, untilEnd: !!v["until-end"],
    quiet: !!v.quiet, timeoutSeconds,
  };
}

/** JSON Schema validators per registry subject, fetched once each (failures too). */
class Schemas {
  private cache = new Map<string, { validate?: ValidateFunction; error?: string }>();
  private dialects = new Map<string, Ajv>();

  constructor(private registry: string, private schemaDir?: string) {}

  /** The Ajv for the dialect the schema's $schema names (2020-12 when it names none). */
  private ajvFor(schema: Record<string, unknown>): Ajv {
    const uri = typeof schema.$schema === "string" ? schema.$schema : "https://json-schema.org/draft/2020-12/schema";
    const dialect = uri.includes("2020-12") ? "2020-12" : uri.includes("2019-09") ? "2019-09"
      : uri.includes("draft-07") ? "draft-07" : undefined;
    if (!dialect) throw new Error(`unsupported $schema ${uri}`);
    let ajv = this.dialects.get(dialect);
    if (!ajv) {
      const options = { allErrors: false, strict: false, validateFormats: true };
      ajv = dialect === "2020-12" ? new Ajv2020(options) : dialect === "2019-09" ? new Ajv2019(options) : new Ajv(options);
      addFormats(ajv, [...ASSERTED_FORMATS]);
      this.dialects.set(dialect, ajv);
    }
    return ajv;
  }

  private async fetchSchema(subject: string, type: string): Promise<unknown> {
    if (this.schemaDir) {
      const path = join(this.schemaDir, `${type}.json`);
      if (type.includes("/") || !existsSync(path)) throw new Error(`no schema file ${path}`);
      return JSON.parse(readFileSync(path, "utf8"));
    }
    const url = `${this.registry}/apis/ccompat/v7/subjects/${encodeURIComponent(subject)}/versions/latest`;
    let resp: Response;
    try {
      resp = await fetch(url, { signal: AbortSignal.timeout(15000) });
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      throw new Fatal(`schema registry ${this.registry} unreachable: ${cause?.message ?? (e as Error).message}`);
    }
    if (!resp.ok) throw new Error(`registry: subject ${subject}: HTTP ${resp.status}`);
    const body = (await resp.json()) as { schema: string };
    return JSON.parse(body.schema);
  }

  /** Every format the schema names that we do not assert becomes an annotation. */
  private ignoreUnknownFormats(ajv: Ajv, node: unknown): void {
    if (Array.isArray(node)) { node.forEach((n) => this.ignoreUnknownFormats(ajv, n)); return; }
    if (node === null || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node)) {
      if (k === "format" && typeof v === "string" && !(ASSERTED_FORMATS as readonly string[]).includes(v)
        && !ajv.formats[v]) {
        ajv.addFormat(v, true);
      }
      this.ignoreUnknownFormats(ajv, v);
    }
  }

  async validator(subject: string, type: string): Promise<{ validate?: ValidateFunction; error?: string }> {
    let entry = this.cache.get(subject);
    if (!entry) {
      try {
        const schema = (await this.fetchSchema(subject, type)) as Record<string, unknown>;
        const ajv = this.ajvFor(schema);
        this.ignoreUnknownFormats(ajv, schema);
        // The registry's text may carry a $id; each subject compiles on its own.
        delete schema.$id;
        entry = { validate: ajv.compile(schema) };
      } catch (e) {
        if (e instanceof Fatal) throw e;
        entry = { error: `schema ${subject}: ${(e as Error).message.split("\n")[0]}` };
      }
      this.cache.set(subject, entry);
    }
    return entry;
  }
}

type Tally = { records: number; parsed: number; valid: number };

class Counts {
  records = 0; parsed = 0; valid = 0; duplicates = 0;
  byTopic: Record<string, Tally> = {};
  constructor(topics: string[]) { for (const t of topics) this.byTopic[t] = { records: 0, parsed: 0, valid: 0 }; }
  summary(): string {
    return JSON.stringify({ consumer: CONSUMER, records: this.records, parsed: this.parsed, valid: this.valid,
      duplicates: this.duplicates, by_topic: this.byTopic });
  }
  ok(): boolean { return this.records === this.parsed && this.parsed === this.valid; }
}

type Checked = { event?: CloudEvent<unknown>; parsed: boolean; valid: boolean; reason?: string };

function headerValue(m: KjsMessage, name: string): string | undefined {
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    const one = Array.isArray(v) ? v[0] : v;
    return one === undefined ? undefined : one.toString();
  }
  return undefined;
}

async function check(topic: string, m: KjsMessage, schemas: Schemas): Promise<Checked> {
  const ct = headerValue(m, "content-type");
  if (ct === undefined || ct.split(";")[0].trim().toLowerCase() !== CONTENT_TYPE) {
    return { parsed: false, valid: false, reason: `content-type header is ${JSON.stringify(ct ?? null)}, not ${CONTENT_TYPE}` };
  }
  const text = m.value?.toString("utf8") ?? "";
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { parsed: false, valid: false, reason: `not JSON: ${(e as Error).message}` };
  }
  // Strict: the SDK fills in a missing id/specversion/time; a record must carry its own.
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { parsed: false, valid: false, reason: "not a JSON object" };
  }
  const missing = REQUIRED.filter((a) => !(a in raw));
  if (missing.length) return { parsed: false, valid: false, reason: `missing required attribute(s): ${missing.join(", ")}` };
  const key = m.key === null ? undefined : m.key.toString("utf8");
  let event: CloudEvent<unknown>;
  try {
    // The SDK's Kafka binding (structured mode by the content-type), then the event rebuilt in
    // strict mode: extension names and values, and the spec's own schema (validate()).
    const message: CeKafkaMessage<string> = { key: key as string, value: text, headers: { "content-type": ct }, body: text };
    const loose = CeKafka.toEvent(message);
    event = CloudEvent.cloneWith(loose as CloudEvent<unknown>, {}, true);
  } catch (e) {
    const err = e as Error & { errors?: unknown[] };
    const detail = err.errors ? ` ${JSON.stringify(err.errors)}` : "";
    return { parsed: false, valid: false, reason: `CloudEvents SDK: ${err.name}: ${err.message}${detail}` };
  }
  if (key !== event.subject) {
    return { event, parsed: true, valid: false, reason: `record key ${JSON.stringify(key ?? null)} != subject ${JSON.stringify(event.subject ?? null)}` };
  }
  const subject = `${topic}-${event.type}`;
  const { validate, error } = await schemas.validator(subject, event.type);
  if (!validate) return { event, parsed: true, valid: false, reason: error };
  if (!validate(raw)) {
    const e = validate.errors?.[0];
    return { event, parsed: true, valid: false, reason: `schema ${subject}: at ${e?.instancePath || "/"}: ${e?.message}` };
  }
  return { event, parsed: true, valid: true };
}

function stderrLog(): (entry: LogEntry) => void {
  return ({ namespace, log }) => {
    const { message, timestamp, ...extra } = log;
    void timestamp;
    const err = extra.error ? `: ${extra.error}` : "";
    process.stderr.write(`kafkajs ${namespace}: ${message}${err}\n`);
  };
}

async function run(args: Args): Promise<number> {
  registerLz4();
  const password = readFileSync(args.passwordFile, "utf8").replace(/[\r\n]+$/, "");
  const topics = args.topics.map((t) => args.topicPrefix + t);
  const kafka = new Kafka({
    clientId: `chorus-consumer-${CONSUMER}`,
    brokers: args.bootstrap.split(","),
    sasl: args.mechanism === "PLAIN"
      ? { mechanism: "plain", username: args.username, password }
      : { mechanism: "scram-sha-512", username: args.username, password },
    connectionTimeout: 10000,
    retry: { retries: 3 },
    logLevel: logLevel.ERROR,
    logCreator: stderrLog,
  });
  const counts = new Counts(topics);
  const schemas = new Schemas(args.registry, args.schemaFileDir);
  const seen = new Set<string>();

  let finish!: (rc: number) => void;
  const finished = new Promise<number>((resolve) => { finish = resolve; });
  // Per partition ("topic/partition"): first offset, end (last stable offset at the start),
  // and the next offset to read. A batch's lastOffset counts transaction markers and aborted
  // records, which the client filters out (kafkajs reports batches that filtering emptied too).
  const low = new Map<string, bigint>();
  const end = new Map<string, bigint>();
  const next = new Map<string, bigint>();
  let assigned: string[] | undefined;
  const notAtEnd = () => (assigned ?? [...end.keys()])
    .filter((tp) => (next.get(tp) ?? low.get(tp) ?? 0n) < (end.get(tp) ?? 1n));
  const atEnd = () => assigned !== undefined && notAtEnd().length === 0;
  let timer: NodeJS.Timeout | undefined;
  if (args.untilEnd) {
    timer = setTimeout(() => {
      const left = notAtEnd().map((tp) => tp.replace(/\/(\d+)$/, "[$1]")).join(", ");
      process.stderr.write(`timeout: the end was not reached within ${args.timeoutSeconds}s; `
        + `partitions not at their end: ${left || "(no assignment yet)"}\n`);
      process.stdout.write(counts.summary() + "\n", () => process.exit(1));
    }, args.timeoutSeconds * 1000);
  }

  // Metadata and the end offsets first: an unknown topic, a refused login or no broker is exit 2.
  // ListOffsets here is read_committed: the ends are last stable offsets.
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.fetchTopicMetadata({ topics });
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        low.set(`${topic}/${p.partition}`, BigInt(p.low));
        end.set(`${topic}/${p.partition}`, BigInt(p.offset));
      }
    }
  } catch (e) {
    throw new Fatal(`${(e as Error).name}: ${(e as Error).message}`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }

  const consumer = kafka.consumer({ groupId: args.topicPrefix + args.group, readUncommitted: false,
    allowAutoTopicCreation: false });
  const sought = new Set<string>();
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    assigned = Object.entries(payload.memberAssignment).flatMap(([t, ps]) => ps.map((p) => `${t}/${p}`));
    if (!args.untilEnd) return;
    // From the beginning whatever the group committed before. kafkajs emits this event
    // before it fetches, and applies a seek before the next fetch of that partition; a
    // partition is sought once, at its first assignment, so a rebalance reads nothing twice.
    for (const tp of assigned) {
      if (sought.has(tp)) continue;
      sought.add(tp);
      const i = tp.lastIndexOf("/");
      consumer.seek({ topic: tp.slice(0, i), partition: Number(tp.slice(i + 1)), offset: low.get(tp)!.toString() });
    }
    if (atEnd()) finish(0);
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    next.set(`${payload.topic}/${payload.partition}`, BigInt(payload.lastOffset) + 1n);
    if (args.untilEnd && atEnd()) finish(0);
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) {
      process.stderr.write(`chorus-consumer-${CONSUMER}: ${payload.error.name}: ${payload.error.message}\n`);
      finish(2);
    }
  });

  try {
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: !args.untilEnd, // --until-end reads everything and commits nothing
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          let c: Checked;
          try {
            c = await check(batch.topic, m, schemas);
          } catch (e) {
            if (e instanceof Fatal) { process.stderr.write(`chorus-consumer-${CONSUMER}: ${e.message}\n`); finish(2); return; }
            throw e;
          }
          record(batch.topic, batch.partition, m.offset, c);
        }
      },
    });
  } catch (e) {
    await consumer.disconnect().catch(() => undefined);
    throw new Fatal(`${(e as Error).name}: ${(e as Error).message}`);
  }

  function record(topic: string, partition: number, offset: string, c: Checked): void {
    const per = counts.byTopic[topic];
    counts.records++; per.records++;
    let status = "unparsed";
    if (c.parsed) { counts.parsed++; per.parsed++; status = "invalid"; }
    if (c.valid) { counts.valid++; per.valid++; status = "ok"; }
    const where = `${topic} p${partition}@${offset}`;
    let line = `${where} - subject=- id=- ${status}`;
    if (c.event) {
      if (seen.has(c.event.id)) { counts.duplicates++; status += " duplicate"; }
      seen.add(c.event.id);
      line = `${where} ${c.event.type} subject=${c.event.subject} id=${c.event.id} ${status}`;
    }
    if (c.reason) process.stderr.write(`${where}: ${c.reason}\n`);
    if (!args.quiet) process.stdout.write(line + "\n");
  }

  const onSignal = () => finish(-1);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const rc = await finished;
  if (timer) clearTimeout(timer);
  await consumer.disconnect().catch(() => undefined);
  if (rc === 2) return 2;
  process.stdout.write(counts.summary() + "\n");
  return counts.ok() ? 0 : 1;
}

async function main(): Promise<void> {
  let rc: number;
  try {
    rc = await run(parse(process.argv.slice(2)));
  } catch (e) {
    process.stderr.write(`chorus-consumer-${CONSUMER}: ${(e as Error).message}\n`);
    rc = 2;
  }
  // stdout drained before exit (a pipe is asynchronous in Node).
  process.stdout.write("", () => process.exit(rc));
}

void main();
