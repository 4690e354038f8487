// channel.js: CommChannel's JavaScript client on the node's WebSocket.
//
//   const ch = new Channel();           // connects to /ws on this page's host
//   ch.register('talk.event', cb);      // cb(data, frame) for each frame of that name
//   ch.send('talk.list', null);         // a request whose reply goes to the callbacks
//   const v = await ch.call('info');    // resolved by the reply with the same rid,
//                                       // rejected by an error frame ({code, text})
//
// register('open', cb) and register('close', cb) follow the connection,
// which is made again after it drops.
export class Channel {
  constructor(url) {
    this.url = url || (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    this.handlers = new Map();
    this.pending = new Map();
    this.rid = 0;
    this.backoff = 500;
    this.connect();
    this.pinger = setInterval(() => { if (this.open) this.call('ping').catch(() => {}); }, 60000);
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => { this.open = true; this.backoff = 500; this.emit('open', null); };
    ws.onmessage = (m) => this.receive(m.data);
    ws.onclose = (e) => {
      this.open = false;
      for (const p of this.pending.values()) p.reject(new ChannelError(0, 'connection lost'));
      this.pending.clear();
      this.emit('close', { code: e.code, reason: e.reason });
      if (!this.closed) {
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 15000);
      }
    };
  }

  receive(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    const p = f.rid ? this.pending.get(f.rid) : null;
    if (p) {
      this.pending.delete(f.rid);
      if (f.name === 'error') p.reject(new ChannelError(f.data.code, f.data.text));
      else p.resolve(f.data);
      return;
    }
    this.emit(f.name, f.data === undefined ? null : f.data, f);
  }

  emit(name, data, frame) {
    for (const cb of this.handlers.get(name) || []) {
      try { cb(data, frame); } catch (e) { console.warn('channel: callback for ' + name + ' failed', e); }
    }
  }

  // register calls cb(data, frame) for each frame named type.
  register(type, cb) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(cb);
  }

  // send sends a request; its reply (or error frame) goes to the callbacks
  // registered for its name (or 'error'). It returns the rid, or 0 when
  // the connection is down.
  send(type, payload) {
    if (!this.open) return 0;
    const rid = ++this.rid;
    const f = { name: type, rid };
    if (payload !== undefined && payload !== null) f.data = payload;
    this.ws.send(JSON.stringify(f));
    return rid;
  }

  // call sends a request and resolves with its reply's data.
  call(name, data) {
    return new Promise((resolve, reject) => {
      if (!this.open) { reject(new ChannelError(0, 'not connected')); return; }
      const rid = this.send(name, data);
      this.pending.set(rid, { resolve, reject });
    });
  }

  close() { this.closed = true; clearInterval(this.pinger); this.ws.close(); }
}

// ChannelError is an error frame's code and text.
export class ChannelError extends Error {
  constructor(code, text) { super(text); this.code = code; }
}
