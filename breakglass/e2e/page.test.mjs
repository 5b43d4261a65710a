// The breakglass page end to end: the real `breakglass` binary with the
// scripted agent (fixtures/breakglass/fake-claude.sh), driven in headless
// Chromium (Debian's /usr/bin/chromium) through playwright-core.
//
//   node breakglass/e2e/page.test.mjs <path to the breakglass binary>
//
// It loads the page, sends a diagnosis preset, sees the streamed answer,
// reloads and sees the transcript exactly once, stops a hanging turn, and
// runs a VM verb through the confirmation. Exit code 0 on success.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const binary = resolve(process.argv[2] || join(root, "target/debug/breakglass"));
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const token = "e2e-token-" + Math.random().toString(16).slice(2);
const work = mkdtempSync(join(tmpdir(), "breakglass-e2e-"));
const step = (m) => console.log("e2e: " + m);

function fail(message) {
  console.error("e2e: FAILED: " + message);
  process.exitCode = 1;
  throw new Error(message);
}

async function until(what, condition, ms = 20000) {
  const start = Date.now();
  for (;;) {
    if (await condition()) return;
    if (Date.now() - start > ms) fail("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startServer() {
  return new Promise((resolveStart, rejectStart) => {
    const child = spawn(binary, [], {
      env: {
        ...process.env,
        BREAKGLASS_LISTEN: "127.0.0.1:0",
        BREAKGLASS_TOKEN: token,
        BREAKGLASS_AGENT_BIN: join(root, "fixtures/breakglass/fake-claude.sh"),
        BREAKGLASS_SESSIONS_DIR: join(work, "sessions"),
        BREAKGLASS_SSH_BIN: join(root, "fixtures/breakglass/fake-ssh.sh"),
        BREAKGLASS_SSH_HOST: "pve",
        BREAKGLASS_TURN_TIMEOUT_SECONDS: "60",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let buffered = "";
    child.stdout.on("data", (chunk) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n")) {
        try {
          const log = JSON.parse(line);
          if (log.message === "listening") resolveStart({ child, url: "http://" + log.address });
        } catch { /* not a whole line yet */ }
      }
    });
    child.on("exit", (code) => rejectStart(new Error("breakglass exited early with " + code)));
  });
}

const { child, url } = await startServer();
step("server at " + url);
const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => fail("page error: " + e.message));
  page.on("dialog", (d) => d.accept());

  // First visit: no token yet, the page asks for it.
  await page.goto(url + "/");
  await page.waitForSelector("#login.shown");
  await page.fill("#token", token);
  await page.click("#login button");
  await until("the stream to be live", async () => (await page.getAttribute("#conn", "data-state")) === "live");
  step("attached");

  // A preset: the streamed answer appears, the turn ends.
  await page.click('button[data-preset="triage"]');
  await page.waitForSelector(".msg.text >> text=Diagnosis: the VM is healthy", { timeout: 20000 });
  await page.waitForSelector(".msg.turn_end", { state: "attached", timeout: 20000 });
  const before = await page.$$eval(".msg[data-id]", (els) => els.map((e) => e.dataset.id + ":" + e.className + ":" + e.textContent));
  if (!before.some((m) => m.includes("user") && m.includes("Triage the development VM"))) fail("the preset prompt is not in the transcript");
  if (!before.some((m) => m.includes("tool") && m.includes("uptime"))) fail("the tool call is not in the transcript");
  step("preset answered: " + before.length + " events");

  // Reload: the same transcript, once.
  await page.reload();
  await until("live after reload", async () => (await page.getAttribute("#conn", "data-state")) === "live");
  const after = await page.$$eval(".msg[data-id]", (els) => els.map((e) => e.dataset.id + ":" + e.className + ":" + e.textContent));
  if (JSON.stringify(after) !== JSON.stringify(before)) fail("the transcript changed on reload:\n" + before.join("\n") + "\n---\n" + after.join("\n"));
  const ids = after.map((m) => m.split(":")[0]);
  if (new Set(ids).size !== ids.length) fail("duplicate events after reload");
  step("reload shows the transcript once");

  // A hanging turn, stopped from the page.
  await page.fill("#prompt", "HANG: the VM does not answer");
  await page.click("#send");
  await page.waitForSelector(".msg.text >> text=Working on it", { timeout: 20000 });
  if (await page.isDisabled("#stop")) fail("Stop is disabled while a turn runs");
  await page.click("#stop");
  await page.waitForSelector(".msg.cancelled", { timeout: 20000 });
  await until("the turn to end", async () => (await page.$$(".msg.turn_end")).length === 2);
  if (!(await page.isDisabled("#stop"))) fail("Stop is still enabled after the turn ended");
  const sessionDir = join(work, "sessions", await page.evaluate(() => localStorage.getItem("breakglass-session")));
  const pids = readFileSync(join(sessionDir, "pids"), "utf8").trim().split("\n").map(Number);
  await until("the stopped agent's processes to be gone", async () =>
    pids.every((pid) => { try { process.kill(pid, 0); return false; } catch { return true; } }));
  step("stop ended the turn and killed the agent");

  // The VM sheet: a mutating verb asks first, then runs.
  await page.click("#vm summary");
  await page.click('button[data-verb="cycle"]');
  await page.waitForSelector("#verb-output >> text=cycle → exit 0", { timeout: 20000 });
  step("VM controls ran a confirmed verb");
  if (!existsSync(sessionDir)) fail("no session directory");
  console.log("e2e: ok");
} finally {
  await browser.close();
  child.kill("SIGTERM");
}
