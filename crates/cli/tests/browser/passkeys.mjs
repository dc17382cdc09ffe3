// People using the portal in a real browser (Debian's Chromium, driven by Playwright) with a
// virtual WebAuthn authenticator per person: invitations, passkeys, sessions, the patient's
// consents and access log, the pharmacist's scan, and each refusal. axe-core checks every page;
// a phone-sized screen never scrolls sideways. Saves a screenshot of each main page.
//
// node passkeys.mjs '<JSON: base, shots, patientLink, pharmacistLink, doctorLink, doctorKey,
//                     read (the argv of a practitioner's FHIR read), scan (a scanner's input)>'
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const config = JSON.parse(process.argv[2]);
const { base, shots } = config;
mkdirSync(shots, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  return ok;
};
const step = (what) => console.log(`- ${what}`);

// A person: a browser context whose page has a virtual platform authenticator (with user
// verification, like a phone's fingerprint check). CSP violations on any page are collected.
async function person() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { context, page, violations };
}

async function heading(page) {
  return (await page.locator("h1").first().textContent())?.trim();
}

// axe-core on the page as it is, and the same page on a phone-sized screen.
async function audit(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa", "best-practice"] }),
  );
  for (const violation of result.violations) {
    if (violation.impact === "serious" || violation.impact === "critical") {
      failures.push(`${name}: ${violation.id} (${violation.impact}): ${violation.help}`);
    }
  }
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  await page.setViewportSize({ width: 375, height: 740 });
  const wider = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(wider <= 1, `${name}: ${wider} px wider than a phone`);
  await page.screenshot({ path: `${shots}/${name}-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function makePasskey(page, link) {
  await page.goto(link);
  check((await heading(page)) === "Make your passkey", `${link}: no passkey page`);
  await page.getByRole("button", { name: "Make my passkey" }).click();
  await settled(page, `${base}/portal`);
}

// Waits for the passkey script to go to `url`, or fails with what it told the person.
async function settled(page, url) {
  await Promise.race([
    page.waitForURL(url, { timeout: 15000 }),
    page.waitForSelector("#passkey-status:has-text('did not work')", { timeout: 15000 }),
  ]).catch(() => {});
  if (page.url() !== url) {
    throw new Error(`the passkey step stopped at ${page.url()}: ${await page.locator("#passkey-status").textContent()}`);
  }
}

async function signIn(page) {
  await page.getByRole("button", { name: "Sign in with a passkey" }).click();
}

// The practitioner's FHIR read: whether it was allowed, and what the command said.
let readSaid = "";
function readRecord() {
  try {
    readSaid = execFileSync(config.read[0], config.read.slice(1), { stdio: "pipe" }).toString();
    return true;
  } catch (error) {
    readSaid = `${error.stdout}${error.stderr}`;
    return false;
  }
}

async function consentRows(page) {
  return await page.locator("main table tbody tr").count();
}

async function fillGrant(page, purpose) {
  await page.getByLabel("One clinician (their member key)").check();
  await page.getByLabel("Their key, organisation or role").fill(config.doctorKey);
  await page.getByLabel("For what purpose").selectOption(purpose);
}

// The sign-in page and the welcome page as a visitor sees them.
{
  step("sign-in and welcome pages");
  const { context, page, violations } = await person();
  const response = await page.goto(`${base}/portal/sign-in`);
  check(response.status() === 200, `sign-in answered ${response.status()}`);
  check((await heading(page)) === "Sign in", "no sign-in heading");
  await audit(page, "sign-in");
  await page.goto(config.doctorLink);
  check((await heading(page)) === "Make your passkey", "no welcome heading");
  await audit(page, "welcome");
  // An answer that is no passkey's, or to no ceremony, is refused in JSON and signs nobody in.
  await page.goto(`${base}/portal/sign-in`);
  const refusals = await page.evaluate(async () => {
    const post = async (url, body) => {
      const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      return [response.status, (await response.json()).error?.code];
    };
    return [
      await post("/portal/passkey/sign-in", '{"id": "x"}'),
      await post("/portal/passkey/register", "[]"),
      await post("/portal/passkey/register/options", '{"invitation": "00"}'),
    ];
  });
  check(
    JSON.stringify(refusals) === JSON.stringify([[401, "passkey_refused"], [401, "passkey_refused"], [410, "passkey_refused"]]),
    `bogus passkey answers got ${JSON.stringify(refusals)}`,
  );
  check((await context.cookies()).length === 0, "a refused answer set a cookie");
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  await context.close();
}

// The patient.
let patient;
{
  step("patient makes a passkey");
  const { context, page, violations } = await person();
  await makePasskey(page, config.patientLink);
  const home = await page.locator("main").textContent();
  check(home.includes("Signed in as a patient at hospital"), `patient home: ${home}`);
  await audit(page, "patient-home");

  step("patient: the wrong role is refused");
  let response = await page.goto(`${base}/portal/pharmacy/scan`);
  check(response.status() === 403, `the scan page answered a patient ${response.status()}`);
  check((await heading(page)) === "This page is not for your role", "no role refusal");

  step("patient grants consent");
  await page.goto(`${base}/portal/patient/consents`);
  check((await consentRows(page)) === 0, "a new patient has consents");
  await fillGrant(page, "TREAT");
  await page.getByRole("button", { name: "Grant" }).click();
  await page.waitForSelector("p.verdict");
  const granted = await page.locator("p.verdict").textContent();
  check(granted.includes("Your consent is granted"), `granting said: ${granted}`);
  check((await consentRows(page)) === 1, "the grant is not listed");

  step("patient: a forged CSRF token is refused and changes nothing");
  await fillGrant(page, "HOPERAT");
  await page.evaluate(() => {
    document.querySelector("form.stack input[name=csrf]").value = "00".repeat(32);
  });
  const [forged] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/portal/patient/consents") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Grant" }).click(),
  ]);
  check(forged.status() === 403, `a forged token answered ${forged.status()}`);
  check((await heading(page)) === "This form was refused", "no CSRF refusal page");
  await page.goto(`${base}/portal/patient/consents`);
  check((await consentRows(page)) === 1, "the forged form granted something");

  step("a practitioner reads the record through FHIR; the patient sees it");
  check(readRecord(), "the practitioner's read was refused under consent");
  await page.goto(`${base}/portal/patient/access`);
  let log = await page.locator("main table").first().textContent();
  check(log.includes("hospital") && log.includes("practitioner") && log.includes("treatment") && log.includes("allowed"), `access log: ${log}`);
  await audit(page, "patient-access");

  step("patient revokes; the next read is refused and shown");
  await page.goto(`${base}/portal/patient/consents`);
  await page.getByRole("button", { name: /^Revoke consent/ }).click();
  await page.waitForSelector("p.verdict");
  const revoked = await page.locator("p.verdict").textContent();
  check(revoked.includes("revoked"), `revoking said: ${revoked}`);
  check((await page.locator("main table").textContent()).includes("revoked"), "the grant is not shown revoked");
  check(!readRecord(), "a read after revocation was allowed");
  await page.goto(`${base}/portal/patient/access`);
  log = await page.locator("main table").first().textContent();
  check(log.includes("refused"), `the refused read is not in the log: ${log}`);

  step("patient: a form sent after the session ended is kept, and sent after signing in");
  await page.goto(`${base}/portal/patient/consents`);
  await fillGrant(page, "HPAYMT");
  // The session ends on the node while this tab still holds its cookie, as when it times out:
  // "sign out everywhere" from another tab, whose answer clears the cookie, which is put back.
  const held = await context.cookies();
  const other = await context.newPage();
  await other.goto(`${base}/portal`);
  await other.getByRole("button", { name: "Sign out everywhere" }).click();
  await other.waitForURL(`${base}/portal/sign-in`);
  await other.close();
  await context.addCookies(held);
  [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/portal/patient/consents") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Grant" }).click(),
  ]);
  check(response.status() === 401, `a form without a session answered ${response.status()}`);
  const kept = await page.locator("main").textContent();
  check(kept.includes("Your session ended"), `no kept-form notice: ${kept}`);
  await signIn(page);
  // Signed in again, the kept form waits for the person to check it and send it.
  const send = page.getByRole("button", { name: "Send what you typed" });
  await send.waitFor({ state: "visible" });
  await page.waitForFunction(() => !document.getElementById("kept-send").disabled, null, { timeout: 15000 });
  check((await page.locator("#kept-form").textContent()).includes("HPAYMT"), "the kept form does not show what was typed");
  await send.click();
  await page.waitForSelector("p.verdict:has-text('Your consent is granted')", { timeout: 15000 });
  const resent = await page.locator("p.verdict").textContent();
  check(resent.includes("Your consent is granted"), `the kept form said: ${resent}`);
  check((await page.locator("main table").textContent()).includes("healthcare payment"), "the kept grant is not listed");
  await audit(page, "patient-consents");

  await page.goto(`${base}/portal/patient/erase`);
  check((await page.locator("main").textContent()).includes("cannot be undone"), "no erasure warning");
  await audit(page, "patient-erase");

  step("patient: tokens, and research sharing granted then stopped");
  await page.goto(`${base}/portal/patient/tokens`);
  const tokens = await page.locator("main").textContent();
  check(tokens.includes("Consortium dollar (USD)") && tokens.includes("0.00 USD"), `tokens: ${tokens}`);
  await audit(page, "patient-tokens");
  await page.goto(`${base}/portal/patient/research`);
  check((await page.locator("main").textContent()).includes("You do not share"), "research before any consent");
  await page.getByLabel("health, medical or biomedical research").check();
  await page.getByLabel("not for commercial use").check();
  await page.getByRole("button", { name: "Share on these terms" }).click();
  await page.waitForSelector("p.verdict");
  let research = await page.locator("main").textContent();
  check(research.includes("may be shared for research") && research.includes("not for commercial use"), `research: ${research}`);
  await audit(page, "patient-research");
  await page.getByRole("button", { name: "Stop sharing for research" }).click();
  await page.waitForSelector("p.verdict");
  research = await page.locator("main").textContent();
  check(research.includes("no longer shared") && research.includes("You do not share"), `stopping: ${research}`);

  step("patient: a trial's eConsent signed, then withdrawal");
  await page.goto(`${base}/portal/patient/trials?study=nonesuch`);
  check((await page.locator("p.verdict").textContent()).includes("no trial with the id"), "an unknown trial");
  await page.goto(`${base}/portal/patient/trials?study=portal-1`);
  let trial = await page.locator("main").textContent();
  check(trial.includes("your consent is awaited") && trial.includes("Once-weekly insulin"), `trial: ${trial}`);
  await page.getByRole("button", { name: "I consent to version 1" }).click();
  await page.waitForSelector("p.verdict");
  trial = await page.locator("main").textContent();
  check(trial.includes("You consented to version 1") && trial.includes("taking part"), `consenting: ${trial}`);
  await audit(page, "patient-trial");
  await page.getByRole("button", { name: "Withdraw from this trial" }).click();
  await page.waitForSelector("p.verdict");
  trial = await page.locator("main").textContent();
  check(trial.includes("You have withdrawn") && trial.includes("withdrawn"), `withdrawing: ${trial}`);

  step("patient signs out");
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(`${base}/portal/sign-in`);
  response = await page.goto(`${base}/portal/patient/consents`);
  check(response.status() === 401, `a signed-out page answered ${response.status()}`);
  // Another site's form, sent while the person has no session, is refused outright: it is
  // not kept for after the next sign-in.
  const crossSite = await page.request.post(`${base}/portal/patient/erase`, {
    form: { understood: "yes" },
    headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site" },
  });
  check(crossSite.status() === 403, `a cross-site form without a session answered ${crossSite.status()}`);
  check(!(await crossSite.text()).includes("kept-form"), "a cross-site form was kept for later");
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  patient = { context, page };
}

// The pharmacist.
{
  step("pharmacist makes a passkey and scans a recalled pack");
  const { context, page, violations } = await person();
  await makePasskey(page, config.pharmacistLink);
  await page.getByRole("link", { name: "Scan a pack" }).first().click();
  const field = page.getByLabel("Scan the pack's code, or type it as printed");
  await field.focus();
  // A keyboard-wedge scanner types the symbols, then Enter, which sends the form.
  await page.keyboard.insertText(config.scan);
  await Promise.all([page.waitForURL(/code=/), page.keyboard.press("Enter")]);
  const verdict = (await page.locator(".big").textContent())?.trim();
  check(verdict === "Recalled", `the verdict reads ${JSON.stringify(verdict)}`);
  const why = await page.locator("main").textContent();
  check(why.includes("particulates"), `the recall's reason is not shown: ${why}`);
  check(why.includes("made and serialised"), `no custody trail: ${why}`);
  check(why.includes("Do not dispense"), `no advice: ${why}`);
  await audit(page, "scan-verdict");
  // Garbage is answered in words.
  await page.goto(`${base}/portal/pharmacy/scan?code=hello`);
  const error = await page.locator("p.verdict").textContent();
  check(error.includes("could not be read as a pack's code"), `garbage said: ${error}`);

  step("pharmacist dispenses a genuine pack, once");
  await page.goto(`${base}/portal/pharmacy/scan?code=${encodeURIComponent(config.genuine)}`);
  check((await page.locator(".big").textContent())?.trim() === "Genuine", "the shipped pack is not genuine");
  await page.getByRole("button", { name: "Dispense this pack" }).click();
  await page.waitForSelector("p.verdict");
  const dispensed = await page.locator("p.verdict").first().textContent();
  check(dispensed.includes("Dispensed"), `dispensing said: ${dispensed}`);
  check((await page.locator(".big").textContent())?.trim() === "Already dispensed", "the pack is not shown dispensed");
  check((await page.getByRole("button", { name: "Dispense this pack" }).count()) === 0, "a dispensed pack offers dispensing");

  step("an invitation works once");
  const response = await page.goto(config.pharmacistLink);
  check(response.status() === 410, `a used invitation answered ${response.status()}`);
  check((await heading(page)) === "This invitation cannot be used", "no used-invitation page");

  step("pharmacist signs out and in again");
  await page.goto(`${base}/portal`);
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(`${base}/portal/sign-in`);
  await Promise.all([page.waitForURL(`${base}/portal`, { timeout: 15000 }), signIn(page)]);
  check((await page.locator("main").textContent()).includes("a pharmacist at pharmacy"), "not signed in again");
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  await context.close();
}

// The care team: an alert arrives while the page is open, and is acknowledged.
{
  step("a practitioner sees an alert arrive, live");
  const { context, page, violations } = await person();
  await makePasskey(page, config.doctorLink);
  await page.goto(`${base}/portal/care/alerts`);
  check((await page.locator("main").textContent()).includes("No alerts"), "alerts before any reading");
  await page.waitForFunction(() => document.getElementById("alerts")?.dataset.stream);
  execFileSync(config.simulate[0], config.simulate.slice(1), { stdio: "pipe" });
  await page.waitForSelector("#alerts td:has-text('low-spo2')", { timeout: 30000 });
  check(page.url() === `${base}/portal/care/alerts`, "the page navigated instead of updating");
  check((await page.locator("#alerts").textContent()).includes("Patient/portal-patient"), "the alert names no patient");
  await audit(page, "care-alerts");
  await page.getByRole("button", { name: /^Acknowledge alert/ }).first().click();
  await page.waitForSelector("p.verdict");
  const acked = await page.locator("p.verdict").textContent();
  check(acked.includes("acknowledged in your name"), `acknowledging said: ${acked}`);
  check((await page.locator("#alerts").textContent()).includes("acknowledged at"), "the alert is not shown acknowledged");

  step("a practitioner without consent sees no readings, and the refusal is recorded");
  // A link only fills the form: nothing is read until the practitioner sends it.
  await page.goto(`${base}/portal/care/readings?patient=Patient/portal-patient`);
  check((await page.locator("main").textContent()).includes("Each view is recorded"), "no readings form");
  await page.getByRole("button", { name: "Show readings" }).click();
  await page.waitForSelector("p.verdict");
  const readings = await page.locator("main").textContent();
  check(readings.includes("has not allowed you"), `readings without consent: ${readings}`);
  await audit(page, "care-readings");
  const response = await page.goto(`${base}/portal/patient/consents`);
  check(response.status() === 403, `a practitioner reached the patient's consents: ${response.status()}`);
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  await context.close();
}

// The auditor: a patient's access trail, exported; a pack's custody trail.
{
  step("an auditor reads and downloads a patient's access trail");
  const { context, page, violations } = await person();
  await makePasskey(page, config.auditorLink);
  await page.goto(`${base}/portal/audit?patient=portal-patient`);
  const trail = await page.locator("main table").textContent();
  check(trail.includes("allowed") && trail.includes("refused") && trail.includes("TREAT"), `access trail: ${trail}`);
  await audit(page, "audit-access");
  const csv = await (await page.request.get(`${base}/portal/audit?patient=portal-patient&format=csv`)).text();
  const lines = csv.trim().split("\r\n");
  check(lines[0].startsWith("time_utc,reader_org,reader_role"), `CSV header: ${lines[0]}`);
  check(lines.length >= 4, `CSV rows: ${lines.length}`);
  const fhir = await page.request.get(`${base}/portal/audit?patient=portal-patient&format=fhir`);
  check(fhir.headers()["content-type"]?.startsWith("application/fhir+json"), "the Bundle is not FHIR JSON");
  writeFileSync(config.bundleOut, await fhir.text());

  step("an auditor reads a pack's custody trail");
  await page.goto(`${base}/portal/audit?code=${encodeURIComponent(config.genuine)}`);
  const custody = await page.locator("main").textContent();
  check(custody.includes("shipped to pharmacy") && custody.includes("received") && custody.includes("dispensed"), `custody trail: ${custody}`);
  await audit(page, "audit-unit");
  const unitCsv = await (await page.request.get(`${base}/portal/audit?code=${encodeURIComponent(config.genuine)}&format=csv`)).text();
  check(unitCsv.split("\r\n").length >= 5, `custody CSV: ${unitCsv}`);
  const wrong = await page.goto(`${base}/portal/payer/review`);
  check(wrong.status() === 403, `an auditor reached the payer's queue: ${wrong.status()}`);
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  await context.close();
}

// The payer's reviewer: the queued claim with its reasons, paid.
{
  step("a payer's reviewer pays a claim in review");
  const { context, page, violations } = await person();
  await makePasskey(page, config.reviewerLink);
  await page.goto(`${base}/portal/payer/review`);
  const queue = await page.locator("main").textContent();
  check(queue.includes("holds no record of this service"), `the queue gives no reason: ${queue}`);
  check(queue.includes("hospital") && queue.includes("gold") && queue.includes("150.00 USD"), `the queue: ${queue}`);
  await audit(page, "payer-review");
  await page.getByRole("button", { name: /^Pay claim/ }).click();
  await page.waitForSelector("p.verdict");
  const paid = await page.locator("p.verdict").textContent();
  check(paid.includes("is paid"), `paying said: ${paid}`);
  check((await page.locator("main").textContent()).includes("Nothing waits for review"), "the paid claim is still queued");
  check(violations.length === 0, `CSP violations: ${violations.join("; ")}`);
  await context.close();
}

// The patient erases their records, after a plain warning; reads then find nothing.
{
  step("the patient erases their records");
  const { page } = patient;
  await page.goto(`${base}/portal/sign-in`);
  await signIn(page);
  await page.waitForURL(`${base}/portal`, { timeout: 15000 });
  await page.goto(`${base}/portal/patient/claims`);
  const eob = await page.locator("main table").textContent();
  check(eob.includes("decided") && eob.includes("150.00 USD") && eob.includes("0.00 USD"), `the patient's claims: ${eob}`);
  await audit(page, "patient-claims");
  await page.goto(`${base}/portal/patient/erase`);
  await page.getByLabel("I understand that erasure cannot be undone").check();
  await page.getByRole("button", { name: "Erase my records" }).click();
  await page.waitForSelector("p.verdict", { timeout: 30000 });
  const erased = await page.locator("p.verdict").textContent();
  check(erased.includes("Your records are erased"), `erasing said: ${erased}`);
  check(!readRecord() && readSaid.includes("erased"), `a read after erasure said: ${readSaid}`);
  await patient.context.close();
}

await browser.close();
if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("the portal's passkey flows passed in Chromium");
