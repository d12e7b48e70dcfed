// otpd-web's page: the tree from server-sent events, updated in place.
// Every text that a child controls (ids, paths, reasons, names) goes into
// the DOM through textContent, never as markup.
'use strict';

let csrf = null;
let rowsByPath = new Map();
let groupRows = new Map();   // group key -> its <tr>
const collapsed = new Set(); // keys of groups shown without their instances
let lastTree = null;
let orderKey = '';
let selected = null;         // a child's path, or a group's key
const events = [];
const maxEvents = 500;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmtUptime(ms) {
  if (ms === null || ms === undefined) return '-';
  if (ms < 60000) return (ms / 1000).toFixed(1) + 's';
  const s = Math.floor(ms / 1000);
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + String(Math.floor((s % 86400) / 3600)).padStart(2, '0') + 'h';
}

function fmtBytes(b) {
  if (b === null || b === undefined) return '-';
  if (b < 1048576) return Math.round(b / 1024) + 'K';
  if (b < 1073741824) return (b / 1048576).toFixed(1) + 'M';
  return (b / 1073741824).toFixed(1) + 'G';
}

function fmtCpu(p) {
  return p === null || p === undefined ? '-' : p.toFixed(1);
}

function fmtTime(ms) {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

function toast(text) {
  $('toast').textContent = text;
}

// Tree guides (├─ └─ │) from depths in depth-first order.
function guides(rows) {
  const out = [];
  const lastAt = [];
  for (let i = 0; i < rows.length; i++) {
    const d = rows[i].depth;
    if (d < 0) { out.push(''); continue; }
    let last = true;
    for (let j = i + 1; j < rows.length; j++) {
      if (rows[j].depth < d) break;
      if (rows[j].depth === d) { last = false; break; }
    }
    lastAt[d] = last;
    let g = '';
    for (let k = 0; k < d; k++) g += lastAt[k] ? '   ' : '\u2502  ';
    out.push(g + (last ? '\u2514\u2500 ' : '\u251c\u2500 '));
  }
  return out;
}

async function post(verb, path) {
  try {
    const r = await fetch('/api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ verb, path }),
    });
    const j = await r.json();
    return j.ok ? null : (j.error || 'refused');
  } catch (e) {
    return String(e);
  }
}

async function action(verb, path) {
  if ((verb === 'kill' || verb === 'stop') && !window.confirm(verb + ' ' + path + '?')) return;
  toast(verb + ' ' + path + ' ...');
  const err = await post(verb, path);
  toast(verb + ' ' + path + ': ' + (err === null ? 'done' : err));
}

// An action on a group goes to each of its instances, in turn, after one
// confirmation (whatever the verb: it touches several processes).
async function groupAction(verb, g) {
  const members = g.members.slice();
  if (!window.confirm(verb + ' each of the ' + members.length + ' instances of ' + g.key + '?')) return;
  toast(verb + ' ' + g.key + ' ...');
  const failed = [];
  for (const p of members) {
    const err = await post(verb, p);
    if (err !== null) failed.push(p + ': ' + err);
  }
  toast(verb + ' ' + g.key + ': ' + (failed.length === 0
    ? 'done (' + members.length + ' instances)'
    : failed.length + ' of ' + members.length + ' failed, ' + failed[0]));
}

function buildRow(r, guide, instance) {
  const tr = el('tr');
  tr.dataset.path = r.path;
  if (instance) tr.dataset.instanceOf = r.instance_of;
  const name = el('td', 'name');
  name.append(el('span', 'guide', guide), el('span', 'id', r.path === '/' ? '/' : r.id + (r.supervisor ? '/' : '')));
  tr.append(name);
  for (const c of ['state', 'pid', 'restarts', 'uptime', 'cpu', 'memory', 'last']) {
    tr.append(el('td', c + (['pid', 'restarts', 'uptime', 'cpu', 'memory'].includes(c) ? ' num' : '')));
  }
  const acts = el('td', 'actions');
  if (r.path !== '/') {
    for (const verb of ['restart', 'stop', 'start', 'kill']) {
      if (verb === 'kill' && r.supervisor) continue;
      const b = el('button', null, verb);
      b.dataset.verb = verb;
      b.addEventListener('click', (ev) => { ev.stopPropagation(); action(verb, r.path); });
      acts.append(b);
    }
  }
  tr.append(acts);
  tr.addEventListener('click', () => select(r.path));
  return tr;
}

// The row of a group: its name with a fold button, its sums, and actions
// that go to every instance.
function buildGroupRow(g, guide) {
  const tr = el('tr');
  tr.dataset.group = g.key;
  const name = el('td', 'name');
  const fold = el('button', 'fold', collapsed.has(g.key) ? '\u25b8' : '\u25be');
  fold.title = collapsed.has(g.key) ? 'show the instances' : 'hide the instances';
  fold.addEventListener('click', (ev) => {
    ev.stopPropagation();
    if (collapsed.has(g.key)) collapsed.delete(g.key); else collapsed.add(g.key);
    if (lastTree) renderTree(lastTree);
  });
  name.append(el('span', 'guide', guide), fold, el('span', 'id', g.id + ' \u00d7' + g.total));
  tr.append(name);
  for (const c of ['state', 'pid', 'restarts', 'uptime', 'cpu', 'memory', 'last']) {
    tr.append(el('td', c + (['pid', 'restarts', 'uptime', 'cpu', 'memory'].includes(c) ? ' num' : '')));
  }
  const acts = el('td', 'actions');
  for (const verb of ['restart', 'stop', 'start', 'kill']) {
    const b = el('button', null, verb);
    b.dataset.verb = verb;
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      const cur = lastTree && (lastTree.groups || []).find((x) => x.key === g.key);
      groupAction(verb, cur || g);
    });
    acts.append(b);
  }
  tr.append(acts);
  tr.addEventListener('click', () => select(g.key));
  return tr;
}

function notRunning(g, byPath) {
  const rank = { running: 0, starting: 1, stopping: 2, backoff: 3, stopped: 4, failed: 5 };
  const counts = new Map();
  for (const p of g.members) {
    const r = byPath.get(p);
    if (r && r.state !== 'running') counts.set(r.state, (counts.get(r.state) || 0) + 1);
  }
  const list = [...counts].sort((a, b) => (rank[b[0]] ?? 4) - (rank[a[0]] ?? 4));
  return list.length ? list.map(([st, n]) => n + ' ' + st).join(', ') : '-';
}

function fillGroupRow(tr, g, byPath) {
  tr.className = 'group state-' + g.state + (g.key === selected ? ' selected' : '');
  const set = (cls, text) => {
    const td = tr.querySelector('td.' + cls);
    if (td.textContent !== text) td.textContent = text;
  };
  set('state', g.state);
  set('pid', g.running + '/' + g.total);
  set('restarts', String(g.restarts));
  set('uptime', fmtUptime(g.uptime_ms));
  set('cpu', fmtCpu(g.cpu_percent));
  set('memory', fmtBytes(g.memory_bytes));
  set('last', notRunning(g, byPath));
}

function fillRow(tr, r) {
  tr.className = 'state-' + r.state + (r.supervisor ? ' sup' : '') + (r.instance_of && tr.dataset.instanceOf ? ' instance' : '') +
    (r.path === selected ? ' selected' : '');
  const set = (cls, text) => {
    const td = tr.querySelector('td.' + cls);
    if (td.textContent !== text) td.textContent = text;
  };
  set('state', r.state);
  set('pid', r.pid === null ? '-' : String(r.pid));
  set('restarts', String(r.restarts));
  set('uptime', fmtUptime(r.uptime_ms));
  set('cpu', r.supervisor ? '' : fmtCpu(r.cpu_percent));
  set('memory', r.supervisor ? '' : fmtBytes(r.memory_bytes));
  let last;
  if (r.supervisor) {
    last = r.strategy;
    if (r.intensity) last += ', ' + r.intensity.used + '/' + r.intensity.max_restarts + ' in ' + r.intensity.max_seconds + 's';
    else last += ', ' + r.restarts_seen + ' restarts seen';
  } else {
    last = r.last_exit === null ? '-' : r.last_exit;
    if (r.next_start_ms !== null && r.next_start_ms !== undefined) last = 'next start ' + fmtTime(r.next_start_ms) + ', ' + last;
  }
  set('last', last);
}

function renderTree(t) {
  $('node').textContent = 'node ' + t.node;
  $('otpd').textContent = 'otpd pid ' + t.otpd_pid + ', rss ' + fmtBytes(t.otpd_rss_bytes) + ', fds ' + (t.otpd_fds ?? '-');
  const live = $('live');
  const up = t.otpd === undefined || t.otpd === 'connected';
  live.textContent = up ? 'live' : 'otpd ' + t.otpd;
  live.className = 'badge ' + (up ? 'live' : 'down');
  lastTree = t;
  // The lines: every child, except that the instances of an `instances: N`
  // worker go under one group line (at the place of the first), one level
  // deeper, or not at all while the group is collapsed.
  const byPath = new Map(t.rows.map((r) => [r.path, r]));
  const groupOf = new Map();
  for (const g of t.groups || []) for (const p of g.members) groupOf.set(p, g);
  const lines = [];
  const placed = new Set();
  for (const r of t.rows) {
    const g = groupOf.get(r.path);
    if (!g) { lines.push({ r, depth: r.depth }); continue; }
    if (placed.has(g.key)) continue;
    placed.add(g.key);
    lines.push({ g, depth: g.depth });
    if (collapsed.has(g.key)) continue;
    for (const p of g.members) if (byPath.has(p)) lines.push({ r: byPath.get(p), depth: g.depth + 1, instance: true });
  }
  const key = lines.map((l) => (l.g ? 'g' + l.g.key + (collapsed.has(l.g.key) ? '+' : '-') : l.r.path) + '\u0000' + l.depth)
    .join('\u0001');
  const body = $('rows');
  if (key !== orderKey) {
    orderKey = key;
    rowsByPath = new Map();
    groupRows = new Map();
    const gd = guides(lines);
    const frag = document.createDocumentFragment();
    lines.forEach((l, i) => {
      const tr = l.g ? buildGroupRow(l.g, gd[i]) : buildRow(l.r, gd[i], l.instance);
      if (l.g) groupRows.set(l.g.key, tr); else rowsByPath.set(l.r.path, tr);
      frag.append(tr);
    });
    body.replaceChildren(frag);
  }
  for (const l of lines) {
    if (l.g) fillGroupRow(groupRows.get(l.g.key), l.g, byPath);
    else fillRow(rowsByPath.get(l.r.path), l.r);
  }
  if (selected && groupRows.has(selected)) showGroup(selected);
  else if (selected && rowsByPath.has(selected)) refreshDetail();
}

// A group's detail: its sums and its instances, from the latest tree
// (a click on an instance shows that child).
function showGroup(k) {
  const g = lastTree && (lastTree.groups || []).find((x) => x.key === k);
  if (!g) return;
  const byPath = new Map(lastTree.rows.map((r) => [r.path, r]));
  $('detail-title').textContent = g.key + ' (' + g.total + ' instances of ' + g.id + ')';
  const dl = el('dl');
  const add = (name, v) => dl.append(el('dt', null, name), el('dd', null, v));
  add('state', g.state + ' (the worst of its instances)');
  add('running', g.running + ' of ' + g.total);
  add('restarts', g.restarts);
  add('CPU', fmtCpu(g.cpu_percent) + ' %');
  add('memory', fmtBytes(g.memory_bytes));
  add('not running', notRunning(g, byPath));
  const list = el('ul', 'members');
  for (const p of g.members) {
    const r = byPath.get(p);
    const li = el('li', null, p + '  ' + (r ? r.state + (r.pid === null ? '' : '  pid ' + r.pid) : ''));
    li.addEventListener('click', () => select(p));
    list.append(li);
  }
  $('detail-body').replaceChildren(dl, el('h2', null, 'instances'), list);
}

let detailTimer = null;
function refreshDetail() {
  // At most a request a second for the detail pane.
  if (detailTimer) return;
  detailTimer = setTimeout(() => { detailTimer = null; loadDetail(); }, 1000);
}

async function loadDetail() {
  if (!selected || groupRows.has(selected)) return;
  const asked = selected;
  const r = await fetch('/api/child?path=' + encodeURIComponent(asked));
  if (selected !== asked) return;  // another row was selected meanwhile
  if (!r.ok) { $('detail-body').replaceChildren(el('p', 'note', 'no such child')); return; }
  const c = await r.json();
  $('detail-title').textContent = c.path + (c.supervisor ? '/' : '');
  const dl = el('dl');
  const add = (k, v) => dl.append(el('dt', null, k), el('dd', null, v));
  add('state', c.state);
  add('pid', c.pid ?? '-');
  add('restart', c.restart);
  add('restarts', c.restarts);
  if (c.name) add('name', c.name);
  if (c.instance_of !== undefined) add('instance', (c.instance ?? '?') + ' of ' + c.instance_of);
  if (c.liveness_failures !== undefined && c.liveness_failures !== null) {
    add('liveness', c.liveness_failures + ' failed in a row' +
      (c.liveness_threshold ? ' (otpd kills it at ' + c.liveness_threshold + ')' : ''));
  }
  add('uptime', fmtUptime(c.uptime_ms));
  if (c.next_start_ms !== null && c.next_start_ms !== undefined) add('next start', fmtTime(c.next_start_ms));
  if (!c.supervisor) {
    add('CPU', fmtCpu(c.cpu_percent) + ' % (' + (c.cpu_seconds ?? 0).toFixed(2) + ' s)');
    add('memory', fmtBytes(c.memory_bytes));
  }
  const kinds = Object.entries(c.exits_by_kind).map(([k, n]) => k + ' ' + n).join(', ');
  add('exits seen', kinds || 'none');
  const exits = el('ol', 'exits');
  for (const e of c.recent_exits.slice().reverse()) {
    exits.append(el('li', null, fmtTime(e.time_ms) + '  ' + e.reason + (e.pid ? '  (pid ' + e.pid + ')' : '')));
  }
  const parts = [dl, el('h2', null, 'recent exits'), c.recent_exits.length ? exits : el('p', 'note', 'none')];
  parts.push(el('h2', null, 'log'), el('p', 'note', c.log && c.log.available ? '' : c.log.why));
  $('detail-body').replaceChildren(...parts);
}

function select(path) {
  selected = path;
  for (const [p, tr] of rowsByPath) tr.classList.toggle('selected', p === path);
  for (const [k, tr] of groupRows) tr.classList.toggle('selected', k === path);
  if (groupRows.has(path)) showGroup(path); else loadDetail();
}

function eventText(e) {
  let s = fmtTime(e.wall_ms || Date.now()) + '  ';
  return s;
}

function eventMatches(e) {
  const type = $('filter-type').value;
  if (type && e.event !== type) return false;
  const f = $('filter').value.trim().toLowerCase();
  if (!f) return true;
  return [e.event, e.path, e.reason, e.detail, e.pid].some((v) => v !== undefined && String(v).toLowerCase().includes(f));
}

function eventItem(e) {
  const li = el('li');
  li.append(el('span', 'time', eventText(e)), el('span', 'ev', e.event), document.createTextNode(' '),
    el('span', 'path', e.path));
  if (e.pid !== undefined) li.append(document.createTextNode(' pid ' + e.pid));
  if (e.reason !== undefined) li.append(document.createTextNode(' reason ' + e.reason));
  if (e.detail !== undefined) li.append(document.createTextNode(' (' + e.detail + ')'));
  return li;
}

function renderEvents() {
  const list = $('events');
  const frag = document.createDocumentFragment();
  for (let i = events.length - 1; i >= 0; i--) if (eventMatches(events[i])) frag.append(eventItem(events[i]));
  list.replaceChildren(frag);
}

function addEvent(e) {
  events.push(e);
  if (events.length > maxEvents) events.shift();
  if (eventMatches(e)) $('events').prepend(eventItem(e));
}

function connect() {
  const es = new EventSource('/api/stream');
  es.addEventListener('tree', (m) => renderTree(JSON.parse(m.data)));
  es.addEventListener('event', (m) => addEvent(JSON.parse(m.data)));
  es.onerror = () => { const l = $('live'); l.textContent = 'reconnecting'; l.className = 'badge down'; };
}

async function init() {
  $('filter').addEventListener('input', renderEvents);
  $('filter-type').addEventListener('change', renderEvents);
  const s = await (await fetch('/api/session')).json();
  csrf = s.csrf;
  const recent = await (await fetch('/api/events')).json();
  for (const e of recent) events.push(e);
  renderEvents();
  connect();
}

init();
