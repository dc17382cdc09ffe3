// Measures the portal in Debian's Chromium: time to first contentful paint of the patient's
// pages and of a pharmacist's scan verdict (each a fresh tab; the first load cold, the rest with
// the stylesheet cached), and the weight of each page and its assets, raw and gzip'd.
// Used by scripts/bench-portal.sh, which starts a node holding many patients.
//
// node fcp.mjs '<JSON: base, patientLink, pharmacistLink, code, runs>'
import { chromium } from "playwright-core";
import { gzipSync } from "node:zlib";

const config = JSON.parse(process.argv[2]);
const { base } = config;
const runs = config.runs ?? 20;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});

async function person(link) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await page.goto(link);
  await page.getByRole("button", { name: "Make my passkey" }).click();
  await page.waitForURL(`${base}/portal`, { timeout: 30000 });
  return { context, page };
}

async function fcp(context, path) {
  const page = await context.newPage();
  const response = await page.goto(base + path);
  if (!response.ok()) throw new Error(`${path} answered ${response.status()}`);
  const ms = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const seen = performance.getEntriesByName("first-contentful-paint")[0];
        if (seen) return resolve(seen.startTime);
        new PerformanceObserver((list) => resolve(list.getEntries()[0].startTime)).observe({
          type: "paint",
          buffered: true,
        });
      }),
  );
  await page.close();
  return ms;
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { cold_ms: Math.round(samples[0]), p50_ms: Math.round(at(0.5)), p95_ms: Math.round(at(0.95)), max_ms: Math.round(sorted.at(-1)) };
}

async function measure(context, path) {
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await fcp(context, path));
  return summary(samples);
}

async function weight(context, path) {
  const body = await (await context.request.get(base + path)).body();
  return { bytes: body.length, gzip_bytes: gzipSync(body).length };
}

const report = { runs, fcp: {}, weight: {} };
const patient = await person(config.patientLink);
for (const path of ["/portal", "/portal/patient/access", "/portal/patient/consents"]) {
  report.fcp[path] = await measure(patient.context, path);
  report.weight[path] = await weight(patient.context, path);
}
const pharmacist = await person(config.pharmacistLink);
const scan = `/portal/pharmacy/scan?code=${encodeURIComponent(config.code)}`;
report.fcp["/portal/pharmacy/scan?code=…"] = await measure(pharmacist.context, scan);
report.weight["/portal/pharmacy/scan?code=…"] = await weight(pharmacist.context, scan);
for (const path of ["/portal/sign-in", "/portal/static/portal.css", "/portal/static/portal.js"]) {
  report.weight[path] = await weight(pharmacist.context, path);
}
await browser.close();
console.log(JSON.stringify(report, null, 2));
