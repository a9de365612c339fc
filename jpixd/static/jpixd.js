// jpixd: the little progressive JavaScript the pages use. Without it every form works;
// with it, a region's "select all" box ticks its prefectures, and on a phone the board's
// filters fold away so that the first failure is on the first screen.
"use strict";
document.querySelectorAll("input[data-region-all]").forEach(function (all) {
  var region = all.getAttribute("data-region-all");
  var boxes = document.querySelectorAll('input[data-region="' + region + '"]');
  var sync = function () {
    var on = 0;
    boxes.forEach(function (b) { if (b.checked) { on += 1; } });
    all.checked = on === boxes.length;
    all.indeterminate = on > 0 && on < boxes.length;
  };
  all.hidden = false;
  if (all.parentElement) { all.parentElement.hidden = false; }
  all.addEventListener("change", function () {
    boxes.forEach(function (b) { b.checked = all.checked; });
  });
  boxes.forEach(function (b) { b.addEventListener("change", sync); });
  sync();
});
if (window.matchMedia && window.matchMedia("(max-width: 40rem)").matches) {
  document.querySelectorAll("details[data-fold-on-phone]").forEach(function (d) {
    d.removeAttribute("open");
  });
}
