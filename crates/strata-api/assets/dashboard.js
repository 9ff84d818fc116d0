/* Strata dashboard: reads the JSON API described in docs/api.md and draws every panel.
 * Plain ES2020, no build step; charts by uPlot (loaded before this file). */
'use strict';
(() => {
  const REALTIME_MS = 5000;
  const SLOW_MS = 60000;
  const TOP_EVENTS = 8;
  const COLORS = ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#8b5cf6', '#ec4899', '#84cc16'];
  const OTHER_COLOR = '#9ca3af';
  const NF = new Intl.NumberFormat('en-US');
  const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

  // ---- formatting -------------------------------------------------------------------
  const $ = (sel, root = document) => root.querySelector(sel);
  const panelEl = (name) => $(`[data-panel="${name}"]`);
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
  /** Escapes text and renders `backtick spans` as <code>. */
  const rich = (s) => esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');
  const isNum = (n) => typeof n === 'number' && Number.isFinite(n);
  const fmtInt = (n) => (isNum(n) ? NF.format(Math.round(n)) : '—');
  const fmtPct = (r) => (isNum(r) ? (r === 1 ? '100%' : `${(r * 100).toFixed(1)}%`) : '—');
  const signed = (x, digits = 1) => `${x > 0 ? '+' : x < 0 ? '−' : ''}${Math.abs(x).toFixed(digits)}`;
  const fmtLift = (r) => (isNum(r) ? `${signed(r * 100)}%` : '—');
  const fmtP = (p) => (!isNum(p) ? '—' : p < 0.0001 ? '<0.0001' : p < 0.01 ? p.toFixed(4) : p.toFixed(3));
  const pIs = (p) => (isNum(p) && p < 0.0001 ? 'p < 0.0001' : `p = ${fmtP(p)}`);
  /** Seconds as "0.8s", "42s", "5m 12s", "2h 5m", "3d 4h". */
  function fmtDur(s) {
    if (!isNum(s)) return '—';
    if (s < 10) return `${Math.round(s * 10) / 10}s`;
    s = Math.round(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (a, ua, b, ub) => `${a}${ua}${b ? ` ${b}${ub}` : ''}`;
    if (d) return two(d, 'd', h, 'h');
    if (h) return two(h, 'h', m, 'm');
    if (m) return two(m, 'm', sec, 's');
    return `${sec}s`;
  }
  const parseTime = (iso) => (iso ? Date.parse(iso) : NaN);
  const fmtClock = (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
  const fmtStamp = (iso) => (iso ? new Date(parseTime(iso)).toLocaleString('en-GB', { hour12: false }) : '');
  function fmtAgo(iso) {
    const t = parseTime(iso);
    if (!Number.isFinite(t)) return '—';
    let s = (Date.now() - t) / 1000;
    if (Math.abs(s) >= 60) s = Math.round(s / 60) * 60; // minutes are precise enough here
    return s >= 0 ? `${fmtDur(s)} ago` : `in ${fmtDur(-s)}`;
  }
  const dayMs = (d) => Date.parse(`${d}T00:00:00Z`);
  const addDays = (d, n) => new Date(dayMs(d) + n * 864e5).toISOString().slice(0, 10);
  const daysBetween = (a, b) => Math.round((dayMs(b) - dayMs(a)) / 864e5) + 1;
  const todayUtc = () => new Date().toISOString().slice(0, 10);
  const fmtDay = (d) => new Date(dayMs(d)).toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
  const fmtRange = (f, t) => `${fmtDay(f)} – ${fmtDay(t)}, ${t.slice(0, 4)} (${daysBetween(f, t)} days)`;
  const stat = (key, label, value, hint = '', cls = '') =>
    `<div class="stat ${cls}"><div class="label">${esc(label)}</div>` +
    `<div class="value"${key ? ` data-metric="${key}"` : ''}>${esc(value)}</div>` +
    `${hint ? `<div class="hint">${esc(hint)}</div>` : ''}</div>`;

  // ---- panel states -----------------------------------------------------------------
  function show(name, state, message = '') {
    const p = panelEl(name);
    $('.panel-message', p).innerHTML = state === 'ok' ? '' : rich(message);
    p.dataset.state = state;
    if (state === 'ok') p.classList.add('has-data');
    else if (state !== 'loading') p.classList.remove('has-data');
  }
  const setSub = (name, text) => { const s = $('.panel-sub', panelEl(name)); if (s) s.textContent = text; };
  /** Fills one panel; a drawing bug shows in that panel instead of breaking the others. */
  function draw(name, fn) {
    try {
      show(name, 'ok');
      const body = $('.panel-body', panelEl(name));
      const html = fn(body);
      if (typeof html === 'string') body.innerHTML = html;
    } catch (e) {
      show(name, 'error', `Could not draw this panel: ${e.message}`);
    }
  }
  /** A product answer with status "empty" shows its message; true when it did. */
  function emptyState(name, body, fallback) {
    if (body.status !== 'empty') return false;
    show(name, 'empty', body.message || fallback);
    return true;
  }

  // ---- fetching ---------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, status = 0) { super(message); this.status = status; }
  }
  async function api(path) {
    let res;
    try {
      res = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new ApiError(`Could not reach the Strata server (GET ${path}): ${e.message}`);
    }
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON: reported below */ }
    if (!res.ok) {
      const msg = body && typeof body.error === 'string' ? `GET ${path} failed: ${body.error} (HTTP ${res.status})`
        : `GET ${path} answered HTTP ${res.status} ${res.statusText}`.trim();
      throw new ApiError(msg, res.status);
    }
    if (!body || typeof body !== 'object') throw new ApiError(`GET ${path} did not answer JSON`, res.status);
    return body;
  }
  const generation = {};
  const busy = {};
  /** Fetches `path` and hands the answer to `render`; failures go to every panel in `panels`.
   * An answer overtaken by a newer request for the same key is dropped. */
  async function load(key, path, panels, render, onError) {
    if (busy[key] === path) return; // the same request is still running
    busy[key] = path;
    const gen = (generation[key] = (generation[key] || 0) + 1);
    try {
      const body = await api(path);
      if (generation[key] === gen) render(body);
    } catch (e) {
      if (generation[key] !== gen) return;
      const msg = (onError && onError(e)) || (e instanceof ApiError ? e.message : `Could not draw this panel: ${e.message}`);
      panels.forEach((n) => show(n, 'error', msg));
    } finally {
      if (busy[key] === path) delete busy[key];
      stamp();
    }
  }
  function stamp() {
    $('#updated').textContent = `Updated ${fmtClock(Date.now())}`;
    const errors = [...document.querySelectorAll('.panel[data-state="error"]')].map((p) => p.dataset.panel);
    const dot = $('#live-dot');
    dot.className = `dot ${errors.length ? 'bad' : 'ok'}`;
    dot.title = errors.length ? `Errors in: ${errors.join(', ')}` : 'Every panel loaded';
  }

  // ---- charts (uPlot) ---------------------------------------------------------------
  const charts = new Map();
  const resizer = new ResizeObserver((entries) => {
    for (const e of entries) {
      const c = charts.get(e.target);
      const w = Math.floor(e.contentRect.width);
      if (c && w > 0 && w !== c.u.width) c.u.setSize({ width: w, height: c.height });
    }
  });
  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC');
  const axis = (extra = {}) => ({
    stroke: '#6b7280', font: '11px system-ui, sans-serif', ticks: { show: false },
    grid: { stroke: '#eef0f3', width: 1 }, ...extra,
  });
  const yAxis = () => axis({ size: 54, values: (u, vals) => vals.map((v) => (v == null ? '' : NF.format(v))) });
  const dayAxis = () => axis({
    space: 56, incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400],
    values: (u, vals) => vals.map((v) => new Date(v * 1e3).toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' })),
  });
  const xSeries = (days) => ({
    value: (u, v) => (v == null ? '' : days ? fmtDay(new Date(v * 1e3).toISOString().slice(0, 10)) : fmtClock(v * 1e3).slice(0, 5)),
  });
  const line = (label, stroke, extra = {}) => ({
    label, stroke, width: 2, points: { show: false }, value: (u, v) => (v == null ? '' : NF.format(v)), ...extra,
  });
  /** Creates or updates the chart in `el`; it is rebuilt only when its series change. */
  function chart(el, opts, data) {
    const sig = opts.series.map((s) => s.label).join('\u0001');
    const old = charts.get(el);
    if (old && old.sig === sig) { old.u.setData(data); return; }
    if (old) old.u.destroy();
    el.textContent = '';
    const width = Math.max(240, Math.floor(el.clientWidth || el.parentElement.clientWidth));
    const u = new uPlot({ padding: [10, 10, 0, 0], cursor: { drag: { x: false, y: false } }, ...opts, width }, data, el);
    charts.set(el, { u, sig, height: opts.height });
    resizer.observe(el);
  }

  // ---- date range (kept in the URL hash) ----------------------------------------------
  let answered = null; // the range the server used, from /api/active-users
  let newestDay = null; // available.last of gold.daily_active_users
  function hashRange() {
    const p = new URLSearchParams(location.hash.slice(1));
    let f = p.get('from'), t = p.get('to');
    f = DATE_RE.test(f || '') ? f : null;
    t = DATE_RE.test(t || '') ? t : null;
    return f && t && f > t ? { from: t, to: f } : { from: f, to: t };
  }
  function rangeQuery() {
    const r = hashRange(), q = new URLSearchParams();
    if (r.from) q.set('from', r.from);
    if (r.to) q.set('to', r.to);
    const s = q.toString();
    return s ? `?${s}` : '';
  }
  function setRange(from, to) {
    if (from && to && from > to) [from, to] = [to, from];
    const next = from || to ? `from=${from || ''}&to=${to || ''}` : '';
    if (next === location.hash.slice(1)) return;
    if (next) location.hash = next; // hashchange reloads the product panels
    else { history.pushState(null, '', location.pathname + location.search); onRangeChange(); }
  }
  function syncRangeUi() {
    const r = hashRange();
    const from = r.from || (answered && answered.from) || '';
    const to = r.to || (answered && answered.to) || '';
    $('#range-from').value = from;
    $('#range-to').value = to;
    $('#range-from').max = to;
    $('#range-to').min = from;
    const chosen = Boolean(r.from || r.to);
    $('#range-reset').disabled = !chosen;
    $('#range-note').textContent = chosen ? '' : 'last 30 days with data';
    const anchor = newestDay || todayUtc();
    document.querySelectorAll('.presets button').forEach((b) => {
      b.classList.toggle('active', chosen && to === anchor && from === addDays(anchor, 1 - Number(b.dataset.days)));
    });
    $('#product-range').textContent = from && to ? fmtRange(from, to) : '';
  }
  function onRangeChange() {
    ['active-users', 'retention', 'funnels', 'sessions'].forEach((n) => show(n, 'loading', 'Loading…'));
    syncRangeUi();
    loadProduct();
  }
  function bindRange() {
    const changed = () => {
      const f = $('#range-from').value, t = $('#range-to').value;
      if (DATE_RE.test(f) && DATE_RE.test(t)) setRange(f, t);
    };
    $('#range-from').addEventListener('change', changed);
    $('#range-to').addEventListener('change', changed);
    $('#range').addEventListener('submit', (e) => { e.preventDefault(); changed(); });
    document.querySelectorAll('.presets button').forEach((b) => b.addEventListener('click', () => {
      const anchor = newestDay || todayUtc();
      setRange(addDays(anchor, 1 - Number(b.dataset.days)), anchor);
    }));
    $('#range-reset').addEventListener('click', () => setRange(null, null));
    $('#refresh').addEventListener('click', () => { loadRealtime(); loadSlow(); });
    window.addEventListener('hashchange', onRangeChange);
  }

  // ---- realtime -----------------------------------------------------------------------
  const NO_STREAM = 'This Strata process does not run the stream role, so there are no realtime figures. ' +
    'Start `strata serve` with every role, or add `--role stream`.';
  function loadRealtime() {
    return load('realtime', '/api/realtime?minutes=60', ['realtime-summary', 'realtime-events'], renderRealtime, (e) => {
      $('#freshness-badge').hidden = true;
      return e.status === 404 ? NO_STREAM : null;
    });
  }
  function renderRealtime(rt) {
    const series = Array.isArray(rt.series) ? rt.series : [];
    const eventsLastHour = series.reduce((n, p) => n + (p.events || 0), 0);
    draw('realtime-summary', () => {
      const badge = $('#freshness-badge');
      badge.hidden = false;
      badge.dataset.freshness = rt.freshness_ok ? 'ok' : 'late';
      badge.textContent = `${rt.freshness_ok ? 'Within SLA' : 'Behind SLA'} · ${fmtDur(rt.behind_seconds)} behind`;
      badge.title = `behind ${fmtDur(rt.behind_seconds)}, SLA ${fmtDur(rt.freshness_sla_seconds)}`;
      const fresh = rt.freshness_seconds == null ? 'no event processed yet'
        : `newest event received ${fmtDur(rt.freshness_seconds)} ago`;
      const au = rt.active_users || {};
      return `<p class="fresh-line">${esc(fresh)} · SLA ${esc(fmtDur(rt.freshness_sla_seconds))}</p>` +
        '<div class="stats">' +
        stat('active_5m', 'Active now', fmtInt(au.last_5m), 'last 5 minutes') +
        stat('active_today', 'Active today', fmtInt(au.today), 'UTC day') +
        stat('events_last_hour', 'Events', fmtInt(eventsLastHour), `last ${rt.minutes || 60} minutes`) +
        stat('behind_seconds', 'Behind ingest', fmtDur(rt.behind_seconds), `freshness ${fmtDur(rt.freshness_seconds)}`,
          rt.freshness_ok ? 'ok' : 'bad') +
        stat('too_late', 'Too late', fmtInt(rt.too_late), 'after their window closed', rt.too_late > 0 ? 'warn' : '') +
        '</div><dl class="kv">' +
        `<dt>Watermark</dt><dd title="${esc(rt.watermark)}">${esc(rt.watermark ? fmtClock(parseTime(rt.watermark)) : '—')}` +
        ` <span class="muted">(lateness allowed ${esc(fmtDur(rt.allowed_lateness_seconds))})</span></dd>` +
        `<dt>Counted</dt><dd>${fmtInt(rt.events_counted)} events · ${fmtInt(rt.duplicates)} duplicates · ${fmtInt(rt.dropped)} dropped</dd>` +
        `<dt>Active</dt><dd>${fmtInt(au.last_30m)} in 30 min · ${fmtInt(au.last_60m)} in 60 min</dd>` +
        `<dt>Checkpoint</dt><dd>${esc(fmtAgo(rt.last_checkpoint_at))} · ${fmtInt(rt.lag_records)} records behind the log</dd></dl>`;
    });
    if (!series.length) {
      show('realtime-events', 'empty', `No events in the last ${rt.minutes || 60} minutes. ` +
        'Send events to `/v1/track` (or run `strata demo`) and they show here within seconds.');
      return;
    }
    draw('realtime-events', (body) => {
      const totals = new Map();
      series.forEach((p) => totals.set(p.event_name, (totals.get(p.event_name) || 0) + p.events));
      // The server sums names beyond its top 50 into '(other)': it joins 'Other' here.
      const names = [...totals.keys()].filter((n) => n !== '(other)')
        .sort((a, b) => totals.get(b) - totals.get(a) || a.localeCompare(b));
      const top = names.length > TOP_EVENTS + 1 ? names.slice(0, TOP_EVENTS) : names;
      const labels = top.length < names.length || totals.has('(other)') ? [...top, 'Other'] : top;
      const end = Math.floor(parseTime(rt.now) / 60000) * 60;
      const first = Math.min(...series.map((p) => parseTime(p.minute) / 1000), end - ((rt.minutes || 60) - 1) * 60);
      const xs = [];
      for (let t = first; t <= end; t += 60) xs.push(t);
      const ys = labels.map(() => new Array(xs.length).fill(0));
      series.forEach((p) => {
        const i = Math.round((parseTime(p.minute) / 1000 - first) / 60);
        const k = top.includes(p.event_name) ? top.indexOf(p.event_name) : labels.length - 1;
        if (i >= 0 && i < xs.length) ys[k][i] += p.events;
      });
      setSub('realtime-events', `${fmtInt(eventsLastHour)} events · ${fmtInt(names.length + (rt.folded_event_names || 0))} event names`);
      chart($('.chart', body), {
        height: 210,
        series: [xSeries(false), ...labels.map((l, i) => line(l, i < top.length ? COLORS[i % COLORS.length] : OTHER_COLOR, { width: 1.5 }))],
        axes: [axis({ space: 60, values: (u, vals) => vals.map((v) => fmtClock(v * 1e3).slice(0, 5)) }), yAxis()],
        scales: { y: { range: (u, min, max) => [0, Math.max(5, max * 1.08)] } },
      }, [xs, ...ys]);
    });
  }

  // ---- product ------------------------------------------------------------------------
  function loadProduct() {
    const q = rangeQuery();
    load('active-users', `/api/active-users${q}`, ['active-users'], renderActiveUsers);
    load('retention', `/api/retention${q}`, ['retention'], renderRetention);
    load('funnels', `/api/funnels${q}`, ['funnels'], renderFunnels);
    load('sessions', `/api/sessions${q}`, ['sessions'], renderSessions);
  }
  const rangeSub = (b) => (b.from && b.to ? `${b.from} – ${b.to}` : '');
  function renderActiveUsers(b) {
    answered = b.from && b.to ? { from: b.from, to: b.to } : answered;
    newestDay = (b.available && b.available.last) || newestDay;
    syncRangeUi();
    setSub('active-users', rangeSub(b));
    if (emptyState('active-users', b, 'No active users in this range.')) return;
    draw('active-users', (body) => {
      const s = b.summary || {};
      const days = b.days || [];
      const last = days.length ? days[days.length - 1].date : b.to;
      $('.stats', body).innerHTML =
        stat('dau', 'DAU', fmtInt(s.dau), `on ${fmtDay(last)}`) +
        stat('wau', 'WAU', fmtInt(s.wau), '7 days to that day') +
        stat('mau', 'MAU', fmtInt(s.mau), '30 days to that day') +
        stat('new_users', 'New users', fmtInt(s.new_users), 'in the range') +
        stat('', 'Average DAU', fmtInt(s.avg_dau), `over ${days.length} days`);
      chart($('.chart', body), {
        height: 220, tzDate: utc,
        series: [xSeries(true), line('DAU', COLORS[0]), line('WAU', COLORS[1]), line('MAU', COLORS[2])],
        axes: [dayAxis(), yAxis()],
        scales: { y: { range: (u, min, max) => [0, Math.max(5, max * 1.08)] } },
      }, [days.map((d) => dayMs(d.date) / 1000), days.map((d) => d.dau), days.map((d) => d.wau), days.map((d) => d.mau)]);
    });
  }

  function heatCell(rate, title) {
    if (!isNum(rate)) return '<td class="none"></td>';
    const a = 0.06 + 0.94 * Math.sqrt(Math.max(0, Math.min(1, rate)));
    const fg = a > 0.55 ? '#fff' : '#1f2937';
    return `<td style="background:rgba(79,70,229,${a.toFixed(3)});color:${fg}" title="${esc(`${fmtPct(rate)}: ${title}`)}">${rate === 1 ? '100' : (rate * 100).toFixed(1)}</td>`;
  }
  function renderRetention(b) {
    setSub('retention', rangeSub(b));
    if (emptyState('retention', b, 'No retention cohorts in this range.')) return;
    draw('retention', () => {
      const cohorts = b.cohorts || [];
      // Columns up to the oldest cohort's age: a week of data shows days 0 to 6, not 28 blanks.
      const reach = Math.max(0, (b.average || []).length - 1);
      const max = Math.min(isNum(b.max_offset) ? b.max_offset : 28, reach);
      const offsets = Array.from({ length: max + 1 }, (_, i) => i);
      const avg = new Map((b.average || []).map((a) => [a.day_offset, a]));
      const total = cohorts.reduce((n, c) => n + (c.cohort_size || 0), 0);
      setSub('retention', `${cohorts.length} cohorts · ${rangeSub(b)}`);
      const head = `<tr><th class="row" rowspan="2">Cohort</th><th class="num" rowspan="2">Users</th>` +
        `<th class="days" colspan="${offsets.length}">% of the cohort active again, by days since its first day</th></tr>` +
        `<tr>${offsets.map((n) => `<th>${n}</th>`).join('')}</tr>`;
      const avgRow = `<tr class="avg" data-cohort="average"><td class="row">All cohorts</td><td class="size">${fmtInt(total)}</td>` +
        offsets.map((n) => { const a = avg.get(n); return heatCell(a && a.rate, a ? `day ${n}: ${a.cohorts} cohorts` : ''); }).join('') + '</tr>';
      const rows = cohorts.map((c) => `<tr data-cohort="${esc(c.cohort_date)}"><td class="row">${esc(fmtDay(c.cohort_date))}</td>` +
        `<td class="size">${fmtInt(c.cohort_size)}</td>` +
        offsets.map((n) => heatCell((c.rates || [])[n], `day ${n}: ${fmtInt((c.retained || [])[n])} of ${fmtInt(c.cohort_size)} users`)).join('') +
        '</tr>').join('');
      return `<div class="heat-wrap"><table class="heat" data-table="retention"><thead>${head}</thead><tbody>${avgRow}${rows}</tbody></table></div>` +
        '<p class="legend-note">A cohort is the users first seen on that UTC day; each cell is the percent of them active ' +
        'N days later. Younger cohorts have fewer days; “All cohorts” weighs every cohort that reaches the day by its size.</p>';
    });
  }

  function renderFunnels(b) {
    setSub('funnels', rangeSub(b));
    if (emptyState('funnels', b, 'No funnel entries in this range.')) return;
    const funnels = b.funnels || [];
    if (!funnels.length) {
      show('funnels', 'empty', 'No funnel is configured: add a `[[funnels]]` section to the config.');
      return;
    }
    draw('funnels', () => funnels.map((f) => {
      const steps = f.steps || [];
      const bars = steps.map((s, i) => {
        const conv = i === 0 ? '' : `<div class="step-conv">↓ <b>${fmtPct(s.conversion_from_previous)}</b> of the previous step</div>`;
        const w = isNum(s.conversion_from_start) ? Math.max(0, Math.min(1, s.conversion_from_start)) * 100 : 0;
        return `${conv}<div class="bar-row" data-step="${s.step}"><span class="name" title="${esc(s.name)}">${s.step}. ${esc(s.name)}</span>` +
          `<div class="bar-track"><div class="bar-fill" style="width:${w.toFixed(2)}%"></div></div>` +
          `<span class="figs">${fmtInt(s.users)}<span>${fmtPct(s.conversion_from_start)}</span></span></div>`;
      }).join('');
      return `<div class="funnel" data-funnel="${esc(f.name)}"><div class="funnel-head"><h4>${esc(f.name)}</h4>` +
        `<span class="overall">within ${esc(f.window || fmtDur(f.window_seconds))} · overall ` +
        `<b data-metric="overall_conversion">${fmtPct(f.overall_conversion)}</b></span></div>${bars}</div>`;
    }).join(''));
  }

  function renderSessions(b) {
    setSub('sessions', rangeSub(b));
    if (emptyState('sessions', b, 'No sessions in this range.')) return;
    draw('sessions', (body) => {
      const s = b.summary || {};
      const days = b.days || [];
      $('.stats', body).innerHTML =
        stat('sessions', 'Sessions', fmtInt(s.sessions), 'in the range') +
        stat('median_duration', 'Median length', fmtDur(s.median_duration_s)) +
        stat('', 'Events / session', isNum(s.avg_events) ? s.avg_events.toFixed(1) : '—');
      chart($('.chart', body), {
        height: 150, tzDate: utc, legend: { show: false },
        series: [xSeries(true), line('Sessions', COLORS[1], {
          width: 1, fill: 'rgba(14,165,233,0.75)', paths: uPlot.paths.bars({ size: [0.7, 28] }),
        })],
        axes: [dayAxis(), yAxis()],
        scales: { x: { time: true, range: (u, min, max) => [min - 43200, max + 43200] },
          y: { range: (u, min, max) => [0, Math.max(5, max * 1.1)] } },
      }, [days.map((d) => dayMs(d.date) / 1000), days.map((d) => d.sessions)]);
      const plats = b.by_platform || [];
      $('.bars', body).innerHTML = '<h4>By platform</h4>' + plats.map((p) => {
        const w = isNum(p.share) ? Math.max(0, Math.min(1, p.share)) * 100 : 0;
        return `<div class="bar-row" data-platform="${esc(p.platform)}" title="median session ${esc(fmtDur(p.median_duration_s))}">` +
          `<span class="name">${esc(p.platform)}</span><div class="bar-track"><div class="bar-fill" style="width:${w.toFixed(2)}%"></div></div>` +
          `<span class="figs">${fmtInt(p.sessions)}<span>${fmtPct(p.share)}</span></span></div>`;
      }).join('');
    });
  }

  function loadExperiments() { load('experiments', '/api/experiments', ['experiments'], renderExperiments); }
  function renderExperiments(b) {
    if (emptyState('experiments', b, 'No experiment results yet.')) return;
    const exps = b.experiments || [];
    if (!exps.length) {
      show('experiments', 'empty', 'No experiment has exposures yet: track `Experiment Viewed` events with `experiment_id` and `variation_id`.');
      return;
    }
    const warned = exps.filter((e) => e.srm_warning).length;
    setSub('experiments', `all time · ${exps.length} experiments${warned ? ` · ${warned} with SRM` : ''}`);
    draw('experiments', () => exps.map((e) => {
      const srm = e.srm_warning
        ? `<div class="srm" data-srm-warning role="alert"><strong>⚠ Sample ratio mismatch</strong><span>Exposures are split far ` +
          `from evenly (SRM ${esc(pIs(e.srm_p_value))}, threshold ${esc(b.srm_threshold ?? 0.001)}): the assignment is probably ` +
          'broken. Do not trust these results.</span></div>' : '';
      const rows = (e.variants || []).map((v) => {
        const sig = isNum(v.p_value) && v.p_value < 0.05;
        const cls = !v.is_control && sig && isNum(v.lift) ? (v.lift >= 0 ? 'pos' : 'neg') : '';
        const ci = isNum(v.ci_low) && isNum(v.ci_high) ? `${signed(v.ci_low * 100)} to ${signed(v.ci_high * 100)} pp` : '—';
        return `<tr data-variant="${esc(v.variant)}"><td>${esc(v.variant)}${v.is_control ? '<span class="pill control">control</span>' : ''}</td>` +
          `<td class="num">${fmtInt(v.exposed_users)}</td><td class="num">${fmtInt(v.converted_users)}</td>` +
          `<td class="num">${fmtPct(v.conversion_rate)}</td><td class="num ${cls}">${fmtLift(v.lift)}</td>` +
          `<td class="num">${ci}</td><td class="num">${sig ? `<b>${fmtP(v.p_value)}</b>` : fmtP(v.p_value)}</td></tr>`;
      }).join('');
      return `<div class="experiment" data-experiment="${esc(e.experiment_id)}"><div class="exp-head"><h4>${esc(e.experiment_id)}</h4>` +
        `<span>${fmtInt(e.exposed_users)} exposed · SRM ${esc(pIs(e.srm_p_value))}</span></div>${srm}` +
        '<table class="data"><thead><tr><th>Variant</th><th class="num">Exposed</th><th class="num">Converted</th>' +
        '<th class="num">Rate</th><th class="num">Lift</th><th class="num" title="95% interval of the rate difference to the control, in percentage points">95% CI</th>' +
        `<th class="num">p-value</th></tr></thead><tbody>${rows}</tbody></table></div>`;
    }).join(''));
  }

  // ---- pipeline -----------------------------------------------------------------------
  const LAYERS = ['bronze', 'silver', 'gold', 'realtime'];
  const layerOf = (t) => String(t).split('.')[0];
  const shortName = (t) => String(t).split('.').slice(1).join('.') || String(t);
  const layerPill = (t) => `<span class="pill ${esc(layerOf(t))}">${esc(layerOf(t))}</span>`;
  function loadPipeline() { load('pipeline', '/api/pipeline', ['runs', 'tables', 'quarantine', 'sources'], renderPipeline); }
  function renderPipeline(b) {
    const runs = b.runs || {};
    const models = runs.models || [];
    const by = runs.by_state || {};
    if (!b.runs) {
      show('runs', 'empty', 'This Strata process has no run store open, so it reports no model runs. ' +
        '`strata status` shows them where the scheduler runs.');
    } else if (!models.length || !Object.values(by).some((n) => n > 0)) {
      show('runs', 'empty', 'No model has run yet. The scheduler builds silver and gold on its schedule; to build them now, ' +
        `run \`strata backfill all --from ${addDays(todayUtc(), -7)} --to ${todayUtc()}\`.`);
    } else draw('runs', () => {
      setSub('runs', `${runs.store || '?'} run store · ${fmtInt(runs.live_workers)} live worker${runs.live_workers === 1 ? '' : 's'}`);
      const counts = '<div class="stats small">' +
        stat('succeeded', 'Succeeded', fmtInt(by.succeeded), 'partitions', 'ok') +
        stat('running', 'Running', fmtInt(by.running)) +
        stat('failed', 'Failed', fmtInt(by.failed), '', by.failed > 0 ? 'bad' : '') +
        stat('blocked', 'Blocked', fmtInt(by.blocked), '', by.blocked > 0 ? 'warn' : '') +
        stat('queued', 'Queued', fmtInt(by.queued)) + '</div>';
      const rows = models.map((m) => {
        const p = m.partitions_by_state || {};
        const total = Object.values(p).reduce((n, x) => n + (x || 0), 0);
        const flags = ['failed', 'blocked', 'running', 'queued'].filter((k) => p[k] > 0)
          .map((k) => ` <span class="pill ${k}">${p[k]} ${k}</span>`).join('');
        return `<tr data-model="${esc(m.model)}"><td>${layerPill(m.model)} ${esc(shortName(m.model))}</td>` +
          `<td title="${esc(fmtStamp(m.last_success_at))}">${m.last_success_at ? esc(fmtAgo(m.last_success_at)) : '<span class="muted">never</span>'}</td>` +
          `<td class="num">${esc(fmtDur(m.freshness_seconds))}</td><td class="num">${fmtInt(p.succeeded)} / ${fmtInt(total)}${flags}</td>` +
          `<td title="${esc(fmtStamp(m.next_scheduled_at))}">${m.next_scheduled_at ? esc(fmtAgo(m.next_scheduled_at)) : '—'}</td></tr>`;
      }).join('');
      const problems = models.flatMap((m) => (m.problems || []).map((p) => ({ model: m.model, ...p })));
      const probs = problems.length ? `<div class="problems"><h4>Problems (${problems.length})</h4>` + problems.map((p) =>
        `<div class="problem ${esc(p.state)}"><b>${esc(p.model)}</b> · ${esc(p.partition)} <span class="pill ${esc(p.state)}">${esc(p.state)}</span>` +
        ` <span class="muted">after ${fmtInt(p.attempts)} attempt${p.attempts === 1 ? '' : 's'}</span><div class="err">${esc(p.error || 'no error text')}</div></div>`).join('') + '</div>' : '';
      return counts + '<div class="scroll"><table class="data"><thead><tr><th>Model</th><th>Last success</th><th class="num">Freshness</th>' +
        `<th class="num">Partitions ok / all</th><th>Next run</th></tr></thead><tbody>${rows}</tbody></table></div>${probs}`;
    });

    const tables = (b.tables || []).slice().sort((x, y) =>
      LAYERS.indexOf(layerOf(x.table)) - LAYERS.indexOf(layerOf(y.table)) || String(x.table).localeCompare(y.table));
    if (!tables.length) show('tables', 'empty', 'The lake has no tables yet: start `strata serve` and send events.');
    else draw('tables', () => {
      setSub('tables', `${tables.length} tables`);
      const rows = tables.map((t) => `<tr data-lake-table="${esc(t.table)}"><td title="${esc(t.table)}">${layerPill(t.table)} ${esc(shortName(t.table))}</td>` +
        `<td class="num" title="last commit ${esc(fmtStamp(t.last_commit_at))}">${esc(fmtDur(t.freshness_seconds))}</td>` +
        `<td class="num">${fmtInt(t.version)}</td><td class="num">${fmtInt(t.files)}</td>` +
        `<td class="num"${t.rows == null ? ' title="no row statistics in the Delta log"' : ''}>${fmtInt(t.rows)}</td></tr>`).join('');
      return '<div class="scroll"><table class="data"><thead><tr><th>Table</th><th class="num" title="time since its last commit">Freshness</th>' +
        `<th class="num">Version</th><th class="num">Files</th><th class="num">Rows</th></tr></thead><tbody>${rows}</tbody></table></div>`;
    });

    const sources = b.sources || [];
    if (!sources.length) show('sources', 'empty', 'No source is configured.');
    else draw('sources', () => {
      setSub('sources', 'landed since yesterday');
      const rows = sources.map((s) => `<tr data-source="${esc(s.name)}"><td>${esc(s.name)}</td><td class="mono">${esc(s.kind)}</td>` +
        `<td>${layerPill(s.lands_in)} ${esc(shortName(s.lands_in))}</td>` +
        `<td class="num">${s.rows_since_yesterday == null ? '<span class="muted">no table yet</span>' : fmtInt(s.rows_since_yesterday)}</td>` +
        `<td title="${esc(fmtStamp(s.last_received_at))}">${s.last_received_at ? esc(fmtAgo(s.last_received_at)) : '—'}</td></tr>`).join('');
      return '<div class="scroll"><table class="data"><thead><tr><th>Source</th><th>Kind</th><th>Lands in</th>' +
        `<th class="num">Rows</th><th>Last row</th></tr></thead><tbody>${rows}</tbody></table></div>`;
    });

    draw('quarantine', () => {
      const q = b.quarantine || {};
      const late = b.too_late ? b.too_late.realtime : null;
      const reasons = q.by_reason || [];
      const list = reasons.length ? '<table class="data"><thead><tr><th>Reason</th><th class="num">Rows</th><th>Last seen</th></tr></thead><tbody>' +
        reasons.map((r) => `<tr data-reason="${esc(r.reason)}"><td class="mono">${esc(r.reason)}</td><td class="num">${fmtInt(r.rows)}</td>` +
          `<td title="${esc(fmtStamp(r.last_seen))}">${esc(fmtAgo(r.last_seen))}</td></tr>`).join('') + '</tbody></table>'
        : '<p class="muted">Nothing quarantined: every message so far was valid.</p>';
      return '<div class="stats">' +
        stat('quarantine_total', 'Quarantined rows', fmtInt(q.total), 'in bronze.quarantine', q.total > 0 ? 'warn' : '') +
        stat('too_late', 'Too late', late == null ? 'n/a' : fmtInt(late), late == null ? 'stream role not running' : 'realtime, after window closed') +
        `</div>${list}`;
    });
  }

  // ---- start --------------------------------------------------------------------------
  function loadSlow() { loadProduct(); loadExperiments(); loadPipeline(); }
  function start() {
    if (typeof uPlot === 'undefined') {
      document.querySelectorAll('.panel').forEach((p) => show(p.dataset.panel, 'error', 'The chart library (`/assets/uPlot.iife.min.js`) did not load.'));
      return;
    }
    bindRange();
    syncRangeUi();
    loadRealtime();
    loadSlow();
    setInterval(loadRealtime, REALTIME_MS);
    setInterval(loadSlow, SLOW_MS);
  }
  start();
})();
