// The ember dashboard: one small script, no build step. Each page is drawn from /api/... JSON,
// with DOM calls and textContent only (no HTML from data), and polled while it is open.
'use strict';

const POLL_MS = 4000;
const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let pollTimer = null;

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

function svg(tag, attrs, ...kids) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const kid of kids) node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return node;
}

async function getJSON(url) {
  const resp = await fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}});
  if (resp.status === 401) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname);
    throw new Error('not logged in');
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || ('HTTP ' + resp.status));
  return body;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + ' ' + units[i];
}
const fmtNum = (n) => (Math.round(n * 100) / 100).toString();
const fmtTime = (ms) => ms ? new Date(ms).toLocaleTimeString() : '-';
// ember's ids are a per-process random prefix and a counter, little-endian: the end tells them apart.
const shortId = (hex) => hex ? hex.replace(/(00)+$/, '').slice(-12) : '-';
const idCell = (hex) => el('span', {title: hex || ''}, shortId(hex));
const state = (s) => el('span', {class: 'state ' + (s || '')}, s || '-');

function bar(used, total, label) {
  const pct = total > 0 ? Math.min(100, 100 * used / total) : 0;
  const fill = el('span');
  fill.style.width = pct.toFixed(1) + '%';
  return el('span', {class: 'barcell'}, el('span', {class: 'bar'}, fill), el('span', {class: 'barlabel'}, label));
}

function table(columns, rows, rowAttrs) {
  const head = el('tr', {}, columns.map(([title]) => el('th', {}, title)));
  const body = rows.map((row) => el('tr', rowAttrs ? rowAttrs(row) : {},
    columns.map(([, cell, cls]) => el('td', {class: cls}, cell(row)))));
  if (!rows.length) body.push(el('tr', {}, el('td', {colspan: columns.length, class: 'muted'}, 'none')));
  return el('table', {}, el('thead', {}, head), el('tbody', {}, body));
}

function card(value, key) {
  return el('div', {class: 'card'}, el('div', {class: 'v'}, value), el('div', {class: 'k'}, key));
}

// A line chart as inline SVG: times t (s), series [{name, values, color}], y from 0 to yMax.
// The x axis spans the samples there are (at least a minute, at most the hour kept).
function spanLabel(s) { return s >= 120 ? `-${Math.round(s / 60)} min` : `-${Math.round(s)} s`; }
function chart(title, t, series, yMax, fmt) {
  const W = 560, H = 150, L = 62, B = 18;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img'});
  const top = Math.max(yMax || 0, ...series.flatMap((s) => s.values), 1e-9);
  const t1 = t.length ? t[t.length - 1] : 0;
  const span = Math.min(3600, Math.max(60, t.length ? t1 - t[0] : 0));
  const x = (v) => L + (W - L - 6) * (v - (t1 - span)) / span;
  const y = (v) => 6 + (H - B - 10) * (1 - v / top);
  for (const frac of [0, 0.5, 1]) {
    root.append(svg('line', {x1: L, x2: W - 6, y1: y(top * frac), y2: y(top * frac), stroke: '#e5e7eb'}));
    root.append(svg('text', {x: L - 6, y: y(top * frac) + 4, 'text-anchor': 'end', 'font-size': 11,
                             fill: '#7a8292'}, fmt(top * frac)));
  }
  root.append(svg('text', {x: L, y: H - 4, 'font-size': 11, fill: '#7a8292'}, spanLabel(span)));
  root.append(svg('text', {x: W - 6, y: H - 4, 'font-size': 11, fill: '#7a8292', 'text-anchor': 'end'}, 'now'));
  for (const s of series) {
    if (!s.values.length) continue;
    const pts = s.values.map((v, i) => `${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`);
    root.append(svg('polyline', {points: pts.join(' '), fill: 'none', stroke: s.color, 'stroke-width': 1.8}));
    const last = s.values.length - 1;  // the newest sample as a dot: visible even when it is the only one
    root.append(svg('circle', {cx: x(t[last]).toFixed(1), cy: y(s.values[last]).toFixed(1), r: 2.5, fill: s.color}));
  }
  const legend = series.map((s) => {
    const last = s.values.length ? s.values[s.values.length - 1] : 0;
    const item = el('span', {}, `\u25A0 ${s.name}: ${fmt(last)}   `);
    item.style.color = s.color;
    return item;
  });
  return el('div', {class: 'chart'}, el('div', {class: 'title'}, title), root, el('div', {class: 'legend'}, legend));
}

// --- pages ---------------------------------------------------------------------------------------
async function overviewPage() {
  const d = await getJSON('/api/dashboard/overview');
  const n = d.now, h = d.history;
  const alive = d.nodes.filter((x) => x.state === 'ALIVE').length;
  const actorsAlive = d.actor_states.ALIVE || 0;
  const cards = el('div', {class: 'cards'},
    card(`${alive} / ${d.nodes.length}`, 'nodes alive'),
    card(`${fmtNum(n.cpu_used)} / ${fmtNum(n.cpu_total)}`, 'CPU in use'),
    card(`${fmtNum(n.gpu_used)} / ${fmtNum(n.gpu_total)}`, 'GPU in use'),
    card(`${fmtBytes(n.object_store_used_bytes)}`, 'object store used of ' + fmtBytes(n.object_store_capacity_bytes)),
    card(String(actorsAlive), 'actors alive'),
    card(String(d.task_states.RUNNING || 0), 'tasks running'),
    card(String(d.task_states.FINISHED || 0), 'tasks finished'),
    card(String(d.task_states.FAILED || 0), 'tasks failed'));
  const charts = el('div', {class: 'charts'},
    chart('CPU (logical)', h.t, [{name: 'used', values: h.cpu_used, color: '#ea580c'},
                                 {name: 'total', values: h.cpu_total, color: '#94a3b8'}], 0, fmtNum),
    chart('Machine CPU %', h.t, [{name: 'busy', values: h.host_cpu_percent, color: '#2563eb'}], 100,
          (v) => v.toFixed(0) + '%'),
    chart('Object store', h.t, [{name: 'used', values: h.object_store_used_bytes, color: '#16a34a'},
                                {name: 'capacity', values: h.object_store_capacity_bytes, color: '#94a3b8'}],
          0, fmtBytes),
    chart('Memory (logical)', h.t, [{name: 'used', values: h.memory_used_bytes, color: '#9333ea'},
                                    {name: 'total', values: h.memory_total_bytes, color: '#94a3b8'}], 0, fmtBytes));
  const nodes = table([
    ['Node', (r) => idCell(r.node_id), 'mono'], ['IP', (r) => r.node_ip], ['State', (r) => state(r.state)],
    ['Head', (r) => r.is_head_node ? 'yes' : ''],
    ['CPU', (r) => bar(r.resources_total.CPU - (r.resources_available.CPU || 0), r.resources_total.CPU || 0,
                       `${fmtNum((r.resources_total.CPU || 0) - (r.resources_available.CPU || 0))} / ${fmtNum(r.resources_total.CPU || 0)}`)],
  ], d.nodes);
  const jobs = table([
    ['Job', (r) => r.submission_id, 'mono'], ['Status', (r) => state(r.status)],
    ['Entrypoint', (r) => r.entrypoint, 'mono'], ['Started', (r) => fmtTime(r.start_time)],
  ], d.jobs);
  return [el('h2', {}, 'Cluster'), cards, el('h2', {}, 'Over time (the last hour at most)'), charts,
          el('h2', {}, 'Nodes'), nodes, el('h2', {}, 'Recent jobs'), jobs];
}

function resCell(r, name) {
  const total = r.resources_total[name] || 0;
  if (!total) return '-';
  const used = total - (r.resources_available[name] || 0);
  return bar(used, total, name === 'memory' ? `${fmtBytes(used)} / ${fmtBytes(total)}` : `${fmtNum(used)} / ${fmtNum(total)}`);
}

async function nodesPage() {
  const d = await getJSON('/api/dashboard/nodes');
  const out = [el('h2', {}, 'Nodes')];
  out.push(table([
    ['Node', (r) => idCell(r.node_id), 'mono'], ['IP', (r) => r.node_ip], ['State', (r) => state(r.state)],
    ['CPU (logical)', (r) => resCell(r, 'CPU')], ['GPU', (r) => resCell(r, 'GPU')],
    ['Memory (logical)', (r) => resCell(r, 'memory')],
    ['Object store', (r) => bar(r.object_store_used_bytes, r.object_store_capacity_bytes,
                                `${fmtBytes(r.object_store_used_bytes)} / ${fmtBytes(r.object_store_capacity_bytes)}`)],
    ['Machine CPU', (r) => r.host ? bar(r.host.cpu_percent, 100, `${r.host.cpu_percent.toFixed(0)}% of ${r.host.cpu_count}`) : '-'],
    ['Machine memory', (r) => r.host ? bar(r.host.mem_used_bytes, r.host.mem_total_bytes,
                                           `${fmtBytes(r.host.mem_used_bytes)} / ${fmtBytes(r.host.mem_total_bytes)}`) : '-'],
    ['Load', (r) => r.host ? r.host.load_avg.join(', ') : '-'],
  ], d.nodes));
  for (const node of d.nodes) {
    if (!node.host) continue;
    out.push(el('h2', {}, `Workers on ${shortId(node.node_id)} (${node.node_ip})${node.is_head_node ? ', head' : ''}`));
    const daemon = node.host.daemon;
    out.push(el('p', {class: 'muted'}, `node daemon pid ${daemon.pid}: ${daemon.cpu_percent.toFixed(0)}% CPU, ${fmtBytes(daemon.rss_bytes)} RSS`));
    out.push(table([
      ['Worker', (w) => w.worker_id, 'mono'], ['PID', (w) => w.pid], ['Job', (w) => w.job_id, 'mono'],
      ['Actor', (w) => w.actor_class ? `${w.actor_class} ${shortId(w.actor_id)}` : ''],
      ['CPU', (w) => w.cpu_percent.toFixed(0) + '%'], ['RSS', (w) => fmtBytes(w.rss_bytes)],
    ], node.host.workers));
  }
  return out;
}

const actorFilter = {state: '', text: ''};
async function actorsPage() {
  const d = await getJSON('/api/dashboard/actors');
  const states = [...new Set(d.actors.map((a) => a.state))].sort();
  const select = el('select', {id: 'actor-state', onchange: (e) => { actorFilter.state = e.target.value; refresh(); }},
    el('option', {value: ''}, 'all states'), states.map((s) => el('option', {value: s}, s)));
  select.value = actorFilter.state;
  const input = el('input', {id: 'actor-search', placeholder: 'class, name, id or node', value: actorFilter.text,
    onchange: (e) => { actorFilter.text = e.target.value.trim().toLowerCase(); refresh(); }});
  const text = actorFilter.text;
  const rows = d.actors.filter((a) => (!actorFilter.state || a.state === actorFilter.state) &&
    (!text || [a.class_name, a.name, a.actor_id, a.node_id].some((v) => (v || '').toLowerCase().includes(text))));
  return [el('h2', {}, `Actors (${rows.length} of ${d.total})`),
    el('div', {class: 'filters'}, 'Filter:', select, input),
    table([
      ['Actor', (a) => idCell(a.actor_id), 'mono'], ['Class', (a) => a.class_name], ['Name', (a) => a.name || ''],
      ['State', (a) => state(a.state)], ['Node', (a) => idCell(a.node_id), 'mono'], ['PID', (a) => a.pid || '-'],
      ['Restarts', (a) => `${a.num_restarts} / ${a.max_restarts < 0 ? '\u221e' : a.max_restarts}`],
      ['Namespace', (a) => a.ray_namespace], ['Death cause', (a) => a.death_cause ? a.death_cause.message : '', 'error-text'],
    ], rows)];
}

async function tasksPage() {
  const d = await getJSON('/api/dashboard/tasks');
  const allStates = [...new Set(d.summary.flatMap((s) => Object.keys(s.state_counts)))].sort();
  const out = [el('h2', {}, 'Tasks by function')];
  out.push(table([['Function', (s) => s.func_or_class_name, 'mono'], ['Type', (s) => s.type],
    ...allStates.map((st) => [st, (s) => s.state_counts[st] || ''])], d.summary));
  if (d.dropped) out.push(el('p', {class: 'muted'}, `${d.dropped} task events were dropped (bounded window).`));
  out.push(el('h2', {}, `Running (${d.running_total})`));
  out.push(table([['Task', (t) => idCell(t.task_id), 'mono'], ['Function', (t) => t.func_or_class_name || t.name, 'mono'],
    ['Node', (t) => idCell(t.node_id), 'mono'], ['PID', (t) => t.worker_pid || '-'],
    ['Started', (t) => fmtTime(t.start_time_ms)]], d.running));
  out.push(el('h2', {}, `Failures (${d.failed_total})`));
  out.push(table([['Task', (t) => idCell(t.task_id), 'mono'], ['Function', (t) => t.func_or_class_name || t.name, 'mono'],
    ['Attempt', (t) => t.attempt_number], ['Ended', (t) => fmtTime(t.end_time_ms)],
    ['Error', (t) => t.error_type || '', 'mono'], ['Message', (t) => t.error_message || '', 'error-text']], d.failed));
  return out;
}

async function placementGroupsPage() {
  const d = await getJSON('/api/dashboard/placement_groups');
  const bundles = (g) => g.bundles.map((b) => `#${b.bundle_id} ${JSON.stringify(b.unit_resources)} @ ${shortId(b.node_id)}`).join('\n');
  return [el('h2', {}, `Placement groups (${d.placement_groups.length})`),
    table([['Group', (g) => idCell(g.placement_group_id), 'mono'], ['Name', (g) => g.name], ['State', (g) => state(g.state)],
      ['Strategy', (g) => g.strategy], ['Detached', (g) => g.is_detached ? 'yes' : ''],
      ['Bundles', (g) => el('span', {class: 'mono'}, bundles(g))]], d.placement_groups)];
}

// Jobs: the table, and the chosen job's log followed live over the jobs API's websocket.
const jobView = {id: null, socket: null, pre: null};
function followJob(id) {
  if (jobView.socket) { jobView.socket.onclose = null; jobView.socket.close(); }
  jobView.id = id;
  jobView.pre = el('pre', {class: 'log', id: 'job-log', 'data-keep-scroll': 'job-log'});
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(scheme + location.host + '/api/jobs/' + encodeURIComponent(id) + '/logs/tail');
  ws.onmessage = (e) => { jobView.pre.append(document.createTextNode(e.data)); jobView.pre.scrollTop = jobView.pre.scrollHeight; };
  ws.onclose = () => { jobView.pre.append(document.createTextNode('\n[end of log]\n')); };
  jobView.socket = ws;
  refresh();
}

async function jobsPage() {
  const d = await getJSON('/api/dashboard/drivers');
  const out = [el('h2', {}, 'Submitted jobs'),
    table([['Job', (j) => el('a', {class: 'link', onclick: () => followJob(j.submission_id)}, j.submission_id), 'mono'],
      ['Status', (j) => state(j.status)], ['Entrypoint', (j) => j.entrypoint, 'mono'],
      ['Started', (j) => fmtTime(j.start_time)], ['Ended', (j) => fmtTime(j.end_time)],
      ['Message', (j) => j.message || '']], d.jobs,
      (j) => ({class: 'click' + (j.submission_id === jobView.id ? ' sel' : '')}))];
  if (jobView.id) out.push(el('h2', {}, `Log of ${jobView.id} (live)`), jobView.pre);
  out.push(el('h2', {}, 'Drivers'), table([['Job id', (r) => r.job_id, 'mono'], ['Namespace', (r) => r.namespace],
    ['PID', (r) => r.driver_pid], ['Status', (r) => state(r.status)]], d.drivers));
  return out;
}

// Logs of the head node: pick a file, read its end, then follow it.
const logView = {name: null, offset: -1, pre: null, busy: false, filter: '', showEmpty: false};
function openLog(name) {
  logView.name = name; logView.offset = -1;
  logView.pre = el('pre', {class: 'log', id: 'log-text', 'data-keep-scroll': 'log'});
  refresh();
}
async function readMoreLog() {
  if (!logView.name || logView.busy) return;
  logView.busy = true;
  try {
    const c = await getJSON('/api/dashboard/logs/file?name=' + encodeURIComponent(logView.name) + '&offset=' + logView.offset);
    if (c.text) { logView.pre.append(document.createTextNode(c.text)); logView.pre.scrollTop = logView.pre.scrollHeight; }
    logView.offset = c.next_offset;
  } finally { logView.busy = false; }
}
async function logsPage() {
  const d = await getJSON('/api/dashboard/logs');
  await readMoreLog();
  const shown = d.files.filter((f) => (logView.showEmpty || f.size_bytes > 0 || f.name === logView.name) &&
                                      (!logView.filter || f.name.toLowerCase().includes(logView.filter)));
  const filter = el('input', {id: 'log-filter', placeholder: 'file name', value: logView.filter,
    onchange: (e) => { logView.filter = e.target.value.trim().toLowerCase(); refresh(); }});
  const empty = el('input', {type: 'checkbox', id: 'log-empty',
    onchange: (e) => { logView.showEmpty = e.target.checked; refresh(); }});
  empty.checked = logView.showEmpty;
  const files = table([['File', (f) => el('a', {class: 'link', onclick: () => openLog(f.name)}, f.name), 'mono'],
    ['Size', (f) => fmtBytes(f.size_bytes)], ['Modified', (f) => fmtTime(f.mtime_s * 1000)]], shown,
    (f) => ({class: 'click' + (f.name === logView.name ? ' sel' : '')}));
  const right = logView.name ? [el('h2', {}, logView.name + ' (followed)'), logView.pre]
                             : [el('p', {class: 'muted'}, 'Choose a file.')];
  return [el('div', {class: 'split'},
    el('div', {}, el('h2', {}, `Head node log files (${shown.length} of ${d.files.length})`),
       el('div', {class: 'filters'}, filter, el('label', {for: 'log-empty'}, empty, ' empty files')),
       el('div', {class: 'scroll', 'data-keep-scroll': 'files'}, files)),
    el('div', {}, right))];
}

const PAGES = {'/': overviewPage, '/nodes': nodesPage, '/actors': actorsPage, '/tasks': tasksPage,
               '/placement-groups': placementGroupsPage, '/jobs': jobsPage, '/logs': logsPage};

async function refresh() {
  clearTimeout(pollTimer);
  const page = PAGES[location.pathname] || overviewPage;
  try {
    const nodes = await page();
    const focused = document.activeElement && document.activeElement.id;
    const scrolls = {};  // a redraw keeps where the user scrolled lists and logs to
    for (const e of main.querySelectorAll('[data-keep-scroll]')) {
      scrolls[e.dataset.keepScroll] = e.scrollTop + e.clientHeight >= e.scrollHeight - 4 ? 'end' : e.scrollTop;
    }
    main.replaceChildren(...nodes);
    for (const e of main.querySelectorAll('[data-keep-scroll]')) {
      const was = scrolls[e.dataset.keepScroll];  // logs follow their end unless scrolled up
      e.scrollTop = was === 'end' || (was === undefined && e.classList.contains('log')) ? e.scrollHeight : (was || 0);
    }
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    statusEl.className = 'status';
    statusEl.textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (err) {
    statusEl.className = 'status error';
    statusEl.textContent = 'not updated: ' + err.message;
  }
  pollTimer = setTimeout(refresh, POLL_MS);
}

for (const a of document.querySelectorAll('#nav a')) {
  if (a.getAttribute('href') === location.pathname) a.classList.add('active');
}
refresh();
