// The gateway's playground (GET /) in headless Chromium, driven through the DevTools protocol (no
// library: Node 20's WebSocket, `node --experimental-websocket`). Types a prompt, clicks Send, checks
// that the answer streams into the page (it grows while the turn is still streaming) with a "miss"
// badge, clicks "Same prompt again" and checks the "exact" badge and the same answer; the same in
// Chinese; then a screenshot; then errors (the gateway's OpenAI error message shown, for a refused
// request and for an error event after part of the answer); then, on a second gateway that requires
// API keys, the key field.
// Usage: node --experimental-websocket playground_browser.mjs <browser ws URL> <page URL> <keyed page URL> <key> <screenshot.png>
//        <model whose upstream resets mid-stream>
import { writeFileSync } from 'node:fs';

const [browserUrl, pageUrl, keyedUrl, apiKey, screenshotPath, resetModel] = process.argv.slice(2);
const WAIT_MS = 20000;  // every wait ends by then

function fail(message) {
  console.error('FAIL: ' + message);
  process.exit(1);
}

// ---- a minimal CDP client over one WebSocket (flattened sessions) -------------------------------
const socket = new WebSocket(browserUrl);
let nextId = 1;
const pending = new Map();
const problems = [];  // exceptions and CSP violations the page reported
const eventWaiters = new Map();  // CDP event name -> one-shot callbacks
socket.addEventListener('message', (message) => {
  const data = JSON.parse(message.data);
  if (data.id !== undefined && pending.has(data.id)) {
    const { resolve, reject, method } = pending.get(data.id);
    pending.delete(data.id);
    if (data.error) reject(new Error(method + ': ' + JSON.stringify(data.error)));
    else resolve(data.result);
    return;
  }
  if (data.method && eventWaiters.has(data.method)) {
    for (const waiter of eventWaiters.get(data.method)) waiter(data.params);
    eventWaiters.delete(data.method);
  }
  if (data.method === 'Runtime.exceptionThrown') {
    problems.push('exception: ' + JSON.stringify(data.params.exceptionDetails.exception?.description ?? data.params.exceptionDetails.text));
  } else if (data.method === 'Log.entryAdded' && /Content Security Policy/i.test(data.params.entry.text)) {
    problems.push('CSP: ' + data.params.entry.text);
  } else if (data.method === 'Runtime.consoleAPICalled' && data.params.type === 'error') {
    problems.push('console.error: ' + data.params.args.map((a) => a.value ?? a.description).join(' '));
  }
});
await new Promise((resolve, reject) => {
  socket.addEventListener('open', resolve, { once: true });
  socket.addEventListener('error', () => reject(new Error('cannot connect to ' + browserUrl)), { once: true });
}).catch((e) => fail(e.message));

function send(method, params = {}, sessionId = undefined) {
  const id = nextId++;
  socket.send(JSON.stringify({ id, method, params, sessionId }));
  const bound = WAIT_MS + 5000;  // past the page-side bound of waitFor, which answers by then
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(method + ': no answer within ' + bound + ' ms')); }, bound);
    pending.set(id, { method, resolve: (r) => { clearTimeout(timer); resolve(r); }, reject: (e) => { clearTimeout(timer); reject(e); } });
  });
}

const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
const page = (method, params) => send(method, params, sessionId);
await page('Runtime.enable');
await page('Log.enable');
await page('Page.enable');
await page('Emulation.setDeviceMetricsOverride', { width: 960, height: 720, deviceScaleFactor: 1, mobile: false });

async function evaluate(expression) {
  const result = await page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
  if (result.exceptionDetails) throw new Error('evaluate ' + expression + ': ' + JSON.stringify(result.exceptionDetails));
  return result.result.value;
}

// Waits until `expression` is truthy and returns its value, or fails naming `what` after WAIT_MS. The
// wait runs inside the page (re-checked on every DOM change and every 100 ms), so the test does not
// keep interrupting the page's main thread with evaluations while the figures it shows are measured.
async function waitFor(expression, what) {
  const value = await evaluate(`new Promise((resolve) => {
    const value = () => { try { return (${expression}); } catch (_) { return null; } };
    let observer = null, timer = null, bound = null;
    const check = () => { const v = value(); if (!v) return false;
      if (observer) observer.disconnect(); clearInterval(timer); clearTimeout(bound); resolve(v); return true; };
    if (check()) return;
    observer = new MutationObserver(check);
    observer.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
    timer = setInterval(check, 100);
    bound = setTimeout(() => { observer.disconnect(); clearInterval(timer); resolve(null); }, ${WAIT_MS});
  })`);
  if (!value) fail('timed out after ' + WAIT_MS + ' ms waiting for ' + what + '; page problems: ' + JSON.stringify(problems));
  return value;
}

function nextEvent(method) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(method + ': not within ' + WAIT_MS + ' ms')), WAIT_MS);
    eventWaiters.set(method, [...(eventWaiters.get(method) || []), (params) => { clearTimeout(timer); resolve(params); }]);
  });
}

// A real click: mouse events at the centre of the element (as a person would, not element.click()).
async function click(selector) {
  const box = await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
    if (!e || e.disabled) return null; const r = e.getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()`);
  if (!box) fail(selector + ' is missing or disabled');
  for (const type of ['mousePressed', 'mouseReleased'])
    await page('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: 1 });
}

async function type(selector, text) {
  await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(selector)}); e.focus(); e.select?.(); })()`);
  await page('Input.insertText', { text });  // replaces the selection, with the input events typing fires
}

async function load(url) {
  const loaded = nextEvent('Page.loadEventFired');  // evaluating while the old document goes away would fail
  await page('Page.navigate', { url });
  await loaded;
  await waitFor(`document.readyState === 'complete' && document.querySelector('#model') !== null`, 'the page to load from ' + url);
}

// Records, for every turn, the answer's lengths seen while it was still streaming (a MutationObserver
// sees each DOM change, however quickly the test polls).
const observe = `(() => { window.seen = window.seen || [];
  new MutationObserver(() => document.querySelectorAll('.turn').forEach((turn, i) => {
    const seen = (window.seen[i] = window.seen[i] || []);
    const n = turn.querySelector('.answer').textContent.length;
    if (turn.dataset.state === 'streaming' && n > 0 && seen[seen.length - 1] !== n) seen.push(n);
  })).observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true }); return true; })()`;

const turnInfo = (i) => `(() => { const t = document.querySelectorAll('.turn')[${i}]; if (!t || t.dataset.state === 'streaming') return null;
  return { state: t.dataset.state, answer: t.querySelector('.answer').textContent, cache: t.querySelector('.badge').dataset.cache || '',
           badge: t.querySelector('.badge').textContent, ttft: t.querySelector('.ttft').textContent, rate: t.querySelector('.rate').textContent,
           error: t.querySelector('.error').textContent, seen: (window.seen || [])[${i}] || [] }; })()`;

async function ask(index, action, want) {
  await action();
  const turn = await waitFor(turnInfo(index), 'answer ' + (index + 1) + ' (' + want.what + ') to finish');
  if (want.error !== undefined) {
    if (turn.state !== 'error' || !turn.error.includes(want.error))
      fail(want.what + ': want an error showing ' + JSON.stringify(want.error) + ', got ' + JSON.stringify(turn));
    console.log(want.what + ': error shown: ' + JSON.stringify(turn.error));
    return turn;
  }
  if (turn.state !== 'done') fail(want.what + ': the answer did not complete: ' + JSON.stringify(turn));
  if (turn.cache !== want.cache) fail(want.what + ': cache badge ' + JSON.stringify(turn.cache) + ', want ' + JSON.stringify(want.cache) + ': ' + JSON.stringify(turn));
  if (!turn.answer.startsWith(want.starts)) fail(want.what + ': answer ' + JSON.stringify(turn.answer) + ' does not start with ' + JSON.stringify(want.starts));
  if (want.same !== undefined && turn.answer !== want.same) fail(want.what + ': the cached answer differs: ' + JSON.stringify(turn.answer) + ' vs ' + JSON.stringify(want.same));
  if (want.streamed && !turn.seen.some((n) => n < turn.answer.length))
    fail(want.what + ': the answer never showed partially while streaming (lengths seen: ' + JSON.stringify(turn.seen) + ')');
  if (!/^first token [0-9.]+ ms$/.test(turn.ttft) || !/tok\/s$/.test(turn.rate)) fail(want.what + ': figures missing: ' + JSON.stringify(turn));
  console.log(`${want.what}: ${turn.badge}, ${turn.ttft}, ${turn.rate}, ${turn.seen.length} partial states: ${JSON.stringify(turn.answer.slice(0, 40))}`);
  return turn;
}

try {
  await load(pageUrl);
  const models = await waitFor(`[...document.querySelectorAll('#model option')].map((o) => o.value).join(',')`, 'the model selector to fill from /v1/models');
  if (!models.split(',').includes('llmfast-sim')) fail('model selector: ' + models);
  await evaluate(observe);

  await type('#prompt', 'Why are long answers slow?');
  const en = await ask(0, () => click('#send'), { what: 'English, first ask', cache: 'miss', starts: 'Large language models', streamed: true });
  await ask(1, () => click('#again'), { what: 'English, same prompt again', cache: 'exact', starts: 'Large language models', same: en.answer });

  await type('#prompt', '为什么长回答比较慢？');
  const zh = await ask(2, () => click('#send'), { what: 'Chinese, first ask', cache: 'miss', starts: '大语言模型', streamed: true });
  await ask(3, () => click('#again'), { what: 'Chinese, same prompt again', cache: 'exact', starts: '大语言模型', same: zh.answer });

  // context for the figures above (printed, not judged): where the browser's time went per request
  const timing = await evaluate(`performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/v1/chat/completions'))
    .map((e) => 'connect ' + (e.connectEnd - e.startTime).toFixed(1) + ' ms, headers ' + (e.responseStart - e.startTime).toFixed(1) +
                ' ms, body done ' + (e.responseEnd - e.startTime).toFixed(1) + ' ms').join('; ')`);
  console.log('resource timing (from fetch()): ' + timing);

  const shot = await page('Page.captureScreenshot', { format: 'png' });
  writeFileSync(screenshotPath, Buffer.from(shot.data, 'base64'));

  // an error: the gateway's OpenAI error message is shown (max_tokens 0 is refused with 400)
  await type('#max-tokens', '0');
  await type('#prompt', 'this one is refused');
  await ask(4, () => click('#send'), { what: 'max_tokens 0', error: 'max_tokens' });

  // an error inside the stream, after some content (an upstream that resets): the partial answer stays, the error shows
  await type('#max-tokens', '19');
  await evaluate(`(() => { const s = document.getElementById('model'); s.value = ${JSON.stringify(resetModel)};
    s.dispatchEvent(new Event('change')); return s.value; })()`) === resetModel || fail('no model ' + resetModel + ' in the selector');
  await type('#prompt', 'an upstream that fails mid-stream');
  const cut = await ask(5, () => click('#send'), { what: resetModel + ' (reset mid-stream)', error: '' });
  if (cut.answer !== 'partial ' || !cut.error.trim()) fail('mid-stream error: want the partial answer and a message: ' + JSON.stringify(cut));

  // a gateway that requires keys: the models call says so; with the key typed in, answers stream
  await load(keyedUrl);
  await waitFor(`document.getElementById('status').textContent.includes('missing API key')`, 'the page to show the 401 of /v1/models');
  await type('#key', apiKey);
  await evaluate(`document.getElementById('key').blur(), true`);  // leaving the field commits it (change)
  await waitFor(`document.querySelectorAll('#model option').length > 0`, 'the models once the key is set');
  await type('#prompt', 'hello with a key');
  await ask(0, () => click('#send'), { what: 'with an API key', cache: 'miss', starts: 'Large language models' });

  if (problems.length) fail('the page reported problems: ' + JSON.stringify(problems));
  console.log('playground: all checks passed');
  process.exit(0);
} catch (e) {
  fail(e.stack || String(e));
}
