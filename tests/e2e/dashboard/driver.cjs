// Drives the dashboard in Debian's headless Chromium through playwright-core, for
// tests/e2e/dashboard.rs: unlock with the management key, read the credentials, disable one,
// add a Qwen account by device login, and save a screenshot. Prints one JSON line per step
// on stdout; any failure exits non-zero with the reason on stderr.
//
// Environment: PLAYWRIGHT_CORE (the package's directory), CHROMIUM (the browser), BASE (the
// server), KEY (the management key), DISABLE (the label to disable), EMAIL (the account the
// login adds), SCREENSHOT (where to save it), USER_DATA_DIR (a fresh profile).
"use strict";

const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const STEP_TIMEOUT = 60_000;

function say(step, data) {
  process.stdout.write(JSON.stringify({ step, ...data }) + "\n");
}

async function rows(page) {
  return page.$$eval("#credentials tbody tr[data-key]", (trs) =>
    trs.map((tr) => ({
      key: tr.dataset.key,
      state: tr.dataset.state,
      label: tr.querySelector(".name").textContent,
      text: tr.textContent,
    })),
  );
}

async function main() {
  const context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push("page error: " + error.message));
  page.on("console", (message) => {
    // Answers the page expects (401 for the wrong key, 503 before the ledger's first write)
    // are logged as failed loads; anything else is a problem.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push("console error: " + message.text());
    }
  });

  await page.goto(process.env.BASE + "/dashboard");
  await page.waitForSelector("#unlock:not([hidden])");
  await page.fill("#key", "a wrong key");
  await page.click("#unlock-form button");
  await page.waitForFunction(() => document.querySelector("#unlock-error").textContent.length > 0);
  say("wrong-key", { message: await page.textContent("#unlock-error") });

  await page.fill("#key", process.env.KEY);
  await page.click("#unlock-form button");
  await page.waitForSelector("#main:not([hidden])");
  await page.waitForSelector("#credentials tbody tr[data-key]");
  say("loaded", {
    rows: await rows(page),
    stored: await page.evaluate(() => sessionStorage.getItem("cliproxy-management-key") !== null),
    local: await page.evaluate(() => localStorage.length),
  });

  const label = process.env.DISABLE;
  const row = page.locator("#credentials tbody tr", { hasText: label });
  await row.locator("button[data-action=disable]").click();
  await page.waitForSelector(`#credentials tbody tr[data-state=disabled]:has-text("${label}")`);
  say("disabled", { rows: await rows(page) });

  await page.click("#add-account");
  await page.waitForFunction(() => document.querySelector("#login-code").textContent.length > 0);
  const login = {
    code: await page.textContent("#login-code"),
    link: await page.getAttribute("#login-link", "href"),
    qr: await page.$eval("#login-qr img", (img) => img.complete && img.naturalWidth > 0),
    countdown: await page.textContent("#login-countdown"),
  };
  say("login-shown", login);
  await page.waitForSelector("#login-email-form:not([hidden])");
  await page.fill("#login-email", process.env.EMAIL);
  await page.click("#login-email-form button");
  await page.waitForFunction(() => document.querySelector("#login-result").textContent.startsWith("Added"));
  say("login-saved", { result: await page.textContent("#login-result") });
  await page.waitForSelector(`#credentials tbody tr:has-text("${process.env.EMAIL}")`);
  say("listed", { rows: await rows(page) });

  await page.click("#login-cancel");
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  say("screenshot", { path: process.env.SCREENSHOT, problems });
  await context.close();
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
