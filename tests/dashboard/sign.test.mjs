// The dashboard's Shared Key signing against the reference test vectors (reference §2), which
// the official SDK's own policy produced. Run with `node --test tests/dashboard/`.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  canonicalQuery,
  formatOcpDate,
  isValidKey,
  signRequest,
  stringToSign,
} from "../../crates/openbatch-server/dashboard/sign.js";

const KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ACCOUNT = "testacct";
const DATE = "Sun, 22 Nov 2026 08:35:56 GMT";
const BASE = "http://127.0.0.1:8080";

const vectors = [
  {
    name: "GET a filtered task list",
    method: "GET",
    url: "/jobs/j1/tasks?api-version=2025-06-01&maxresults=7&$filter=state%20eq%20%27completed%27",
    headers: { "ocp-date": DATE, Accept: "application/json" },
    sts: "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/jobs/j1/tasks\n$filter:state eq 'completed'\napi-version:2025-06-01\nmaxresults:7",
    signature: "8SdGeZqamtlmxJCVfnyHSUKbcC1wLMIy71ilm0VFzIE=",
  },
  {
    name: "POST a job with a body",
    method: "POST",
    url: "/jobs?api-version=2025-06-01",
    headers: {
      "ocp-date": DATE,
      "Content-Length": "42",
      "Content-Type": "application/json; odata=minimalmetadata",
    },
    sts: "POST\n\n\n42\n\napplication/json; odata=minimalmetadata\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/jobs\napi-version:2025-06-01",
    signature: "VKL6L3Q9hdiVmt88wJuB55gUUtrjzhFlNTCQsD6UTVI=",
  },
  {
    name: "DELETE a pool (no Content-Length given: signs 0)",
    method: "DELETE",
    url: "/pools/p1?api-version=2025-06-01",
    headers: { "ocp-date": DATE },
    sts: "DELETE\n\n\n0\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/pools/p1\napi-version:2025-06-01",
    signature: "U+NKyooJXPbnp4WR2ZvAlykBSseEquLUVfKO+/qeZMw=",
  },
  {
    name: "GET a range of a file with an encoded path",
    method: "GET",
    url: "/jobs/j1/tasks/t0/files/wd%2Fresult.txt?api-version=2025-06-01",
    headers: { "ocp-date": DATE, "ocp-range": "bytes=0-4" },
    sts: "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\nocp-range:bytes=0-4\n/testacct/jobs/j1/tasks/t0/files/wd%2Fresult.txt\napi-version:2025-06-01",
    signature: "uhXk3p52cmMdTYLHNvyCavzAi8ibkOV1fp6QXQnrMPQ=",
  },
];

for (const v of vectors) {
  test(`reference vector: ${v.name}`, async () => {
    const url = new URL(v.url, BASE);
    assert.equal(stringToSign(ACCOUNT, v.method, url, v.headers), v.sts);
    const signed = await signRequest({
      account: ACCOUNT,
      key: KEY,
      method: v.method,
      url,
      headers: v.headers,
    });
    assert.equal(signed["authorization"], `SharedKey ${ACCOUNT}:${v.signature}`);
    assert.equal(signed["ocp-date"], DATE);
  });
}

test("the date defaults to now, in RFC 1123", async () => {
  const now = new Date(Date.UTC(2026, 10, 22, 8, 35, 56));
  assert.equal(formatOcpDate(now), DATE);
  const signed = await signRequest({
    account: ACCOUNT,
    key: KEY,
    method: "GET",
    url: new URL(vectors[0].url, BASE),
    now,
  });
  assert.equal(signed["ocp-date"], DATE);
  assert.equal(signed["authorization"], `SharedKey ${ACCOUNT}:${vectors[0].signature}`);
});

test("the URL the browser sends is what gets signed (quotes and spaces encoded)", () => {
  // fetch() sends `new URL(...)`'s serialization: a query written with raw quotes and spaces is
  // percent-encoded on the wire, and the signed (decoded) parameters are the same.
  const url = new URL("/jobs/j1/tasks?api-version=2025-06-01&maxresults=7&$filter=state eq 'completed'", BASE);
  assert.equal(stringToSign(ACCOUNT, "GET", url, { "ocp-date": DATE }), vectors[0].sts);
});

test("query canonicalization: form decoding, first value wins, empty values dropped, byte order", () => {
  assert.deepEqual(canonicalQuery("?b=2&a=x+y&b=3&c=&d&%24filter=id%20eq%20%27t%27&Z=1"), [
    ["$filter", "id eq 't'"],
    ["Z", "1"],
    ["a", "x y"],
    ["b", "2"],
  ]);
  // Invalid escapes are kept as written rather than failing.
  assert.deepEqual(canonicalQuery("a=%zz%41"), [["a", "%zzA"]]);
});

test("ocp- headers are signed lowercase and sorted; unsigned headers are ignored", () => {
  const sts = stringToSign(ACCOUNT, "HEAD", new URL("/pools?api-version=2025-06-01", BASE), {
    "OCP-Range": "bytes=1-",
    "ocp-date": DATE,
    "client-request-id": "x",
    Accept: "application/json",
    "If-Match": '"etag"',
  });
  assert.equal(
    sts,
    'HEAD\n\n\n\n\n\n\n\n"etag"\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\nocp-range:bytes=1-\n/testacct/pools\napi-version:2025-06-01',
  );
});

test("key validation", () => {
  assert.equal(isValidKey(KEY), true);
  assert.equal(isValidKey("not base64!"), false);
  assert.equal(isValidKey(""), false);
});
