// The page of otpd-web in headless chromium (puppeteer-core): every child
// listed, a kill -9 from outside shows its new pid without a reload, the
// kill button restarts a worker, a child's markup-like id stays text, the
// instances of a worker come under one group row, and a request without the
// token is refused.
//   node observer_browser_test.mjs URL [SCREENSHOT]
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'package.json'));
const puppeteer = require('puppeteer-core');

const [url, shot] = process.argv.slice(2);
const otpctl = process.env.OTPCTL;
const rt = process.env.RUNTIME_DIR;
const mult = Number(process.env.TIMEOUT_MULTIPLIER || '1');
const timeout = 20000 * mult;
let failures = 0;

function check(cond, what) {
  if (cond) {
    console.log('ok: ' + what);
  } else {
    console.log('FAIL: ' + what);
    failures++;
  }
}

function status() {
  return JSON.parse(execFileSync(otpctl, ['--runtime-dir', rt, '--json', 'status']).toString());
}

function find(node, p) {
  if (node.path === p) return node;
  for (const c of node.children || []) {
    const f = find(c, p);
    if (f) return f;
  }
  return null;
}

function pidOf(p) {
  const n = find(status(), p);
  return n ? n.pid : null;
}

async function waitPid(p, old) {
  const until = Date.now() + timeout;
  while (Date.now() < until) {
    const pid = pidOf(p);
    if (pid && pid !== old) return pid;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

const base = new URL(url);
// 1. No token, a wrong token: refused (401), on loopback too.
for (const p of ['/', '/api/tree', '/metrics', '/api/stream']) {
  const r = await fetch(new URL(p, base.origin));
  check(r.status === 401, 'GET ' + p + ' without the token is refused (' + r.status + ')');
}
const wrong = await fetch(new URL('/api/tree', base.origin), { headers: { Cookie: 'otpd_web_' + base.port + '=' + '0'.repeat(64) } });
check(wrong.status === 401, 'a wrong token in the cookie is refused');

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let alerts = 0;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  page.on('dialog', async (d) => {
    if (d.type() === 'alert') alerts++;
    await d.accept();
  });
  page.setDefaultTimeout(timeout);
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  check(!page.url().includes('token='), 'the token leaves the address bar');

  // 2. Every child of the tree is listed, with its pid.
  const paths = execFileSync(otpctl, ['--runtime-dir', rt, 'paths']).toString().trim().split('\n')
    .map((p) => p.replace(/\/$/, ''));
  await page.waitForSelector('tr[data-path="alpha"] td.pid');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#rows tr[data-path]').length >= n, {}, paths.length + 1);
  for (const p of paths) {
    const found = await page.$$eval('#rows tr[data-path]', (trs, p) => trs.some((t) => t.dataset.path === p), p);
    check(found, 'the page lists ' + p);
  }
  const alpha = pidOf('alpha');
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-path="alpha"] td.pid').textContent === String(pid), {}, alpha);
  check(true, 'alpha shows pid ' + alpha);

  // 3. kill -9 from a shell: the new pid shows without a reload.
  const navigations = [];
  page.on('framenavigated', (f) => navigations.push(f.url()));
  execFileSync('kill', ['-9', String(alpha)]);
  const alpha2 = await waitPid('alpha', alpha);
  check(alpha2 !== null, 'otpd restarted alpha (' + alpha2 + ')');
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-path="alpha"] td.pid').textContent === String(pid), {}, alpha2);
  check(true, 'the page shows alpha\'s new pid ' + alpha2);
  check(navigations.length === 0, 'no reload happened');
  await page.waitForFunction(() => [...document.querySelectorAll('#events li')].some((li) => li.textContent.includes('exited') && li.textContent.includes('alpha')));
  check(true, 'the exit is in the recent events');

  // 4. The kill button (with its confirmation) restarts a worker.
  const beta = pidOf('beta');
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-path="beta"] td.pid').textContent === String(pid), {}, beta);
  await page.click('tr[data-path="beta"] button[data-verb="kill"]');
  const beta2 = await waitPid('beta', beta);
  check(beta2 !== null, 'the kill button killed beta; otpd restarted it (' + beta2 + '); the page says: ' +
    await page.$eval('#toast', (e) => e.textContent));
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-path="beta"] td.pid').textContent === String(pid), {}, beta2);
  check(true, 'the page shows beta\'s new pid ' + beta2);

  // 5. No element or script came from what children control. (A child's id
  // can no longer carry markup: the config refuses it, ConfigValues.* in
  // config_test; the page renders every such text with textContent.)
  const imgs = await page.$$eval('#rows img', (els) => els.length);
  check(imgs === 0 && alerts === 0, 'no element or script came from the tree');

  // 6. The detail pane: recent exits of alpha.
  await page.click('tr[data-path="alpha"] td.name');
  await page.waitForFunction(() => document.querySelector('#detail-body') && document.querySelector('#detail-body').textContent.includes('killed'));
  check(true, 'alpha\'s detail lists its exit (killed)');

  // 6b. `pool` (instances: 3): one group row with its sums, its instances
  // right under it; a kill -9 of one shows its new pid there; the fold
  // button hides and shows them; a click shows the group in the detail pane.
  await page.waitForSelector('tr[data-group="pool-*"]');
  await page.waitForFunction(() => document.querySelector('tr[data-group="pool-*"] td.pid').textContent === '3/3');
  const order = await page.$$eval('#rows tr', (trs) => trs.map((t) => (t.dataset.group ? 'group ' + t.dataset.group : t.dataset.path)));
  const gi = order.indexOf('group pool-*');
  check(gi >= 0 && order[gi + 1] === 'pool-0' && order[gi + 2] === 'pool-1' && order[gi + 3] === 'pool-2',
    'the group row comes first, its three instances under it: ' + order.join(', '));
  const gname = await page.$eval('tr[data-group="pool-*"] td.name', (e) => e.textContent);
  check(gname.includes('pool \u00d73'), 'the group row names the worker and its count (' + gname + ')');
  const pool1 = pidOf('pool-1');
  execFileSync('kill', ['-9', String(pool1)]);
  const pool1b = await waitPid('pool-1', pool1);
  check(pool1b !== null, 'otpd restarted pool-1 (' + pool1b + ')');
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-path="pool-1"] td.pid').textContent === String(pid), {}, pool1b);
  await page.waitForFunction(() => document.querySelector('tr[data-group="pool-*"] td.restarts').textContent === '1');
  check(true, 'pool-1\'s new pid shows under the group, which counts the restart');
  await page.click('tr[data-group="pool-*"] button.fold');
  await page.waitForFunction(() => !document.querySelector('tr[data-path="pool-0"]'));
  check(true, 'the fold button hides the instances');
  await page.click('tr[data-group="pool-*"] button.fold');
  await page.waitForFunction(() => !!document.querySelector('tr[data-path="pool-2"]'));
  check(true, 'and shows them again');
  await page.click('tr[data-group="pool-*"] td.state');
  await page.waitForFunction(() => document.querySelector('#detail-title').textContent.includes('pool-*') &&
    document.querySelectorAll('#detail-body ul.members li').length === 3);
  check(true, 'the group\'s detail lists its three instances');

  // 7. The event filter.
  await page.type('#filter', 'beta');
  const filtered = await page.$$eval('#events li', (lis) => lis.every((li) => li.textContent.includes('beta')));
  check(filtered, 'the event filter keeps only matching events');

  if (shot) {
    await page.$eval('#filter', (e) => { e.value = ''; e.dispatchEvent(new Event('input')); });
    await page.click('tr[data-path="services/db"] td.name');
    await page.waitForFunction(() => document.querySelector('#detail-title').textContent.includes('services/db'));
    await page.screenshot({ path: shot, fullPage: true });
    console.log('screenshot: ' + shot);
  }
} catch (e) {
  console.log('FAIL: ' + (e && e.stack ? e.stack : e));
  failures++;
} finally {
  await browser.close();
}
console.log(failures === 0 ? 'browser test: ok' : 'browser test: ' + failures + ' failed');
process.exit(failures === 0 ? 0 : 1);
