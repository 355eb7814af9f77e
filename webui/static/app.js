// Starforge web UI script: live figures, live build pages, inline logs and
// the force and stop buttons. Plain browser JavaScript, no build step.
// Every page is rendered by the server and readable without this script;
// only forcing and stopping builds need it.
'use strict';

(function () {
  const RESULTS = ['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled'];
  const LOG_PAGE = 1000;        // lines per /contents request
  const LOG_INITIAL = 10000;    // lines shown when a log is opened; earlier ones on demand
  const LOG_POLL_MS = 500;      // growing logs
  const BUILD_POLL_MS = 1000;   // running builds

  // The server's clock, as the page says it was when rendered: durations of
  // running things are measured against it so browser clock skew does not show.
  const skew = (parseFloat(document.body.dataset.now) || Date.now() / 1000) - Date.now() / 1000;
  const now = () => Date.now() / 1000 + skew;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- formatting: twins of formatDuration and formatAgo in format.go ----

  function formatDuration(sec) {
    const s = Math.max(0, Math.floor(sec));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function formatAgo(ts) {
    const d = now() - ts;
    const plural = (n, unit) => (n === 1 ? '1 ' + unit + ' ago' : n + ' ' + unit + 's ago');
    if (d < 5) return 'just now';
    if (d < 60) return plural(Math.floor(d), 'second');
    if (d < 3600) return plural(Math.floor(d / 60), 'minute');
    if (d < 86400) return plural(Math.floor(d / 3600), 'hour');
    if (d < 30 * 86400) return plural(Math.floor(d / 86400), 'day');
    if (d < 365 * 86400) return plural(Math.floor(d / (30 * 86400)), 'month');
    return plural(Math.floor(d / (365 * 86400)), 'year');
  }

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

  // setDuration makes span show the time from start to end (unix seconds;
  // end null while running, when tick keeps it current).
  function setDuration(span, start, end) {
    if (start == null) {
      span.removeAttribute('data-start');
      span.textContent = '—';
      return;
    }
    span.dataset.start = start;
    if (end != null) span.dataset.end = end;
    else span.removeAttribute('data-end');
    span.textContent = formatDuration((end != null ? end : now()) - start);
  }

  function tick() {
    const t = now();
    for (const e of document.querySelectorAll('.dur[data-start]:not([data-end])')) {
      e.textContent = formatDuration(t - parseFloat(e.dataset.start));
    }
    for (const e of document.querySelectorAll('time.ago[data-ts]')) {
      e.textContent = formatAgo(parseFloat(e.dataset.ts));
    }
  }

  // ---- talking to the API ----

  async function failure(r) {
    try {
      const j = await r.json();
      if (typeof j.error === 'string') return j.error;
      if (j.error && j.error.message) return j.error.message;
    } catch (e) { /* not JSON */ }
    return r.status + ' ' + r.statusText;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) throw new Error(await failure(r));
    return r.json();
  }

  // rpc calls a Buildbot-style JSON-RPC control endpoint and returns its result.
  async function rpc(url, method, params) {
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json',
        'X-CSRF-Token': (document.querySelector('meta[name="csrf-token"]') || {}).content || '' },
      body: JSON.stringify({ jsonrpc: '2.0', method: method, id: 1, params: params }),
    });
    if (!r.ok) throw new Error(await failure(r));
    const j = await r.json();
    if (j.error) throw new Error(j.error.message);
    return j.result;
  }

  function showError(p, msg) {
    p.textContent = msg;
    p.hidden = false;
  }

  // ---- pages that refresh their [data-live] parts ----

  function initRefresh(seconds) {
    let busy = false;
    setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const r = await fetch(location.href, { cache: 'no-store' });
        if (!r.ok) return;
        const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
        for (const old of document.querySelectorAll('[data-live][id]')) {
          const fresh = doc.getElementById(old.id);
          if (fresh) old.replaceWith(document.adoptNode(fresh));
        }
        tick();
      } catch (e) {
        // Keep what is shown; the next round tries again.
      } finally {
        busy = false;
      }
    }, seconds * 1000);
  }

  // ---- force forms (builder page) ----

  const RESERVED = ['builderNames', 'reason', 'owner', 'username'];

  // paramValue is what a declared parameter's control sends: a bool for a
  // checkbox, a list for a multiple select, else the text as typed (the
  // master parses numbers and applies defaults to empty values).
  function paramValue(e) {
    if (e.type === 'checkbox') return e.checked;
    if (e.multiple) return [...e.selectedOptions].map((o) => o.value);
    return e.value;
  }

  function initForce(form) {
    const props = form.querySelector('fieldset.props');
    const add = form.querySelector('.add-prop');
    const errorP = form.querySelector('.form-error');
    add.addEventListener('click', () => {
      const row = props.querySelector('.prop').cloneNode(true);
      for (const i of row.querySelectorAll('input')) i.value = '';
      props.insertBefore(row, add);
      row.querySelector('input').focus();
    });
    // The browser has checked required fields, numbers and patterns before
    // this runs; the master checks everything again and has the last word.
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      errorP.hidden = true;
      const params = { builderNames: [form.dataset.builder] };
      const taken = new Set(RESERVED);
      for (const e of form.querySelectorAll('[data-key]')) {
        params[e.dataset.key] = paramValue(e);
        taken.add(e.dataset.key);
      }
      for (const row of props.querySelectorAll('.prop')) {
        const name = row.querySelector('[name=pname]').value.trim();
        if (!name) continue;
        if (taken.has(name)) {
          showError(errorP, 'property "' + name + '" is given twice or is the name of a field above');
          return;
        }
        taken.add(name);
        params[name] = row.querySelector('[name=pvalue]').value;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const res = await rpc('/api/v2/forceschedulers/' + encodeURIComponent(form.dataset.scheduler), 'force', params);
        const brid = res[1][form.dataset.builderId];
        location.href = (await buildPageFor(brid)) || '/builders/' + form.dataset.builderId;
      } catch (e) {
        showError(errorP, e.message);
        button.disabled = false;
      }
    });
  }

  // buildPageFor waits a little for the build that request brid starts and
  // returns its page, or '' if it does not start that soon (it is queued).
  async function buildPageFor(brid) {
    if (!brid) return '';
    for (let i = 0; i < 12; i++) {
      try {
        const j = await getJSON('/api/v2/builds?buildrequestid=' + brid + '&limit=1');
        if (j.builds.length) return '/builders/' + j.builds[0].builderid + '/builds/' + j.builds[0].number;
      } catch (e) {
        return '';
      }
      await sleep(250);
    }
    return '';
  }

  // ---- build page ----

  function initBuild(root) {
    const id = root.dataset.buildId;
    const tbody = root.querySelector('#steps tbody');
    const logsDone = new Set(); // steps whose log list is final

    root.addEventListener('click', (ev) => {
      const a = ev.target.closest('a.log');
      if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      toggleLog(a);
    });

    const stop = root.querySelector('#stop');
    if (stop) {
      stop.addEventListener('click', async () => {
        const reason = prompt('Stop this build? Reason:', 'stopped from the web UI');
        if (reason === null) return;
        stop.disabled = true;
        try {
          await rpc('/api/v2/builds/' + id, 'stop', { reason: reason });
          stop.textContent = 'Stopping…';
        } catch (e) {
          showError(root.querySelector('#stop-error'), 'Could not stop the build: ' + e.message);
          stop.disabled = false;
        }
      });
    }

    async function updateStep(s) {
      let row = document.getElementById('step-' + s.stepid);
      const cls = statusClass(s);
      if (!row) {
        const empty = tbody.querySelector('tr.empty');
        if (empty) empty.remove();
        row = el('tr', { id: 'step-' + s.stepid },
          el('td', { className: 'num' }, el('span', { className: 'dot' }), String(s.number)),
          el('td', { className: 'name', textContent: s.name }),
          el('td', { className: 'state' }),
          el('td', { className: 'num' }, el('span', { className: 'dur' })),
          el('td', { className: 'logs' }));
        row.dataset.stepId = s.stepid;
        tbody.append(row);
      }
      row.className = 'step ' + cls;
      const dot = row.querySelector('.dot');
      dot.className = 'dot ' + cls;
      dot.title = cls;
      row.querySelector('td.state').textContent = s.state_string;
      let dur = row.querySelector('span.dur');
      if (!dur) {
        dur = el('span', { className: 'dur' });
        row.cells[3].replaceChildren(dur);
      }
      setDuration(dur, s.started_at, s.complete_at);

      // A step gets logs while it runs; read its list until one read after
      // it finished.
      if (s.started_at == null || logsDone.has(s.stepid)) return;
      const j = await getJSON('/api/v2/steps/' + s.stepid + '/logs');
      const cell = row.querySelector('td.logs');
      for (const l of j.logs) {
        if (cell.querySelector('a.log[data-log-id="' + l.logid + '"]')) continue;
        const a = el('a', { className: 'log', href: '/api/v2/logs/' + l.logid + '/raw', textContent: l.name });
        a.dataset.logId = l.logid;
        a.dataset.logType = l.type;
        cell.append(a, ' ');
      }
      if (s.complete) logsDone.add(s.stepid);
    }

    function finish(b) {
      root.removeAttribute('data-running');
      const status = root.querySelector('#build-status');
      status.className = 'status ' + statusClass(b);
      status.textContent = statusClass(b);
      root.querySelector('#build-finished').replaceChildren(timeEl(b.complete_at));
      const dur = root.querySelector('#build-duration .dur');
      if (dur) setDuration(dur, b.started_at, b.complete_at);
      if (stop) stop.remove();
    }

    async function poll() {
      try {
        // The build first, then its steps: steps finish before their build,
        // so steps read after a finished build are final too.
        const b = (await getJSON('/api/v2/builds/' + id)).builds[0];
        const steps = (await getJSON('/api/v2/builds/' + id + '/steps')).steps;
        for (const s of steps) {
          if (!s.hidden) await updateStep(s);
        }
        root.querySelector('#build-state').textContent = b.state_string;
        if (b.complete) {
          finish(b);
          return;
        }
      } catch (e) {
        // A failed round (master restarting, network) is retried.
      }
      setTimeout(poll, BUILD_POLL_MS);
    }

    for (const row of tbody.querySelectorAll('tr.step')) {
      if (!row.classList.contains('running') && !row.classList.contains('pending')) logsDone.add(parseInt(row.dataset.stepId, 10));
    }
    if (root.hasAttribute('data-running')) setTimeout(poll, BUILD_POLL_MS);
  }

  // toggleLog opens the log of link a under its step, or closes it.
  function toggleLog(a) {
    const id = a.dataset.logId;
    const open = document.getElementById('logrow-' + id);
    if (open) {
      open.logView.close();
      return;
    }
    const td = el('td', { colSpan: 5 });
    const tr = el('tr', { className: 'logrow', id: 'logrow-' + id }, td);
    let after = a.closest('tr');
    while (after.nextElementSibling && after.nextElementSibling.classList.contains('logrow')) after = after.nextElementSibling;
    after.after(tr);
    a.classList.add('open');
    tr.logView = new LogView(td, a, () => {
      tr.remove();
      a.classList.remove('open');
    });
  }

  // LogView shows one log inline: the last LOG_INITIAL lines (earlier ones
  // on demand), then, while the log is incomplete, new lines as they come.
  class LogView {
    constructor(td, link, onClose) {
      this.id = link.dataset.logId;
      this.type = link.dataset.logType;
      this.onClose = onClose;
      this.first = 0; // first line shown
      this.next = 0; // next line to fetch
      this.closed = false;
      this.timer = 0;

      this.info = el('span', { className: 'info', textContent: 'loading…' });
      this.follow = el('input', { type: 'checkbox' });
      const raw = el('a', { href: link.href, textContent: 'download' });
      const close = el('button', { type: 'button', textContent: 'close' });
      this.earlier = el('div', { className: 'more', hidden: true });
      this.lines = el('div', { className: 'loglines' }, this.earlier);
      td.append(el('div', { className: 'logview' },
        el('div', { className: 'logbar' },
          el('span', { className: 'title', textContent: link.textContent }), this.info,
          el('label', {}, this.follow, 'follow'), raw, close),
        this.lines));

      close.addEventListener('click', () => this.close());
      this.follow.addEventListener('change', () => this.scroll());
      // Scrolling up to read stops following; the checkbox turns it back on.
      this.lines.addEventListener('scroll', () => {
        const b = this.lines;
        if (b.scrollHeight - b.scrollTop - b.clientHeight > 24) this.follow.checked = false;
      });
      this.start();
    }

    close() {
      this.closed = true;
      clearTimeout(this.timer);
      this.onClose();
    }

    scroll() {
      if (this.follow.checked) this.lines.scrollTop = this.lines.scrollHeight;
    }

    async meta() {
      return (await getJSON('/api/v2/logs/' + this.id)).logs[0];
    }

    async start() {
      try {
        const m = await this.meta();
        this.type = m.type;
        if (m.num_lines > LOG_INITIAL) this.first = this.next = m.num_lines - LOG_INITIAL;
        this.showEarlier();
        this.follow.checked = !m.complete;
        await this.catchUp(m.num_lines);
        this.status(m);
        if (!m.complete) this.timer = setTimeout(() => this.poll(), LOG_POLL_MS);
      } catch (e) {
        this.info.textContent = 'could not load: ' + e.message;
      }
    }

    async poll() {
      if (this.closed) return;
      try {
        const m = await this.meta();
        await this.catchUp(m.num_lines);
        this.status(m);
        if (m.complete && this.next >= m.num_lines) return;
      } catch (e) {
        this.info.textContent = 'connection lost, retrying…';
      }
      if (!this.closed) this.timer = setTimeout(() => this.poll(), LOG_POLL_MS);
    }

    status(m) {
      this.info.textContent = m.num_lines + (m.num_lines === 1 ? ' line' : ' lines') + (m.complete ? '' : ' · growing');
    }

    // catchUp fetches lines this.next .. numLines-1 page by page.
    async catchUp(numLines) {
      while (!this.closed && this.next < numLines) {
        const last = Math.min(this.next + LOG_PAGE, numLines) - 1;
        const c = await this.contents(this.next, last);
        const n = this.render(c.firstline, c.content, false);
        if (n === 0) break; // fewer lines than announced; the next poll retries
        this.next = c.firstline + n;
        this.scroll();
      }
    }

    async contents(first, last) {
      const j = await getJSON('/api/v2/logs/' + this.id + '/contents?first=' + first + '&last=' + last);
      return j.logchunks[0];
    }

    showEarlier() {
      const e = this.earlier;
      e.hidden = this.first === 0;
      if (e.hidden) return;
      const more = el('button', { type: 'button', textContent: 'show ' + Math.min(LOG_PAGE, this.first) + ' more' });
      more.addEventListener('click', () => this.loadEarlier());
      e.replaceChildren(this.first + ' earlier lines not shown — ', more, ' or download the whole log.');
    }

    async loadEarlier() {
      const first = Math.max(0, this.first - LOG_PAGE);
      try {
        const c = await this.contents(first, this.first - 1);
        const b = this.lines;
        const before = b.scrollHeight;
        this.render(c.firstline, c.content, true);
        b.scrollTop += b.scrollHeight - before; // keep the reader's place
        this.first = first;
        this.showEarlier();
      } catch (e) {
        this.info.textContent = 'could not load: ' + e.message;
      }
    }

    // render adds the lines of content, which start at line firstline
    // (0-based), at the end or, with atTop, before the lines shown. Lines of
    // stdio logs start with their stream: o stdout, e stderr, h header.
    render(firstline, content, atTop) {
      const lines = content.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      const frag = document.createDocumentFragment();
      lines.forEach((line, i) => {
        const d = document.createElement('div');
        d.className = 'l';
        if (this.type === 's' && line.length > 0) {
          const stream = line[0];
          line = line.slice(1);
          if (stream === 'e' || stream === 'h') d.className = 'l ' + stream;
        }
        d.dataset.n = firstline + i + 1;
        d.textContent = line;
        frag.append(d);
      });
      if (atTop) this.earlier.after(frag);
      else this.lines.append(frag);
      return lines.length;
    }
  }

  // ---- start ----

  document.addEventListener('DOMContentLoaded', () => {
    setInterval(tick, 1000);
    const refresh = parseInt(document.body.dataset.refresh || '0', 10);
    if (refresh > 0) initRefresh(refresh);
    for (const f of document.querySelectorAll('form.force')) initForce(f);
    const build = document.getElementById('build');
    if (build) initBuild(build);
  });
})();
