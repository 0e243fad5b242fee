// Keyboard shortcuts of the label page: a digit picks that label, s skips, u undoes. They click the buttons
// that carry data-key, so a shortcut does exactly what the button does (and works again after htmx swaps).
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  var target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  var area = document.getElementById("labelling");
  if (!area || area.querySelector("form.htmx-request")) return;  // one answer at a time (status polls do not count)
  var button = area.querySelector('button[data-key="' + event.key.toLowerCase() + '"]');
  if (!button || button.disabled) return;
  event.preventDefault();
  button.click();
});
// After an answer the next text arrives: move focus to it, so screen readers read it and Tab starts there.
document.addEventListener("htmx:afterSwap", function (event) {
  if (event.detail.target.id !== "labelling") return;
  var heading = document.getElementById("text-heading");
  if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
});
