// Drives Debian's Chromium (never a downloaded browser) through one chat:
//   node run.mjs PAGE_URL SCREENSHOT.png [TIMEOUT_MS]
// Prints one JSON line: the page's chat state and the console output.
import { chromium } from "playwright-core";

const [url, screenshot, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg || 60000);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const logs = [];
let state = null;
let page = null;
try {
  page = await browser.newPage({ viewport: { width: 800, height: 500 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => logs.push(`requestfailed: ${r.url()}`));
  await page.goto(url);
  await page.waitForFunction(() => window.chat && (window.chat.done || window.chat.error),
                             null, { timeout });
  await page.screenshot({ path: screenshot, fullPage: true });
  if (await page.evaluate(() => window.chat.done)) {
    await page.evaluate(() => window.chatDisconnect());
    await page.waitForFunction(() => window.chat.status.includes("DISCONNECTED"), null,
                               { timeout });
  }
  state = await page.evaluate(() => window.chat);
} catch (e) {
  logs.push(`driver: ${e.message}`);
  if (page) state = await page.evaluate(() => window.chat).catch(() => null);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ state, logs }));
