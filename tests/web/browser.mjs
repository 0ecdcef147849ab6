// Runs a list of browser steps in headless Debian Chromium (playwright-core) and
// prints what each step saw as JSON, so the Python tests (tests/clients/test_web.py)
// can assert on it next to a real XMPP client. One browser context per run: the
// cookies of one step are there for the next.
//
//   node browser.mjs SHOT_DIR '<json steps>'
//
// Steps: {"goto": url} | {"click": selector} (follows the navigation it starts) |
// {"fill": selector, "value": text} | {"text": selector} | {"value": selector} |
// {"attr": selector, "name": attribute} | {"shot": name} (SHOT_DIR/name.png).
// Navigations report {status, url, title}; reads report the text or null.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";

const [shotDir, rawSteps] = process.argv.slice(2);
if (!shotDir || !rawSteps) {
  console.error("usage: node browser.mjs SHOT_DIR STEPS_JSON");
  process.exit(2);
}
const steps = JSON.parse(rawSteps);
mkdirSync(shotDir, { recursive: true });

const executablePath =
  process.env.CHROMIUM || execFileSync("which", ["chromium"]).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
// A phone-sized window with a phone's user agent: the pages must work there.
const context = await browser.newContext({
  viewport: { width: 390, height: 844 },
  userAgent:
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
});
const page = await context.newPage();
page.setDefaultTimeout(15000);

const nav = (response) => ({
  status: response ? response.status() : null,
  url: page.url(),
});

const results = [];
let failed = null;
try {
  for (const step of steps) {
    if (step.goto !== undefined) {
      const response = await page.goto(step.goto);
      results.push({ ...nav(response), title: await page.title() });
    } else if (step.click !== undefined) {
      const [response] = await Promise.all([
        page.waitForNavigation(),
        page.click(step.click),
      ]);
      results.push({ ...nav(response), title: await page.title() });
    } else if (step.fill !== undefined) {
      await page.fill(step.fill, step.value);
      results.push(null);
    } else if (step.text !== undefined) {
      const el = await page.$(step.text);
      results.push(el ? (await el.innerText()).trim() : null);
    } else if (step.value !== undefined) {
      const el = await page.$(step.value);
      results.push(el ? await el.inputValue() : null);
    } else if (step.attr !== undefined) {
      const el = await page.$(step.attr);
      results.push(el ? await el.getAttribute(step.name) : null);
    } else if (step.shot !== undefined) {
      await page.screenshot({ path: path.join(shotDir, `${step.shot}.png`), fullPage: true });
      results.push(null);
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
} catch (e) {
  failed = String(e && e.stack ? e.stack : e);
  await page
    .screenshot({ path: path.join(shotDir, "failure.png"), fullPage: true })
    .catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results, failed }));
process.exit(failed ? 1 : 0);
