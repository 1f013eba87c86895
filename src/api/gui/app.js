// Higuma's web GUI: read-only pages over the REST API of the control plane that serves it.
// Plain browser JavaScript, no build step and nothing fetched from elsewhere. Every API
// call carries the user token entered here (kept in sessionStorage, for this tab only);
// from the control plane's own host none is needed while localhost is admin.
//
// Pages set <body data-ready="<page>"> once rendered, so tests (and people) can tell a
// finished page from one still loading. Every value from the API reaches the page through
// text nodes, never as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'higuma.token';
  const MESH_KEY = 'higuma.mesh';
  // Lists and the changes pages follow what happens without a reload.
  const REFRESH_MS = 5000;
  const main = document.getElementById('main');

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  class ApiError extends Error {
    constructor(status, body, path) {
      const detail = body && typeof body === 'object' ? (body.detail || body.title) : body;
      super(`${path}: ${status}${detail ? ' ' + detail : ''}`);
      this.status = status;
      this.detail = detail || '';
    }
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const res = await fetch(path, { headers, cache: 'no-store' });
    const text = await res.text();
    let body = null;
    if (text) {
      try { body = JSON.parse(text); } catch (_) { body = text; }
    }
    if (!res.ok) throw new ApiError(res.status, body, path);
    return body;
  }

  const enc = encodeURIComponent;

  function time(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString();
  }

  function badge(cls, text, title) {
    return h('span', { class: 'badge ' + cls, title: title || null }, text);
  }

  function table(headers, rows) {
    return h('table', {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows));
  }

  function section(title, ...content) {
    return [h('h2', {}, title), ...content];
  }

  function json(value, id) {
    return h('pre', { id: id || null }, JSON.stringify(value, null, 2));
  }

  function shortVersion(v) {
    return v ? v.slice(0, 10) : '';
  }

  // A DataplaneInsight's latest subscription decides online/offline and the instance.
  function subscriptionOf(insight) {
    const subs = (insight && insight.subscriptions) || [];
    return subs.length ? subs[subs.length - 1] : null;
  }

  function isOnline(insight) {
    const s = subscriptionOf(insight);
    return !!s && !s.disconnectTime;
  }

  function services(dp) {
    return ((dp.networking && dp.networking.inbound) || [])
      .map((i) => (i.tags && i.tags['kuma.io/service']) || '')
      .filter((s) => s)
      .join(', ');
  }

  function mtlsOf(mesh) {
    const m = mesh.mtls || {};
    if (!m.enabledBackend) return badge('offline', 'off');
    const backend = (m.backends || []).find((b) => b.name === m.enabledBackend);
    return badge('on', `on: ${m.enabledBackend}${backend && backend.type ? ' (' + backend.type + ')' : ''}`);
  }

  // Per type of a connected stream: the version Envoy ACKed, or the one it NACKed with
  // Envoy's error.
  function xdsCells(stream) {
    if (!stream) return h('span', { class: 'muted' }, 'not connected to this instance');
    return stream.types.map((t) => {
      let state;
      if (t.nackedVersion) {
        state = [badge('nacked', 'NACK'), h('span', { class: 'error-text' }, t.error)];
      } else if (t.pending) {
        state = [badge('sent', 'sent ' + shortVersion(t.sentVersion))];
      } else if (t.ackedVersion) {
        state = [badge('acked', 'ACK'), h('code', {}, shortVersion(t.ackedVersion))];
      } else {
        state = [badge('pending', 'waiting')];
      }
      return h('div', { class: 'xds-type', 'data-type': t.type }, h('strong', {}, t.type.toUpperCase() + ' '), state);
    });
  }

  function deliveryBadges(c) {
    if (!c.observed) return [badge('pending', 'waiting for the store event')];
    if (c.affected === 0) return [badge('upToDate', 'no dataplane affected')];
    const out = [];
    for (const [state, n] of Object.entries(c.counts)) {
      if (n > 0) out.push(badge(state, `${n} ${state}`));
    }
    return out;
  }

  function changeStatus(c) {
    if (!c.observed || !c.complete) return badge('progress', 'in progress');
    if (c.delivered) return badge('delivered', 'delivered');
    if (c.counts.nacked > 0) return badge('nacked', 'NACKed');
    return badge('notConnected', 'not delivered everywhere');
  }

  function resourceName(r) {
    return `${r.type} ${r.name}`;
  }

  // ---- pages ----

  async function pageMeshes() {
    const [meshes, types] = await Promise.all([api('/meshes?size=1000'), api('/policies')]);
    const rows = await Promise.all(meshes.items.map(async (m) => {
      const name = m.name;
      const [dps, counts] = await Promise.all([
        api(`/meshes/${enc(name)}/dataplanes+insights?size=1000`),
        Promise.all(types.policies.map((t) => api(`/meshes/${enc(name)}/${t.path}?size=1`).then((l) => l.total))),
      ]);
      const online = dps.items.filter((d) => isOnline(d.dataplaneInsight)).length;
      const policies = counts.reduce((a, b) => a + b, 0);
      return h('tr', { 'data-mesh': name },
        h('td', {}, h('a', { href: `#/meshes/${enc(name)}/dataplanes` }, name)),
        h('td', { class: 'mtls' }, mtlsOf(m)),
        h('td', { class: 'dataplanes' }, `${online} online / ${dps.total}`),
        h('td', {}, h('a', { href: `#/meshes/${enc(name)}/policies` }, `${policies} policies`)),
        h('td', {}, time(m.creationTime)));
    }));
    return [h('h1', {}, 'Meshes'),
      rows.length ? table(['Mesh', 'mTLS', 'Dataplanes', 'Policies', 'Created'], rows)
        : h('p', { class: 'muted' }, 'No meshes.')];
  }

  async function pageDataplanes(mesh) {
    const [list, xds] = await Promise.all([
      api(`/meshes/${enc(mesh)}/dataplanes+insights?size=1000`),
      api(`/meshes/${enc(mesh)}/dataplanes+xds`),
    ]);
    const here = new Map(xds.items.map((s) => [s.name, s]));
    const rows = list.items.map((o) => {
      const name = o.name;
      const stream = here.get(name);
      const online = stream || isOnline(o.dataplaneInsight);
      const sub = subscriptionOf(o.dataplaneInsight);
      const instance = stream ? xds.instance : (sub && !sub.disconnectTime ? sub.controlPlaneInstanceId : '');
      return h('tr', { 'data-dataplane': name },
        h('td', {}, h('a', { href: `#/meshes/${enc(mesh)}/dataplanes/${enc(name)}` }, name)),
        h('td', { class: 'status' }, online ? badge('online', 'online') : badge('offline', 'offline')),
        h('td', { class: 'instance' }, instance || h('span', { class: 'muted' }, '—')),
        h('td', {}, (o.dataplane.networking && o.dataplane.networking.address) || ''),
        h('td', {}, services(o.dataplane)),
        h('td', { class: 'xds' }, xdsCells(stream)));
    });
    return [h('h1', {}, `Dataplanes of mesh ${mesh}`),
      rows.length ? table(['Name', 'Status', 'Instance', 'Address', 'Services', 'Last ACK / NACK per type'], rows)
        : h('p', { class: 'muted' }, 'No dataplanes in this mesh.')];
  }

  async function pageDataplane(mesh, name) {
    const base = `/meshes/${enc(mesh)}/dataplanes/${enc(name)}`;
    const [overview, policies, xds] = await Promise.all([
      api(`/meshes/${enc(mesh)}/dataplanes+insights/${enc(name)}`),
      api(`${base}/policies`),
      api(`/meshes/${enc(mesh)}/dataplanes+xds`),
    ]);
    const dp = overview.dataplane;
    const stream = xds.items.find((s) => s.name === name);
    let config;
    if (stream) {
      try {
        config = json(await api(`${base}/xds`), 'config');
      } catch (e) {
        // access.static.viewConfigDump may allow fewer users than the rest of the page.
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) askForToken();
        config = h('p', { class: 'error-text', id: 'config' }, e.message);
      }
    } else {
      config = h('p', { class: 'muted', id: 'config' }, `Not connected to this control-plane instance (${xds.instance}): no config to show.`);
    }
    const net = dp.networking || {};
    const sub = subscriptionOf(overview.dataplaneInsight);
    const online = stream || isOnline(overview.dataplaneInsight);
    const inbounds = (net.inbound || []).map((i) => h('tr', {},
      h('td', {}, i.port), h('td', {}, i.servicePort || ''), h('td', {}, i.address || net.address || ''),
      h('td', {}, Object.entries(i.tags || {}).map(([k, v]) => h('div', {}, h('code', {}, `${k}=${v}`))))));
    const outbounds = (net.outbound || []).map((o) => h('tr', {},
      h('td', {}, o.port), h('td', {}, o.address || '127.0.0.1'),
      h('td', {}, Object.entries(o.tags || {}).map(([k, v]) => h('div', {}, h('code', {}, `${k}=${v}`))))));
    const matched = policies.items.map((a) => h('tr', {},
      h('td', {}, a.type), h('td', {}, a.name || ''), h('td', {}, a.service || ''),
      h('td', {}, Object.entries(a.matchedPolicies).map(([type, list]) =>
        list.map((p) => h('div', {}, `${type} `, h('strong', {}, p.name)))))));
    return [
      h('h1', {}, `Dataplane ${name}`),
      h('div', { class: 'grid' }, h('div', { class: 'card' }, h('dl', {},
        h('dt', {}, 'Mesh'), h('dd', {}, mesh),
        h('dt', {}, 'Status'), h('dd', { class: 'status' }, online ? badge('online', 'online') : badge('offline', 'offline')),
        h('dt', {}, 'Instance'), h('dd', {}, stream ? xds.instance : ((sub && sub.controlPlaneInstanceId) || '—')),
        h('dt', {}, 'Address'), h('dd', {}, net.address || ''),
        h('dt', {}, 'Connected'), h('dd', {}, time(stream ? stream.connectTime : sub && sub.connectTime)),
        h('dt', {}, 'xDS'), h('dd', { class: 'xds' }, xdsCells(stream))))),
      section('Inbounds', inbounds.length ? table(['Port', 'Service port', 'Address', 'Tags'], inbounds)
        : h('p', { class: 'muted' }, 'None.')),
      section('Outbounds', outbounds.length ? table(['Port', 'Address', 'Tags'], outbounds)
        : h('p', { class: 'muted' }, 'None.')),
      section('Matched policies', matched.length ? table(['Attachment', 'Name', 'Service', 'Policies'], matched)
        : h('p', { class: 'muted' }, 'No policy matches this dataplane.')),
      section('Envoy config sent by higuma', config),
    ];
  }

  async function pagePolicies(mesh) {
    const [types, changes] = await Promise.all([
      api('/policies').then((p) => p.policies),
      api(`/changes?mesh=${enc(mesh)}&size=1000`),
    ]);
    // Newest first: the first change of a policy is its last write.
    const lastWrite = new Map();
    for (const c of changes.items) {
      const k = `${c.resource.type}/${c.resource.name}`;
      if (!lastWrite.has(k)) lastWrite.set(k, c);
    }
    const lists = await Promise.all(types.map((t) =>
      api(`/meshes/${enc(mesh)}/${t.path}?size=1000`).then((l) => [t, l.items])));
    const used = lists.filter(([, items]) => items.length > 0);
    const sections = await Promise.all(used.map(async ([t, items]) => {
      const rows = await Promise.all(items.map(async (p) => {
        const reach = await api(`/meshes/${enc(mesh)}/${t.path}/${enc(p.name)}/dataplanes`);
        const dps = reach.items.map((i) => h('a', { href: `#/meshes/${enc(mesh)}/dataplanes/${enc(i.dataplane.name)}`, class: 'dp' }, i.dataplane.name));
        const c = lastWrite.get(`${t.name}/${p.name}`);
        const reached = c
          ? [h('a', { href: `#/changes/${enc(c.id)}` }, `${c.affected} dataplane(s)`), ' ', changeStatus(c)]
          : h('span', { class: 'muted' }, 'not tracked by this instance');
        return h('tr', { 'data-policy': `${t.name}/${p.name}` },
          h('td', {}, p.name),
          h('td', { class: 'affects' }, dps.length ? dps.map((a, i) => [i ? ', ' : '', a]) : h('span', { class: 'muted' }, 'none')),
          h('td', { class: 'reached' }, reached),
          h('td', {}, time(p.modificationTime)));
      }));
      return section(`${t.name} (${items.length})`,
        table(['Name', 'Dataplanes it selects', 'Its last write reached', 'Modified'], rows));
    }));
    const empty = lists.filter(([, items]) => items.length === 0).map(([t]) => t.name);
    return [h('h1', {}, `Policies of mesh ${mesh}`),
      h('p', { class: 'muted' }, 'The dataplanes each policy\'s top-level targetRef selects, as Kuma lists them, and the dataplanes whose config its last write changed (its change, while this instance keeps it).'),
      sections.length ? sections : h('p', { class: 'muted' }, 'No policies in this mesh.'),
      empty.length ? h('p', { class: 'muted' }, `No policies of type ${empty.join(', ')}.`) : null];
  }

  async function pageChanges() {
    const list = await api('/changes?size=200');
    const rows = list.items.map((c) => h('tr', { 'data-change': c.id },
      h('td', {}, h('a', { href: `#/changes/${enc(c.id)}` }, h('code', {}, c.id))),
      h('td', {}, time(c.time)),
      h('td', {}, resourceName(c.resource)),
      h('td', {}, c.mesh),
      h('td', {}, c.operation),
      h('td', {}, c.origin),
      h('td', { class: 'affected' }, c.affected),
      h('td', { class: 'delivery' }, changeStatus(c), ' ', deliveryBadges(c)),
      h('td', {}, c.latency ? `${c.latency.p99Ms} ms` : '')));
    return [h('h1', {}, 'Recent changes'),
      h('p', { class: 'muted' }, `Writes this instance made or heard of, newest first (${list.total} kept), and where their delivery to each affected dataplane stands.`),
      rows.length ? table(['Change', 'Time', 'Resource', 'Mesh', 'Operation', 'Origin', 'Affected', 'Delivery', 'p99 latency'], rows)
        : h('p', { class: 'muted' }, 'No changes yet.')];
  }

  async function pageChange(id) {
    const c = await api(`/changes/${enc(id)}`);
    const rows = c.dataplanes.map((d) => h('tr', { 'data-dataplane': d.name },
      h('td', {}, h('a', { href: `#/meshes/${enc(c.mesh)}/dataplanes/${enc(d.name)}` }, d.name)),
      h('td', { class: 'state' }, badge(d.state, d.state)),
      h('td', { class: 'error' }, d.error ? h('span', { class: 'error-text' }, d.error) : (d.detail || '')),
      h('td', {}, d.typeUrl || ''),
      h('td', {}, d.connectedTo || ''),
      h('td', {}, d.latencyMs !== undefined ? `${d.latencyMs} ms` : '')));
    const l = c.latency;
    return [h('h1', {}, `Change ${c.id}`),
      h('div', { class: 'card' }, h('dl', {},
        h('dt', {}, 'Resource'), h('dd', {}, resourceName(c.resource)),
        h('dt', {}, 'Mesh'), h('dd', {}, c.mesh),
        h('dt', {}, 'Operation'), h('dd', {}, `${c.operation} (${c.origin})`),
        h('dt', {}, 'Time'), h('dd', {}, time(c.time)),
        h('dt', {}, 'Status'), h('dd', { class: 'status' }, changeStatus(c), ' ', deliveryBadges(c)),
        h('dt', {}, 'Latency'), h('dd', {}, l ? `p50 ${l.p50Ms} ms · p99 ${l.p99Ms} ms · max ${l.maxMs} ms` : '—'),
        h('dt', {}, 'Instance'), h('dd', {}, c.instance))),
      section(`Affected dataplanes (${c.affected})`, rows.length
        ? table(['Dataplane', 'State', 'Error / detail', 'Rejected type', 'Connected to', 'Latency'], rows)
        : h('p', { class: 'muted' }, 'This change affected no dataplane.'))];
  }

  async function pageControlPlane() {
    const [status, index, config] = await Promise.all([api('/control-plane/status'), api('/'), api('/config')]);
    const changes = status.changes || {};
    return [h('h1', {}, 'Control plane'),
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('dl', {},
          h('dt', {}, 'Instance'), h('dd', {}, status.instanceId),
          h('dt', {}, 'Version'), h('dd', {}, `${index.product} ${index.version} (Kuma API ${index.basedOnKuma})`),
          h('dt', {}, 'Host'), h('dd', {}, index.hostname),
          h('dt', {}, 'Mode'), h('dd', {}, status.mode),
          h('dt', {}, 'Leader'), h('dd', {}, status.leader.reason))),
        h('div', { class: 'card', id: 'store' }, h('dl', {},
          h('dt', {}, 'Store'), h('dd', {}, status.store.type),
          h('dt', {}, 'Health'), h('dd', { class: 'store-health' }, status.store.healthy ? badge('healthy', 'healthy')
            : [badge('unhealthy', 'unreachable'), ' ', h('span', { class: 'error-text' }, status.store.error)]),
          h('dt', {}, 'Changes kept'), h('dd', {}, `${changes.kept} of ${changes.capacity}`),
          h('dt', {}, 'Not delivered'), h('dd', {}, changes.undelivered)))),
      section('Config in force (secrets masked)', json(config, 'config'))];
  }

  // ---- routing ----

  function selectedMesh() {
    return sessionStorage.getItem(MESH_KEY) || 'default';
  }

  const routes = [
    [/^#\/meshes$/, 'meshes', pageMeshes],
    [/^#\/meshes\/([^/]+)\/dataplanes$/, 'dataplanes', pageDataplanes],
    [/^#\/meshes\/([^/]+)\/dataplanes\/([^/]+)$/, 'dataplane', pageDataplane],
    [/^#\/meshes\/([^/]+)\/policies$/, 'policies', pagePolicies],
    [/^#\/changes$/, 'changes', pageChanges],
    [/^#\/changes\/([^/]+)$/, 'change', pageChange],
    [/^#\/control-plane$/, 'control-plane', pageControlPlane],
  ];
  const REFRESHED = new Set(['dataplanes', 'changes', 'change']);

  let generation = 0;
  let current = null;

  function askForToken() {
    document.getElementById('auth').hidden = false;
  }

  function showError(message) {
    const box = document.getElementById('error');
    box.textContent = message;
    box.hidden = false;
  }

  async function render(refresh) {
    let hash = location.hash || '#/meshes';
    if (hash === '#/dataplanes' || hash === '#/policies') {
      location.replace(`#/meshes/${enc(selectedMesh())}${hash.slice(1)}`);
      return;
    }
    const route = routes.find(([re]) => re.test(hash));
    if (!route) {
      location.replace('#/meshes');
      return;
    }
    const [re, name, page] = route;
    const args = hash.match(re).slice(1).map(decodeURIComponent);
    if (args.length && hash.startsWith('#/meshes/') && args[0] !== selectedMesh()) {
      sessionStorage.setItem(MESH_KEY, args[0]);
      document.getElementById('mesh').value = args[0];
    }
    for (const a of document.querySelectorAll('nav a')) {
      a.classList.toggle('active', a.dataset.nav === name || (name === 'dataplane' && a.dataset.nav === 'dataplanes')
        || (name === 'change' && a.dataset.nav === 'changes'));
    }
    const gen = ++generation;
    current = name;
    if (!refresh) document.body.dataset.ready = '';
    try {
      const content = await page(...args);
      if (gen !== generation) return;
      main.replaceChildren(...[content].flat(Infinity).filter((c) => c));
      if (!refresh) document.getElementById('error').hidden = true;
      document.body.dataset.ready = name;
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        askForToken();
        showError(`The API refused this page (${e.status}): ${e.detail}. Enter a user token that may read it.`);
      } else {
        showError(e.message);
      }
      if (!refresh) main.replaceChildren(h('p', { class: 'muted' }, 'This page could not be loaded.'));
      document.body.dataset.ready = 'error';
    }
  }

  async function loadMeshes() {
    const select = document.getElementById('mesh');
    try {
      const meshes = await api('/meshes?size=1000');
      select.replaceChildren(...meshes.items.map((m) => h('option', { value: m.name }, m.name)));
      select.value = selectedMesh();
    } catch (_) {
      // The page itself reports why the API refused.
    }
    try {
      const index = await api('/');
      document.getElementById('footer').textContent = `${index.product} ${index.version} · instance ${index.instanceId}`;
    } catch (_) {
      // As above.
    }
  }

  function setUp() {
    document.getElementById('mesh').addEventListener('change', (ev) => {
      sessionStorage.setItem(MESH_KEY, ev.target.value);
      const m = location.hash.match(/^#\/meshes\/[^/]+\/(dataplanes|policies)/);
      location.hash = `#/meshes/${enc(ev.target.value)}/${m ? m[1] : 'dataplanes'}`;
    });
    document.getElementById('token-button').addEventListener('click', () => {
      const auth = document.getElementById('auth');
      auth.hidden = !auth.hidden;
    });
    document.getElementById('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = document.getElementById('token').value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      document.getElementById('auth').hidden = true;
      loadMeshes();
      render(false);
    });
    document.getElementById('token-clear').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById('token').value = '';
      render(false);
    });
    window.addEventListener('hashchange', () => render(false));
    setInterval(() => {
      if (!document.hidden && REFRESHED.has(current)) render(true);
    }, REFRESH_MS);
    loadMeshes();
    render(false);
  }

  setUp();
}());
