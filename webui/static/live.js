// Starforge web UI, live parts: the /ws event stream, pages that refresh
// when something they show changes, the live build page and its log
// viewer. Plain browser JavaScript, no build step.
//
// The stream speaks Buildbot's websocket protocol: {"cmd":
// "startConsuming", "path": "builds/*/*", "_id": n} in, {"k":
// "builds/12/new", "m": {...}} out. Everything it says is also in the
// REST API, so a page that loses the stream reads the API again when it
// comes back, and polls slowly while it is away.
'use strict';

window.starforgeLive = (function () {
  const RESULTS = ['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled'];
  const RETRY_MS = [500, 1000, 2000, 5000, 10000]; // reconnection delays
  const REFRESH_DEBOUNCE_MS = 250; // events this close together cause one page refresh
  const REFRESH_MIN_GAP_MS = 1000; // and refreshes are at least this far apart
  const SLOW_POLL_MS = 60000; // pages poll this slowly even while the stream is up

  // Formatting is app.js's (loaded first): twins of format.go.
  const { now, formatDuration, formatAgo } = window.starforgeFormat;

  function statusClass(x) {
    if (x.complete) return RESULTS[x.results] || 'unknown';
    return x.started_at ? 'running' : 'pending';
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c);
    return e;
  }

  function timeEl(ts) {
    if (ts == null) return el('span', { className: 'none', textContent: '—' });
    const d = new Date(ts * 1000);
    const t = el('time', { className: 'ago', dateTime: d.toISOString(), title: d.toLocaleString(), textContent: formatAgo(ts) });
    t.dataset.ts = ts;
    return t;
  }

  // setDuration makes span show start..end (unix seconds; end null while
  // running: app.js's ticker keeps such spans current).
  function setDuration(span, start, end) {
    if (start == null) {
      span.removeAttribute('data-start');
      span.removeAttribute('data-end');
      span.className = 'none';
      span.textContent = '—';
      return;
    }
    span.className = 'dur';
    span.dataset.start = start;
    if (end != null) span.dataset.end = end;
    else span.removeAttribute('data-end');
    span.textContent = formatDuration((end != null ? end : now()) - start);
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) throw new Error(r.status + ' ' + r.statusText);
    return r.json();
  }

  // ---- the event stream ----

  function pathMatches(path, key) {
    if (path.length !== key.length) return false;
    for (let i = 0; i < path.length; i++) {
      if (path[i] !== '*' && path[i] !== key[i]) return false;
    }
    return true;
  }

  // Stream is the page's one connection to /ws. Handlers subscribe to
  // paths; the stream consumes each path once, and again after every
  // reconnection.
  class Stream {
    constructor() {
      this.handlers = new Map(); // path → Set of functions (key, message)
      this.stateFns = new Set(); // functions (up)
      this.acks = new Map(); // _id → resolve
      this.consumed = new Set(); // paths consumed on this connection
      this.nextID = 1;
      this.ws = null;
      this.up = false;
      this.attempt = 0;
      this.connect();
    }

    connect() {
      let ws;
      try {
        ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
      } catch (e) {
        this.retry();
        return;
      }
      this.ws = ws;
      ws.onopen = async () => {
        this.attempt = 0;
        this.consumed = new Set();
        await Promise.all([...this.handlers.keys()].map((p) => this.consume(p)));
        if (this.ws !== ws) return;
        this.up = true;
        for (const fn of this.stateFns) fn(true);
      };
      ws.onmessage = (ev) => {
        let f;
        try {
          f = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        if (f.k !== undefined) {
          this.dispatch(f.k, f.m);
          return;
        }
        const resolve = this.acks.get(f._id);
        if (resolve) {
          this.acks.delete(f._id);
          resolve(f);
        }
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        for (const resolve of this.acks.values()) resolve(null);
        this.acks.clear();
        const was = this.up;
        this.up = false;
        if (was) for (const fn of this.stateFns) fn(false);
        this.retry();
      };
    }

    retry() {
      const ms = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
      this.attempt++;
      setTimeout(() => this.connect(), ms);
    }

    // consume starts consuming path on this connection, once.
    consume(path) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.consumed.has(path)) return Promise.resolve();
      this.consumed.add(path);
      return this.send('startConsuming', path);
    }

    // send sends a command and resolves with its reply (null if the
    // connection dropped first).
    send(cmd, path) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.resolve(null);
      const id = this.nextID++;
      return new Promise((resolve) => {
        this.acks.set(id, resolve);
        ws.send(JSON.stringify({ cmd: cmd, path: path, _id: id }));
      });
    }

    dispatch(k, m) {
      const key = k.split('/');
      for (const [path, fns] of this.handlers) {
        if (!pathMatches(path.split('/'), key)) continue;
        for (const fn of fns) {
          try {
            fn(key, m);
          } catch (e) {
            console.error('starforge: live event ' + k + ':', e);
          }
        }
      }
    }

    // subscribe calls fn(key, message) for each event path selects. It
    // returns a promise that resolves once the master consumes the path
    // (at once if the stream is down: it is consumed on reconnection),
    // with the function that ends the subscription as its .off.
    subscribe(path, fn) {
      let fns = this.handlers.get(path);
      const fresh = !fns;
      if (fresh) {
        fns = new Set();
        this.handlers.set(path, fns);
      }
      fns.add(fn);
      const off = () => {
        fns.delete(fn);
        if (fns.size === 0 && this.handlers.get(path) === fns) {
          this.handlers.delete(path);
          if (this.consumed.delete(path)) this.send('stopConsuming', path);
        }
      };
      const p = fresh ? this.consume(path) : Promise.resolve();
      p.off = off;
      return p;
    }

    // onState calls fn(true) each time the stream is (again) up with every
    // path consumed, fn(false) when it drops. It returns fn's remover.
    onState(fn) {
      this.stateFns.add(fn);
      return () => this.stateFns.delete(fn);
    }
  }

  let stream = null;
  function getStream() {
    if (!stream) stream = new Stream();
    return stream;
  }

  // ---- pages whose [data-live] parts follow events ----

  // livePaths says which events change a page, by its path.
  function livePaths(path) {
    const all = ['builds/*/*', 'buildrequests/*/*', 'workers/*/*'];
    let m;
    if (path === '/') return all.concat(['steps/*/*']);
    if ((m = /^\/builders\/(\d+)$/.exec(path))) {
      return ['builders/' + m[1] + '/builds/*/*', 'builders/' + m[1] + '/buildrequests/*/*', 'workers/*/*'];
    }
    if (path === '/queue') return all;
    if (path === '/workers') return ['workers/*/*', 'builds/*/*'];
    if (path === '/changes') return ['changes/*/*', 'buildrequests/*/*'];
    return all.concat(['changes/*/*']);
  }

  // pollWhileUp is how often a page polls although the stream is up: the
  // changes page shows pollers and timers that send no events.
  function pollWhileUp(path, seconds) {
    return path === '/changes' ? seconds * 1000 : SLOW_POLL_MS;
  }

  // refreshes counts the partial refreshes of this page by their cause,
  // for tests and the curious.
  const refreshes = { event: 0, poll: 0 };

  function initLiveRefresh(seconds) {
    const s = getStream();
    const path = location.pathname;
    let busy = false;
    let timer = 0;
    let dirty = false;
    let last = Date.now();

    async function refresh(cause) {
      if (busy) {
        dirty = true;
        return;
      }
      if (document.hidden) {
        dirty = true; // refreshed when the page is shown again
        return;
      }
      busy = true;
      dirty = false;
      last = Date.now();
      refreshes[cause]++;
      try {
        const r = await fetch(location.href, { cache: 'no-store' });
        if (r.ok) {
          const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
          for (const old of document.querySelectorAll('[data-live][id]')) {
            const fresh = doc.getElementById(old.id);
            if (fresh) old.replaceWith(document.adoptNode(fresh));
          }
          document.dispatchEvent(new CustomEvent('starforge:refreshed'));
        }
      } catch (e) {
        // Keep what is shown; the next event or poll tries again.
      } finally {
        busy = false;
      }
      if (dirty) soon();
    }

    // soon refreshes after a short pause that gathers a burst of events,
    // and never more often than REFRESH_MIN_GAP_MS.
    function soon() {
      if (timer) return;
      const wait = Math.max(REFRESH_DEBOUNCE_MS, last + REFRESH_MIN_GAP_MS - Date.now());
      timer = setTimeout(() => {
        timer = 0;
        refresh('event');
      }, wait);
    }

    for (const p of livePaths(path)) s.subscribe(p, soon);
    s.onState((up) => {
      if (up) soon(); // catch up on what happened while away
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && dirty) soon();
    });
    const upEvery = pollWhileUp(path, seconds);
    setInterval(() => {
      const every = s.up ? upEvery : seconds * 1000;
      if (Date.now() - last >= every - 100) refresh('poll');
    }, seconds * 1000);
  }

  // ---- ANSI colours ----

  // The 256-colour palette beyond the 16 named ones, as xterm has it.
  function color256(n) {
    if (n < 232) {
      const v = [0, 95, 135, 175, 215, 255];
      n -= 16;
      return 'rgb(' + v[Math.floor(n / 36)] + ', ' + v[Math.floor(n / 6) % 6] + ', ' + v[n % 6] + ')';
    }
    const g = 8 + 10 * (n - 232);
    return 'rgb(' + g + ', ' + g + ', ' + g + ')';
  }

  const byte = (x) => Math.max(0, Math.min(255, x | 0));

  // extendedColor reads a 38/48 colour (5;n or 2;r;g;b) from params at i
  // and returns [colour, params used]; colour is 0-255 or 'rgb(...)'.
  function extendedColor(params, i) {
    if (params[i] === 5 && params.length > i + 1) return [byte(params[i + 1]), 2];
    if (params[i] === 2 && params.length > i + 3) {
      return ['rgb(' + byte(params[i + 1]) + ', ' + byte(params[i + 2]) + ', ' + byte(params[i + 3]) + ')', 4];
    }
    return [null, params.length - i]; // malformed: ignore the rest
  }

  // sgr applies the parameters of one "ESC [ ... m" to style st.
  function sgr(st, text) {
    // Colon sub-parameters (38:2::r:g:b) are read as the semicolon form.
    const groups = text === '' ? ['0'] : text.split(';');
    for (let g = 0; g < groups.length; g++) {
      let params = groups[g].split(':').map((x) => (x === '' ? 0 : parseInt(x, 10)));
      if ((params[0] === 38 || params[0] === 48) && params.length === 1) {
        // semicolon form: the colour's parameters are the next groups
        params = params.concat(groups.slice(g + 1).map((x) => parseInt(x, 10) || 0));
      } else if ((params[0] === 38 || params[0] === 48) && params[1] === 2 && params.length === 6) {
        params.splice(2, 1); // 38:2:colourspace:r:g:b
      }
      const c = params[0];
      if (c === 38 || c === 48) {
        const [col, used] = extendedColor(params, 1);
        if (col !== null) {
          if (c === 38) st.fg = col;
          else st.bg = col;
        }
        if (params.length > 1 && groups[g].indexOf(':') < 0) g += used; // consumed groups
        continue;
      }
      if (c === 0 || isNaN(c)) {
        for (const k of Object.keys(st)) delete st[k];
      } else if (c === 1) st.bold = true;
      else if (c === 2) st.dim = true;
      else if (c === 3) st.italic = true;
      else if (c === 4) st.underline = true;
      else if (c === 7) st.inverse = true;
      else if (c === 9) st.strike = true;
      else if (c === 21 || c === 22) st.bold = st.dim = false;
      else if (c === 23) st.italic = false;
      else if (c === 24) st.underline = false;
      else if (c === 27) st.inverse = false;
      else if (c === 29) st.strike = false;
      else if (c >= 30 && c <= 37) st.fg = c - 30;
      else if (c === 39) delete st.fg;
      else if (c >= 40 && c <= 47) st.bg = c - 40;
      else if (c === 49) delete st.bg;
      else if (c >= 90 && c <= 97) st.fg = c - 90 + 8;
      else if (c >= 100 && c <= 107) st.bg = c - 100 + 8;
    }
  }

  // Escape sequences: CSI (ESC [ params final), OSC (ESC ] ... BEL or
  // ESC \), and two-character ones. Only SGR (CSI ... m) is shown; the
  // rest are dropped.
  const ESCAPES = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;
  // Other control characters (not tab) would show as boxes.
  const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

  // ansi renders one log line with its SGR colours into parent, as text
  // nodes and spans: nothing in the line is ever parsed as HTML. Each
  // line starts with the default style (a colour does not carry over to
  // the next line), so that any line can be shown alone.
  function ansi(line, parent) {
    // A carriage return rewinds the line: a progress bar shows its last state.
    line = line.replace(/\r+$/, '');
    const cr = line.lastIndexOf('\r');
    if (cr >= 0) line = line.slice(cr + 1);
    const st = {};
    let at = 0;
    const put = (text) => {
      text = text.replace(CONTROLS, '');
      if (text === '') return;
      const cls = [];
      let fg = st.fg;
      let bg = st.bg;
      if (st.inverse) {
        [fg, bg] = [bg, fg];
        if (fg === undefined) cls.push('ansi-inv-fg');
        if (bg === undefined) cls.push('ansi-inv-bg');
      }
      const span = document.createElement('span');
      if (typeof fg === 'number' && fg < 16) cls.push('ansi-fg-' + fg);
      else if (typeof fg === 'number') span.style.color = color256(fg);
      else if (fg) span.style.color = fg;
      if (typeof bg === 'number' && bg < 16) cls.push('ansi-bg-' + bg);
      else if (typeof bg === 'number') span.style.backgroundColor = color256(bg);
      else if (bg) span.style.backgroundColor = bg;
      if (st.bold) cls.push('ansi-bold');
      if (st.dim) cls.push('ansi-dim');
      if (st.italic) cls.push('ansi-italic');
      if (st.underline) cls.push('ansi-underline');
      if (st.strike) cls.push('ansi-strike');
      if (cls.length === 0 && !span.style.length) {
        parent.append(text);
        return;
      }
      if (cls.length) span.className = cls.join(' ');
      span.textContent = text;
      parent.append(span);
    };
    ESCAPES.lastIndex = 0;
    let m;
    while ((m = ESCAPES.exec(line)) !== null) {
      put(line.slice(at, m.index));
      at = ESCAPES.lastIndex;
      if (m[2] === 'm') sgr(st, m[1]);
    }
    put(line.slice(at));
    return parent;
  }

  // ---- the log viewer ----

  const LH = 18; // px per line, as style.css sets it
  const PAGE = 500; // lines per /contents request
  const OVERSCAN = 40; // lines drawn above and below the visible ones
  const MAX_PX = 8000000; // tallest scroll area browsers lay out reliably
  const MAX_PAGES = 200; // pages of lines kept in memory
  const POLL_MS = 2000; // a growing log's poll while the stream is down

  // anchor is the URL fragment of line n (1-based) of log id.
  const anchor = (id, n) => 'log' + id + '-L' + n;
  const ANCHOR = /^#log(\d+)-L(\d+)$/;

  // LogView shows one log, however long: it lays out a scroll area as tall
  // as the whole log and draws only the lines in sight, fetching them a
  // page at a time, so a million lines open as fast as ten. New lines
  // arrive over the stream while the log grows.
  class LogView {
    constructor(container, link, opts) {
      this.id = parseInt(link.dataset.logId, 10);
      this.type = link.dataset.logType || 's';
      this.n = 0; // lines in the log, as far as we know
      this.complete = false;
      this.pages = new Map(); // page → array of lines (undefined: not read yet)
      this.loading = new Set(); // pages being read
      this.stuck = new Map(); // page → when a read of it brought nothing new
      this.follow = false;
      this.hl = -1; // highlighted line, 0-based
      this.closed = false;
      this.target = opts.line; // 0-based line to show first, if any
      this.onClose = opts.onClose;
      this.offs = [];
      this.pollTimer = 0;
      this.drawQueued = false;
      this.programmatic = false;

      this.info = el('span', { className: 'info', textContent: 'loading…' });
      this.followBox = el('input', { type: 'checkbox', className: 'follow' });
      const raw = el('a', { className: 'raw', href: '/api/v2/logs/' + this.id + '/raw', textContent: 'download' });
      raw.setAttribute('download', '');
      const close = el('button', { type: 'button', className: 'close', textContent: 'close' });
      this.spacer = el('div', { className: 'logspacer' });
      this.lines = el('div', { className: 'loglines' });
      this.box = el('div', { className: 'logscroll', tabIndex: 0 }, this.spacer, this.lines);
      this.root = el('div', { className: 'logview' },
        el('div', { className: 'logbar' },
          el('span', { className: 'title', textContent: link.textContent }), this.info,
          el('label', { title: 'keep the newest lines in sight while the log grows' }, this.followBox, 'follow'), raw, close),
        this.box);
      this.root.dataset.logId = this.id;
      container.append(this.root);

      close.addEventListener('click', () => this.close());
      this.followBox.addEventListener('change', () => {
        this.follow = this.followBox.checked;
        if (this.follow) this.toBottom();
      });
      this.box.addEventListener('scroll', () => this.scrolled(), { passive: true });
      this.lines.addEventListener('click', (ev) => this.clicked(ev));

      // Consume first, then read: no line falls between the two.
      const s = getStream();
      const subs = [
        s.subscribe('logs/' + this.id + '/append', (k, m) => this.appended(m)),
        s.subscribe('logs/' + this.id + '/finished', (k, m) => this.meta(m)),
      ];
      for (const p of subs) this.offs.push(p.off);
      this.offs.push(s.onState((up) => {
        if (up) this.resync();
        this.status();
        this.schedulePoll();
      }));
      Promise.all(subs).then(() => this.resync(true));
    }

    close() {
      this.closed = true;
      for (const off of this.offs) off();
      clearTimeout(this.pollTimer);
      this.root.remove();
      if (this.onClose) this.onClose();
    }

    // resync reads the log's length again (at the start, after a
    // reconnection, while polling).
    async resync(first) {
      try {
        const m = (await getJSON('/api/v2/logs/' + this.id)).logs[0];
        if (this.closed) return;
        this.type = m.type;
        if (first) {
          this.follow = !m.complete && this.target === undefined;
          this.followBox.checked = this.follow;
        }
        this.meta(m);
        if (first && this.target !== undefined) this.goTo(this.target);
      } catch (e) {
        this.info.textContent = 'could not read the log: ' + e.message;
      }
    }

    schedulePoll() {
      clearTimeout(this.pollTimer);
      if (this.closed || this.complete || getStream().up) return;
      this.pollTimer = setTimeout(async () => {
        await this.resync();
        this.schedulePoll();
      }, POLL_MS);
    }

    // meta takes the log's state from the API or an event.
    meta(m) {
      if (m.num_lines > this.n) this.n = m.num_lines;
      this.complete = m.complete;
      this.layout();
      this.status();
      this.schedulePoll();
    }

    // appended takes an append event: its lines, if it carries them.
    appended(m) {
      if (typeof m.content === 'string') {
        const ls = m.content.split('\n');
        if (ls[ls.length - 1] === '') ls.pop();
        for (let i = 0; i < ls.length; i++) this.set(m.firstline + i, ls[i]);
      }
      this.meta(m);
    }

    status() {
      const s = getStream();
      let t = this.n.toLocaleString('en-US') + (this.n === 1 ? ' line' : ' lines');
      if (!this.complete) t += ' · growing';
      if (!this.complete && !s.up && s.attempt > 0) t += ' · reconnecting…';
      this.info.textContent = t;
    }

    set(i, text) {
      const p = Math.floor(i / PAGE);
      let a = this.pages.get(p);
      if (!a) {
        a = new Array(PAGE);
        this.pages.set(p, a);
      }
      a[i % PAGE] = text;
    }

    get(i) {
      const a = this.pages.get(Math.floor(i / PAGE));
      return a ? a[i % PAGE] : undefined;
    }

    // layout sizes the scroll area for n lines, then draws.
    layout() {
      const h = Math.min(this.n * LH, MAX_PX);
      this.spacer.style.height = h + 'px';
      this.box.style.height = (Math.max(this.n, 1) * LH + 18) + 'px'; // room for a scroll bar; CSS caps it
      if (this.follow) this.toBottom();
      this.draw();
    }

    // scrollTo scrolls the box to top without turning follow on or off.
    scrollTo(top) {
      const before = this.box.scrollTop;
      this.box.scrollTop = top;
      if (this.box.scrollTop !== before) this.programmatic = true; // a scroll event follows
      this.draw();
    }

    toBottom() {
      this.scrollTo(this.box.scrollHeight);
    }

    // topFor returns the scroll position that shows line i (0-based) at
    // the top, or in the middle with centre.
    topFor(i, centre) {
      const ch = this.box.clientHeight;
      const total = this.n * LH;
      const phys = Math.min(total, MAX_PX);
      let first = i - (centre ? Math.floor(ch / LH / 2) : 0);
      first = Math.max(0, first);
      if (total <= ch) return 0;
      return (first * LH * (phys - ch)) / (total - ch);
    }

    goTo(i) {
      if (i < 0) return;
      this.hl = i;
      this.follow = false;
      this.followBox.checked = false;
      this.scrollTo(this.topFor(i, true));
      this.root.scrollIntoView({ block: 'nearest' });
    }

    scrolled() {
      if (this.programmatic) {
        this.programmatic = false;
      } else {
        // Scrolling up to read stops following; back at the bottom, it
        // follows again.
        const b = this.box;
        const atBottom = b.scrollHeight - b.scrollTop - b.clientHeight < LH;
        if (atBottom !== this.follow && !this.complete) {
          this.follow = atBottom;
          this.followBox.checked = atBottom;
        }
      }
      this.draw();
    }

    draw() {
      if (this.drawQueued) return;
      this.drawQueued = true;
      requestAnimationFrame(() => {
        this.drawQueued = false;
        if (!this.closed) this.render();
      });
    }

    // render draws the lines in sight and asks for the ones not read yet.
    render() {
      const top = this.box.scrollTop;
      const ch = this.box.clientHeight;
      const total = this.n * LH;
      const phys = Math.min(total, MAX_PX);
      // Past MAX_PX the scroll area is a scaled map of the log.
      const exact = total <= ch || phys === total ? top / LH : (top * (total - ch)) / (phys - ch) / LH;
      const first = Math.max(0, Math.floor(exact) - OVERSCAN);
      const last = Math.min(this.n - 1, Math.ceil(exact + ch / LH) + OVERSCAN);
      this.lines.style.top = top + (first - exact) * LH + 'px';
      const frag = document.createDocumentFragment();
      for (let i = first; i <= last; i++) frag.append(this.line(i));
      this.lines.replaceChildren(frag);
      this.fetchMissing(first, last);
      this.evict(first);
    }

    // line makes the element of line i (0-based). Lines of stdio logs
    // start with their stream: o stdout, e stderr, h header.
    line(i) {
      let text = this.get(i);
      const d = document.createElement('div');
      let cls = 'l';
      if (text === undefined) {
        cls += ' wait';
        text = '';
      } else if (this.type === 's' && text.length > 0) {
        const stream = text[0];
        text = text.slice(1);
        if (stream === 'e' || stream === 'h') cls += ' ' + stream;
      }
      if (i === this.hl) cls += ' hl';
      d.className = cls;
      d.id = anchor(this.id, i + 1);
      const a = document.createElement('a');
      a.className = 'ln';
      a.href = '#' + d.id;
      a.textContent = i + 1;
      const t = document.createElement('span');
      t.className = 'lt';
      d.append(a, ansi(text, t));
      return d;
    }

    clicked(ev) {
      const a = ev.target.closest('a.ln');
      if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      history.replaceState(null, '', a.getAttribute('href'));
      this.hl = parseInt(a.textContent, 10) - 1;
      this.draw();
    }

    fetchMissing(first, last) {
      if (this.n === 0) return;
      for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
        if (this.loading.has(p) || this.pageDone(p)) continue;
        const at = this.stuck.get(p);
        if (at && Date.now() - at < 1000) {
          setTimeout(() => this.draw(), 1000);
          continue;
        }
        this.fetchPage(p);
      }
    }

    pageDone(p) {
      const a = this.pages.get(p);
      if (!a) return false;
      const end = Math.min(PAGE, this.n - p * PAGE);
      for (let i = 0; i < end; i++) if (a[i] === undefined) return false;
      return true;
    }

    async fetchPage(p) {
      this.loading.add(p);
      const first = p * PAGE;
      try {
        const j = await getJSON('/api/v2/logs/' + this.id + '/contents?first=' + first + '&last=' + (first + PAGE - 1));
        const c = j.logchunks[0];
        const ls = c.content.split('\n');
        if (ls[ls.length - 1] === '') ls.pop();
        let fresh = 0;
        for (let i = 0; i < ls.length; i++) {
          if (this.get(c.firstline + i) === undefined) fresh++;
          this.set(c.firstline + i, ls[i]);
        }
        if (c.firstline + ls.length > this.n) {
          this.n = c.firstline + ls.length;
          this.layout();
          this.status();
        }
        if (fresh === 0) this.stuck.set(p, Date.now());
        else this.stuck.delete(p);
      } catch (e) {
        this.stuck.set(p, Date.now());
      } finally {
        this.loading.delete(p);
      }
      this.draw();
    }

    // evict forgets the pages furthest from line at when too many are kept.
    evict(at) {
      if (this.pages.size <= MAX_PAGES) return;
      const here = Math.floor(at / PAGE);
      const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - here) - Math.abs(a - here));
      for (const p of far.slice(0, this.pages.size - MAX_PAGES)) this.pages.delete(p);
    }
  }

  // ---- the build page ----

  function initBuild(root) {
    const id = root.dataset.buildId;
    const tbody = root.querySelector('#steps tbody');
    const s = getStream();
    const views = new Map(); // log id → LogView
    // Steps whose list of logs is final: finished when read (a step gets
    // logs only while it runs).
    const logsFinal = new Set();
    for (const row of tbody.querySelectorAll('tr.step')) {
      if (!row.classList.contains('running') && !row.classList.contains('pending')) logsFinal.add(row.dataset.stepId);
    }

    // Log links open the viewer under their step; again closes it.
    root.addEventListener('click', (ev) => {
      const a = ev.target.closest('a.log');
      if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      toggle(a);
    });

    function toggle(a, line) {
      const lid = a.dataset.logId;
      const open = views.get(lid);
      if (open) {
        open.close();
        return open;
      }
      const td = el('td', { colSpan: 5 });
      const tr = el('tr', { className: 'logrow', id: 'logrow-' + lid }, td);
      let after = a.closest('tr');
      while (after.nextElementSibling && after.nextElementSibling.classList.contains('logrow')) after = after.nextElementSibling;
      after.after(tr);
      a.classList.add('open');
      const v = new LogView(td, a, {
        line: line,
        onClose: () => {
          views.delete(lid);
          tr.remove();
          a.classList.remove('open');
        },
      });
      views.set(lid, v);
      return v;
    }

    // A #logID-LN fragment opens that log at that line.
    function openAnchor() {
      const m = ANCHOR.exec(location.hash);
      if (!m) return;
      const a = root.querySelector('a.log[data-log-id="' + m[1] + '"]');
      if (!a) return;
      const line = parseInt(m[2], 10) - 1;
      const v = views.get(m[1]);
      if (v) v.goTo(line);
      else toggle(a, line);
    }
    window.addEventListener('hashchange', openAnchor);
    openAnchor();

    function stepRow(st) {
      let row = document.getElementById('step-' + st.stepid);
      if (row) return row;
      const empty = tbody.querySelector('tr.empty');
      if (empty) empty.remove();
      row = el('tr', { id: 'step-' + st.stepid },
        el('td', { className: 'num' }, el('span', { className: 'dot' }), String(st.number)),
        el('td', { className: 'name', textContent: st.name }),
        el('td', { className: 'state' }),
        el('td', { className: 'num' }, el('span', { className: 'dur' })),
        el('td', { className: 'logs' }));
      row.dataset.stepId = st.stepid;
      row.dataset.stepNumber = st.number;
      // In step order, after any log viewer of the step before.
      const next = [...tbody.querySelectorAll('tr.step')].find((r) => parseInt(r.dataset.stepNumber, 10) > st.number);
      if (next) next.before(row);
      else tbody.append(row);
      return row;
    }

    function updateStep(st) {
      if (String(st.buildid) !== id) return;
      if (st.hidden) {
        const row = document.getElementById('step-' + st.stepid);
        if (row) row.remove();
        return;
      }
      const row = stepRow(st);
      const cls = statusClass(st);
      row.className = 'step ' + cls;
      const dot = row.querySelector('.dot');
      dot.className = 'dot ' + cls;
      dot.title = cls;
      row.querySelector('td.state').textContent = st.state_string;
      let dur = row.cells[3].querySelector('.dur, .none');
      if (!dur) {
        dur = el('span');
        row.cells[3].replaceChildren(dur);
      }
      setDuration(dur, st.started_at, st.complete_at);
    }

    function addLog(l) {
      const row = document.getElementById('step-' + l.stepid);
      if (!row) return;
      const cell = row.querySelector('td.logs');
      if (cell.querySelector('a.log[data-log-id="' + l.logid + '"]')) return;
      const a = el('a', { className: 'log', href: '/api/v2/logs/' + l.logid + '/raw', textContent: l.name });
      a.dataset.logId = l.logid;
      a.dataset.logType = l.type;
      const links = [...cell.querySelectorAll('a.log')];
      const next = links.find((x) => parseInt(x.dataset.logId, 10) > l.logid);
      if (next) next.before(a, ' ');
      else cell.append(a, ' ');
    }

    function updateBuild(b) {
      if (String(b.buildid) !== id) return;
      root.querySelector('#build-state').textContent = b.state_string;
      const status = root.querySelector('#build-status');
      status.className = 'status ' + statusClass(b);
      status.textContent = statusClass(b);
      if (!b.complete) return;
      root.removeAttribute('data-running');
      root.querySelector('#build-finished').replaceChildren(timeEl(b.complete_at));
      const dur = root.querySelector('#build-duration .dur');
      if (dur) setDuration(dur, b.started_at, b.complete_at);
      const stop = root.querySelector('#stop');
      if (stop) stop.remove();
      document.dispatchEvent(new CustomEvent('starforge:build-finished', { detail: b }));
    }

    // The build's state string changes just after its steps do; read it
    // once a burst of step events is over.
    let buildTimer = 0;
    function readBuildSoon() {
      clearTimeout(buildTimer);
      buildTimer = setTimeout(readBuild, 250);
    }
    async function readBuild() {
      try {
        updateBuild((await getJSON('/api/v2/builds/' + id)).builds[0]);
      } catch (e) {
        // the next event or reconnection reads it again
      }
    }

    // resync reads everything the events would have said: at the start
    // (events may have come between the page's rendering and the stream),
    // after a reconnection, and while polling.
    async function resync() {
      try {
        const b = (await getJSON('/api/v2/builds/' + id)).builds[0];
        const steps = (await getJSON('/api/v2/builds/' + id + '/steps')).steps;
        for (const st of steps) {
          updateStep(st);
          const sid = String(st.stepid);
          if (st.started_at != null && !st.hidden && !logsFinal.has(sid)) {
            for (const l of (await getJSON('/api/v2/steps/' + sid + '/logs')).logs) addLog(l);
            if (st.complete) logsFinal.add(sid);
          }
        }
        updateBuild(b);
        return b.complete;
      } catch (e) {
        return false;
      }
    }

    if (!root.hasAttribute('data-running')) return; // a finished build does not change
    const paths = [
      ['builds/' + id + '/*', (k, m) => updateBuild(m)],
      ['builds/' + id + '/steps/*/*', (k, m) => {
        updateStep(m);
        readBuildSoon();
      }],
      // New logs of any step: this build's are the ones with a row here.
      ['steps/*/logs/*/new', (k, m) => addLog(m)],
    ];
    const subs = paths.map(([p, fn]) => s.subscribe(p, fn));
    Promise.all(subs).then(resync);
    s.onState((up) => {
      if (up) resync();
    });
    // While the stream is down, poll.
    const poll = async () => {
      if (!root.hasAttribute('data-running')) return;
      if (!s.up && (await resync())) return;
      setTimeout(poll, s.up ? SLOW_POLL_MS : 2000);
    };
    setTimeout(poll, 2000);
  }

  // ---- start ----

  document.addEventListener('DOMContentLoaded', () => {
    const refresh = parseInt(document.body.dataset.refresh || '0', 10);
    if (refresh > 0 && document.querySelector('[data-live]')) initLiveRefresh(refresh);
    const build = document.getElementById('build');
    if (build) initBuild(build);
  });

  return {
    // For tests and other scripts.
    ansi: ansi,
    stream: getStream,
    anchor: anchor,
    refreshes: refreshes,
  };
})();
