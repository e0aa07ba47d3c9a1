// Persist from Node.js, on the official NATS client and nothing else.
//
// Against a running persist worker (NATS_URL, default nats://127.0.0.1:4222)
// this program writes to a fresh stream, reads it back, pages through it,
// watches its events, handles a 409, and keeps a local mirror that catches
// up with `changes`. Every step checks what it got and the program exits
// non-zero on anything unexpected; the last line it prints is "ok".
// The wire contract is PROTOCOL.md at the root of the repository.

import { connect, headers, createInbox, nuid } from "@nats-io/transport-node";

const url = process.env.NATS_URL || "nats://127.0.0.1:4222";
const prefix = "persist";
const timeout = 5000; // ms to wait for any one reply

// A stream name is tokens of [A-Za-z0-9_=-] joined by dots; a nuid is such a
// token, so every run gets a stream of its own.
const stream = `examples.node.${nuid.next()}`;

// PersistError is an error reply of the worker: its code (from the
// Nats-Service-Error-Code header) and its reason (from the JSON body).
class PersistError extends Error {
  constructor(code, reason, description) {
    super(`${code} ${reason}: ${description}`);
    this.code = code;
    this.reason = reason;
  }
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const text = (data) => new TextDecoder().decode(data);
const hdr = (m, name) => m.headers?.get(name) ?? "";
const num = (m, name) => Number(hdr(m, name));

// throwIfError turns an error reply into a PersistError. The code comes from
// the header, so it can be read without parsing the body; the body adds the
// machine-readable reason.
function throwIfError(m) {
  if (m.headers?.hasError) {
    // A status from the NATS server itself, such as 503 no responders when
    // no worker serves the prefix.
    throw new Error(`NATS status ${m.headers.code} ${m.headers.description || "no responders"}`);
  }
  const code = hdr(m, "Nats-Service-Error-Code");
  if (code === "") return m;
  let reason = "", description = hdr(m, "Nats-Service-Error");
  try {
    ({ reason, description } = m.json().error);
  } catch {
    // A body that is not the documented JSON still has its code.
  }
  throw new PersistError(Number(code), reason, description);
}

// nextOf returns a function that waits for the next message of sub, at most
// ms milliseconds.
function nextOf(sub) {
  const it = sub[Symbol.asyncIterator]();
  return async (ms = timeout) => {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`nothing on ${sub.getSubject()} within ${ms} ms`)), ms);
    });
    try {
      const r = await Promise.race([it.next(), expired]);
      if (r.done) throw new Error(`${sub.getSubject()} closed`);
      return r.value;
    } finally {
      clearTimeout(timer);
    }
  };
}

const nc = await connect({ servers: url, name: "persist-example-node" });
const subject = (op) => `${prefix}.api.${op}.${stream}`;

// request sends one request that has one reply (every op but getall and
// changes) and returns the reply message.
async function request(op, body = "", h = undefined) {
  const payload = typeof body === "string" ? body : JSON.stringify(body);
  return throwIfError(await nc.request(subject(op), payload, { timeout, headers: h }));
}

// set appends one message and returns the reply, {seq, time}.
async function set(payload, { key, previousSeq, header } = {}) {
  const h = headers();
  if (key !== undefined) h.set("Persist-Key", key);
  if (previousSeq !== undefined) h.set("Persist-Previous-Seq", String(previousSeq));
  for (const [name, value] of Object.entries(header ?? {})) h.set(name, value);
  return (await request("set", payload, h)).json();
}

// page reads one page of getall or changes. The answer is several messages,
// so it subscribes to an inbox of its own, publishes the request with that
// inbox as the reply subject, and reads until the terminator: a message with
// the header Persist-End: true. Never stop at an empty message instead: an
// empty payload is a valid stored message (nats.js requestMany's "sentinel"
// strategy makes that mistake).
async function page(op, body) {
  const inbox = createInbox();
  const sub = nc.subscribe(inbox);
  const next = nextOf(sub);
  try {
    nc.publish(subject(op), JSON.stringify(body), { reply: inbox });
    const msgs = [];
    for (;;) {
      const m = throwIfError(await next());
      if (hdr(m, "Persist-End") === "true") return { msgs, end: m };
      msgs.push(m);
    }
  } finally {
    sub.unsubscribe();
  }
}

// getAll reads the whole stream, max_msgs at a time, continuing from
// Persist-Next-Seq while Persist-Num-Pending is above 0. It returns the
// messages and the revision of the first page (a mirror built from the
// pages is exact at that revision once the events after it are applied).
async function getAll(maxMsgs) {
  const all = [];
  let start = 1, revision;
  for (;;) {
    const { msgs, end } = await page("getall", { start_seq: start, max_msgs: maxMsgs });
    revision ??= num(end, "Persist-Revision");
    all.push(...msgs);
    const pending = num(end, "Persist-Num-Pending");
    console.log(`  getall page from seq ${start}: seqs [${msgs.map((m) => hdr(m, "Persist-Seq")).join(" ")}]` +
      `, pending ${pending}` + (pending > 0 ? `, next seq ${hdr(end, "Persist-Next-Seq")}` : ""));
    if (pending === 0) return { msgs: all, revision };
    check(msgs.length > 0, "a page with pending messages is not empty");
    start = num(end, "Persist-Next-Seq");
  }
}

// changesAfter reads every change after revision r, max_msgs at a time,
// and hands each to apply in order. It continues from the revision of the
// last change received while Persist-Num-Pending is above 0, and returns
// the revision that a mirror which applied them all is exact at.
async function changesAfter(r, maxMsgs, apply) {
  for (;;) {
    const { msgs, end } = await page("changes", { after_revision: r, max_msgs: maxMsgs });
    const pending = num(end, "Persist-Num-Pending");
    console.log(`  changes page after revision ${r}: ${msgs.length} changes, pending ${pending}`);
    msgs.forEach(apply);
    if (pending === 0) return num(end, "Persist-Revision");
    check(msgs.length > 0, "a page with pending changes is not empty");
    r = num(msgs.at(-1), "Persist-Revision");
  }
}

// Mirror is a local copy of a stream: messages by seq, and an index of the
// keyed ones. apply takes a live event or a change, by the rules of
// PROTOCOL.md section 5; applying one twice changes nothing.
class Mirror {
  msgs = new Map(); // seq → {seq, key, data}
  byKey = new Map(); // key → seq
  revision = 0;

  add(m) {
    const seq = num(m, "Persist-Seq");
    if (this.msgs.has(seq)) return;
    const key = m.headers?.has("Persist-Key") ? hdr(m, "Persist-Key") : undefined;
    if (key !== undefined) {
      // A keyed set replaces the message that had its key.
      this.drop(this.byKey.get(key));
      this.byKey.set(key, seq);
    }
    this.msgs.set(seq, { seq, key, data: text(m.data) });
  }

  drop(seq) {
    const old = this.msgs.get(seq);
    if (old === undefined) return;
    this.msgs.delete(seq);
    if (old.key !== undefined && this.byKey.get(old.key) === seq) this.byKey.delete(old.key);
  }

  apply(m) {
    const revision = num(m, "Persist-Revision");
    switch (hdr(m, "Persist-Op")) {
      case "set":
        this.add(m);
        break;
      case "delete": {
        const { ranges, keys = [] } = m.json();
        for (const [first, last] of ranges) {
          for (const seq of [...this.msgs.keys()]) if (seq >= first && seq <= last) this.drop(seq);
        }
        // Only changes answers name keys: a held keyed message may have been
        // replaced after our revision by a set that is itself gone since.
        for (const key of keys) this.drop(this.byKey.get(key));
        break;
      }
      case "config":
        break; // the config is not mirrored here
      case "destroy":
        this.msgs.clear();
        this.byKey.clear();
        break;
      default:
        throw new Error(`unknown Persist-Op ${JSON.stringify(hdr(m, "Persist-Op"))}`);
    }
    this.revision = Math.max(this.revision, revision);
  }

  // lines gives the mirror's messages, one line each, in seq order.
  lines() {
    return [...this.msgs.values()].sort((a, b) => a.seq - b.seq)
      .map((m) => `${m.seq} ${m.key ?? "-"} ${JSON.stringify(m.data)}`);
  }
}

// A watchdog: nothing here should take long, and a hang must fail too.
setTimeout(() => {
  console.error("FAIL: the example did not finish within 60 s");
  process.exit(1);
}, 60_000).unref();

console.log(`connected to ${url}; stream ${stream}`);

// 1. Watch first, so that no event of the stream is missed.
const events = nc.subscribe(`${prefix}.ev.${stream}`);
const nextEvent = nextOf(events);
await nc.flush();

// 2. Set a few messages: plain, keyed (with a user header), and one with an
// empty payload, which is a message like any other.
console.log("set:");
const written = [
  ["hello", {}],
  ["hi", { key: "greeting", header: { "Content-Type": "text/plain" } }],
  ["", {}],
  ["blue", { key: "colour" }],
  ["last", {}],
];
for (const [i, [payload, opts]] of written.entries()) {
  const r = await set(payload, opts);
  console.log(`  ${JSON.stringify(payload)}${opts.key ? ` key ${opts.key}` : ""} -> seq ${r.seq}`);
  check(r.seq === i + 1, `set ${i + 1} got seq ${r.seq}`);
}

// 3. The events of those writes, in revision order.
console.log("events:");
for (let rev = 1; rev <= written.length; rev++) {
  const e = await nextEvent();
  console.log(`  ${hdr(e, "Persist-Op")} revision ${hdr(e, "Persist-Revision")} seq ${hdr(e, "Persist-Seq")}`);
  check(hdr(e, "Persist-Op") === "set" && num(e, "Persist-Revision") === rev, `event ${rev}`);
  check(text(e.data) === written[rev - 1][0], `event ${rev} payload`);
}

// 4. Get by seq and by key.
console.log("get:");
const empty = await request("get", { seq: 3 });
console.log(`  seq 3 -> ${JSON.stringify(text(empty.data))} (${empty.data.length} bytes)`);
check(empty.data.length === 0 && num(empty, "Persist-Seq") === 3, "get seq 3 is the empty message");
const greeting = await request("get", { key: "greeting" });
console.log(`  key greeting -> seq ${hdr(greeting, "Persist-Seq")} ${JSON.stringify(text(greeting.data))}` +
  ` Content-Type ${hdr(greeting, "Content-Type")}`);
check(text(greeting.data) === "hi" && num(greeting, "Persist-Seq") === 2, "get key greeting");
check(hdr(greeting, "Content-Type") === "text/plain", "the user header is stored");

// 5. A conditional write with the wrong previous seq is refused with 409.
console.log("conditional set:");
try {
  await set("hey", { key: "greeting", previousSeq: 1 });
  throw new Error("set with a wrong Persist-Previous-Seq succeeded");
} catch (err) {
  if (!(err instanceof PersistError)) throw err;
  console.log(`  key greeting, previous seq 1 -> ${err.code} ${err.reason}`);
  check(err.code === 409 && err.reason === "wrong_last_sequence", "409 wrong_last_sequence");
}
const replaced = await set("hey", { key: "greeting", previousSeq: 2 });
console.log(`  key greeting, previous seq 2 -> seq ${replaced.seq} (replaces seq 2)`);
check(replaced.seq === 6, "the conditional set got seq 6");
const e6 = await nextEvent();
console.log(`  event ${hdr(e6, "Persist-Op")} revision ${hdr(e6, "Persist-Revision")} seq ${hdr(e6, "Persist-Seq")} key ${hdr(e6, "Persist-Key")}`);
check(num(e6, "Persist-Revision") === 6 && num(e6, "Persist-Seq") === 6, "event of the conditional set");

// 6. Page through the stream two messages at a time. The empty message at
// seq 3 is read like the others, and so is everything after it.
console.log("getall, 2 messages a page:");
const first = await getAll(2);
const mirror = new Mirror();
for (const m of first.msgs) mirror.add(m);
mirror.revision = first.revision;
console.log(`  ${first.msgs.length} messages at revision ${first.revision}`);
check(mirror.lines().join("\n") === [
  `1 - "hello"`, `3 - ""`, `4 colour "blue"`, `5 - "last"`, `6 greeting "hey"`,
].join("\n"), `getall read ${mirror.lines()}`);
check(first.revision === 6, "revision 6 after six writes");

// 7. Stop watching, change the stream, then catch up with changes.
events.unsubscribe();
const r = mirror.revision;
console.log(`not watching; the mirror is at revision ${r}:`);
const json = async (op, body) => (await request(op, body)).json();
const offline = [
  ['set key colour "green"', () => set("green", { key: "colour" })], // replaces seq 4
  ["delete seq 1", () => json("delete", { seq: 1 })],
  ['set "temporary"', () => set("temporary")], // deleted next: changes leaves it out
  ["delete seq 8", () => json("delete", { seq: 8 })],
  ["config max_msgs 100", () => json("config", { max_msgs: 100 })],
  // The subtle case: a keyed set replaces seq 6, which the mirror holds, and
  // is deleted itself. Only the delete's "keys" tells the mirror to drop 6.
  ['set key greeting "bye"', () => set("bye", { key: "greeting" })],
  ["delete key greeting", () => json("delete", { key: "greeting" })],
  ['set "after"', () => set("after")],
];
for (const [what, run] of offline) {
  const reply = await run();
  const result = reply.seq !== undefined ? `seq ${reply.seq}` : reply.count !== undefined ? `count ${reply.count}` : "done";
  console.log(`  ${what} -> ${result}`);
}
console.log("catch up with changes:");
const changes = [];
mirror.revision = await changesAfter(r, 2, (c) => {
  const op = hdr(c, "Persist-Op");
  let what = `seq ${hdr(c, "Persist-Seq")}`;
  if (op === "delete") what = text(c.data);
  if (op === "config") what = `max_msgs ${c.json().max_msgs}`;
  console.log(`    ${op} revision ${hdr(c, "Persist-Revision")} ${what}`);
  mirror.apply(c);
  changes.push(c);
});
const revs = changes.map((c) => num(c, "Persist-Revision"));
check(revs.every((v, i) => v > r && (i === 0 || v > revs[i - 1])), `change revisions rise above ${r}: ${revs}`);
check(!changes.some((c) => num(c, "Persist-Seq") === 8), "the set of the deleted seq 8 is left out");
check(changes.some((c) => hdr(c, "Persist-Op") === "delete" && c.json().keys?.includes("greeting")),
  "the delete of key greeting names its key");

// 8. The mirror now equals a fresh read of the stream.
console.log("fresh getall to compare:");
const fresh = new Mirror();
const now = await getAll(1000);
for (const m of now.msgs) fresh.add(m);
console.log(`  mirror at revision ${mirror.revision}: ${mirror.lines().join(", ")}`);
check(mirror.revision === now.revision, `mirror revision ${mirror.revision}, stream ${now.revision}`);
check(mirror.lines().join("\n") === fresh.lines().join("\n"), `mirror ${mirror.lines()} != getall ${fresh.lines()}`);
check(JSON.stringify([...mirror.byKey].sort()) === JSON.stringify([...fresh.byKey].sort()), "the key indexes agree");
check(fresh.lines().join("\n") === [`3 - ""`, `5 - "last"`, `7 colour "green"`, `10 - "after"`].join("\n"),
  `final stream ${fresh.lines()}`);

// 9. Clean up.
check((await request("destroy")).json().ok === true, "destroy");
await nc.drain();
console.log("ok");
