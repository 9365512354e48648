// hydrowatch wallboard — plain ES2020, no dependencies.
//
// Data flow:
//   sign in                -> a login form (or, on a fresh install, the first-administrator
//                             form of the setup link); the access token stays in memory, the
//                             refresh token in sessionStorage (this tab only)
//   GET /api/v1/equipment  -> build one tile per unit (in that order)
//   WS  /api/v1/ws         -> an `auth` frame, subscribe to all units, then apply
//                             snapshot/delta frames
//   GET /api/v1/alerts?state=open -> once subscribed (again after every reconnect), the open
//                                    alerts; then `alert` frames keep them current
//
// Incoming frames only update the in-memory model (`state`) and record what is dirty; the
// DOM is written at most once per animation frame (flush). Tiles and sensor cells are built
// once and afterwards only their text and data-attributes change. Server-provided strings are
// only ever written through textContent / setAttribute, never parsed as HTML.
'use strict';

(() => {
  const CONFIG = Object.freeze({
    equipmentUrl: '/api/v1/equipment',
    alertsUrl: '/api/v1/alerts?state=open&page_size=500',
    alertRows: 12, // alert rows shown; the rest are counted
    wsPath: '/api/v1/ws',
    staleAfterMs: 5000, // a unit with no snapshot/delta for this long is shown as "stale"
    backoffMinMs: 500,
    backoffMaxMs: 10000,
    stableAfterMs: 5000, // a connection that stayed up this long resets the backoff
    idlePingMs: 15000, // send {"type":"ping"} only if the link has been silent this long
    deadAfterMs: 45000, // nothing received (not even a pong) for this long: drop and reconnect
    toastMs: 6000,
    tickMs: 500, // freshness ages and the clock
  });

  const HEALTH_STATUSES = new Set(['ok', 'degraded', 'fault', 'unknown']);
  const QUALITIES = new Set(['good', 'uncertain', 'bad']);
  const HEALTH_LABEL = { ok: 'OK', degraded: 'Degraded', fault: 'Fault', unknown: 'Unknown' };
  const NO_VALUE = '\u2014'; // em dash
  // The components the cycle models judge, with how their condition level reads.
  const COMPONENTS = [
    ['cooler', 'Cooler', (l) => `${l} %`],
    ['valve', 'Valve', (l) => `${l} %`],
    ['pump', 'Pump leak', (l) => ['none', 'weak', 'severe'][l] || String(l)],
    ['accumulator', 'Accumulator', (l) => `${l} bar`],
  ];
  const SEVERITIES = new Set(['info', 'warning', 'minor', 'major', 'critical']);

  // ------------------------------------------------------------------ model

  // Everything known about the plant. Plain data so it can be inspected from the console
  // (window.hydrowatch.state). `equipment` has no prototype because its keys come from the
  // server (an id such as "__proto__" must not be able to reach Object.prototype).
  const state = {
    order: [], // equipment ids in display order
    equipment: Object.create(null), // id -> Equipment (see ensureEquipment)
    connection: 'connecting', // 'connecting' | 'connected' | 'reconnecting'
    session: null,
    protocol: null,
    subscribed: [],
    lastError: null,
    alerts: Object.create(null), // alert id -> the alert as the API and `alert` frames give it
  };

  // Per-equipment Map(sensorId -> sensor object inside state), kept outside `state` so the
  // state stays a clean tree.
  const sensorIndex = new Map();

  function ensureEquipment(id) {
    let eq = state.equipment[id];
    if (!eq) {
      eq = {
        id,
        name: id,
        site: '',
        health: { status: 'unknown', reason: null },
        condition: null, // the cycle models' latest verdict (normCondition)
        sensorCount: null, // from the equipment list, before the first snapshot
        sensors: [], // display order, from the snapshot
        hasSnapshot: false,
        lastUpdateMs: null, // client clock, when the last snapshot/delta arrived
      };
      state.equipment[id] = eq;
      state.order.push(id);
      sensorIndex.set(id, new Map());
      markDirty(id).meta = true;
      dirtyHeader = true;
    }
    return eq;
  }

  function str(v) {
    return typeof v === 'string' ? v : null;
  }

  function finite(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  function normHealth(raw) {
    const status = raw && HEALTH_STATUSES.has(raw.status) ? raw.status : 'unknown';
    return { status, reason: raw ? str(raw.reason) : null };
  }

  // The cycle models' verdict on the latest cycle, reduced to what the tile shows.
  function normCondition(raw) {
    if (!raw || typeof raw !== 'object' || !raw.verdict || typeof raw.verdict !== 'object') {
      return null;
    }
    const v = raw.verdict;
    const components = Object.create(null);
    for (const c of Array.isArray(v.health) ? v.health : []) {
      if (!c || typeof c.component !== 'string') continue;
      components[c.component] = {
        degraded: c.degraded === true,
        confidence: finite(c.confidence),
        level: finite(c.level),
        severity: SEVERITIES.has(c.severity) ? c.severity : null,
      };
    }
    const novelty = finite(v.novelty);
    return {
      anomaly: v.is_anomaly === true,
      severity: SEVERITIES.has(v.severity) ? v.severity : null,
      novel: novelty !== null && novelty > 1,
      novelty,
      components,
      model: str(v.model_version) || '',
      cycles: finite(raw.cycles_scored),
    };
  }

  function normSensorState(raw) {
    if (!raw || typeof raw !== 'object') {
      return { value: null, quality: 'bad', ts_ms: null, status: 'no_data', reason: null };
    }
    return {
      value: finite(raw.value),
      // An unrecognised quality is not trusted as "good".
      quality: QUALITIES.has(raw.quality) ? raw.quality : 'uncertain',
      ts_ms: finite(raw.ts_ms),
      status: str(raw.status) || 'ok',
      reason: str(raw.reason),
    };
  }

  function normSensor(raw) {
    const id = String(raw.id);
    const range =
      raw.range && typeof raw.range === 'object'
        ? { min: finite(raw.range.min), max: finite(raw.range.max) }
        : null;
    return {
      id,
      name: str(raw.name) || id,
      unit: str(raw.unit) || '',
      range,
      state: normSensorState(raw.state),
      findings: normFindings(raw.findings),
    };
  }

  // What a sensor actor's detectors say, reduced to the most pressing finding:
  // a limit raised, then stuck, then unusual for the learned baseline.
  function normFindings(raw) {
    if (!raw || typeof raw !== 'object') return null;
    const limits = Array.isArray(raw.limits) ? raw.limits.filter((l) => l === true).length : 0;
    const kind = limits > 0 ? 'limit' : raw.stuck === true ? 'stuck' : raw.unusual === true ? 'unusual' : null;
    return {
      kind,
      limits,
      stuck: raw.stuck === true,
      unusual: raw.unusual === true,
      z: finite(raw.z),
      spikes: finite(raw.spikes) || 0,
      warmingUp: raw.warming_up === true,
    };
  }

  function applyEquipmentList(list) {
    for (const item of list) {
      if (!item || typeof item.id !== 'string') continue;
      const eq = ensureEquipment(item.id);
      if (str(item.name)) eq.name = item.name;
      if (str(item.site)) eq.site = item.site;
      if (!eq.hasSnapshot) {
        eq.health = normHealth(item.health);
        eq.sensorCount = finite(item.sensor_count);
      }
      markDirty(item.id).meta = true;
    }
    dirtyHeader = true;
    listLoaded = true;
    scheduleFrame();
  }

  // A snapshot replaces everything known about the unit.
  function applySnapshot(id, snap) {
    if (typeof id !== 'string' || !snap || typeof snap !== 'object') return;
    const eq = ensureEquipment(id);
    const d = markDirty(id);

    const name = str(snap.name);
    const site = str(snap.site);
    if (name) eq.name = name;
    if (site !== null && site !== eq.site) {
      eq.site = site;
      dirtyHeader = true;
    }
    eq.health = normHealth(snap.health);
    eq.condition = normCondition(snap.condition);
    d.condition = true;

    const hadSnapshot = eq.hasSnapshot;
    const oldIds = eq.sensors.map((s) => s.id).join('\n');
    const sensors = [];
    const index = new Map();
    for (const raw of Array.isArray(snap.sensors) ? snap.sensors : []) {
      if (!raw || typeof raw !== 'object' || raw.id == null) continue;
      const s = normSensor(raw);
      if (index.has(s.id)) continue; // duplicate id: keep the first
      index.set(s.id, s);
      sensors.push(s);
    }
    eq.sensors = sensors;
    eq.sensorCount = sensors.length;
    sensorIndex.set(id, index);
    eq.hasSnapshot = true;
    eq.lastUpdateMs = Date.now();

    d.meta = true;
    // Rebuild the sensor cells only if the set/order of sensors changed (a reconnect usually
    // sends an identical layout); otherwise just refresh every cell.
    if (!hadSnapshot || !tileViews.has(id) || sensors.map((s) => s.id).join('\n') !== oldIds) {
      d.structure = true;
    } else {
      for (const s of sensors) d.sensors.add(s.id);
    }
    scheduleFrame();
  }

  // A delta carries only what changed; each listed sensor state replaces the previous one.
  function applyDelta(msg) {
    const id = msg.equipment;
    if (typeof id !== 'string') return;
    const eq = ensureEquipment(id);
    const index = sensorIndex.get(id);
    const d = markDirty(id);

    if (msg.health && typeof msg.health === 'object') {
      eq.health = normHealth(msg.health);
      d.meta = true;
    }
    if (msg.condition && typeof msg.condition === 'object') {
      eq.condition = normCondition(msg.condition);
      d.condition = true;
    }
    if (msg.sensors && typeof msg.sensors === 'object') {
      for (const [sid, raw] of Object.entries(msg.sensors)) {
        let s = index.get(sid);
        if (!s) {
          // Sensor not in the last snapshot (or no snapshot yet): show it anyway, with
          // its id as name; the next snapshot will put it in proper order.
          s = { id: sid, name: sid, unit: '', range: null, state: null };
          index.set(sid, s);
          eq.sensors.push(s);
          d.structure = true;
        }
        s.state = normSensorState(raw);
        d.sensors.add(sid);
      }
    }
    if (msg.findings && typeof msg.findings === 'object') {
      for (const [sid, raw] of Object.entries(msg.findings)) {
        const s = index.get(sid);
        if (!s) continue; // the next snapshot brings it
        s.findings = normFindings(raw);
        d.sensors.add(sid);
      }
    }
    eq.lastUpdateMs = Date.now();
    scheduleFrame();
  }

  // ---------------------------------------------------------- dirty tracking

  // id -> { meta, structure, sensors:Set } ; a Map keeps insertion (= display) order.
  const dirtyTiles = new Map();
  let dirtyHeader = true;
  let dirtyAges = true;
  let listLoaded = false;
  let frameRequested = false;

  function markDirty(id) {
    let d = dirtyTiles.get(id);
    if (!d) {
      d = { meta: false, structure: false, condition: false, sensors: new Set() };
      dirtyTiles.set(id, d);
    }
    return d;
  }

  // While the tab is hidden requestAnimationFrame does not run; the model keeps
  // absorbing frames and the dirty sets stay bounded (ids only), so nothing piles up.
  function scheduleFrame() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(flush);
  }

  function flush() {
    frameRequested = false;
    const now = Date.now();
    for (const [id, d] of dirtyTiles) {
      if (state.equipment[id]) renderEquipment(id, d, now);
    }
    dirtyTiles.clear();
    if (dirtyHeader) {
      dirtyHeader = false;
      renderHeader();
    }
    if (dirtyAlerts) {
      dirtyAlerts = false;
      renderAlerts(now);
    }
    if (dirtyAges) {
      dirtyAges = false;
      renderClock(now);
      if (Object.keys(state.alerts).length) renderAlerts(now);
      for (const id of state.order) {
        const v = tileViews.get(id);
        if (v) renderFreshness(v, state.equipment[id], now);
      }
    }
  }

  // ------------------------------------------------------------------ alerts

  const ALERT_STATES = new Set(['PENDING', 'ACTIVE_UNACK', 'ACTIVE_ACK', 'CLEARED_UNACK']);
  const ALERT_STATE_LABEL = {
    PENDING: 'pending',
    ACTIVE_UNACK: 'active, not acknowledged',
    ACTIVE_ACK: 'active, acknowledged',
    CLEARED_UNACK: 'cleared, not acknowledged',
  };
  const SEVERITY_RANK = { info: 0, warning: 1, minor: 2, major: 3, critical: 4 };
  let dirtyAlerts = false;

  function normAlert(raw) {
    if (!raw || typeof raw !== 'object' || !Number.isSafeInteger(raw.id)) return null;
    return {
      id: raw.id,
      kind: str(raw.kind) || '',
      source: str(raw.source) || '',
      equipment: str(raw.equipment),
      sensor: str(raw.sensor),
      state: str(raw.state) || '',
      severity: SEVERITIES.has(raw.severity) ? raw.severity : 'warning',
      count: finite(raw.count),
      lastValue: finite(raw.last_value),
      since: finite(raw.activated_at_ms) ?? finite(raw.first_seen_ms),
      acknowledgedBy: str(raw.acknowledged_by),
      heldBack: str(raw.held_back),
    };
  }

  // Frames that arrive while the open alerts are being fetched are newer than the
  // fetched list may be: kept here and applied again on top of it.
  let alertFramesDuringFetch = null;

  // An open alert is kept; one that closed (cleared and acknowledged, cancelled) goes.
  function applyAlert(raw, fromFrame = true) {
    const a = normAlert(raw);
    if (!a) return;
    if (fromFrame && alertFramesDuringFetch) alertFramesDuringFetch.push(raw);
    if (ALERT_STATES.has(a.state)) state.alerts[a.id] = a;
    else delete state.alerts[a.id];
    dirtyAlerts = true;
    scheduleFrame();
  }

  async function loadAlerts() {
    alertFramesDuringFetch = [];
    try {
      const res = await api(CONFIG.alertsUrl);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await res.json();
      const items = Array.isArray(body && body.items) ? body.items : [];
      const newer = alertFramesDuringFetch;
      alertFramesDuringFetch = null;
      state.alerts = Object.create(null);
      for (const item of items) applyAlert(item, false);
      for (const frame of newer) applyAlert(frame, false);
      dirtyAlerts = true;
      scheduleFrame();
    } catch (e) {
      alertFramesDuringFetch = null;
      showToast(`Cannot load the open alerts (${e.message})`);
    }
  }

  // Unacknowledged critical first, then by severity, then the newest.
  function alertOrder(a, b) {
    const crit = (x) => (x.severity === 'critical' && x.state === 'ACTIVE_UNACK' ? 1 : 0);
    return (
      crit(b) - crit(a) ||
      SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
      (b.since || 0) - (a.since || 0) ||
      b.id - a.id
    );
  }

  function renderAlerts(now) {
    const all = Object.values(state.alerts).sort(alertOrder);
    // A wall has room for the gravest few; the count says how many there are.
    const alerts = all.slice(0, CONFIG.alertRows);
    const rows = alerts.map((a) => {
      const li = h('li', 'alert');
      li.dataset.id = String(a.id);
      li.dataset.kind = a.kind;
      li.dataset.equipment = a.equipment || '';
      li.dataset.severity = a.severity;
      li.dataset.state = a.state;
      if (a.severity === 'critical' && a.state === 'ACTIVE_UNACK') li.dataset.criticalUnack = 'true';
      if (a.heldBack) li.dataset.heldBack = a.heldBack;
      const sev = h('span', 'alert-sev', a.severity.toUpperCase());
      const where = h('span', 'alert-where', [a.equipment, a.sensor].filter(Boolean).join(' \u00b7 ') || a.source);
      const rule = h('span', 'alert-rule', a.kind.replace(/^[a-z]+:/, ''));
      const st = h('span', 'alert-state', ALERT_STATE_LABEL[a.state] || a.state.toLowerCase());
      const extra = [];
      if (a.lastValue !== null) extra.push(formatValue(a.lastValue));
      if (a.count !== null && a.count > 1) extra.push(`\u00d7${a.count}`);
      if (a.since !== null) extra.push(formatAge(now - a.since));
      if (a.acknowledgedBy) extra.push(`ack ${a.acknowledgedBy}`);
      if (a.heldBack) extra.push(a.heldBack);
      const facts = h('span', 'alert-facts', extra.join(' \u00b7 '));
      li.append(sev, where, rule, st, facts);
      return li;
    });
    if (all.length > alerts.length) rows.push(h('li', 'alert-more', `+${all.length - alerts.length} more`));
    dom.alertList.replaceChildren(...rows);
    dom.alertsEmpty.hidden = all.length > 0;
    dom.alertsCount.textContent = String(all.length);
  }

  // -------------------------------------------------------------- DOM views

  const $ = (id) => document.getElementById(id);
  const dom = {
    board: $('board'),
    empty: $('board-empty'),
    site: $('site'),
    pill: $('ws-status'),
    clock: $('clock'),
    toast: $('toast'),
    alertList: $('alert-list'),
    alertsEmpty: $('alerts-empty'),
    alertsCount: $('alerts-count'),
  };

  // id -> TileView. Every view caches what it last wrote so that unchanged text/attributes
  // cost neither a DOM read nor a DOM write.
  const tileViews = new Map();
  let tileSeq = 0;

  function h(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  // Write helpers: compare with the cached value, touch the DOM only on change.
  function setText(cache, key, el, text) {
    if (cache[key] !== text) {
      cache[key] = text;
      el.textContent = text;
    }
  }

  function setAttr(cache, key, el, attr, value) {
    if (cache[key] !== value) {
      cache[key] = value;
      if (value == null) el.removeAttribute(attr);
      else el.setAttribute(attr, value);
    }
  }

  function ensureTile(id) {
    let v = tileViews.get(id);
    if (v) return v;

    const nameId = `tile-name-${++tileSeq}`;
    const tile = h('section', 'tile');
    tile.dataset.equipment = id;
    tile.setAttribute('aria-labelledby', nameId);

    const head = h('header', 'tile-head');
    const name = h('h2', 'tile-name');
    name.id = nameId;
    const fresh = h('span', 'fresh');
    const freshLabel = h('span', 'fresh-label');
    const freshAge = h('span', 'fresh-age');
    // The ' ' only matters for textContent ("stale 5 s"); flex layout ignores it.
    fresh.append(freshLabel, ' ', freshAge);
    head.append(name, fresh);

    const health = h('div', 'health');
    const badge = h('span', 'health-badge');
    badge.setAttribute('aria-hidden', 'true');
    const healthStatus = h('span', 'health-status');
    const healthReason = h('span', 'health-reason');
    health.append(badge, healthStatus, healthReason);

    // Component health from the cycle models: one chip per component.
    const condition = h('div', 'condition');
    condition.setAttribute('role', 'list');
    condition.setAttribute('aria-label', 'Component condition');
    const chips = new Map();
    for (const [key, label] of COMPONENTS) {
      const chip = h('span', 'comp');
      chip.setAttribute('role', 'listitem');
      chip.dataset.component = key;
      chip.dataset.state = 'unknown';
      const name = h('span', 'comp-name', label);
      const level = h('span', 'comp-level', NO_VALUE);
      chip.append(name, ' ', level);
      condition.append(chip);
      chips.set(key, { chip, level, c: {} });
    }
    const novel = h('span', 'comp comp-novel', 'Unusual cycle');
    novel.setAttribute('role', 'listitem');
    novel.hidden = true;
    condition.append(novel);

    const sensors = h('div', 'sensors');
    sensors.setAttribute('role', 'list');

    const foot = h('footer', 'tile-foot');
    const site = h('span', 'tile-site');
    const counts = h('span', 'tile-counts');
    foot.append(site, counts);

    tile.append(head, health, condition, sensors, foot);

    v = {
      id,
      tile,
      name,
      fresh,
      freshLabel,
      freshAge,
      healthStatus,
      healthReason,
      condition,
      chips,
      novel,
      sensors,
      site,
      counts,
      cells: new Map(), // sensorId -> SensorView
      c: {}, // write cache
    };
    tileViews.set(id, v);

    // Keep DOM order == state.order even if a unit first appears via the WebSocket.
    const pos = state.order.indexOf(id);
    let before = null;
    for (let i = pos + 1; i < state.order.length && !before; i++) {
      const next = tileViews.get(state.order[i]);
      if (next && next.tile.isConnected) before = next.tile;
    }
    dom.board.insertBefore(tile, before);
    dom.empty.hidden = true;
    return v;
  }

  function buildSensorCells(v, eq) {
    v.cells.clear();
    const frag = document.createDocumentFragment();
    for (const s of eq.sensors) {
      const cell = h('div', 'sensor');
      cell.setAttribute('role', 'listitem');
      cell.dataset.sensor = s.id;

      const sid = h('span', 'sid');
      const mark = h('span', 'mark');
      mark.setAttribute('aria-hidden', 'true'); // marker glyph comes from CSS
      const reading = h('span', 'reading');
      const value = h('span', 'value');
      value.dataset.equipment = eq.id;
      value.dataset.sensor = s.id;
      const unit = h('span', 'unit');
      reading.append(value, ' ', unit);
      cell.append(sid, mark, reading);
      frag.append(cell);

      v.cells.set(s.id, { cell, sid, value, unit, c: {} });
    }
    if (eq.sensors.length === 0) {
      frag.append(h('p', 'sensors-empty', eq.hasSnapshot ? 'No sensors' : 'Waiting for data\u2026'));
    }
    v.sensors.replaceChildren(frag);
  }

  function renderEquipment(id, d, now) {
    const eq = state.equipment[id];
    const v = ensureTile(id);
    const c = v.c;

    if (d.structure || !v.built) {
      v.built = true;
      buildSensorCells(v, eq);
      for (const s of eq.sensors) renderSensor(v, eq, s);
    } else {
      const index = sensorIndex.get(id);
      for (const sid of d.sensors) {
        const s = index.get(sid);
        if (s) renderSensor(v, eq, s);
      }
    }

    if (d.meta || d.structure) {
      setText(c, 'name', v.name, eq.name);
      setAttr(c, 'nameTitle', v.name, 'title', `${eq.name} (${eq.id})`);
      const hs = eq.health.status;
      setAttr(c, 'health', v.tile, 'data-health', hs);
      setText(c, 'healthStatus', v.healthStatus, HEALTH_LABEL[hs]);
      setText(c, 'healthReason', v.healthReason, eq.health.reason || '');
      setAttr(c, 'healthTitle', v.healthReason, 'title', eq.health.reason || null);
      setText(c, 'site', v.site, eq.site);
    }

    if (d.condition || d.structure) renderCondition(v, eq);

    renderCounts(v, eq);
    renderFreshness(v, eq, now);
  }

  function renderCondition(v, eq) {
    const cond = eq.condition;
    const c = v.c;
    setAttr(c, 'severity', v.tile, 'data-severity', cond && cond.anomaly ? cond.severity : null);
    setAttr(c, 'condModel', v.condition, 'title',
      cond ? `Cycle models ${cond.model}; ${cond.cycles ?? 0} cycles scored` : 'No cycle scored yet');
    for (const [key, , fmt] of COMPONENTS) {
      const view = v.chips.get(key);
      const comp = cond ? cond.components[key] : null;
      const st = !comp ? 'unknown' : comp.degraded ? 'degraded' : 'ok';
      setAttr(view.c, 'state', view.chip, 'data-state', st);
      setAttr(view.c, 'sev', view.chip, 'data-severity', comp && comp.degraded ? comp.severity : null);
      setText(view.c, 'level', view.level, comp && comp.level !== null ? fmt(comp.level) : NO_VALUE);
      const sure = comp && comp.confidence !== null ? `${Math.round(comp.confidence * 100)} % sure` : '';
      setAttr(view.c, 'title', view.chip, 'title',
        !comp ? 'not judged yet'
          : comp.degraded ? `degraded${comp.severity ? ` (${comp.severity})` : ''}, ${sure}` : `ok, ${sure}`);
    }
    v.novel.hidden = !(cond && cond.novel);
  }

  function renderSensor(v, eq, s) {
    const sv = v.cells.get(s.id);
    if (!sv) return;
    const c = sv.c;
    const st = s.state || { value: null, quality: 'bad', ts_ms: null, status: 'no_data', reason: null };

    setText(c, 'sid', sv.sid, s.id);
    setText(c, 'unit', sv.unit, s.unit);
    setText(c, 'value', sv.value, formatValue(st.value));
    // data-quality on both the cell (drives the CSS marker) and the value (handy selector).
    setAttr(c, 'q', sv.cell, 'data-quality', st.quality);
    setAttr(c, 'qv', sv.value, 'data-quality', st.quality);
    setAttr(c, 'status', sv.cell, 'data-status', st.status);
    setAttr(c, 'finding', sv.cell, 'data-finding', s.findings ? s.findings.kind : null);
    setAttr(c, 'title', sv.cell, 'title', sensorTitle(s, st));
  }

  function sensorTitle(s, st) {
    const unit = s.unit ? ` ${s.unit}` : '';
    const lines = [`${s.name} (${s.id})`];
    lines.push(`Value: ${st.value == null ? 'none' : String(st.value) + unit}`);
    if (s.range && (s.range.min != null || s.range.max != null)) {
      const lo = s.range.min == null ? '' : s.range.min;
      const hi = s.range.max == null ? '' : s.range.max;
      lines.push(`Range: ${lo} \u2013 ${hi}${unit}`);
    }
    lines.push(`Quality: ${st.quality} \u00b7 Status: ${st.status.replace(/_/g, ' ')}`);
    if (st.reason) lines.push(`Reason: ${st.reason}`);
    if (st.ts_ms != null) lines.push(`Sampled: ${timeFmt.format(st.ts_ms)}`);
    const f = s.findings;
    if (f) {
      const notes = [];
      if (f.limits) notes.push(`${f.limits} limit${f.limits > 1 ? 's' : ''} raised`);
      if (f.stuck) notes.push('stuck');
      if (f.unusual) notes.push(`unusual (z ${f.z})`);
      if (f.spikes) notes.push(`${f.spikes} spike${f.spikes > 1 ? 's' : ''}`);
      if (f.warmingUp) notes.push('baseline still learning');
      if (notes.length) lines.push(`Detectors: ${notes.join(', ')}`);
    }
    return lines.join('\n');
  }

  function renderCounts(v, eq) {
    let text;
    let bad = 0;
    if (!eq.hasSnapshot) {
      text = eq.sensorCount != null ? `${eq.sensorCount} sensors` : '';
    } else {
      let uncertain = 0;
      for (const s of eq.sensors) {
        const q = s.state ? s.state.quality : 'bad';
        if (q === 'bad') bad++;
        else if (q === 'uncertain') uncertain++;
      }
      const parts = [`${eq.sensors.length} sensors`];
      if (bad) parts.push(`${bad} bad`);
      if (uncertain) parts.push(`${uncertain} uncertain`);
      if (!bad && !uncertain && eq.sensors.length) parts.push('all good');
      text = parts.join(' \u00b7 ');
    }
    setText(v.c, 'counts', v.counts, text);
    setAttr(v.c, 'countsBad', v.counts, 'data-bad', bad ? 'true' : null);
  }

  function renderFreshness(v, eq, now) {
    let fresh;
    let age = '';
    if (eq.lastUpdateMs == null) {
      fresh = 'waiting';
    } else {
      const ms = Math.max(0, now - eq.lastUpdateMs);
      fresh = ms > CONFIG.staleAfterMs ? 'stale' : 'live';
      age = formatAge(ms);
    }
    const c = v.c;
    setAttr(c, 'fresh', v.tile, 'data-fresh', fresh);
    setAttr(c, 'fresh2', v.fresh, 'data-fresh', fresh);
    setText(c, 'freshLabel', v.freshLabel, fresh);
    setText(c, 'freshAge', v.freshAge, age);
    setAttr(c, 'freshTitle', v.fresh, 'title',
      eq.lastUpdateMs == null ? 'No data received yet' : `Last update ${timeFmt.format(eq.lastUpdateMs)}`);
  }

  function renderHeader() {
    const sites = [];
    for (const id of state.order) {
      const s = state.equipment[id].site;
      if (s && !sites.includes(s)) sites.push(s);
    }
    const text = sites.join(' \u00b7 ');
    dom.site.textContent = text;
    document.title = text ? `hydrowatch \u2014 ${text}` : 'hydrowatch';
    if (listLoaded && state.order.length === 0) {
      dom.empty.textContent = 'No equipment configured.';
      dom.empty.hidden = false;
    }
  }

  let lastClock = '';
  function renderClock(now) {
    const text = timeFmt.format(now);
    if (text !== lastClock) {
      lastClock = text;
      dom.clock.textContent = text;
      dom.clock.dateTime = new Date(now).toISOString();
    }
  }

  // ------------------------------------------------------------- formatting

  const timeFmt = new Intl.DateTimeFormat(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  });

  // At most 4 significant digits and at most 3 decimals: 151.23 -> "151.2",
  // 36.54 -> "36.54", 2.5 -> "2.500", 0.0123 -> "0.012", 2345.6 -> "2346".
  // Fixed decimals per magnitude keep the columns steady as values move.
  function formatValue(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return NO_VALUE;
    const a = Math.abs(v);
    let d = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : 3;
    let s = v.toFixed(d);
    // Rounding can carry into the next magnitude (99.996 -> "100.00"); drop a decimal.
    if (d > 0 && Math.abs(Number(s)) >= 10 ** (4 - d)) s = v.toFixed(--d);
    // No "-0.000".
    if (Number(s) === 0) s = s.replace(/^-/, '');
    return s;
  }

  function formatAge(ms) {
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs} h`;
    return `${Math.floor(hrs / 24)} d`;
  }

  // ------------------------------------------------------------------ toast

  let toastTimer = null;
  function showToast(text) {
    dom.toast.textContent = text;
    dom.toast.removeAttribute('title');
    dom.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      dom.toast.hidden = true;
    }, CONFIG.toastMs);
  }

  function showServerError(err) {
    const e = err && typeof err === 'object' ? err : {};
    const code = str(e.code) || 'error';
    const message = str(e.message) || 'unknown error';
    state.lastError = { code, message, details: e.details === undefined ? null : e.details, at: Date.now() };
    showToast(`${code}: ${message}`);
    if (e.details !== undefined && e.details !== null) {
      let details;
      try {
        details = JSON.stringify(e.details);
      } catch {
        details = String(e.details);
      }
      dom.toast.title = details.length > 500 ? `${details.slice(0, 500)}\u2026` : details;
    }
    console.warn('hydrowatch: server error', state.lastError);
  }

  // -------------------------------------------------------------- websocket

  let ws = null; // current socket (CONNECTING or OPEN), null while waiting to reconnect
  let attempt = 0; // consecutive failed attempts, drives the backoff
  let reconnectTimer = null;
  let openedAt = 0;
  let lastRxAt = 0;
  let lastTxAt = 0;
  let everConnected = false;

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}${CONFIG.wsPath}`;
  }

  function setConnection(conn, detail) {
    state.connection = conn;
    // The pill text is exactly the state name ("connected", ...): tests rely on it.
    if (dom.pill.textContent !== conn) dom.pill.textContent = conn;
    dom.pill.dataset.state = conn;
    dom.pill.title = detail ? `Live data: ${detail}` : 'Live data connection';
  }

  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    lastTxAt = Date.now();
    return true;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws) return;
    if (auth.stale) {
      // The server refused the token (4401/4403): renew it, or sign in again, first.
      auth.stale = false;
      renewOrSignIn().then(connect, () => scheduleReconnect());
      return;
    }
    setConnection(everConnected ? 'reconnecting' : 'connecting', 'opening\u2026');

    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      console.error('hydrowatch: cannot open WebSocket', e);
      scheduleReconnect();
      return;
    }
    ws = sock;

    sock.onopen = () => {
      if (ws !== sock) return;
      openedAt = Date.now();
      lastRxAt = openedAt;
      everConnected = true;
      setConnection('connected', 'open');
      // Browsers cannot set headers on a WebSocket: the token goes in the first frame.
      send({ type: 'auth', token: auth.access });
      send({ type: 'subscribe', equipment: state.order.slice() });
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      lastRxAt = Date.now();
      handleFrame(ev.data);
    };
    // Browsers fire "close" after "error", but drop() is idempotent so handling both is
    // safe and also covers an error without a following close.
    sock.onerror = () => drop(sock, 'error');
    sock.onclose = (ev) => {
      if (ev.code === 4401 || ev.code === 4403) auth.stale = true;
      drop(sock, `closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`);
    };
  }

  function drop(sock, why) {
    if (ws !== sock) return; // already handled
    ws = null;
    sock.onopen = sock.onmessage = sock.onerror = sock.onclose = null;
    try {
      sock.close();
    } catch {
      /* ignore */
    }
    // Only a connection that stayed up for a while counts as success: a server that accepts
    // and immediately closes must still be backed off from.
    if (openedAt && Date.now() - openedAt >= CONFIG.stableAfterMs) attempt = 0;
    openedAt = 0;
    console.info(`hydrowatch: WebSocket ${why}`);
    scheduleReconnect();
  }

  // Exponential backoff 0.5 s, 1 s, 2 s, ... capped at 10 s, with up to 25 % jitter
  // subtracted (so a wall of screens does not reconnect in lockstep after a server restart).
  function backoffDelay(n) {
    const base = Math.min(CONFIG.backoffMaxMs, CONFIG.backoffMinMs * 2 ** Math.min(n, 20));
    return base * (1 - 0.25 * Math.random());
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    const delay = backoffDelay(attempt);
    attempt++;
    setConnection(everConnected ? 'reconnecting' : 'connecting', `retry in ${(delay / 1000).toFixed(1)} s`);
    reconnectTimer = setTimeout(connect, delay);
  }

  function handleFrame(data) {
    if (typeof data !== 'string') return; // the protocol is text-only
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('hydrowatch: ignoring non-JSON frame');
      return;
    }
    if (!msg || typeof msg !== 'object') return;

    switch (msg.type) {
      case 'hello':
        state.session = str(msg.session);
        state.protocol = finite(msg.protocol);
        if (state.protocol !== 1) console.warn('hydrowatch: unexpected protocol version', msg.protocol);
        setConnection('connected', `session ${state.session || '?'}`);
        break;
      case 'subscribed': {
        state.subscribed = Array.isArray(msg.equipment) ? msg.equipment.filter((x) => typeof x === 'string') : [];
        const missing = state.order.filter((id) => !state.subscribed.includes(id));
        if (missing.length) console.warn('hydrowatch: not subscribed to', missing);
        // Subscribed: every change from now on comes as a frame, so the open
        // alerts fetched now (again after every reconnect) miss nothing.
        loadAlerts();
        break;
      }
      case 'snapshot':
        applySnapshot(typeof msg.equipment === 'string' ? msg.equipment : msg.snapshot && msg.snapshot.id, msg.snapshot);
        break;
      case 'delta':
        applyDelta(msg);
        break;
      case 'alert':
        applyAlert(msg.alert);
        break;
      case 'error':
        showServerError(msg.error);
        break;
      case 'pong':
        break; // lastRxAt already updated
      default:
        break; // unknown types are ignored (forward compatibility)
    }
  }

  // Keepalive: normally data flows continuously and nothing is sent. If the link goes quiet,
  // ping; if it stays dead, reconnect (TCP can take minutes to notice a vanished peer).
  function keepalive() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (now - lastRxAt > CONFIG.deadAfterMs) {
      drop(ws, 'timed out');
    } else if (now - Math.max(lastRxAt, lastTxAt) > CONFIG.idlePingMs) {
      send({ type: 'ping' });
    }
  }

  // ------------------------------------------------------------ equipment list

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function loadEquipment() {
    for (let n = 0; ; n++) {
      try {
        const res = await api(CONFIG.equipmentUrl);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const body = await res.json();
        return Array.isArray(body && body.equipment) ? body.equipment : [];
      } catch (e) {
        const delay = backoffDelay(n);
        showToast(`Cannot load equipment list (${e.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
        dom.empty.textContent = 'Waiting for the server\u2026';
        await sleep(delay);
      }
    }
  }

  // ----------------------------------------------------------------- sign-in
  //
  // Every API call goes through api(): it sends the access token, renews it once on a 401 and,
  // when that fails, asks the person to sign in again. Renewals are shared (a refresh token
  // works once; two renewals at a time would end the session as a replay).

  const REFRESH_KEY = 'hydrowatch.refresh';
  const auth = { access: null, me: null, timer: null, renewing: null, signingIn: null, stale: false };
  const authDom = {
    box: $('auth'),
    login: $('login'),
    reset: $('reset'),
    setup: $('setup'),
    change: $('password-change'),
    error: $('auth-error'),
    user: $('user'),
    signOut: $('sign-out'),
  };
  const input = (id) => $(id).value;

  async function postJson(url, body, token) {
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store' });
    let data = null;
    try {
      data = await res.json();
    } catch {
      /* 204: no body */
    }
    return { ok: res.ok, status: res.status, data };
  }

  const errorOf = (r) => (r.data && r.data.error) || { code: '', message: `HTTP ${r.status}` };

  function storedRefresh() {
    try {
      return sessionStorage.getItem(REFRESH_KEY);
    } catch {
      return null;
    }
  }

  function keep(issued) {
    auth.access = str(issued.access_token);
    try {
      sessionStorage.setItem(REFRESH_KEY, str(issued.refresh_token) || '');
    } catch {
      /* private mode: this page stays signed in until the access token expires */
    }
    clearTimeout(auth.timer);
    const lifetime = (finite(issued.expires_in) || 60) * 1000;
    auth.timer = setTimeout(() => renew().catch(() => false), Math.max(5000, lifetime * 0.8));
  }

  function forget() {
    auth.access = null;
    clearTimeout(auth.timer);
    try {
      sessionStorage.removeItem(REFRESH_KEY);
    } catch {
      /* nothing stored */
    }
  }

  // Trades the stored refresh token for a new pair: false when there is none or it is refused.
  function renew() {
    if (!auth.renewing) {
      auth.renewing = (async () => {
        const token = storedRefresh();
        if (!token) return false;
        const r = await postJson('/api/v1/auth/refresh', { refresh_token: token });
        if (!r.ok) {
          if (r.status === 401) forget();
          return false;
        }
        keep(r.data);
        return true;
      })().finally(() => {
        auth.renewing = null;
      });
    }
    return auth.renewing;
  }

  // Shows `form` until `submit` succeeds (it returns an error message, or null when done).
  function ask(form, submit) {
    return new Promise((resolve) => {
      authDom.box.hidden = false;
      for (const f of [authDom.login, authDom.reset, authDom.setup, authDom.change]) f.hidden = f !== form;
      authDom.error.textContent = '';
      form.onsubmit = async (ev) => {
        ev.preventDefault();
        const button = form.querySelector('button');
        button.disabled = true;
        try {
          const failed = await submit();
          if (failed) {
            authDom.error.textContent = failed;
            return;
          }
          form.reset();
          form.hidden = true;
          authDom.box.hidden = true;
          resolve();
        } catch (e) {
          authDom.error.textContent = `Cannot reach the server (${e.message})`;
        } finally {
          button.disabled = false;
        }
      };
      const first = form.querySelector('input');
      if (first) first.focus();
    });
  }

  async function signInOnce() {
    const link = new URLSearchParams(location.hash.slice(1));
    const setupCode = link.get('setup');
    const resetToken = link.get('reset');
    const verifyToken = link.get('verify');
    if (resetToken || verifyToken) history.replaceState(null, '', location.pathname);
    if (verifyToken) {
      // A link from the address-verification mail.
      const r = await postJson('/api/v1/auth/verify-email/confirm', { token: verifyToken });
      showToast(r.ok ? 'Your e-mail address is confirmed' : errorOf(r).message);
    }
    if (resetToken) {
      // A link from the password-reset mail: a new password, then sign in with it.
      await ask(authDom.reset, async () => {
        const r = await postJson('/api/v1/auth/password-reset/confirm', {
          token: resetToken,
          new_password: input('reset-password'),
        });
        return r.ok ? null : errorOf(r).message;
      });
    }
    if (setupCode) {
      await ask(authDom.setup, async () => {
        const r = await postJson('/api/v1/auth/setup', {
          code: setupCode,
          email: input('setup-email'),
          name: input('setup-name'),
          password: input('setup-password'),
        });
        if (!r.ok) return errorOf(r).message;
        keep(r.data);
        return null;
      });
      history.replaceState(null, '', location.pathname);
    } else if (!(await renew().catch(() => false))) {
      const codeRow = $('login-code-row');
      await ask(authDom.login, async () => {
        const body = { email: input('login-email'), password: input('login-password') };
        if (!codeRow.hidden && input('login-code')) body.code = input('login-code');
        const r = await postJson('/api/v1/auth/login', body);
        if (!r.ok) {
          // The password was right; the account has a second factor.
          if (errorOf(r).code === 'mfa_required') {
            codeRow.hidden = false;
            $('login-code').focus();
          }
          return errorOf(r).message;
        }
        keep(r.data);
        return null;
      });
    }
    const res = await fetch('/api/v1/auth/me', {
      headers: { Accept: 'application/json', Authorization: `Bearer ${auth.access}` },
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`who am I: HTTP ${res.status}`);
    auth.me = await res.json();
    if (auth.me.must_change_password) {
      await ask(authDom.change, async () => {
        const r = await postJson(
          '/api/v1/auth/password',
          { current_password: input('pw-current'), new_password: input('pw-new') },
          auth.access,
        );
        return r.ok ? null : errorOf(r).message;
      });
      auth.me.must_change_password = false;
    }
    authDom.user.textContent = `${str(auth.me.name) || str(auth.me.email)} \u00b7 ${str(auth.me.role)}`;
    authDom.user.hidden = false;
    authDom.signOut.hidden = false;
  }

  // One sign-in at a time, however many calls found the token refused.
  function signIn() {
    if (!auth.signingIn) {
      auth.signingIn = signInOnce().finally(() => {
        auth.signingIn = null;
      });
    }
    return auth.signingIn;
  }

  async function renewOrSignIn() {
    if (!(await renew().catch(() => false))) await signIn();
  }

  // fetch() with the access token; a 401 renews (or signs in) and retries once.
  async function api(url) {
    for (let n = 0; ; n++) {
      const headers = { Accept: 'application/json' };
      if (auth.access) headers.Authorization = `Bearer ${auth.access}`;
      const res = await fetch(url, { headers, cache: 'no-store' });
      if (res.status !== 401 || n > 0) return res;
      await renewOrSignIn();
    }
  }

  $('forgot').addEventListener('click', async () => {
    const email = input('login-email');
    if (!email) {
      authDom.error.textContent = 'Type your e-mail first, then ask for a reset link';
      return;
    }
    const r = await postJson('/api/v1/auth/password-reset', { email });
    authDom.error.textContent = r.ok ? str(r.data && r.data.message) : errorOf(r).message;
  });

  authDom.signOut.addEventListener('click', async () => {
    try {
      if (auth.access) await postJson('/api/v1/auth/logout', {}, auth.access);
    } finally {
      forget();
      location.reload();
    }
  });

  // -------------------------------------------------------------------- boot

  async function start() {
    setConnection('connecting');
    setInterval(() => {
      dirtyAges = true;
      scheduleFrame();
    }, CONFIG.tickMs);
    setInterval(keepalive, 5000);
    // Back online after a network outage: skip the rest of the backoff.
    window.addEventListener('online', () => {
      if (reconnectTimer) {
        attempt = 0;
        connect();
      }
    });
    scheduleFrame();

    await signIn();
    applyEquipmentList(await loadEquipment());
    connect();
  }

  window.hydrowatch = {
    state,
    get connected() {
      return ws !== null && ws.readyState === WebSocket.OPEN;
    },
    // Debug/test helpers.
    formatValue,
    render: flush, // force a synchronous render instead of waiting for the next frame
  };

  start().catch((e) => {
    console.error('hydrowatch: start-up failed', e);
    showToast(`Start-up failed: ${e.message}`);
  });
})();
