import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "./fixtures.ts";
import { serveSchema } from "../src/core/config/serve-schema.ts";
import { teacherConfigSchema } from "../src/core/config/teacher-schema.ts";
import { PROJECT_ROOT } from "../src/core/paths.ts";
import { SilentProgress } from "../src/core/progress.ts";
import { runEval } from "../src/evals/run.ts";
import { openSuite } from "../src/evals/suite.ts";
import { CARD_FILE } from "../src/export/model-card.ts";
import { openTeacher } from "../src/teachers/registry.ts";
import { startApi, type RunningApi } from "../src/serve/server.ts";

const ADMIN = "adm-dashboard-test-credential";
const SHOTS = join(PROJECT_ROOT, ".avocado", "test-scratch", "screenshots");

/** A student's folder as `avocado train` leaves it: the GGUF, its card, licences and a real eval of it. */
async function studentFolder(folder: string): Promise<string> {
  const model = join(folder, "models", "avocado-student");
  mkdirSync(model, { recursive: true });
  symlinkSync(teacherGguf("tiny-qwen"), join(model, "model.gguf"));
  const teacher = await openTeacher(
    teacherConfigSchema.parse({
      name: "tiny-qwen",
      family: "qwen",
      transport: "embedded",
      path: teacherGguf("tiny-qwen"),
    }),
  );
  try {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    await runEval({
      suite: { ...suite, items: suite.items.slice(0, 12) },
      models: [{ name: "avocado-student", teacher }],
      out: join(model, "evals", "tinyworld"),
      progress: new SilentProgress(),
    });
  } finally {
    await teacher.close();
  }
  const gate = { pass: true, margin: 0.05, failures: [], reports: ["evals/tinyworld/report.html"] };
  writeFileSync(join(model, CARD_FILE), JSON.stringify({ format: "avocado-card/1", name: "avocado-student", gate }));
  writeFileSync(join(model, "licenses.json"), JSON.stringify([{ teacher: "tiny-qwen", licence: "apache-2.0" }]));
  writeFileSync(join(model, "MODEL_CARD.md"), "# avocado-student\n\nDistilled from tiny-qwen.\n");
  return join(model, "model.gguf");
}

/** A page that fails the test on any console error, and may reach only the server under test. */
async function openPage(browser: Browser, origin: string, errors: string[]): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 1000 } })).newPage();
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`${page.url()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`${page.url()}: ${error.message}`));
  await page.route("**/*", (route) => (route.request().url().startsWith(origin) ? route.continue() : route.abort()));
  return page;
}

describe("the admin dashboard and the customer playground in Chromium (real engine, SQLite)", () => {
  const folder = scratchFolder("dashboard");
  let api: RunningApi;
  let browser: Browser;
  const errors: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const gguf = await studentFolder(folder);
    const config = serveSchema.parse({
      port: 0,
      store: `sqlite:${join(folder, "serve.db")}`,
      models: [
        {
          name: "avocado-student",
          gguf,
          price: { inputPerMillion: 1_000_000, outputPerMillion: 2_000_000 },
          maxTokens: 48,
        },
      ],
    });
    api = await startApi({ config, workspace: folder, adminToken: ADMIN });
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
    });
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await api?.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("admin logs in, creates a key, grants credit; a customer chats, streamed; usage and balance update", async () => {
    // A wrong credential: refused, and the page says so (its one console error: the browser logs the 401).
    const refusals: string[] = [];
    const intruder = await openPage(browser, api.url, refusals);
    await intruder.goto(`${api.url}/dashboard`);
    await intruder.fill("#token", "not-the-admin-token");
    await intruder.click("#login-form button");
    await expect.poll(() => intruder.textContent("#login-error")).toBe("wrong admin token");
    expect(refusals).toEqual([
      `${api.url}/dashboard: Failed to load resource: the server responded with a status of 401 (Unauthorized)`,
    ]);
    expect(await intruder.isHidden("#app")).toBe(true);

    const admin = await openPage(browser, api.url, errors);
    await admin.goto(`${api.url}/dashboard`);
    await admin.fill("#token", ADMIN);
    await admin.click("#login-form button");
    await admin.waitForSelector("#app:not(.hidden)");
    await admin.waitForSelector("#models td");

    await admin.fill("#key-form input[name=org]", "acme");
    await admin.click("#key-form button");
    const key = (await (await admin.waitForSelector("#new-key-value")).textContent())!.trim();
    expect(key).toMatch(/^\S{20,}$/);
    await admin.fill("#credit-form input[name=org]", "acme");
    await admin.fill("#credit-form input[name=amount]", "500000");
    await admin.click("#credit-form button");
    await expect.poll(() => admin.textContent("#orgs")).toContain("500,000 µ");

    // The student's card, its eval drawn, its licences.
    await admin.click("#models button");
    await admin.waitForSelector("#model-detail canvas");
    expect(await admin.textContent("#model-detail")).toContain("release gate passed");
    expect(await admin.textContent("#model-detail")).toContain("apache-2.0");
    await admin.screenshot({ path: join(SHOTS, "dashboard-before.png"), fullPage: true });

    const customer = await openPage(browser, api.url, errors);
    await customer.goto(`${api.url}/playground`);
    await customer.fill("#key", key);
    await customer.click("#key-form button");
    await customer.waitForSelector("#chat-panel:not(.hidden)");
    expect(await customer.getAttribute("#balance", "data-available")).toBe("500000");
    // Count the answer's redraws while it streams: more than one means it arrived in pieces.
    await customer.evaluate(`window.redraws = 0;
      new MutationObserver(() => window.redraws++).observe(document.getElementById("chat"),
        { subtree: true, childList: true, characterData: true });`);
    await customer.fill("#message", "Reverse the word 'kalomi'.");
    await customer.click("#send");
    // The answer's cost, or the error the page shows instead (then the test says which).
    await customer.waitForSelector(".message.assistant .meta[data-charged], #chat-error:not(:empty)");
    expect(await customer.textContent("#chat-error")).toBe("");
    const meta = (await customer.$(".message.assistant .meta[data-charged]"))!;
    const charged = Number(await meta.getAttribute("data-charged"));
    expect(charged).toBeGreaterThan(0);
    expect(await meta.textContent()).toMatch(/\d+ prompt \+ \d+ completion tokens · [\d,]+ µ/);
    expect(await customer.evaluate("window.redraws")).toBeGreaterThan(3);
    expect((await customer.textContent(".message.assistant .text"))!.length).toBeGreaterThan(0);
    await expect.poll(() => customer.getAttribute("#balance", "data-available")).toBe(String(500_000 - charged));
    // The key is in no storage, no cookie, not in the page's markup or address.
    const kept = (await customer.evaluate(`({
      local: localStorage.length,
      session: sessionStorage.length,
      cookie: document.cookie,
      html: document.documentElement.outerHTML,
      url: location.href,
    })`)) as { local: number; session: number; cookie: string; html: string; url: string };
    expect([kept.local, kept.session, kept.cookie]).toEqual([0, 0, ""]);
    expect(kept.html).not.toContain(key);
    expect(kept.url).not.toContain(key);
    expect(await customer.context().cookies()).toEqual([]);
    await customer.screenshot({ path: join(SHOTS, "playground.png"), fullPage: true });
    // A reload forgets it.
    await customer.reload();
    await customer.waitForSelector("#connect:not(.hidden)");

    // The dashboard's next refresh shows the request, its revenue, and acme's balance.
    await expect.poll(() => admin.textContent("#stat-requests b"), { timeout: 15_000 }).toBe("1");
    expect(await admin.textContent("#stat-revenue b")).toBe(`${charged.toLocaleString("en-US")} µ`);
    await expect.poll(() => admin.textContent("#orgs")).toContain(`${(500_000 - charged).toLocaleString("en-US")} µ`);
    const painted = (await admin.evaluate(`["traffic-chart", "revenue-chart"].map((id) => {
      const canvas = document.getElementById(id);
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let inked = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
      return inked;
    })`)) as number[];
    for (const inked of painted) expect(inked).toBeGreaterThan(500);
    await admin.screenshot({ path: join(SHOTS, "dashboard-after.png"), fullPage: true });

    // Rotate the key (a new one is shown once), revoke the new one: neither works in the playground any more.
    await admin.click("#keys button:text('rotate')");
    await expect.poll(async () => (await admin.textContent("#new-key-value"))?.trim()).not.toBe(key);
    const rotated = (await admin.textContent("#new-key-value"))!.trim();
    await expect.poll(() => admin.locator("#keys button", { hasText: /^revoke$/ }).count()).toBe(1);
    await admin.click("#keys button:text('revoke')");
    await expect.poll(() => admin.locator("#keys td", { hasText: /^revoked$/ }).count()).toBe(2);
    for (const gone of [key, rotated]) {
      await customer.fill("#key", gone);
      await customer.click("#key-form button");
      await expect.poll(() => customer.textContent("#key-error")).toMatch(/not valid/);
    }
    expect(errors.filter((e) => !e.includes("status of 401"))).toEqual([]);
  }, 120_000);

  it("a wrong admin credential gets 401 on every admin route, and nothing about the store", async () => {
    const routes = ["/admin/overview", "/admin/keys", "/admin/usage/live", "/admin/extraction", "/admin/models/x"];
    for (const route of routes)
      for (const authorization of ["Bearer wrong", "", `Bearer ${ADMIN}x`]) {
        const response = await fetch(`${api.url}${route}`, { headers: authorization ? { authorization } : {} });
        expect(response.status, `${route} ${authorization}`).toBe(401);
        const text = await response.text();
        expect(text).not.toMatch(/acme|org_|key_|avocado-student|balance/);
      }
    // An API key is no admin credential either; nor is the admin token an API key.
    const created = await api.store.createKey({
      org: "acme",
      name: "k",
      scopes: null,
      plan: "default",
      limits: {},
      expiresAt: null,
    });
    expect(
      (await fetch(`${api.url}/admin/overview`, { headers: { authorization: `Bearer ${created.key}` } })).status,
    ).toBe(401);
    expect((await fetch(`${api.url}/v1/balance`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(401);
  });

  it("pages run only their own scripts: a policy that forbids inline and foreign code, and no framing", async () => {
    for (const path of ["/dashboard", "/playground"]) {
      const response = await fetch(`${api.url}${path}`);
      const policy = response.headers.get("content-security-policy")!;
      expect(policy).toContain("script-src 'self'");
      expect(policy).toContain("frame-ancestors 'none'");
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(await response.text()).not.toMatch(/<script>(?!<\/script>)/);
    }
    // One org cannot read another's request.
    const a = await api.store.createKey({
      org: "org-a",
      name: "k",
      scopes: null,
      plan: "default",
      limits: {},
      expiresAt: null,
    });
    const response = await fetch(`${api.url}/v1/requests/req_not_theirs`, {
      headers: { authorization: `Bearer ${a.key}` },
    });
    expect(response.status).toBe(404);
  });
});
