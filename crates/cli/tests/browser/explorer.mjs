// The portal's chain explorer in a real browser (Debian's Chromium, driven by Playwright): each
// page renders under its own Content-Security-Policy with no violation, can be used with the
// keyboard (the skip link, the jump form), fits a phone-sized screen, and axe-core finds no
// serious or critical accessibility violation. Saves a screenshot of each page.
//
// node explorer.mjs <node URL> <screenshot directory> <a block height with a refused transaction>
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const [base, shots, refusedHeight] = process.argv.slice(2);
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
};

async function visit(context, path) {
  const page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const response = await page.goto(base + path);
  return { page, response, violations };
}

const pages = [
  ["home", "/portal", "medledger"],
  ["explorer", "/portal/explorer", "Chain explorer"],
  ["block", `/portal/explorer/blocks/${refusedHeight}`, `Block ${refusedHeight}`],
  ["missing-block", "/portal/explorer/blocks/999999", "No such block"],
];

// The pages as a visitor gets them: the policy in force, nothing refused by it.
const plain = await browser.newContext({ viewport: { width: 1280, height: 900 } });
for (const [name, path, heading] of pages) {
  const { page, violations } = await visit(plain, path);
  const h1 = (await page.locator("h1").first().textContent())?.trim();
  check(h1 === heading, `${path}: the heading is ${JSON.stringify(h1)}, not ${heading}`);
  check(violations.length === 0, `${path}: CSP violations ${violations.join("; ")}`);
  const styled = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
  check(/system-ui|sans/.test(styled), `${path}: the stylesheet did not apply (${styled})`);
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  await page.close();
}

// The keyboard: the first Tab reaches the skip link, which moves focus to the content; the jump
// form opens a block.
{
  const { page } = await visit(plain, "/portal/explorer");
  await page.keyboard.press("Tab");
  const skip = await page.evaluate(() => document.activeElement?.textContent?.trim());
  check(skip === "Skip to the content", `the first Tab reached ${JSON.stringify(skip)}`);
  await page.keyboard.press("Enter");
  const focused = await page.evaluate(() => document.activeElement?.id);
  check(focused === "main", `the skip link focused ${JSON.stringify(focused)}`);
  await page.getByLabel("Open the block at height").fill("1");
  await page.getByRole("button", { name: "Open" }).press("Enter");
  await page.waitForURL("**/portal/explorer/blocks/1");
  check((await page.locator("h1").textContent()) === "Block 1", "the jump form did not open block 1");
  await page.close();
}

// The refused transaction stands out with its code.
{
  const { page } = await visit(plain, `/portal/explorer/blocks/${refusedHeight}`);
  const refused = await page.locator("td .bad").first().textContent();
  check(refused?.includes("already_enrolled"), `the refusal reads ${JSON.stringify(refused)}`);
  await page.close();
}

// A phone-sized screen: no page scrolls sideways (wide tables scroll inside their own box).
const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true });
for (const [name, path] of pages) {
  const { page } = await visit(phone, path);
  const wider = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(wider <= 1, `${path}: ${wider} px wider than a phone`);
  await page.screenshot({ path: `${shots}/${name}-phone.png`, fullPage: true });
  await page.close();
}

// axe-core on every page (injected past the page's policy, which allows no script).
const audit = await browser.newContext({ bypassCSP: true });
for (const [, path] of pages) {
  const { page } = await visit(audit, path);
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa", "best-practice"] }),
  );
  for (const violation of result.violations) {
    if (violation.impact === "serious" || violation.impact === "critical") {
      failures.push(`${path}: ${violation.id} (${violation.impact}): ${violation.help}`);
    }
  }
  console.log(`${path}: ${result.passes.length} axe rules pass, ${result.violations.length} violations`);
  await page.close();
}

await browser.close();
if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`${pages.length} pages checked in Chromium; screenshots in ${shots}`);
