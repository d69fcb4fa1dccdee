// Behaviour for the dashboard. No inline scripts anywhere, so a strict
// Content-Security-Policy can forbid them.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (token) event.detail.headers["X-CSRFToken"] = token.value;
});

// Progress bars take their width from data-percent (no inline styles, for the CSP).
function sizeProgressBars(root) {
  root.querySelectorAll(".progress-bar[data-percent]").forEach((bar) => {
    bar.style.width = `${bar.dataset.percent}%`;
  });
}
document.addEventListener("DOMContentLoaded", () => sizeProgressBars(document));
document.addEventListener("htmx:afterSwap", (event) => sizeProgressBars(event.target.parentElement || document));
