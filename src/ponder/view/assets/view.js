// ponder view: draws the views that ponder.view.model worked out. Everything shown came from a
// model or a client, so text only ever goes into the page through textContent and attributes
// (never innerHTML), and this script loads nothing: the data is in the page.
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('ponder-data').textContent);
  var state = { view: 0, selected: null, collapsed: {}, hidePruned: false, box: null, open: {} };
  var SVG = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#3451b2', '#e8590c', '#0c8599', '#9c36b5', '#5c940d', '#c2255c', '#1098ad',
    '#f08c00'];

  // -- helpers ------------------------------------------------------------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }
  function sv(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'on') Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
      else if (k === 'text') node.textContent = String(v);
      else node.setAttribute(k, String(v));
    });
  }
  function add(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function num(x, digits) {
    if (x === null || x === undefined || typeof x !== 'number') return '—';
    return digits === undefined ? x.toLocaleString('en-US') : x.toFixed(digits);
  }
  function short(text, most) {
    var flat = String(text === null || text === undefined ? '' : text).replace(/\s+/g, ' ').trim();
    return flat.length > most ? flat.slice(0, most - 1) + '…' : flat;
  }
  function view() { return DATA.views[state.view] || DATA.views[0]; }
  function nodeById(v, id) { return v._byId[id]; }
  function dataOf(v, id) { var n = v._byId[id]; return (n && n.data) || {}; }
  function textOf(v, c) { return c.text !== undefined ? c.text : String(dataOf(v, c.text_node).text || ''); }
  function index(v) {
    if (v._byId) return;
    v._byId = {}; v._kids = {};
    v.nodes.forEach(function (n) {
      v._byId[n.id] = n;
      (v._kids[n.parent] = v._kids[n.parent] || []).push(n);
    });
  }
  function card(title, hint) {
    var h = el('h2', null, title, hint ? el('span', { class: 'hint' }, hint) : null);
    return el('section', { class: 'card' }, h);
  }
  function clip(text, cls) {
    var pre = el('pre', { class: 'clip ' + (cls || '') }, text);
    var more = el('button', { class: 'link', text: 'show all' });
    more.addEventListener('click', function () {
      pre.classList.toggle('clip');
      more.textContent = pre.classList.contains('clip') ? 'show all' : 'show less';
    });
    return [pre, String(text).split('\n').length > 8 || String(text).length > 700 ? more : null];
  }
  function usageLine(u) {
    if (!u) return null;
    return el('span', { class: 'faint' }, num(u.prompt_tokens) + ' + ' + num(u.completion_tokens) +
      ' tokens' + (u.calls ? ' · ' + u.calls + ' call' + (u.calls > 1 ? 's' : '') : '') +
      (u.seconds ? ' · ' + num(u.seconds, 2) + ' s' : ''));
  }
  function kvTable(obj, skip) {
    var rows = Object.keys(obj || {}).filter(function (k) { return !(skip || []).includes(k); })
      .map(function (k) {
        var v = obj[k];
        var shown = typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
        return el('tr', null, el('td', null, k), el('td', { class: 'mono' }, short(shown, 400)));
      });
    return rows.length ? el('table', { class: 'kv' }, rows) : null;
  }
  function statusPill(status) {
    var cls = { kept: 'good', answer: 'good', expanded: 'good', pruned: 'bad', rollout: '' }[status];
    return status ? el('span', { class: 'pill ' + (cls || '') }, status) : null;
  }
  function groupColor(v, c) {
    if (!c || c.group === undefined) return '#868e96';
    return PALETTE[c.group % PALETTE.length];
  }

  // -- several models: one colour per model, the same everywhere on the page ------------------
  var MODEL_COLORS = ['#0b7285', '#d9480f', '#7048e8', '#2b8a3e', '#c2255c', '#1864ab', '#8f5b00',
    '#495057'];
  function modelRows(v) { return (v.models && v.models.rows) || []; }
  function many(v) { return modelRows(v).length > 1; }
  function modelColor(v, name) {
    var rows = modelRows(v);
    for (var i = 0; i < rows.length; i++) if (rows[i].name === name) return MODEL_COLORS[i % MODEL_COLORS.length];
    return '#868e96';
  }
  function modelBadge(v, name) {
    if (name === null || name === undefined || name === '') return null;
    var row = modelRows(v).filter(function (r) { return r.name === name; })[0];
    var dot = el('i');
    dot.style.background = modelColor(v, name);
    var badge = el('span', { class: 'mbadge', 'data-model': name, title: row && row.roles.length ?
      name + ' (' + row.roles.join(', ') + ')' : name }, dot, short(name, 40));
    badge.style.borderColor = modelColor(v, name);
    return badge;
  }
  function digits3(x) {  // three significant digits, no trailing zeros after the point
    var t = x.toPrecision(3);
    return t.indexOf('.') < 0 ? t : t.replace(/0+$/, '').replace(/\.$/, '');
  }
  function si(x, unit) {
    if (x === null || x === undefined) return '—';
    var steps = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (var i = 0; i < steps.length; i++) {
      if (Math.abs(x) >= steps[i][0]) return digits3(x / steps[i][0]) + ' ' + steps[i][1] + unit;
    }
    return String(x) + (unit ? ' ' + unit : '');
  }
  function params(x) {
    if (x === null || x === undefined) return '—';
    return x >= 1e9 ? digits3(x / 1e9) + 'B' : x >= 1e6 ? Math.round(x / 1e6) + 'M' : num(x);
  }
  function votes(n) { return num(n) + ' vote' + (n === 1 ? '' : 's'); }
  function answerText(a) { return a === null || a === undefined ? 'no answer' : short(a, 40); }
  function who(c) {
    if (c.aggregator) return 'aggregator';
    if (c.agent !== undefined) return 'agent ' + c.agent + (c.round !== undefined ? ' · round ' + c.round : '');
    if (c.layer !== undefined) return 'layer ' + c.layer + (c.proposer !== undefined ? ' · proposer ' + c.proposer : '');
    return null;
  }

  // -- the page ----------------------------------------------------------------------------
  function render() {
    var app = document.getElementById('app');
    var scroll = window.scrollY;
    while (app.firstChild) app.removeChild(app.firstChild);
    var v = view();
    index(v);
    document.title = 'ponder · ' + short(v.question || v.label, 70);
    app.appendChild(el('header', { class: 'top' },
      el('div', { class: 'brand' }, 'ponder ', el('span', null, '· see the thinking')),
      el('span', { class: 'pill' }, v.strategy),
      v.model ? el('span', { class: 'muted' }, v.model) : null,
      v.stop_reason && v.stop_reason !== 'done' ?
        el('span', { class: 'pill warn' }, 'stopped: ' + v.stop_reason) : null,
      v.status === 'running' ? el('span', { class: 'pill' }, 'running') : null,
      DATA.title ? el('span', { class: 'faint' }, DATA.title) : null));
    if (DATA.views.length > 1) {
      app.appendChild(el('nav', { class: 'tabs' }, DATA.views.map(function (w, i) {
        return el('button', { class: i === state.view ? 'on' : null, text: w.label, on: {
          click: function () { choose(i); } } });
      })));
    }
    app.appendChild(hero(v));
    var SECTIONS = { answers: answers, tree: tree, timeline: timeline, programs: programs,
      confidence: confidence, waves: waves, decisions: decisions, calls: calls, models: models,
      cascade: cascade, verdicts: verdicts, debate: debate, layers: layers, particles: particles };
    v.sections.forEach(function (name) { if (SECTIONS[name]) app.appendChild(SECTIONS[name](v)); });
    app.appendChild(configCard(v));
    app.appendChild(el('footer', null, DATA.generator || 'ponder'));
    window.scrollTo(0, scroll);
    if (state.selected !== null && nodeById(v, state.selected)) showNode(v, state.selected);
  }

  function choose(i) {
    state.view = i; state.selected = null; state.collapsed = {}; state.box = null;
    closeDrawer();
    history.replaceState(null, '', '#view=' + i);
    render();
  }

  function hero(v) {
    var section = card('Question');
    section.appendChild(el('div', { class: 'question' }, v.question || '(the question is not recorded)'));
    var multi = v.answer && (v.answer.indexOf('\n') >= 0 || v.answer.length > 60);
    var verdict = v.correct === true ? el('span', { class: 'pill good' }, '✓ correct') :
      v.correct === false ? el('span', { class: 'pill bad' }, '✗ wrong') : null;
    var u = v.usage || {};
    section.appendChild(el('div', { class: 'hero' },
      el('div', null,
        el('div', { class: 'label' }, 'Answer'),
        el('div', { class: 'answer' + (multi ? ' code' : '') + (v.answer === null ? ' none' : ''),
          id: 'final-answer' }, v.answer === null ? 'no answer' : v.answer),
        el('div', null, verdict, v.gold !== null && v.gold !== undefined ?
          el('span', { class: 'muted' }, '  gold answer: ', el('b', null, v.gold)) : null)),
      el('div', { class: 'costs' + (many(v) && v.models.flops !== null ? ' four' : '') },
        el('div', null, el('b', null, num(u.total_tokens)), el('span', null,
          num(u.prompt_tokens) + ' prompt + ' + num(u.completion_tokens) + ' completion tokens')),
        el('div', null, el('b', null, num(u.calls)), el('span', null, 'calls')),
        el('div', null, el('b', null, num(u.seconds, 2) + ' s'), el('span', null,
          v.usage_from_trace ? 'summed over calls' : 'wall time')),
        many(v) && v.models.flops !== null ? el('div', null, el('b', { id: 'total-flops' },
          si(v.models.flops, 'FLOPs')), el('span', null, modelRows(v).length + ' models')) : null)));
    if (v.note) section.appendChild(el('div', { class: 'note' }, v.note));
    if (v.status === 'running') {
      section.appendChild(el('div', { class: 'live', id: 'live' },
        'live: the search is running' + (v.phase ? ' — ' + v.phase : '') + '; this page updates'));
    } else if (v.status && v.status !== 'done') {
      section.appendChild(el('div', { class: 'note' }, 'the run ended: ' + v.status));
    }
    return section;
  }

  function configCard(v) {
    var section = card('Configuration');
    var table = kvTable(v.config, ['system']);
    var det = el('details', null, el('summary', null, Object.keys(v.config || {}).length +
      ' settings of ' + v.strategy), table,
      v.config && v.config.system ? [el('h4', { class: 'muted' }, 'system prompt'),
        el('pre', null, v.config.system)] : null);
    section.appendChild(det);
    return section;
  }

  // -- answers: candidates grouped by equivalent answer --------------------------------------
  function answers(v) {
    var section = card('Answers', v.candidates.length + ' candidate' +
      (v.candidates.length === 1 ? '' : 's') + ' in ' + v.groups.length + ' group' +
      (v.groups.length === 1 ? '' : 's') + ' · click a group for its candidates');
    var most = Math.max.apply(null, v.groups.map(function (g) { return g.weight || 0; }).concat([1e-9]));
    v.groups.forEach(function (g, rank) {
      var key = v.label + ':g' + rank;
      var members = el('div', { class: 'members' }, g.members.map(function (i) {
        return member(v, v.candidates[i]);
      }));
      if (!state.open[key]) members.hidden = true;
      var stats = [g.count + ' ×'];
      if (g.weight !== null && g.weight !== undefined && g.weight !== g.count)
        stats.push('weight ' + num(g.weight, 3));
      if (g.share !== null && g.share !== undefined) stats.push(Math.round(g.share * 100) + '%');
      if (g.best_score !== null && g.best_score !== undefined)
        stats.push('best score ' + num(g.best_score, 3));
      var bar = el('div', { class: 'bar' }, el('div'));
      bar.firstChild.style.width = (100 * (g.weight || 0) / most).toFixed(1) + '%';
      var head = el('div', { class: 'ghead' + (many(v) || g.vote ? ' wide' : ''), on: { click: function () {
        members.hidden = !members.hidden; state.open[key] = !members.hidden; } } },
        el('div', null, el('span', { class: 'ganswer' }, g.answer === null ? '(no answer)' :
          short(g.answer, 120)), ' ',
          g.winner ? el('span', { class: 'pill gold winner-badge' }, '★ chosen') : null, ' ',
          g.correct === true ? el('span', { class: 'pill good' }, '✓') :
            g.correct === false ? el('span', { class: 'pill bad' }, '✗') : null,
          g.vote ? el('span', { class: 'pill vote' }, g.vote) :
            g.voted ? null : el('span', { class: 'pill' }, 'did not vote'),
          many(v) ? el('span', { class: 'gmodels' }, (g.models || []).map(function (m) {
            return [modelBadge(v, m[0]), m[1] > 1 ? el('span', { class: 'faint' }, '×' + m[1]) : null];
          })) : null),
        bar, el('div', { class: 'gstats' }, stats.join(' · ')));
      section.appendChild(el('div', { class: 'group' + (g.winner ? ' winner' : '') +
        (g.voted ? '' : ' novote'), 'data-answer': g.answer === null ? '' : g.answer }, head, members));
    });
    return section;
  }

  function member(v, c) {
    var text = textOf(v, c);
    var body = el('div', { hidden: 'hidden' });
    var shown = false;
    var toggle = el('button', { class: 'link', text: 'full text' });
    toggle.addEventListener('click', function () {
      if (!shown) {
        add(body, el('pre', null, text));
        if (c.program) add(body, [el('div', { class: 'muted' }, 'program'), el('pre', null, c.program)]);
        if (c.output) add(body, [el('div', { class: 'muted' }, 'output'), el('pre', null, c.output)]);
        if (c.error) add(body, [el('div', { class: 'why' }, 'error'), el('pre', null, c.error)]);
        shown = true;
      }
      body.hidden = !body.hidden;
      toggle.textContent = body.hidden ? 'full text' : 'hide text';
    });
    var bits = [el('b', null, '#' + (c.index + 1)), many(v) ? modelBadge(v, c.model) : null,
      who(c) ? el('span', { class: 'muted' }, who(c)) : null,
      c.winner ? el('span', { class: 'pill gold' }, '★ winner') : null,
      c.score !== null ? el('span', null, 'score ' + num(c.score, 3)) : null,
      el('span', { class: 'faint' }, c.tokens + ' tokens'),
      c.mode !== 'chain' ? el('span', { class: 'pill' }, c.mode) : null,
      c.finish_reason !== 'stop' ? el('span', { class: 'pill warn' }, c.finish_reason) : null,
      c.voted ? null : el('span', { class: 'pill' }, c.stopped ? 'stopped early' : 'did not vote'),
      c.correct === true ? el('span', { class: 'pill good' }, '✓') :
        c.correct === false ? el('span', { class: 'pill bad' }, '✗') : null,
      toggle,
      c.node !== null ? el('button', { class: 'link', text: 'in the trace', on: {
        click: function () { showNode(v, c.node); } } }) : null,
      (c.judges || []).length ? el('button', { class: 'link', text: c.judges.length + ' judge call' +
        (c.judges.length > 1 ? 's' : ''), on: { click: function () { showNode(v, c.judges[0]); } } }) : null];
    return el('div', { class: 'member' + (c.winner ? ' winner' : ''), 'data-candidate': c.index },
      el('div', { class: 'mhead' }, bits), el('div', { class: 'muted' }, short(text, 160)), body);
  }

  // -- the search tree -----------------------------------------------------------------------
  var ROW = 40, COL = 240;
  function tree(v) {
    var t = v.tree;
    var section = card('Search tree', t.nodes.length + ' nodes' + (t.subtrees ? ' in ' + t.subtrees +
      ' subtrees' : '') + ' · click a node for its text and judge calls; drag to pan, wheel to zoom');
    var svg = sv('svg', { id: 'tree-svg', role: 'img', 'aria-label': 'search tree' });
    var port = el('div', { class: 'viewport' }, svg);
    var hide = el('input', { type: 'checkbox', id: 'hide-pruned' });
    hide.checked = state.hidePruned;
    hide.addEventListener('change', function () { state.hidePruned = hide.checked; drawTree(v, svg, true); });
    section.appendChild(el('div', { class: 'toolbar' },
      el('button', { class: 'btn', title: 'zoom out', text: '−', on: { click: function () { zoom(svg, 1.25); } } }),
      el('button', { class: 'btn', title: 'zoom in', text: '+', on: { click: function () { zoom(svg, 0.8); } } }),
      el('button', { class: 'btn', text: 'fit', on: { click: function () { state.box = null; drawTree(v, svg, true); } } }),
      el('button', { class: 'btn', text: 'expand all', on: { click: function () {
        state.collapsed = {}; state.hidePruned = false; hide.checked = false; drawTree(v, svg, true); } } }),
      el('label', null, hide, ' hide pruned'),
      el('span', { class: 'legend' },
        legend('#2b8a3e', 'kept'), legend('#fff', 'pruned', '#c92a2a'), legend('#1864ab', 'answer'),
        legend('#9c36b5', 'rollout'), legend('#e8a100', 'chosen path'))));
    var rows = v.tree.nodes.filter(function (n) { return !(v._kids[n.id] || []).some(function (k) {
      return v.tree.nodes.some(function (t) { return t.id === k.id; }); }); }).length;
    port.style.height = Math.max(260, Math.min(640, rows * ROW + 90)) + 'px';
    section.appendChild(port);
    panZoom(svg);
    setTimeout(function () { drawTree(v, svg, !state.box); }, 0);
    return section;
  }
  function legend(color, text, stroke) {
    var dot = el('i');
    dot.style.background = color;
    if (stroke) dot.style.border = '2px solid ' + stroke;
    return el('span', null, dot, text);
  }

  function layout(v) {
    var kids = {};
    v.tree.nodes.forEach(function (n) { (kids[n.parent] = kids[n.parent] || []).push(n); });
    var placed = [], next = 0, hiddenBelow = {};
    function visible(n) { return !(state.hidePruned && n.status === 'pruned'); }
    function count(n) {
      return (kids[n.id] || []).reduce(function (s, c) { return s + 1 + count(c); }, 0);
    }
    function place(n, depth) {
      var children = (kids[n.id] || []).filter(visible);
      var entry = { n: n, x: depth * COL, y: 0, kids: [] };
      placed.push(entry);
      if (state.collapsed[n.id] || !children.length) {
        entry.y = next++ * ROW;
        if (state.collapsed[n.id]) hiddenBelow[n.id] = count(n);
      } else {
        entry.kids = children.map(function (c) { return place(c, depth + 1); });
        entry.y = (entry.kids[0].y + entry.kids[entry.kids.length - 1].y) / 2;
      }
      return entry;
    }
    place(v.tree.nodes[0], 0);
    return { placed: placed, hiddenBelow: hiddenBelow, kids: kids };
  }

  var COLORS = { kept: '#2b8a3e', expanded: '#2b8a3e', answer: '#1864ab', rollout: '#9c36b5',
    pruned: '#ffffff' };
  function drawTree(v, svg, fit) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var lay = layout(v);
    var edges = sv('g'), dots = sv('g');
    svg.appendChild(edges); svg.appendChild(dots);
    lay.placed.forEach(function (p) {
      p.kids.forEach(function (k) {
        var mid = (p.x + k.x) / 2;
        var cls = 'edge' + (k.n.status === 'pruned' ? ' pruned' : '') +
          (k.n.status === 'rollout' ? ' rollout' : '') + (k.n.chosen && p.n.chosen ? ' chosen' : '');
        edges.appendChild(sv('path', { class: cls, d: 'M' + (p.x + 9) + ',' + p.y + ' C' + mid + ',' +
          p.y + ' ' + mid + ',' + k.y + ' ' + (k.x - 9) + ',' + k.y }));
      });
    });
    lay.placed.forEach(function (p) { dots.appendChild(treeNode(v, p, lay)); });
    var maxX = Math.max.apply(null, lay.placed.map(function (p) { return p.x; })) + COL;
    var maxY = Math.max.apply(null, lay.placed.map(function (p) { return p.y; }));
    svg._extent = { x: -40, y: -30, w: maxX + 60, h: maxY + 70 };
    if (fit || !state.box) state.box = fitBox(svg);
    applyBox(svg);
  }
  function fitBox(svg) {
    var e = svg._extent, w = svg.clientWidth || 1000, h = svg.clientHeight || 480;
    // the whole tree, but never smaller than 4/5 of its size: a big tree opens at its root
    var scale = Math.min(Math.max(e.w / w, e.h / h, 0.8), 1.25);
    var bw = w * scale, bh = h * scale;
    return { x: bw >= e.w ? e.x - (bw - e.w) / 2 : e.x, y: e.y - (bh - e.h) / 2, w: bw, h: bh };
  }
  function applyBox(svg) {
    var b = state.box;
    svg.setAttribute('viewBox', [b.x, b.y, b.w, b.h].map(function (x) { return x.toFixed(1); }).join(' '));
  }
  function zoom(svg, factor, cx, cy) {
    var b = state.box;
    if (!b) return;
    cx = cx === undefined ? b.x + b.w / 2 : cx; cy = cy === undefined ? b.y + b.h / 2 : cy;
    state.box = { x: cx - (cx - b.x) * factor, y: cy - (cy - b.y) * factor, w: b.w * factor, h: b.h * factor };
    applyBox(svg);
  }
  function panZoom(svg) {
    var drag = null;
    svg.addEventListener('wheel', function (e) {
      e.preventDefault();
      var r = svg.getBoundingClientRect(), b = state.box;
      zoom(svg, e.deltaY > 0 ? 1.15 : 1 / 1.15, b.x + (e.clientX - r.left) / r.width * b.w,
        b.y + (e.clientY - r.top) / r.height * b.h);
    }, { passive: false });
    svg.addEventListener('mousedown', function (e) { drag = { x: e.clientX, y: e.clientY, box: state.box }; });
    window.addEventListener('mouseup', function () { drag = null; });
    svg.addEventListener('mousemove', function (e) {
      if (!drag) return;
      var r = svg.getBoundingClientRect(), s = drag.box.w / r.width;
      state.box = { x: drag.box.x - (e.clientX - drag.x) * s, y: drag.box.y - (e.clientY - drag.y) * s,
        w: drag.box.w, h: drag.box.h };
      applyBox(svg);
    });
  }

  function treeNode(v, p, lay) {
    var n = p.n, root = n.parent === null;
    var status = root ? 'root' : n.kind === 'subtree' ? 'subtree' : (n.status || 'open');
    var g = sv('g', { class: 'tnode ' + status + (n.chosen ? ' chosen' : '') +
      (state.selected === n.id ? ' selected' : ''), 'data-node-id': n.id,
      transform: 'translate(' + p.x + ',' + p.y + ')' });
    var title = root ? 'question' : n.kind === 'subtree' ? n.label :
      short(dataOf(v, n.id).text, 29) || n.label;
    g.appendChild(sv('title', { text: n.label + (n.why ? ' — ' + n.why : '') }));
    g.appendChild(sv('rect', { class: 'hit', x: -14, y: -16, width: COL - 24, height: 34, fill: 'transparent' }));
    if (n.chosen) g.appendChild(sv('circle', { r: 12.5, fill: 'none', stroke: '#e8a100', 'stroke-width': 3 }));
    g.appendChild(sv('circle', { class: 'ring', r: 15, fill: 'none' }));
    if (n.kind === 'subtree') {
      g.appendChild(sv('rect', { class: 'dot', x: -7, y: -7, width: 14, height: 14, rx: 3, fill: '#868e96',
        stroke: '#495057', transform: 'rotate(45)' }));
    } else {
      g.appendChild(sv('circle', { class: 'dot', r: root ? 10 : 8,
        fill: root ? '#343a40' : (COLORS[n.status] || '#adb5bd'),
        stroke: n.status === 'pruned' ? '#c92a2a' : root ? '#212529' : '#ffffff',
        'stroke-dasharray': n.status === 'rollout' ? '2 2' : null }));
    }
    if (n.status === 'pruned') g.appendChild(sv('path', { d: 'M-3.5,-3.5 L3.5,3.5 M3.5,-3.5 L-3.5,3.5',
      stroke: '#c92a2a', 'stroke-width': 1.8 }));
    g.appendChild(sv('text', { x: 15, y: -3, text: title }));
    var sub = [];
    if (n.step_score !== undefined) sub.push('step ' + num(n.step_score, 2));
    if (n.score !== undefined && !root) sub.push('path ' + num(n.score, 2));
    if (n.visits !== undefined) sub.push('N ' + n.visits);
    if (n.value !== undefined) sub.push('Q ' + num(n.value, 2));
    if (n.answer !== undefined) sub.push('→ ' + short(n.answer, 14));
    if (root && v.tree.path.length) sub.push('chosen: ' + short(v.answer, 18));
    g.appendChild(sv('text', { class: 'sub', x: 15, y: 12, text: sub.join(' · ') }));
    var hasKids = (lay.kids[n.id] || []).length > 0;
    if (hasKids && !root) {
      var folded = !!state.collapsed[n.id];
      var t = sv('g', { class: 'fold', transform: 'translate(-22,0)' },
        sv('rect', { class: 'toggle', x: -6, y: -6, width: 12, height: 12, rx: 3 }),
        sv('text', { class: 'toggle-t', y: 4, text: folded ? '+' : '−' }));
      t.addEventListener('click', function (e) {
        e.stopPropagation();
        state.collapsed[n.id] = !state.collapsed[n.id];
        drawTree(v, document.getElementById('tree-svg'), false);
      });
      g.appendChild(t);
      if (folded) g.appendChild(sv('text', { class: 'sub', x: 15, y: 25, text: '+' +
        lay.hiddenBelow[n.id] + ' hidden' }));
    }
    g.addEventListener('click', function () { showNode(v, n.id); });
    return g;
  }

  // -- rounds: draft → critique → revision; code → tests → fix -------------------------------
  function timeline(v) {
    var chosenNode = v.winner !== null ? v.candidates[v.winner].node : null;
    var section = card('Rounds', 'in the order they happened');
    var list = el('div', { class: 'timeline' });
    v.timeline.forEach(function (item) {
      var n = nodeById(v, item.node), d = n.data || {};
      var cls = 'titem', role = item.role, head = [], body = [];
      if (item.kind === 'execute') {
        var ok = item.status === 'ok' && (item.passed === undefined || item.passed === item.tests ||
          item.passed === true);
        cls += ok ? ' ok' : ' fail';
        role = item.tests !== undefined ? 'tests' : 'run';
        head.push(el('span', { class: 'role ' + role + (ok ? ' ok' : ' fail') }, role));
        head.push(el('b', null, item.tests !== undefined ? (typeof item.passed === 'number' ?
          item.passed + ' of ' + item.tests + ' tests passed' : (ok ? 'all tests passed' : 'tests failed'))
          : n.label + ': ' + item.status));
        if (item.failures) body.push(el('pre', { class: 'why' }, item.failures));
        if (item.output) body.push(el('pre', null, item.output));
        if (item.message) body.push(el('div', { class: 'why' }, item.message));
      } else if (item.kind === 'decision') {
        cls += ' decision';
        head.push(el('span', { class: 'muted' }, '→ ' + n.label));
      } else {
        if (item.node === chosenNode) cls += ' chosen';
        head.push(el('span', { class: 'role ' + role }, role));
        if (n.label.toLowerCase() !== role) head.push(el('b', null, n.label));
        if (d.score !== undefined) head.push(el('span', null, 'score ' + num(d.score, 3)));
        if (item.node === chosenNode) head.push(el('span', { class: 'pill gold' }, '★ chosen'));
        if (d.finish_reason && d.finish_reason !== 'stop') head.push(el('span', { class: 'pill warn' }, d.finish_reason));
        head.push(usageLine(n.usage));
        body = clip(String(d.text || ''));
      }
      head.push(el('button', { class: 'link', text: 'details', on: { click: function () { showNode(v, n.id); } } }));
      list.appendChild(el('div', { class: cls, 'data-node-id': n.id }, el('div', { class: 'thead' }, head), body));
    });
    section.appendChild(list);
    return section;
  }

  // -- programs with their runs and repairs ---------------------------------------------------
  function programs(v) {
    var section = card('Programs', 'each program, what running it gave, and its repairs');
    v.programs.forEach(function (prog, k) {
      var c = prog.candidate !== null && prog.candidate !== undefined ? v.candidates[prog.candidate] : null;
      var box = el('div', { class: 'program' + (c && c.winner ? ' winner' : '') },
        el('div', { class: 'thead' }, el('b', null, 'Program ' + (k + 1)),
          c ? el('span', null, '→ ', el('b', { class: 'mono' }, c.answer === null ? 'no answer' : c.answer)) : null,
          c && c.winner ? el('span', { class: 'pill gold' }, '★ chosen') : null,
          prog.attempts.length > 1 ? el('span', { class: 'pill' }, (prog.attempts.length - 1) + ' repair' +
            (prog.attempts.length > 2 ? 's' : '')) : null));
      prog.attempts.forEach(function (a, i) {
        var n = nodeById(v, a.node);
        if (i) box.appendChild(el('div', { class: 'arrow' }, '↓ shown the error, the model repaired it'));
        box.appendChild(el('div', { class: 'thead' }, el('span', { class: 'role ' + (i ? 'repair' : '') },
          i ? 'repair ' + i : 'written'), usageLine(n && n.usage),
          el('button', { class: 'link', text: 'details', on: { click: function () { showNode(v, a.node); } } })));
        add(box, clip(String(dataOf(v, a.node).text || '')));
        var ok = a.status === 'ok';
        box.appendChild(el('div', { class: 'thead' }, el('span', { class: 'role run ' + (ok ? 'ok' : 'fail') },
          a.status || 'not run'), a.message ? el('span', { class: 'why' }, a.message) : null));
        if (a.output) box.appendChild(el('pre', null, a.output));
      });
      section.appendChild(box);
    });
    return section;
  }

  // -- deepconf: confidence as each trace was written ----------------------------------------
  function confidence(v) {
    var c = v.confidence;
    var section = card('Confidence', 'group confidence as each trace was written' +
      (c.threshold !== null ? '; traces falling under the threshold are stopped' : ''));
    var W = 900, H = 300, L = 50, B = 30, T = 12, R = 20;
    var points = [];
    c.traces.forEach(function (t) { t.curve.forEach(function (p) { points.push(p); }); });
    var maxX = Math.max.apply(null, points.map(function (p) { return p[0]; }).concat(
      c.traces.map(function (t) { return t.tokens; }), [1]));
    var ys = points.map(function (p) { return p[1]; }).concat(c.threshold !== null ? [c.threshold] : [],
      c.traces.map(function (t) { return t.confidence || 0; }));
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    var pad = (hi - lo) * 0.1 || 0.5; lo = Math.max(0, lo - pad); hi += pad;
    function X(x) { return L + (W - L - R) * x / maxX; }
    function Y(y) { return T + (H - T - B) * (1 - (y - lo) / (hi - lo)); }
    var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, id: 'confidence-chart' });
    for (var k = 0; k <= 4; k++) {
      var gy = lo + (hi - lo) * k / 4;
      svg.appendChild(sv('line', { class: 'grid', x1: L, x2: W - R, y1: Y(gy), y2: Y(gy) }));
      svg.appendChild(sv('text', { x: L - 6, y: Y(gy) + 4, 'text-anchor': 'end', text: num(gy, 2) }));
    }
    svg.appendChild(sv('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.appendChild(sv('text', { x: (L + W) / 2, y: H - 6, 'text-anchor': 'middle', text: 'tokens written' }));
    svg.appendChild(sv('text', { x: L, y: H - B + 14, 'text-anchor': 'middle', text: '0' }));
    svg.appendChild(sv('text', { x: W - R, y: H - B + 14, 'text-anchor': 'end', text: String(maxX) }));
    if (c.threshold !== null) {
      svg.appendChild(sv('line', { class: 'threshold', x1: L, x2: W - R, y1: Y(c.threshold), y2: Y(c.threshold) }));
      svg.appendChild(sv('text', { x: L + 6, y: Y(c.threshold) - 5, text: 'threshold ' +
        num(c.threshold, 3) }));
    }
    c.traces.forEach(function (t) {
      var cand = t.candidate !== null ? v.candidates[t.candidate] : null;
      var color = t.stopped ? '#c92a2a' : groupColor(v, cand);
      var pts = t.curve.length ? t.curve : (t.confidence !== null ? [[t.tokens, t.confidence]] : []);
      if (!pts.length) return;
      var line = sv('polyline', { class: 'curve' + (t.voted === false ? ' novote' : ''), stroke: color,
        points: pts.map(function (p) { return X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1); }).join(' ') },
        sv('title', { text: nodeById(v, t.node).label + ': ' + (t.answer || 'no answer') +
          ', confidence ' + num(t.confidence, 3) + (t.stopped ? ', stopped' : '') }));
      line.addEventListener('click', function () { showNode(v, t.node); });
      svg.appendChild(line);
      var end = pts[pts.length - 1];
      if (t.stopped) {
        svg.appendChild(sv('path', { d: 'M' + (X(end[0]) - 5) + ',' + (Y(end[1]) - 5) + ' l10,10 m0,-10 l-10,10',
          stroke: '#c92a2a', 'stroke-width': 2.5 }));
      } else {
        svg.appendChild(sv('circle', { cx: X(end[0]), cy: Y(end[1]), r: 3.5, fill: color }));
      }
    });
    section.appendChild(el('div', { class: 'chart' }, svg));
    var rows = c.traces.map(function (t) {
      var cand = t.candidate !== null ? v.candidates[t.candidate] : null;
      var sw = el('span', { class: 'tok' }); sw.style.width = '14px'; sw.style.background = t.stopped ?
        '#c92a2a' : groupColor(v, cand);
      return el('tr', { class: 'row', on: { click: function () { showNode(v, t.node); } } },
        el('td', null, sw, ' ', nodeById(v, t.node).label),
        el('td', { class: 'mono' }, t.answer === null ? '—' : short(t.answer, 30)),
        el('td', { class: 'num' }, num(t.confidence, 3)), el('td', { class: 'num' }, t.tokens),
        el('td', null, t.stopped ? 'stopped' + (t.first_dip ? ' at token ' + t.first_dip : '') : 'finished'),
        el('td', null, t.voted ? 'voted' : 'left out'));
    });
    section.appendChild(el('table', { class: 'list' }, el('tr', null, ['trace', 'answer', 'confidence',
      'tokens', 'end', 'vote'].map(function (h) { return el('th', null, h); })), rows));
    return section;
  }

  // -- adaptive-consistency: P(the leader stays) after each wave -----------------------------
  function waves(v) {
    var w = v.waves;
    var section = card('Waves', 'after each wave: P(the leading answer stays ahead); sampling stops ' +
      'once it reaches the threshold');
    var W = 900, H = 240, L = 50, B = 34, T = 14, R = 30;
    var maxX = Math.max.apply(null, w.points.map(function (p) { return p.samples || 0; }).concat([1]));
    function X(x) { return L + (W - L - R) * x / maxX; }
    function Y(y) { return T + (H - T - B) * (1 - y); }
    var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, id: 'waves-chart' });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (y) {
      svg.appendChild(sv('line', { class: 'grid', x1: L, x2: W - R, y1: Y(y), y2: Y(y) }));
      svg.appendChild(sv('text', { x: L - 6, y: Y(y) + 4, 'text-anchor': 'end', text: y.toFixed(2) }));
    });
    svg.appendChild(sv('text', { x: (L + W) / 2, y: H - 6, 'text-anchor': 'middle', text: 'samples so far' }));
    if (w.threshold !== null) {
      svg.appendChild(sv('line', { class: 'threshold', x1: L, x2: W - R, y1: Y(w.threshold), y2: Y(w.threshold) }));
      svg.appendChild(sv('text', { x: L + 6, y: Y(w.threshold) - 5, text: 'threshold ' +
        num(w.threshold, 2) }));
    }
    var line = w.points.filter(function (p) { return p.p !== null; })
      .map(function (p) { return X(p.samples).toFixed(1) + ',' + Y(p.p).toFixed(1); }).join(' ');
    svg.appendChild(sv('polyline', { points: line, fill: 'none', stroke: '#3451b2', 'stroke-width': 2 }));
    w.points.forEach(function (p) {
      if (p.p === null) return;
      var dot = sv('circle', { cx: X(p.samples), cy: Y(p.p), r: p.stop ? 7 : 5, fill: p.stop ? '#e8a100' : '#3451b2',
        stroke: '#fff', 'stroke-width': 2 }, sv('title', { text: nodeById(v, p.node).label }));
      dot.addEventListener('click', function () { showNode(v, p.node); });
      svg.appendChild(dot);
      svg.appendChild(sv('text', { x: X(p.samples), y: Y(p.p) - 11, 'text-anchor': 'middle',
        text: num(p.p, 3) + ' (' + p.leader + ':' + p.runner_up + ')' }));
      svg.appendChild(sv('text', { x: X(p.samples), y: H - B + 14, 'text-anchor': 'middle', text: String(p.samples) }));
    });
    section.appendChild(el('div', { class: 'chart' }, svg));
    var last = w.points[w.points.length - 1];
    section.appendChild(el('div', { class: 'muted' }, last.stop ? 'Stopped after wave ' + last.wave +
      ' with ' + last.samples + ' samples: the leader held ' + last.leader + ' votes against ' +
      last.runner_up + '.' : 'Sampled to the limit (' + last.samples + ' samples) without reaching the threshold.'));
    return section;
  }

  // -- several models: what each spent -------------------------------------------------------
  function models(v) {
    var m = v.models, rows = m.rows;
    var section = card('Models', rows.length + ' models in this run · share of its ' + m.share_of +
      (m.share_of === 'FLOPs' ? ' (2 × parameters × tokens)' : ''));
    section.id = 'models';
    var body = rows.map(function (r) {
      var bar = el('span', { class: 'share' }, el('span'));
      bar.firstChild.style.width = (100 * (r.share || 0)).toFixed(1) + '%';
      bar.firstChild.style.background = modelColor(v, r.name);
      return el('tr', { class: 'model-row', 'data-model': r.name },
        el('td', null, modelBadge(v, r.name)), el('td', { class: 'muted' }, r.roles.join(', ') || '—'),
        el('td', { class: 'num' }, num(r.calls)), el('td', { class: 'num' }, num(r.prompt_tokens)),
        el('td', { class: 'num' }, num(r.completion_tokens)), el('td', { class: 'num' }, params(r.parameters)),
        el('td', { class: 'num' }, si(r.flops, 'FLOPs')),
        el('td', null, bar, ' ', el('span', { class: 'faint' }, r.share === null ? '' :
          Math.round(r.share * 100) + '%')));
    });
    section.appendChild(el('table', { class: 'list models' }, el('tr', null, ['model', 'role', 'calls',
      'prompt', 'completion', 'parameters', 'FLOPs', 'share'].map(function (h, i) {
      return el('th', { class: i >= 2 && i <= 6 ? 'num' : null }, h); })), body));
    return section;
  }

  // a vote's groups as small bars: answer, count, share
  function miniVote(v, vote, opts) {
    if (!vote) return el('div', { class: 'faint' }, 'no vote recorded');
    var most = Math.max.apply(null, vote.groups.map(function (g) { return g.weight; }).concat([1e-9]));
    return el('div', { class: 'minivote' }, vote.groups.map(function (g) {
      var bar = el('span', { class: 'share' }, el('span'));
      bar.firstChild.style.width = (100 * g.weight / most).toFixed(1) + '%';
      var color = opts && opts.model ? modelColor(v, opts.model) : null;
      if (color) bar.firstChild.style.background = color;
      return el('div', { class: 'mvrow' + (g.winner ? ' lead' : ''), 'data-answer': g.answer === null ? '' : g.answer },
        el('span', { class: 'mono ans' }, answerText(g.answer)), bar,
        el('span', { class: 'faint' }, num(g.weight) + ' ×' + (g.share !== null ? ' · ' +
          Math.round(g.share * 100) + '%' : '')),
        g.winner && opts && opts.mark ? el('span', { class: 'pill' + (opts.markClass ? ' ' + opts.markClass : '') },
          opts.mark) : null);
    }));
  }
  function flow() { return el('div', { class: 'flow-arrow', 'aria-hidden': 'true' }, '→'); }

  // -- cascade: the small vote, the evidence against the threshold, the strong model ------------
  function cascade(v) {
    var c = v.cascade;
    var section = card('Cascade', 'the small model votes; evidence below the threshold hands the ' +
      'problem to the strong model');
    section.id = 'cascade';
    var small = el('div', { class: 'stage', id: 'cascade-small' },
      el('div', { class: 'stage-h' }, modelBadge(v, c.small_model) || el('b', null, 'small model'),
        ' votes', c.small ? el('span', { class: 'faint' }, ' · ' + c.small.candidates.length + ' samples') : null),
      miniVote(v, c.small, { model: c.small_model, mark: c.escalated ? 'its vote' : '★ stands',
        markClass: c.escalated ? '' : 'gold' }));
    var frac = function (x) { return Math.max(0, Math.min(1, x || 0)) * 100; };
    var gauge = el('div', { class: 'gauge' }, el('span', { class: 'fill' }), el('span', { class: 'mark' }));
    gauge.firstChild.style.width = frac(c.evidence).toFixed(1) + '%';
    gauge.lastChild.style.left = frac(c.threshold).toFixed(1) + '%';
    gauge.classList.add(c.escalated ? 'low' : 'high');
    var scale = el('div', { class: 'gauge-scale faint' }, el('span', null, '0'),
      el('span', { class: 'at' }, 'threshold ' + num(c.threshold, 2)), el('span', null, '1'));
    scale.childNodes[1].style.left = frac(c.threshold).toFixed(1) + '%';
    var said = c.signal + ' ' + num(c.evidence, 2) + (c.escalated ? ' < ' : ' ≥ ') + num(c.threshold, 2) +
      ': ' + (c.escalated ? 'escalated to ' + c.strong_model : "the small model's answer stands");
    var evidence = el('div', { class: 'stage evidence', id: 'cascade-evidence', 'data-node-id': c.decision },
      el('div', { class: 'stage-h' }, el('b', null, 'evidence'), el('span', { class: 'faint' }, ' · ' + c.signal)),
      gauge, scale,
      el('div', { class: 'verdict ' + (c.escalated ? 'escalated' : 'kept'), id: 'cascade-verdict' }, said),
      el('button', { class: 'link', text: 'the decision', on: { click: function () { showNode(v, c.decision); } } }));
    var strong;
    if (!c.escalated) {
      strong = el('div', { class: 'stage skipped', id: 'cascade-strong' },
        el('div', { class: 'stage-h' }, el('b', null, c.strong_model || 'the strong model')),
        el('div', { class: 'pill good', id: 'not-escalated' }, '✓ not escalated'),
        el('div', { class: 'faint' }, 'the strong model was not asked'));
    } else {
      var s = c.strong || { candidates: [], groups: [] };
      strong = el('div', { class: 'stage', id: 'cascade-strong' },
        el('div', { class: 'stage-h' }, modelBadge(v, c.strong_model), ' answers',
          el('span', { class: 'faint' }, ' · ' + s.candidates.length + ' sample' + (s.candidates.length === 1 ? '' : 's'))),
        s.groups.length ? miniVote(v, c.strong, { model: c.strong_model, mark: c.taken === 'strong' ? '★ taken' : null,
          markClass: 'gold' }) : el('div', { class: 'faint' }, 'no answer recorded'),
        c.taken === 'small' ? el('div', { class: 'why' }, "it gave no answer: the small model's vote stands") : null,
        s.candidates.map(function (i) {
          var cand = v.candidates[i];
          return el('button', { class: 'link', text: 'its text' + (s.candidates.length > 1 ? ' #' + (i + 1) : ''),
            on: { click: function () { if (cand.node !== null) showNode(v, cand.node); } } });
        }));
    }
    section.appendChild(el('div', { class: 'flow' }, small, flow(), evidence, flow(), strong));
    section.appendChild(el('div', { class: 'muted summary' }, 'answer: ', el('b', { class: 'mono' },
      answerText(c.answer)), c.taken === 'strong' ? ' — the strong model’s' : " — the small model's vote"));
    return section;
  }

  // -- verify-by-strong: P(yes) per answer group, or a tournament -----------------------------
  function verdicts(v) {
    var r = v.verdicts;
    if (!r.asked) {
      var quiet = card('Strong model’s verdicts');
      quiet.id = 'verdicts';
      quiet.appendChild(el('div', { class: 'verdict kept' }, r.why));
      return quiet;
    }
    return r.method === 'tournament' ? tournament(v, r) : pointwise(v, r);
  }
  function pointwise(v, r) {
    var section = card('Strong model’s verdicts', r.judge_model + ' judges one solution per answer ' +
      'group: P(yes, the answer is correct)');
    section.id = 'verdicts';
    var rows = r.groups.map(function (g) {
      var bar = el('span', { class: 'pbar' }, el('span'));
      bar.firstChild.style.width = (100 * (g.score || 0)).toFixed(1) + '%';
      bar.firstChild.style.background = modelColor(v, r.judge_model);
      return el('tr', { class: 'row verdict-row' + (g.winner ? ' winner' : ''), 'data-answer': g.answer === null ? '' : g.answer,
        'data-node-id': g.node, on: { click: function () { showNode(v, g.node); } } },
        el('td', { class: 'mono ans' }, answerText(g.answer)),
        el('td', { class: 'num' }, g.votes === null ? '—' : num(g.votes)),
        el('td', null, bar, ' ', el('b', { class: 'p' }, num(g.score, 2)), ' ',
          g.winner ? el('span', { class: 'pill gold' }, '★ chosen') : null));
    });
    section.appendChild(el('table', { class: 'list verdicts' }, el('tr', null,
      el('th', null, 'answer'), el('th', { class: 'num' }, 'small model’s votes'),
      el('th', null, 'P(yes) from ' + r.judge_model)), rows));
    var top = r.groups.slice().sort(function (a, b) { return (b.votes || 0) - (a.votes || 0); })[0];
    if (top && r.answer !== null && top.answer !== r.answer) {
      section.appendChild(el('div', { class: 'muted summary' }, r.judge_model + ' overrules the small ' +
        'model’s majority (' + answerText(top.answer) + '): ', el('b', { class: 'mono' }, answerText(r.answer))));
    }
    return section;
  }
  function tournament(v, r) {
    var section = card('Tournament', r.judge_model + ' compares two answers at a time' +
      (r.matches.some(function (m) { return m.verdicts.length > 1; }) ? ', in both orders' : '') +
      '; the winner meets the next');
    section.id = 'verdicts';
    var votesOf = {};
    (r.wins || []).forEach(function (w) { votesOf[w.answer] = w.votes; });
    var bracket = el('div', { class: 'bracket' });
    r.matches.forEach(function (m, k) {
      function side(answer, role) {
        var won = m.winner !== null && answer === m.winner;
        return el('div', { class: 'side' + (won ? ' won' : ''), 'data-answer': answer === null ? '' : answer },
          el('span', { class: 'mono ans' }, answerText(answer)),
          el('span', { class: 'faint' }, role + (votesOf[answer] !== undefined && votesOf[answer] !== null ?
            ' · ' + votes(votesOf[answer]) : '')),
          won ? el('span', { class: 'tick' }, '✓') : null);
      }
      var box = el('div', { class: 'match' + (m.split ? ' split' : ''), 'data-node-id': m.node },
        el('div', { class: 'match-h' }, el('b', null, 'match ' + (k + 1)),
          m.split ? el('span', { class: 'pill warn' }, 'split verdict') : null,
          el('button', { class: 'link', text: 'details', on: { click: function () { showNode(v, m.node); } } })),
        side(m.champion, k ? 'champion' : 'most votes'), side(m.challenger, 'challenger'),
        el('div', { class: 'orders' }, m.verdicts.map(function (o) {
          return el('div', { class: 'order', 'data-node-id': o.node, on: { click: function () { showNode(v, o.node); } } },
            'A = ', el('span', { class: 'mono' }, answerText(o.a)), ', B = ', el('span', { class: 'mono' }, answerText(o.b)),
            ': said ', el('b', null, o.said || '?'), o['for'] !== null ? [' → ', el('span', { class: 'mono' },
              answerText(o['for']))] : null);
        })),
        el('div', { class: 'faint result' }, (m.kept ? 'the champion stays' : 'the challenger wins') +
          ' · P(champion right) ' + num(m.p_champion, 2) + (m.split && m.kept ? ': a tie keeps it' : '')));
      if (k) bracket.appendChild(flow());
      bracket.appendChild(box);
    });
    bracket.appendChild(flow());
    bracket.appendChild(el('div', { class: 'champion', id: 'champion' }, el('div', { class: 'faint' }, 'champion'),
      el('div', { class: 'mono ans' }, answerText(r.answer)), el('span', { class: 'pill gold' }, '★ chosen')));
    section.appendChild(bracket);
    if (r.wins && r.wins.length) {
      section.appendChild(el('div', { class: 'muted summary' }, 'wins: ', r.wins.map(function (w, i) {
        return [i ? ' · ' : '', el('b', { class: 'mono' }, answerText(w.answer)), ' ' + w.wins + ' win' +
          (w.wins === 1 ? '' : 's') + (w.votes !== null ? ' (' + votes(w.votes) + ')' : '')];
      })));
    }
    return section;
  }

  // -- debate: rounds as columns, agents as rows ----------------------------------------------
  function debate(v) {
    var d = v.debate;
    var section = card('Debate', 'rounds left to right, one row per agent; a highlighted answer: ' +
      'the agent changed its mind');
    section.id = 'debate';
    var head = el('tr', null, el('th', null, 'agent'), d.columns.map(function (c) {
      return el('th', { class: c.played ? null : 'skipped' }, 'round ' + c.round, el('div', { class: 'faint sub' },
        !c.played ? (d.stopped_early ? 'not run: stopped early' : d.budget ? 'not run: budget' : 'not run') :
        c.round === 0 ? 'first answers' : c.unanimous ? (c.changes ? c.changes + ' changed · unanimous' : 'unanimous') :
        c.changes ? c.changes + ' changed' : 'no change'));
    }));
    var rows = d.agents.map(function (a) {
      return el('tr', { 'data-agent': a.agent }, el('th', { class: 'agent' }, 'agent ' + a.agent, ' ',
        modelBadge(v, a.model)), a.cells.map(function (cell, k) {
        if (!cell) return el('td', { class: 'cell skipped' }, d.columns[k].played ? 'no reply' : '—');
        var td = el('td', { class: 'cell' + (cell.changed ? ' changed' : '') + (cell.voted ? ' voted' : ''),
          'data-node-id': cell.node, title: cell.changed ? 'changed its mind: ' + answerText(cell.from) +
            ' → ' + answerText(cell.answer) : null, on: { click: function () { showNode(v, cell.node); } } },
          el('span', { class: 'mono ans' }, answerText(cell.answer)),
          cell.changed ? el('span', { class: 'was' }, 'was ' + answerText(cell.from)) : null,
          cell.finish_reason !== 'stop' ? el('span', { class: 'pill warn' }, cell.finish_reason) : null);
        td.style.borderLeftColor = modelColor(v, cell.model);
        return td;
      }));
    });
    section.appendChild(el('div', { class: 'scroll' }, el('table', { class: 'grid debate-grid' }, head, rows)));
    section.appendChild(el('div', { class: 'gridkey' }, el('span', null, el('i', { class: 'changed' }),
      'changed its mind'), el('span', null, el('i', { class: 'voted' }), 'its answer in the final vote'),
      el('span', null, 'left edge: the agent’s model · click a cell for its reply')));
    var notes = el('div', { class: 'summary' });
    if (d.stopped_early) {
      notes.appendChild(el('div', { class: 'stopnote', id: 'stopped-early' }, '■ ' + d.stopped_early.label));
    }
    if (d.budget) notes.appendChild(el('div', { class: 'why' }, d.budget.label));
    if (d.vote) {
      notes.appendChild(el('div', { id: 'debate-vote' }, el('span', { class: 'muted' }, d.vote.label + ': '),
        d.vote.groups.map(function (g, i) {
          return [i ? ' · ' : '', el('b', { class: 'mono' + (g.winner ? ' lead' : '') }, answerText(g.answer)),
            ' ×' + num(g.weight), g.winner ? ' ★' : ''];
        })));
    }
    section.appendChild(notes);
    return section;
  }

  // -- particle filtering: the population step by step ---------------------------------------
  function particles(v) {
    var p = v.particles;
    var section = card('Particles', 'steps left to right, one row per particle: each step ' +
      'extends every particle, weighs it by its score and resamples the population by weight');
    section.id = 'particles';
    var head = el('tr', null, el('th', null, 'particle'), p.columns.map(function (c) {
      return el('th', { 'data-step': c.step }, 'step ' + c.step, el('div', { class: 'faint sub' },
        (c.ess !== null ? 'ESS ' + num(c.ess, 2) + ' of ' + p.n + ' · ' : '') +
        (c.resampled ? (c.why || 'resampled') : 'not resampled' + (c.why ? ': ' + c.why : ''))));
    }));
    var rows = p.rows.map(function (r) {
      return el('tr', { 'data-slot': r.slot }, el('th', { class: 'agent' }, 'particle ' + r.slot),
        r.cells.map(function (cell) {
          if (!cell) return el('td', { class: 'cell skipped' }, '—');
          var bar = el('i');
          bar.style.width = (100 * Math.max(0, Math.min(1, cell.weight || 0))).toFixed(1) + '%';
          var td = el('td', { class: 'cell particle' + (cell.dropped ? ' dropped' : '') +
            (cell.chosen ? ' chosen' : ''), 'data-node-id': cell.node,
            title: (cell.from ? 'grew from particle ' + cell.from + ' · ' : '') +
              (cell.dropped ? 'dropped by the resampling' : cell.copies + ' in the next population'),
            on: { click: function () { showNode(v, cell.node); } } },
            el('div', null, el('span', { class: 'mono ans' }, cell.answer !== null ? answerText(cell.answer) : 'step'),
              el('span', { class: 'copies' }, cell.dropped ? 'dropped' : '×' + cell.copies)),
            el('div', { class: 'wbar' }, bar),
            el('div', { class: 'faint sub' }, 'score ' + num(cell.score, 2) + ' · weight ' + num(cell.weight, 3) +
              (cell.from ? ' · from ' + cell.from : '')));
          td.style.borderLeftColor = modelColor(v, cell.model);
          return td;
        }));
    });
    section.appendChild(el('div', { class: 'scroll' }, el('table', { class: 'grid particle-grid' }, head, rows)));
    section.appendChild(el('div', { class: 'gridkey' }, el('span', null, el('i', { class: 'chosen' }),
      'the picked answer’s line'), el('span', null, el('i', { class: 'dropped' }), 'dropped by the resampling'),
      el('span', null, 'bar: the particle’s share of the weight · ×k: its slots in the next population · ' +
        'click a cell for its step')));
    if (p.pick) {
      section.appendChild(el('div', { class: 'summary', id: 'particles-pick' }, el('span', { class: 'muted' },
        p.pick.label + ': '), el('b', { class: 'mono lead' }, answerText(p.pick.answer))));
    }
    return section;
  }

  // -- mixture-of-agents: layers as columns, then the aggregator --------------------------------
  function layers(v) {
    var m = v.layers;
    var section = card('Mixture of agents', 'proposers answer in layers, each reading the layer ' +
      'before; the aggregator reads the last layer and answers');
    section.id = 'layers';
    var head = el('tr', null, el('th', null, 'proposer'), m.columns.map(function (c) {
      return el('th', { class: c.cells ? null : 'skipped' }, 'layer ' + c.layer, c.cells ? null :
        el('div', { class: 'faint sub' }, 'not run'));
    }), el('th', null, 'aggregator'));
    function chip(r) {
      var b = el('button', { class: 'chip' + (r.final ? ' final' : ''), 'data-node-id': r.node,
        title: r.label + ' · ' + (r.model || '') + (r.final ? ' · the final answer' : ''),
        on: { click: function () { showNode(v, r.node); } } }, answerText(r.answer));
      b.style.borderColor = modelColor(v, r.model);
      return b;
    }
    var agg = m.aggregator;
    function aggChip(a) {
      var b = el('button', { class: 'chip big' + (a.chosen === 'aggregator' ? ' final' : ''),
        'data-node-id': a.node, on: { click: function () { showNode(v, a.node); } } }, answerText(a.answer));
      b.style.borderColor = modelColor(v, a.model);
      return b;
    }
    var aggCell = el('td', { class: 'aggregator', rowspan: Math.max(1, m.proposers.length), id: 'aggregator' },
      agg ? [el('div', null, modelBadge(v, agg.model), agg.role ? el('span', { class: 'faint' }, ' ' + agg.role) : null),
        agg.node !== null ? aggChip(agg) :
          el('div', { class: 'faint' }, 'not asked'),
        el('div', { class: 'agree ' + (agg.agrees === true ? 'yes' : agg.agrees === false ? 'no' : ''), id: 'aggregator-agrees' },
          agg.agrees === true ? '✓ agrees with the majority (' + answerText(agg.majority) + ')' :
          agg.agrees === false ? '✗ against the majority’s ' + answerText(agg.majority) :
          agg.chosen === 'vote' ? 'the vote over the last layer stands' : 'no majority to compare'),
        agg.chosen === 'vote' ? el('div', { class: 'why' }, agg.label) : null] :
        el('div', { class: 'faint' }, 'no aggregator'));
    var rows = m.proposers.map(function (p, k) {
      return el('tr', { 'data-proposer': p.proposer }, el('th', { class: 'agent' }, 'proposer ' + p.proposer, ' ',
        modelBadge(v, p.model), el('div', { class: 'faint sub' }, (p.role || '') + (p.n ? ' · ' + p.n + ' each' : ''))),
        m.columns.map(function (c) {
          if (!c.cells) return el('td', { class: 'cell skipped' }, '—');
          var td = el('td', { class: 'cell' }, (c.cells[k] || []).map(chip));
          td.style.borderLeftColor = modelColor(v, p.model);
          return td;
        }), k === 0 ? aggCell : null);
    });
    section.appendChild(el('div', { class: 'scroll' }, el('table', { class: 'grid moa-grid' }, head, rows)));
    var notes = el('div', { class: 'summary' });
    if (m.budget) notes.appendChild(el('div', { class: 'why' }, m.budget.label));
    if (m.vote) {
      notes.appendChild(el('div', { id: 'moa-vote' }, el('span', { class: 'muted' }, m.vote.label + ': '),
        m.vote.groups.map(function (g, i) {
          return [i ? ' · ' : '', el('b', { class: 'mono' }, answerText(g.answer)), ' ×' + num(g.weight) +
            (g.share !== null ? ' (' + Math.round(g.share * 100) + '%)' : '')];
        })));
    }
    section.appendChild(el('div', { class: 'gridkey' }, el('span', null, el('i', { class: 'final' }),
      'the final answer'), el('span', null, 'outline and left edge: the model · click an answer for its reply')));
    section.appendChild(notes);
    return section;
  }

  // -- decisions -------------------------------------------------------------------------------
  function decisions(v) {
    var section = card('Decisions', 'what the strategy decided, in order');
    v.decisions.forEach(function (id) {
      var n = nodeById(v, id), d = n.data || {};
      var facts = Object.keys(d).map(function (k) {
        var x = d[k];
        if (Array.isArray(x)) {
          var flat = [].concat.apply([], x);
          return k + ': ' + (flat.length <= 8 ? flat.map(function (y) {
            return typeof y === 'number' && Number.isInteger(y) && (k === 'kept' || k === 'pruned' ||
              k === 'selected') ? '#' + y : JSON.stringify(y); }).join(' ') : flat.length + ' items');
        }
        return k + ': ' + (typeof x === 'number' ? (Number.isInteger(x) ? x : num(x, 3)) : short(JSON.stringify(x), 60));
      });
      section.appendChild(el('div', { class: 'decision', 'data-node-id': id, on: { click: function () {
        showNode(v, id); } } }, el('b', null, n.label), ' ', el('span', { class: 'faint' }, facts.join(' · '))));
    });
    return section;
  }

  // -- every call ------------------------------------------------------------------------------
  function calls(v) {
    var section = card('Every step', v.nodes.length + ' trace nodes · token usage per node · click a row');
    var most = Math.max.apply(null, v.nodes.map(function (n) { return (n.usage || {}).completion_tokens || 0; }).concat([1]));
    var depth = {};
    var rows = v.nodes.map(function (n) {
      depth[n.id] = n.parent === null || depth[n.parent] === undefined ? 0 : depth[n.parent] + 1;
      var u = n.usage || {}, d = n.data || {};
      var bar = el('span', { class: 'tok' }); bar.style.width = (60 * (u.completion_tokens || 0) / most).toFixed(1) + 'px';
      var name = el('td', null, n.kind, ' ', el('span', { class: 'muted' }, n.label),
        many(v) && d.model ? [' ', modelBadge(v, d.model)] : null);
      name.style.paddingLeft = (8 + 14 * Math.min(depth[n.id], 8)) + 'px';
      return el('tr', { class: 'row', 'data-node-id': n.id, on: { click: function () { showNode(v, n.id); } } },
        el('td', { class: 'num faint' }, n.id), name,
        el('td', null, statusPill(d.status), d.score !== undefined && d.score !== null ? ' ' + num(d.score, 3) : ''),
        el('td', { class: 'num' }, u.prompt_tokens === undefined ? '' : num(u.prompt_tokens)),
        el('td', { class: 'num' }, u.completion_tokens === undefined ? '' : num(u.completion_tokens)),
        el('td', null, bar), el('td', { class: 'faint' }, short(d.text || '', 70)));
    });
    var table = el('table', { class: 'list' }, el('tr', null, ['#', 'node', 'status', 'prompt', 'completion', '', 'text']
      .map(function (h) { return el('th', null, h); })), rows);
    section.appendChild(el('details', { open: v.nodes.length <= 40 ? 'open' : null },
      el('summary', null, 'all ' + v.nodes.length + ' nodes'), table));
    return section;
  }

  // -- one node, in the drawer -------------------------------------------------------------------
  function drawer() {
    var d = document.getElementById('drawer');
    if (!d) {
      d = el('aside', { id: 'drawer', 'aria-live': 'polite' });
      document.body.appendChild(d);
    }
    return d;
  }
  function closeDrawer() {
    var d = document.getElementById('drawer');
    if (d) d.classList.remove('open');
    document.body.classList.remove('drawer-open');
    state.selected = null;
    Array.prototype.forEach.call(document.querySelectorAll('.tnode.selected'), function (g) {
      g.classList.remove('selected'); });
  }
  function showNode(v, id) {
    var n = nodeById(v, id);
    if (!n) return;
    state.selected = id;
    Array.prototype.forEach.call(document.querySelectorAll('.tnode'), function (g) {
      g.classList.toggle('selected', String(g.getAttribute('data-node-id')) === String(id)); });
    var d = n.data || {}, box = drawer();
    while (box.firstChild) box.removeChild(box.firstChild);
    var treeEntry = v.tree ? v.tree.nodes.filter(function (t) { return t.id === id; })[0] : null;
    box.appendChild(el('button', { class: 'close', title: 'close', text: '×', on: { click: closeDrawer } }));
    box.appendChild(el('h3', null, n.label || n.kind));
    box.appendChild(el('div', { class: 'thead' }, el('span', { class: 'pill' }, n.kind), statusPill(d.status),
      treeEntry && treeEntry.chosen ? el('span', { class: 'pill gold' }, '★ on the chosen path') : null,
      el('span', { class: 'faint' }, 'node ' + n.id), usageLine(n.usage)));
    if (d.why) box.appendChild(el('p', { class: 'why', id: 'node-why' }, d.why));
    var facts = {};
    ['answer', 'step_score', 'score', 'visits', 'value', 'finish_reason', 'status', 'passed', 'tests',
      'confidence', 'stopped', 'first_dip', 'threshold', 'agreement', 'route', 'extra_samples', 'p',
      'samples', 'leader', 'runner_up', 'stop', 'chosen', 'winner', 'seconds', 'message', 'judged',
      'model', 'role', 'agent', 'round', 'layer', 'proposer', 'signal', 'evidence', 'escalated',
      'strong_model', 'method', 'p_first', 'unanimous', 'stopped_early', 'agrees', 'majority']
      .forEach(function (k) { if (d[k] !== undefined && d[k] !== null) facts[k] = d[k]; });
    var table = kvTable(facts);
    if (table) box.appendChild(table);
    if (n.kind === 'strategy' && d.question) box.appendChild(el('pre', null, d.question));
    if (d.text !== undefined) {
      box.appendChild(el('h4', null, n.kind === 'generate' && treeEntry ? 'this step' : 'text'));
      box.appendChild(el('pre', { id: 'node-text' }, d.text));
    }
    if (d.reasoning) { box.appendChild(el('h4', null, 'reasoning')); box.appendChild(el('pre', null, d.reasoning)); }
    if (d.prefill) {
      box.appendChild(el('h4', null, 'the path so far (continued from)'));
      box.appendChild(el('pre', null, d.prefill));
    }
    if (d.failures) { box.appendChild(el('h4', null, 'failures')); box.appendChild(el('pre', { class: 'why' }, d.failures)); }
    if (d.output) { box.appendChild(el('h4', null, 'output')); box.appendChild(el('pre', null, d.output)); }
    var judges = (treeEntry && treeEntry.judges) || v.nodes.filter(function (j) {
      return j.data && j.data.judged === id; }).map(function (j) { return j.id; });
    if (judges.length) {
      box.appendChild(el('h4', null, 'judge calls'));
      judges.forEach(function (jid) {
        var j = nodeById(v, jid), jd = j.data || {};
        box.appendChild(el('div', { class: 'judge' }, el('div', { class: 'thead' }, el('b', null, j.label),
          jd.score !== undefined ? el('span', null, 'score ' + num(jd.score, 3)) : null,
          jd.step ? el('span', { class: 'faint' }, 'step ' + jd.step) : null, usageLine(j.usage)),
          el('pre', null, jd.text || '')));
      });
    }
    var kids = (v._kids[id] || []);
    if (kids.length) {
      box.appendChild(el('h4', null, 'below it'));
      kids.forEach(function (k) {
        box.appendChild(el('div', null, el('button', { class: 'link', text: k.kind + ' ' + k.label, on: {
          click: function () { showNode(v, k.id); } } }), k.data && k.data.status ? ' ' : null, statusPill(k.data && k.data.status)));
      });
    }
    if (n.parent !== null && nodeById(v, n.parent)) {
      box.appendChild(el('h4', null, 'above it'));
      var up = nodeById(v, n.parent);
      box.appendChild(el('button', { class: 'link', text: up.kind + ' ' + up.label, on: { click: function () {
        showNode(v, up.id); } } }));
    }
    box.classList.add('open');
    document.body.classList.add('drawer-open');
  }

  // -- live: a server's page follows the search ------------------------------------------------
  function poll() {
    if (!DATA.live || !DATA.views.some(function (w) { return w.status === 'running'; })) return;
    setTimeout(function () {
      fetch(DATA.live.data, { credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
        .then(function (fresh) {
          var keepBox = state.box;
          DATA = fresh;
          state.box = keepBox;
          render();
          poll();
        })
        .catch(function () { setTimeout(poll, 4000); });
    }, DATA.live.interval || 1000);
  }

  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') closeDrawer(); });
  var m = /view=(\d+)/.exec(location.hash);
  state.view = m && DATA.views[+m[1]] ? +m[1] : (DATA.selected || 0);
  render();
  poll();
})();
