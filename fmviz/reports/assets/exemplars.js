"use strict";
(function () {
  const data = JSON.parse(document.getElementById("fmviz-data").textContent);
  const viewer = document.getElementById("viewer");
  const title = document.getElementById("viewer-title");
  const input = document.getElementById("viewer-input");
  const rect = document.getElementById("viewer-rect");
  const map = document.getElementById("viewer-map");

  function show(detail) {
    title.textContent = detail.layer + "  channel " + detail.channel + "  #" + detail.rank +
      "  score " + (detail.score === null ? "-" : Number(detail.score).toPrecision(4)) +
      "  " + detail.path +
      (detail.box ? "  box " + JSON.stringify(detail.box) : "");
    if (detail.input !== null && detail.input !== undefined) {
      input.src = data.inputs[detail.input];
      input.hidden = false;
    } else {
      input.hidden = true;
    }
    rect.hidden = true;
    if (detail.box && detail.original && detail.box.length === 4) {
      const h = detail.original[0], w = detail.original[1];
      rect.style.left = (100 * detail.box[0] / w) + "%";
      rect.style.top = (100 * detail.box[1] / h) + "%";
      rect.style.width = (100 * (detail.box[2] - detail.box[0]) / w) + "%";
      rect.style.height = (100 * (detail.box[3] - detail.box[1]) / h) + "%";
      rect.hidden = input.hidden;
    }
    if (detail.map) {
      map.src = detail.map;
      map.hidden = false;
    } else {
      map.hidden = true;
    }
    viewer.hidden = false;
  }

  document.querySelectorAll("figure.crop").forEach(function (figure) {
    function open() { show(data.details[Number(figure.dataset.detail)]); }
    figure.addEventListener("click", open);
    figure.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { open(); }
    });
  });
  document.getElementById("viewer-close").addEventListener("click", function () {
    viewer.hidden = true;
  });
  viewer.addEventListener("click", function (event) {
    if (event.target === viewer) { viewer.hidden = true; }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { viewer.hidden = true; }
  });
}());
