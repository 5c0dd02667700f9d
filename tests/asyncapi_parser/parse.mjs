// Parse an AsyncAPI document with the official parser and print what it understood, as JSON, for the Python test:
// the diagnostics (errors fail the test) and, per channel, its address and each message's resolved payload and
// headers schemas.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const [, , path] = process.argv;
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"));

const severities = ["error", "warning", "information", "hint"];
const report = {
  diagnostics: diagnostics.map((d) => ({
    severity: severities[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join("."),
  })),
  version: document ? document.version() : null,
  channels: {},
  operations: {},
};

if (document) {
  for (const channel of document.channels().all()) {
    const messages = {};
    for (const message of channel.messages().all()) {
      messages[message.id()] = {
        name: message.name(),
        contentType: message.contentType(),
        payload: message.hasPayload() ? message.payload().json() : null,
        headers: message.hasHeaders() ? message.headers().json() : null,
        key: message.bindings().has("kafka") ? message.bindings().get("kafka").value().key ?? null : null,
      };
    }
    report.channels[channel.id()] = { address: channel.address(), messages };
  }
  for (const operation of document.operations().all()) {
    report.operations[operation.id()] = {
      action: operation.action(),
      channels: operation.channels().all().map((c) => c.id()),
      messages: operation.messages().all().map((m) => m.id()),
    };
  }
}
// Dereferenced schemas share objects (one model used in two places): copy them, and mark only true cycles.
function plain(value, ancestors = new Set()) {
  if (value === null || typeof value !== "object") return value;
  if (ancestors.has(value)) return { $circular: true };
  ancestors.add(value);
  const copy = Array.isArray(value)
    ? value.map((item) => plain(item, ancestors))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v, ancestors)]));
  ancestors.delete(value);
  return copy;
}
process.stdout.write(JSON.stringify(plain(report)));
