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
      confidence: confidence, waves: waves, decisions: decisions, calls: calls };
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
      el('div', { class: 'costs' },
        el('div', null, el('b', null, num(u.total_tokens)), el('span', null,
          num(u.prompt_tokens) + ' prompt + ' + num(u.completion_tokens) + ' completion tokens')),
        el('div', null, el('b', null, num(u.calls)), el('span', null, 'calls')),
        el('div', null, el('b', null, num(u.seconds, 2) + ' s'), el('span', null,
          v.usage_from_trace ? 'summed over calls' : 'wall time')))));
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
      var head = el('div', { class: 'ghead', on: { click: function () {
        members.hidden = !members.hidden; state.open[key] = !members.hidden; } } },
        el('div', null, el('span', { class: 'ganswer' }, g.answer === null ? '(no answer)' :
          short(g.answer, 120)), ' ',
          g.winner ? el('span', { class: 'pill gold winner-badge' }, '★ chosen') : null, ' ',
          g.correct === true ? el('span', { class: 'pill good' }, '✓') :
            g.correct === false ? el('span', { class: 'pill bad' }, '✗') : null,
          g.voted ? null : el('span', { class: 'pill' }, 'did not vote')),
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
    var bits = [el('b', null, '#' + (c.index + 1)), c.winner ? el('span', { class: 'pill gold' }, '★ winner') : null,
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
      var name = el('td', null, n.kind, ' ', el('span', { class: 'muted' }, n.label));
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
      'samples', 'leader', 'runner_up', 'stop', 'chosen', 'winner', 'seconds', 'message', 'judged']
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
