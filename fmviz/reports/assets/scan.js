(function(){
"use strict";
var DATA = JSON.parse(document.getElementById("fmviz-data").textContent);
var tip = document.getElementById("tip");
document.querySelectorAll("svg.chan").forEach(function(svg){
  var L = DATA.layers[+svg.closest("section.layer").dataset.pos];
  var n = L.classes.length;
  svg.addEventListener("mousemove", function(ev){
    var r = svg.getBoundingClientRect();
    var c = Math.min(n - 1, Math.max(0, Math.floor((ev.clientX - r.left) / r.width * n)));
    var active = L.active[c];
    active = (active === null || active === undefined) ? "\u2014" : (100 * active).toFixed(2) + "%";
    tip.textContent = "channel " + c + " \u00b7 " + L.classes[c] +
      "\nmax |a| " + fmt(L.max_abs[c]) + "\nactive " + active;
    tip.dataset.channel = String(c);
    tip.hidden = false;
    tip.style.left = (ev.clientX + 12) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
  });
  svg.addEventListener("mouseleave", function(){ tip.hidden = true; });
});
})();
