// Starforge web UI script: ticking times and durations, and the force and
// stop buttons (live.js does the live parts: events, refreshes, logs).
// Plain browser JavaScript, no build step. Every page is rendered by the
// server and readable without this script; only forcing and stopping
// builds need it.
'use strict';

(function () {
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

  // live.js, loaded after this script, formats with the same functions.
  window.starforgeFormat = { now, formatDuration, formatAgo };

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
    // live.js keeps the page current and shows the logs.
  }

  // ---- start ----

  document.addEventListener('DOMContentLoaded', () => {
    setInterval(tick, 1000);
    for (const f of document.querySelectorAll('form.force')) initForce(f);
    const build = document.getElementById('build');
    if (build) initBuild(build);
  });
})();
