// Starforge web UI: the action buttons (rebuild, cancel a request, pause,
// unpause and stop a worker). A button describes its JSON-RPC call:
//
//   data-rpc="/api/v2/..."   the endpoint
//   data-method="cancel"     the method
//   data-prompt="…Reason:"   ask for a reason (sent as params.reason); Cancel aborts
//   data-confirm="…?"        ask for a yes or no instead
//   data-then="build"        after a rebuild, go to the new build's page
//
// The server renders only the buttons the reader may use, and checks again.
// Browser POSTs carry the session's CSRF token (<meta name="csrf-token">).
'use strict';

(function () {
  function csrfToken() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : '';
  }

  async function failure(r) {
    try {
      const j = await r.json();
      if (typeof j.error === 'string') return j.error;
      if (j.error && j.error.message) return j.error.message;
    } catch (e) { /* not JSON */ }
    return r.status + ' ' + r.statusText;
  }

  async function rpc(url, method, params) {
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': csrfToken() },
      body: JSON.stringify({ jsonrpc: '2.0', method: method, id: 1, params: params }),
    });
    if (r.status === 401) {
      location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
      throw new Error('log in first');
    }
    if (!r.ok) throw new Error(await failure(r));
    const j = await r.json();
    if (j.error) throw new Error(j.error.message);
    return j.result;
  }

  // errorLine is the page's line for action errors, made on first use.
  function errorLine() {
    let p = document.getElementById('action-error');
    if (!p) {
      p = document.createElement('p');
      p.id = 'action-error';
      p.className = 'form-error';
      p.setAttribute('role', 'alert');
      document.querySelector('main').prepend(p);
    }
    return p;
  }

  // newBuildPage waits a little for the build of request brid and returns
  // its page, or the builder's page if it has not started yet.
  async function newBuildPage(brid, builderid) {
    for (let i = 0; brid && i < 12; i++) {
      try {
        const r = await fetch('/api/v2/builds?buildrequestid=' + brid + '&limit=1', { headers: { Accept: 'application/json' } });
        const j = await r.json();
        if (j.builds && j.builds.length) return '/builders/' + j.builds[0].builderid + '/builds/' + j.builds[0].number;
      } catch (e) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return '/builders/' + builderid;
  }

  async function act(button) {
    const d = button.dataset;
    const params = {};
    if (d.prompt) {
      const reason = prompt(d.prompt, '');
      if (reason === null) return;
      if (reason) params.reason = reason;
    } else if (d.confirm && !confirm(d.confirm)) {
      return;
    }
    const err = document.getElementById('action-error');
    if (err) err.hidden = true;
    button.disabled = true;
    try {
      const res = await rpc(d.rpc, d.method, params);
      if (d.then === 'build' && Array.isArray(res)) {
        const [builderid, brid] = Object.entries(res[1])[0] || [];
        location.href = await newBuildPage(brid, builderid);
        return;
      }
      location.reload();
    } catch (e) {
      const p = errorLine();
      p.textContent = 'Could not ' + d.method.replace('_', ' ') + ': ' + e.message;
      p.hidden = false;
      button.disabled = false;
    }
  }

  // One listener for the whole page: parts of it are replaced while it
  // refreshes, buttons included.
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-rpc]');
    if (!b || b.disabled) return;
    ev.preventDefault();
    act(b);
  });
})();
