// app.js: the web console's page. Everything goes through the Channel
// (channel.js), with the control socket's functions and events.
import { Channel } from './channel.js';

const $ = (id) => document.getElementById(id);
const ch = new Channel();
window.phpchat = ch; // for the browser's console and the tests

// h makes an element; text children are text nodes (never HTML).
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

let noticeTimer;
function notice(text, bad) {
  const n = $('notice');
  n.textContent = text;
  n.className = bad ? 'bad' : '';
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, bad ? 8000 : 4000);
}
const fail = (e) => notice(e.message || String(e), true);
const short = (a) => (a && a.length > 16 ? a.slice(0, 10) + '…' + a.slice(-4) : a || '');

// ---- views

const views = ['talk', 'messages', 'contacts', 'stats'];
function show(view) {
  for (const v of views) {
    const on = v === view;
    $(v).hidden = !on;
    $('tab-' + v).setAttribute('aria-selected', on);
    $('tab-' + v).tabIndex = on ? 0 : -1;
  }
  document.body.dataset.view = view;
  if (location.hash !== '#' + view) history.replaceState(null, '', '#' + view);
  if (view === 'messages') { $('mail-badge').textContent = ''; loadMessages(); }
  if (view === 'contacts') loadContacts();
  if (view === 'talk') $('talk-badge').textContent = '';
}
for (const v of views) $('tab-' + v).addEventListener('click', () => show(v));
document.querySelector('nav').addEventListener('keydown', (e) => {
  if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
  const i = views.indexOf(document.body.dataset.view) + (e.key === 'ArrowRight' ? 1 : views.length - 1);
  show(views[i % views.length]);
  $('tab-' + views[i % views.length]).focus();
});
document.addEventListener('keydown', (e) => {
  if (e.altKey && e.key >= '1' && e.key <= '4') { e.preventDefault(); show(views[+e.key - 1]); $('tab-' + views[+e.key - 1]).focus(); }
});

// ---- connection

ch.register('open', () => {
  $('conn').textContent = 'connected';
  $('conn').className = 'conn up';
  ch.call('console.attach').catch(fail); // streams talk.event and msg.event until the socket closes
  loadMessages();
  loadContacts();
});
ch.register('close', () => { $('conn').textContent = 'disconnected, retrying…'; $('conn').className = 'conn'; });
ch.register('error', (d) => fail(new Error(d.text)));

// ---- talk

const talks = new Map(); // talk number → {info, lines: [], unread}
let current = 0;
let myNick = '';

function talkName(t) { return t.nickname || short(t.peer); }

function renderTalks() {
  const ul = $('talks');
  ul.replaceChildren();
  for (const [n, t] of [...talks].sort((a, b) => a[0] - b[0])) {
    const i = t.info;
    const label = { ringing: i.outgoing ? 'ringing…' : 'wants to talk', calling: 'calling…', open: 'talking' }[i.state] || i.state;
    const li = h('li', { class: n === current ? 'sel' : '' },
      h('button', { onclick: () => select(n), 'aria-current': n === current ? 'true' : null, 'data-talk': n },
        talkName(i), t.unread ? ' (' + t.unread + ')' : '', h('small', {}, '#' + n + ' · ' + label)));
    if (i.state === 'ringing' && !i.outgoing) {
      li.append(h('div', { class: 'actions' },
        h('button', { onclick: () => answer(n, true) }, 'Accept'),
        h('button', { class: 'quiet', onclick: () => answer(n, false) }, 'Decline')));
    }
    ul.append(li);
  }
}

function select(n) {
  current = n;
  const t = talks.get(n);
  if (t) t.unread = 0;
  renderTalks();
  renderLog();
}

function renderLog() {
  const t = talks.get(current);
  $('talk-empty').hidden = !!t;
  $('talk-open').hidden = !t;
  if (!t) return;
  $('talk-title').textContent = talkName(t.info) + ' (' + t.info.state + ')';
  const log = $('talk-log');
  log.replaceChildren(...t.lines.map(lineItem));
  log.scrollTop = log.scrollHeight;
  $('talk-line').disabled = t.info.state !== 'open';
}

function lineItem(l) {
  if (l.sys) return h('li', { class: 'sys' }, l.text);
  return h('li', { class: l.mine ? 'mine' : '' }, h('span', { class: 'who' }, l.who), l.text);
}

function addLine(n, line) {
  const t = talks.get(n);
  if (!t) return;
  t.lines.push(line);
  if (t.lines.length > 500) t.lines.shift();
  if (n === current) {
    $('talk-log').append(lineItem(line));
    $('talk-log').scrollTop = $('talk-log').scrollHeight;
  } else {
    t.unread++;
  }
  if (document.body.dataset.view !== 'talk') $('talk-badge').textContent = '•';
}

function upsert(info) {
  const t = talks.get(info.talk) || { lines: [], unread: 0 };
  t.info = Object.assign(t.info || {}, info);
  talks.set(info.talk, t);
  return t;
}

function answer(n, accept) {
  ch.call(accept ? 'talk.accept' : 'talk.decline', { talk: n })
    .then((info) => { if (accept) { upsert(info); select(n); $('talk-line').focus(); } else { talks.delete(n); renderTalks(); renderLog(); } })
    .catch(fail);
}

ch.register('talk.event', (ev) => {
  const info = { talk: ev.talk, peer: ev.peer, nickname: ev.nickname || ev.contact };
  switch (ev.kind) {
    case 'attached': {
      myNick = ev.state.nickname;
      $('me').textContent = myNick || short(ev.state.address);
      $('me').title = ev.state.address;
      if (document.activeElement !== $('nick')) $('nick').value = myNick;
      const seen = new Set();
      for (const ti of ev.state.talks || []) { upsert(ti); seen.add(ti.talk); }
      for (const n of talks.keys()) if (!seen.has(n)) talks.delete(n);
      break;
    }
    case 'calling': upsert({ ...info, state: 'calling', outgoing: true }); break;
    case 'ringing': upsert({ ...info, state: 'ringing', outgoing: true }); addLine(ev.talk, { sys: true, text: 'ringing…' }); break;
    case 'request':
      upsert({ ...info, state: 'ringing', outgoing: false });
      addLine(ev.talk, { sys: true, text: (ev.first_time ? 'First contact! Fingerprint ' + ev.peer_fingerprint + '. ' : '') + 'Wants to talk.' });
      notice(talkName(info) + ' wants to talk');
      break;
    case 'open': {
      const t = upsert({ ...info, state: 'open', outgoing: !!ev.outgoing });
      addLine(ev.talk, { sys: true, text: 'Talk open.' });
      if (ev.outgoing || !current) select(ev.talk);
      void t;
      break;
    }
    case 'msg': {
      const t = talks.get(ev.talk);
      addLine(ev.talk, { mine: ev.mine, who: ev.mine ? (myNick || 'me') : (t ? talkName(t.info) : short(ev.peer)), text: ev.text });
      break;
    }
    case 'nick':
      if (ev.talk) {
        upsert({ talk: ev.talk, nickname: ev.nickname });
        addLine(ev.talk, { sys: true, text: (ev.old_nickname || 'peer') + ' is now ' + ev.nickname });
      } else {
        myNick = ev.nickname;
        $('me').textContent = myNick;
        $('nick').value = myNick;
      }
      break;
    case 'response': case 'failed': case 'request_closed': case 'closed': {
      const why = ev.text || { 2: 'declined', 3: 'no answer', 4: 'nobody is at the console' }[ev.status] || (ev.by_peer ? 'closed by the peer' : 'closed');
      addLine(ev.talk, { sys: true, text: 'Talk ended: ' + why + '.' });
      const t = talks.get(ev.talk);
      if (t) { t.info.state = 'closed'; if (ev.talk !== current) talks.delete(ev.talk); }
      if (ev.kind === 'failed') notice('Talk failed: ' + why, true);
      break;
    }
    case 'dropped': notice(ev.count + ' events were missed'); break;
  }
  renderTalks();
  if (ev.talk === current || ev.kind === 'attached') renderLog();
});

$('talk-start').addEventListener('submit', (e) => {
  e.preventDefault();
  const peer = $('talk-peer').value.trim();
  const fn = /^[^@\s]*@?[\w.\-\[\]:]+:\d+$/.test(peer) ? ['talk.connect', { target: peer }] : ['talk.request', { peer }];
  ch.call(...fn).then((info) => { upsert(info); select(info.talk); $('talk-peer').value = ''; }).catch(fail);
});
$('nick-form').addEventListener('submit', (e) => {
  e.preventDefault();
  ch.call('nick', { nickname: $('nick').value.trim() }).then((n) => { myNick = n; $('me').textContent = n; notice('Your nickname is ' + n); }).catch(fail);
});
$('talk-say').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('talk-line').value;
  if (!text.trim() || !current) return;
  ch.call('talk.send', { talk: current, text }).then(() => { $('talk-line').value = ''; }).catch(fail);
});
$('talk-close').addEventListener('click', () => {
  const n = current;
  const t = talks.get(n);
  if (t && t.info.state === 'closed') { talks.delete(n); current = 0; renderTalks(); renderLog(); return; }
  ch.call('talk.close', { talk: n }).catch(fail);
});

// ---- messages

let messages = [];
let openID = '';

function loadMessages() {
  if (!ch.open) return;
  ch.call('msg.list').then((list) => { messages = list || []; renderMessages(); }).catch(fail);
}

function renderMessages() {
  const box = $('box').value;
  const ul = $('msg-list');
  ul.replaceChildren();
  const list = messages.filter((m) => m.box === box).reverse();
  if (!list.length) ul.append(h('li', { class: 'empty' }, box === 'inbox' ? 'No mail.' : 'Nothing sent.'));
  for (const m of list) {
    const state = m.box === 'outbox' ? m.state + (m.reason ? ' (' + m.reason + ')' : '') : (m.read ? '' : 'unread');
    ul.append(h('li', { class: m.id === openID ? 'sel' : '' },
      h('button', { onclick: () => readMessage(m.id), class: m.box === 'inbox' && !m.read ? 'unread' : '', 'data-id': m.id },
        m.subject || '(no subject)',
        h('small', {}, nickOf(m.peer) + ' · ' + new Date(m.date).toLocaleString()),
        h('small', { class: 'state', 'data-state': m.state || '' }, state))));
  }
}
$('box').addEventListener('change', renderMessages);

ch.register('msg.event', (ev) => {
  if (ev.kind === 'mail') {
    notice('You got mail. From ' + nickOf(ev.from) + ': ' + (ev.subject || '(no subject)'));
    if (document.body.dataset.view !== 'messages') $('mail-badge').textContent = '•';
    loadMessages();
  } else if (ev.kind === 'state') {
    const m = messages.find((x) => x.id === ev.id);
    if (m) { m.state = ev.state; renderMessages(); } else loadMessages();
  }
});

function readMessage(id) {
  ch.call('msg.read', { id }).then((m) => {
    openID = m.id;
    const p = parseMessage(b64bytes(m.content));
    $('compose').hidden = true;
    $('msg-empty').hidden = true;
    $('msg-view').hidden = false;
    $('msg-subject').textContent = p.headers.subject || m.subject || '(no subject)';
    const dl = $('msg-headers');
    dl.replaceChildren();
    const rows = [[m.box === 'inbox' ? 'From' : 'To', nickOf(m.peer) + ' <' + m.peer + '>'], ['Date', new Date(m.date).toLocaleString()]];
    if (m.box === 'outbox') rows.push(['State', m.state + (m.relays ? ', ' + m.relays + ' relays' : '')]);
    for (const [k, v] of rows) dl.append(h('dt', {}, k), h('dd', {}, v));
    $('msg-text').textContent = p.text;
    $('msg-files').replaceChildren(...p.files.map((f) => h('li', {},
      h('a', { href: URL.createObjectURL(new Blob([f.data], { type: 'application/octet-stream' })), download: f.name }, f.name), ' (' + f.data.length + ' bytes)')));
    const s = messages.find((x) => x.id === m.id);
    if (s) s.read = true;
    renderMessages();
    $('msg-delete').focus();
  }).catch(fail);
}

$('msg-delete').addEventListener('click', () => {
  ch.call('msg.delete', { id: openID }).then(() => {
    messages = messages.filter((m) => m.id !== openID);
    openID = '';
    $('msg-view').hidden = true;
    $('msg-empty').hidden = false;
    renderMessages();
  }).catch(fail);
});
$('msg-reply').addEventListener('click', () => {
  const m = messages.find((x) => x.id === openID);
  compose(m ? m.peer : '', 'Re: ' + $('msg-subject').textContent.replace(/^Re: /i, ''));
});

function compose(to, subject) {
  show('messages');
  $('msg-view').hidden = true;
  $('msg-empty').hidden = true;
  $('compose').hidden = false;
  $('c-to').value = to || '';
  $('c-subject').value = subject || '';
  (to ? $('c-body') : $('c-to')).focus();
}
$('compose-open').addEventListener('click', () => compose());
$('compose-cancel').addEventListener('click', () => { $('compose').hidden = true; $('msg-empty').hidden = false; });
$('compose').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const files = [];
    for (const f of $('c-files').files) files.push({ name: f.name, type: f.type, data: new Uint8Array(await f.arrayBuffer()) });
    const content = buildMessage($('c-subject').value, $('c-body').value, files);
    const r = await ch.call('msg.send', { to: $('c-to').value.trim(), content: bytesB64(content) });
    notice('Queued as ' + r.id.slice(0, 12));
    $('compose').reset();
    $('compose').hidden = true;
    $('box').value = 'outbox';
    openID = r.id;
    loadMessages();
    $('msg-empty').hidden = false;
  } catch (err) { fail(err); }
});

// ---- MIME: build and read RFC 5322 messages (as `phpchat-node send` does)

const enc = new TextEncoder();
function bytesB64(b) { let s = ''; for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000)); return btoa(s); }
function b64bytes(s) { const bin = atob(s || ''); const b = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i); return b; }
function b64lines(b) { return bytesB64(b).replace(/.{76}/g, '$&\r\n'); }
// word encodes a header value as RFC 2047 when it is not plain ASCII.
function word(s) { return /^[\x20-\x7e]*$/.test(s) ? s : '=?UTF-8?B?' + bytesB64(enc.encode(s)) + '?='; }
function crlf(s) { return s.replace(/\r?\n/g, '\r\n'); }

function buildMessage(subject, body, files) {
  const head = 'MIME-Version: 1.0\r\nDate: ' + new Date().toUTCString().replace('GMT', '+0000') + '\r\n' +
    (subject ? 'Subject: ' + word(subject.replace(/[\r\n]/g, ' ')) + '\r\n' : '');
  const text = 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n' + b64lines(enc.encode(crlf(body))) + '\r\n';
  if (!files.length) return enc.encode(head + text);
  const bnd = 'b' + crypto.getRandomValues(new Uint32Array(4)).join('');
  let s = head + 'Content-Type: multipart/mixed; boundary="' + bnd + '"\r\n\r\n--' + bnd + '\r\n' + text;
  for (const f of files) {
    const name = f.name.replace(/["\\\r\n]/g, '_');
    s += '--' + bnd + '\r\nContent-Type: ' + (f.type || 'application/octet-stream').replace(/[^\w.+\/-]/g, '') + '; name="' + word(name) + '"\r\n' +
      'Content-Disposition: attachment; filename="' + word(name) + '"\r\nContent-Transfer-Encoding: base64\r\n\r\n' + b64lines(f.data) + '\r\n';
  }
  return enc.encode(s + '--' + bnd + '--\r\n');
}

const dec = new TextDecoder();
function latin(b) { let s = ''; for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000)); return s; }
function unword(v) {
  return v.replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (_, cs, e, t) => {
    try {
      const b = e.toUpperCase() === 'B' ? b64bytes(t) : qp(t.replace(/_/g, ' '));
      return new TextDecoder(cs).decode(b);
    } catch { return t; }
  });
}
function qp(s) {
  const out = [];
  s = s.replace(/=\r?\n/g, '');
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(s.substr(i + 1, 2))) { out.push(parseInt(s.substr(i + 1, 2), 16)); i += 2; }
    else out.push(s.charCodeAt(i) & 255);
  }
  return new Uint8Array(out);
}
function splitPart(s) {
  const i = s.search(/\r?\n\r?\n/);
  const raw = i < 0 ? s : s.slice(0, i);
  const body = i < 0 ? '' : s.slice(i).replace(/^\r?\n\r?\n/, '');
  const headers = {};
  for (const l of raw.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const c = l.indexOf(':');
    if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = unword(l.slice(c + 1).trim());
  }
  return { headers, body };
}
function param(v, name) { const m = new RegExp(name + '\\*?="?([^";]*)"?', 'i').exec(v || ''); return m ? m[1] : ''; }
function decodeBody(p) {
  const te = (p.headers['content-transfer-encoding'] || '').toLowerCase();
  if (te === 'base64') return b64bytes(p.body.replace(/[^A-Za-z0-9+/=]/g, ''));
  if (te === 'quoted-printable') return qp(p.body);
  return Uint8Array.from(p.body, (c) => c.charCodeAt(0) & 255);
}
// parseMessage returns a message's headers, its first text part and its files.
function parseMessage(bytes) {
  const out = { headers: {}, text: '', files: [] };
  const walk = (p, depth) => {
    const ct = (p.headers['content-type'] || 'text/plain').toLowerCase();
    if (ct.startsWith('multipart/') && depth < 8) {
      const b = param(p.headers['content-type'], 'boundary');
      if (!b) return;
      const parts = p.body.split('--' + b);
      for (const part of parts.slice(1)) {
        if (part.startsWith('--')) break;
        walk(splitPart(part.replace(/^\r?\n/, '').replace(/\r?\n$/, '')), depth + 1);
      }
      return;
    }
    const disp = p.headers['content-disposition'] || '';
    const data = decodeBody(p);
    if (ct.startsWith('text/plain') && !/^attachment/i.test(disp) && !out.textSet) {
      out.text = dec.decode(data);
      out.textSet = true;
    } else {
      out.files.push({ name: param(disp, 'filename') || param(p.headers['content-type'], 'name') || 'part' + (out.files.length + 1), data });
    }
  };
  const top = splitPart(latin(bytes));
  out.headers = top.headers;
  walk(top, 0);
  return out;
}

// ---- contacts

let contacts = [];
function nickOf(addr) { const c = contacts.find((x) => x.address === addr); return c ? c.nickname : short(addr); }

function loadContacts() {
  if (!ch.open) return;
  ch.call('contacts.list').then((list) => { contacts = list || []; renderContacts(); renderMessages(); }).catch(fail);
}
function renderContacts() {
  const tb = $('contact-list');
  tb.replaceChildren();
  if (!contacts.length) tb.append(h('tr', {}, h('td', { colspan: 3, class: 'empty' }, 'No contacts yet.')));
  for (const c of contacts) {
    tb.append(h('tr', { 'data-nick': c.nickname },
      h('td', {}, c.nickname), h('td', { class: 'addr' }, c.address),
      h('td', {}, h('div', { class: 'actions' },
        h('button', { onclick: () => { show('talk'); ch.call('talk.request', { peer: c.address }).then((i) => { upsert(i); select(i.talk); }).catch(fail); } }, 'Talk'),
        h('button', { onclick: () => compose(c.nickname) }, 'Message'),
        h('button', { class: 'quiet', 'aria-label': 'Remove ' + c.nickname, onclick: () => ch.call('contacts.remove', { id: c.id }).then(loadContacts).catch(fail) }, 'Remove')))));
  }
}
$('contact-add').addEventListener('submit', (e) => {
  e.preventDefault();
  ch.call('contacts.add', { nickname: $('ct-nick').value.trim(), address: $('ct-addr').value.trim() })
    .then(() => { $('contact-add').reset(); loadContacts(); $('ct-nick').focus(); }).catch(fail);
});

// ---- statistics: `info` every second

const samples = []; // {t, in, out} rates
let last = null;
function bytes(n) { return n < 1024 ? n.toFixed(0) + ' B' : n < 1 << 20 ? (n / 1024).toFixed(1) + ' KiB' : (n / (1 << 20)).toFixed(1) + ' MiB'; }

function poll() {
  if (!ch.open || document.hidden) return;
  ch.call('info').then((i) => {
    const now = performance.now();
    if (last && i.traffic_in !== undefined) {
      const dt = (now - last.t) / 1000;
      samples.push({ in: Math.max(0, (i.traffic_in - last.in) / dt), out: Math.max(0, (i.traffic_out - last.out) / dt) });
      if (samples.length > 120) samples.shift();
    }
    last = { t: now, in: i.traffic_in || 0, out: i.traffic_out || 0 };
    if (document.body.dataset.view === 'stats') renderStats(i);
  }).catch(() => {});
}
function renderStats(i) {
  const m = i.miner || {};
  const h1 = samples[samples.length - 1] || { in: 0, out: 0 };
  const figs = [
    ['Peers', (i.peers ?? 0) + ' (' + (i.peers_in || 0) + ' in, ' + (i.peers_out || 0) + ' out)'],
    ['DHT nodes', i.dht_nodes ?? 0], ['Miner', (m.hash_rate || 0).toFixed(0) + ' H/s'], ['Stamps minted', m.minted || 0],
    ['Traffic in', bytes(h1.in) + '/s'], ['Traffic out', bytes(h1.out) + '/s'],
    ['Inbox', (i.inbox_total || 0) + ' (' + (i.inbox_unread || 0) + ' unread)'], ['Outbox waiting', i.outbox_queued || 0],
    ['Relaying', (i.relay_stored || 0) + ' · ' + bytes(i.relay_bytes || 0)], ['Uptime', Math.floor((i.uptime_seconds || 0) / 60) + ' min'],
  ];
  $('figures').replaceChildren(...figs.map(([k, v]) => h('div', { 'data-fig': k }, h('dt', {}, k), h('dd', {}, v))));
  $('peer-list').replaceChildren(...(i.connections || []).map((c) => h('tr', {},
    h('td', { class: 'addr' }, nickOf(c.address)), h('td', {}, c.remote), h('td', {}, c.status), h('td', {}, bytes(c.traffic_in)), h('td', {}, bytes(c.traffic_out)))));
  drawChart();
}
function drawChart() {
  const c = $('chart');
  const w = c.clientWidth, hgt = c.clientHeight;
  if (!w) return;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== w * dpr) { c.width = w * dpr; c.height = hgt * dpr; }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  const top = Math.max(1024, ...samples.map((p) => Math.max(p.in, p.out)));
  g.fillStyle = getComputedStyle(document.body).color;
  g.font = '11px system-ui';
  g.fillText(bytes(top) + '/s', 4, 12);
  for (const [key, color] of [['in', '#2f7fd0'], ['out', '#e08a1e']]) {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    samples.forEach((p, k) => {
      const x = w - (samples.length - 1 - k) * (w / 119);
      const y = hgt - 4 - (p[key] / top) * (hgt - 20);
      if (k) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
}
setInterval(poll, 1000);

show(views.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'talk');
