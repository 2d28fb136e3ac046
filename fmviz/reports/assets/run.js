(function(){
"use strict";
var DATA = JSON.parse(document.getElementById("fmviz-data").textContent);
var ZOOM_BOX = 224, THIN = 32, TARGET = 560, cache = {};
function pct(v){ return (v === null || v === undefined) ? "\u2014" : (100 * v).toFixed(1) + "%"; }
function picture(url){
  var im = cache[url];
  if (!im){ im = new Image(); im.src = url; cache[url] = im; }
  return im;
}
// t: {x0, y0, w, h, gx, gy, cols, rows, channels}: box k at x0 + col*(w+gx), y0 + row*(h+gy)
function tileAt(t, x, y){
  var col = Math.floor((x - t.x0) / (t.w + t.gx)), row = Math.floor((y - t.y0) / (t.h + t.gy));
  if (col < 0 || row < 0 || col >= t.cols || row >= t.rows) return -1;
  if (x - t.x0 - col * (t.w + t.gx) >= t.w || y - t.y0 - row * (t.h + t.gy) >= t.h) return -1;
  var k = row * t.cols + col;
  return k < t.channels.length ? k : -1;
}
function box(t, k){
  var r = Math.floor(k / t.cols), c = k % t.cols;
  return {x: t.x0 + c * (t.w + t.gx), y: t.y0 + r * (t.h + t.gy), w: t.w, h: t.h};
}
function setup(section){
  var L = DATA.layers[+section.dataset.pos], T = L.tiles;
  var img = section.querySelector("img.map");
  var buttons = section.querySelectorAll(".views button");
  var canvas = section.querySelector("canvas.zoom-tile");
  var statsEl = section.querySelector(".zoom-stats");
  var hint = section.querySelector(".zoom-hint");
  var pick = section.querySelector(".pick");
  var ovCanvas = section.querySelector("canvas.zoom-overlay");
  var ovNote = section.querySelector(".overlay-note");
  var srcOf = {};
  buttons.forEach(function(b){ srcOf[b.dataset.view] = b.dataset.src; });
  var pinned = -1, shown = -1, rows = null, hintText = hint ? hint.textContent : "";
  function hasTiles(){
    return !!(T && canvas && img && T.views.indexOf(img.dataset.view) >= 0);
  }
  function tileSource(){
    return srcOf[hasTiles() ? img.dataset.view : T.views[0]];
  }
  function fit(){
    // Small pictures are scaled up by a whole factor (crisp pixels); grid and heatmap share the
    // grid's factor so the tiles keep their size when switching.
    if (!img.naturalWidth) return;
    var base = (T && T.fit && hasTiles()) ? T.fit : img.naturalWidth;
    var k = Math.max(1, Math.min(16, Math.floor(TARGET / base)));
    img.style.width = (img.naturalWidth * k) + "px";
    img.dataset.fitted = img.getAttribute("src");
  }
  function show(view){
    if (!srcOf[view] || !img) return;
    img.src = srcOf[view];
    img.dataset.view = view;
    if (img.complete) fit();  // from the cache: no flicker at the wrong size
    img.alt = view + " of layer " + L.name;
    buttons.forEach(function(b){
      b.setAttribute("aria-pressed", String(b.dataset.view === view));
    });
    img.classList.toggle("pickable", hasTiles());
    if (hint) hint.textContent = hasTiles() ? hintText : "Switch to " + T.views.join(" or ") +
      " to pick channels.";
    place(pinned);
    if (pinned >= 0) zoom(pinned);
  }
  section.showView = show;
  buttons.forEach(function(b){ b.addEventListener("click", function(){ show(b.dataset.view); }); });
  function place(k){
    if (!pick) return;
    if (k < 0 || !hasTiles() || !img.naturalWidth){ pick.hidden = true; return; }
    var b = box(T, k), s = img.clientWidth / img.naturalWidth;
    pick.hidden = false;
    pick.style.left = (img.offsetLeft + img.clientLeft + b.x * s - 2) + "px";
    pick.style.top = (img.offsetTop + img.clientTop + b.y * s - 2) + "px";
    pick.style.width = (b.w * s + 4) + "px";
    pick.style.height = (b.h * s + 4) + "px";
  }
  function zoom(k){
    if (!canvas) return;
    shown = k;
    if (k < 0){ canvas.hidden = true; statsEl.hidden = true; hint.hidden = false; return; }
    var b = box(T, k), z = Math.min(ZOOM_BOX / b.w, ZOOM_BOX / b.h);
    if (z >= 1) z = Math.floor(z);
    var sy = (b.h * z < THIN) ? Math.ceil(THIN / b.h) : z;  // thin strips (series rows): taller
    var w = Math.max(1, Math.round(b.w * z)), h = Math.max(1, Math.round(b.h * sy));
    var src = tileSource(), im = picture(src);
    canvas.width = w; canvas.height = h;
    canvas.dataset.channel = String(T.channels[k]);
    canvas.dataset.src = src;
    function draw(){
      if (shown !== k || canvas.dataset.src !== src) return;
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = z < 1;  // enlarging: crisp pixels; shrinking: averaged
      ctx.clearRect(0, 0, w, h);
      ctx.drawImage(im, b.x, b.y, b.w, b.h, 0, 0, w, h);
      canvas.dataset.drawn = src;
    }
    if (im.complete && im.naturalWidth) draw();
    else im.addEventListener("load", draw, {once: true});
    canvas.hidden = false; hint.hidden = true; statsEl.hidden = false;
    var c = T.channels[k], range = L.ranges[k] || [null, null];
    var items = [["channel", "channel", String(c)],
                 ["tile", T.unit, (k + 1) + " of " + T.channels.length],
                 ["min", "min", fmt(L.min ? L.min[c] : null)], ["max", "max", fmt(L.max[c])],
                 ["mean", "mean", fmt(L.mean[c])],
                 ["zeros", "zeros", pct(L.zero[c])],
                 ["range", T.unit + " range", fmt(range[0]) + " \u2026 " + fmt(range[1])]];
    statsEl.textContent = "";
    items.forEach(function(it){
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = it[1]; dd.textContent = it[2]; dd.dataset.key = it[0];
      statsEl.appendChild(dt); statsEl.appendChild(dd);
    });
  }
  // A clicked channel over the input picture: its heatmap tile (the label's corner box left
  // out) stretched over the picture at half opacity, drawn here from the page's own pictures.
  function overlay(k){
    if (!ovCanvas) return;
    var heat = srcOf.heatmap;
    if (k < 0 || !DATA.picture || !heat || !T){ ovCanvas.hidden = true; ovNote.hidden = true;
      return; }
    var base = picture(DATA.picture), tiles = picture(heat), b = box(T, k);
    function draw(){
      if (pinned !== k || !base.naturalWidth || !tiles.naturalWidth) return;
      var z = Math.min(ZOOM_BOX / base.naturalWidth, ZOOM_BOX / base.naturalHeight, 4);
      var w = Math.max(1, Math.round(base.naturalWidth * z));
      var h = Math.max(1, Math.round(base.naturalHeight * z));
      ovCanvas.width = w; ovCanvas.height = h;
      var ctx = ovCanvas.getContext("2d"), sx = w / b.w, sy = h / b.h;
      ctx.globalAlpha = 1; ctx.drawImage(base, 0, 0, w, h);
      ctx.globalAlpha = 0.55; ctx.imageSmoothingEnabled = true;
      var lw = T.label ? Math.min(T.label[0], b.w) : 0, lh = T.label ? Math.min(T.label[1], b.h) : 0;
      // right of the label box (full height), then below it
      if (b.w - lw > 0) ctx.drawImage(tiles, b.x + lw, b.y, b.w - lw, b.h, lw * sx, 0,
                                      (b.w - lw) * sx, h);
      if (lw > 0 && b.h - lh > 0) ctx.drawImage(tiles, b.x, b.y + lh, lw, b.h - lh, 0, lh * sy,
                                                lw * sx, (b.h - lh) * sy);
      ctx.globalAlpha = 1;
      ovCanvas.dataset.channel = String(T.channels[k]);
    }
    [base, tiles].forEach(function(im){
      if (!(im.complete && im.naturalWidth)) im.addEventListener("load", draw, {once: true});
    });
    draw();
    ovCanvas.hidden = false; ovNote.hidden = false;
    ovNote.textContent = "channel " + T.channels[k] + " over the input (its heatmap tile, " +
      "tile scale); exact overlay: fmviz run … --overlay-channel " + T.channels[k];
  }
  function select(k){
    pinned = k; zoom(k); place(k); overlay(k);
    if (rows) rows.forEach(function(tr){
      tr.classList.toggle("sel", k >= 0 && +tr.dataset.tile === k);
    });
  }
  section.selectTile = select;
  function pickRow(k){
    return function(){
      if (!hasTiles()) show(T.views[0]);
      select(k);
      canvas.parentNode.scrollIntoView({block: "nearest"});
    };
  }
  if (img){
    img.addEventListener("load", function(){ fit(); place(pinned); });
    if (img.complete) fit();
    img.classList.toggle("pickable", hasTiles());
  }
  if (img && T && canvas){
    var at = function(ev){
      var r = img.getBoundingClientRect(), s = img.naturalWidth / img.clientWidth;
      return tileAt(T, (ev.clientX - r.left - img.clientLeft) * s,
                       (ev.clientY - r.top - img.clientTop) * s);
    };
    img.addEventListener("mousemove", function(ev){
      if (!hasTiles()) return;
      var k = at(ev);
      if (k >= 0 && k !== shown){ zoom(k); place(k); }
    });
    img.addEventListener("mouseleave", function(){ zoom(pinned); place(pinned); });
    img.addEventListener("click", function(ev){
      if (!hasTiles()) return;
      var k = at(ev);
      if (k >= 0) select(k === pinned ? -1 : k);
    });
    window.addEventListener("resize", function(){ place(pinned); });
  }
  var details = section.querySelector("details.channels");
  if (details){
    var build = function(){
      if (rows) return;
      var tbody = details.querySelector("tbody"), tileOf = {};
      if (T) T.channels.forEach(function(c, k){ tileOf[c] = k; });
      rows = [];
      for (var c = 0; c < L.max.length; c++){
        var tr = document.createElement("tr"), k = (c in tileOf) ? tileOf[c] : -1;
        tr.dataset.channel = c; tr.dataset.tile = k;
        tr.sortValues = {channel: c, tile: k < 0 ? Infinity : k,
                         min: L.min ? L.min[c] : null,
                         max: L.max[c], mean: L.mean[c], zero: L.zero[c]};
        [String(c), k < 0 ? "\u2014" : String(k + 1), fmt(L.min ? L.min[c] : null),
         fmt(L.max[c]), fmt(L.mean[c]), pct(L.zero[c])]
          .forEach(function(t){
            var td = document.createElement("td");
            td.textContent = t;
            tr.appendChild(td);
          });
        if (k < 0) tr.classList.add("hidden");
        else if (canvas) tr.addEventListener("click", pickRow(k));
        if (k === pinned) tr.classList.add("sel");
        rows.push(tr); tbody.appendChild(tr);
      }
    };
    details.addEventListener("toggle", function(){ if (details.open) build(); });
    if (details.open) build();
    details.querySelectorAll("th").forEach(function(th){
      th.querySelector("button").addEventListener("click", function(){
        build();
        var key = th.dataset.key, dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        if (!th.hasAttribute("aria-sort") && key !== "channel" && key !== "tile") dir = -1;
        details.querySelectorAll("th").forEach(function(o){ o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        var val = function(tr){
          var v = tr.sortValues[key];
          return (v === null || v === undefined) ? -Infinity : v;
        };
        rows.sort(function(a, b){
          var d = val(a) - val(b);
          return (d ? d * dir : a.sortValues.channel - b.sortValues.channel) || 0;
        });
        var tbody = details.querySelector("tbody");
        rows.forEach(function(tr){ tbody.appendChild(tr); });
      });
    });
  }
}
document.querySelectorAll("section.layer").forEach(setup);
var all = document.getElementById("all-views");
if (all) all.querySelectorAll("button").forEach(function(b){
  b.addEventListener("click", function(){
    all.querySelectorAll("button").forEach(function(o){
      o.setAttribute("aria-pressed", String(o === b));
    });
    document.querySelectorAll("section.layer").forEach(function(s){
      if (s.showView) s.showView(b.dataset.view);
    });
  });
});
})();
