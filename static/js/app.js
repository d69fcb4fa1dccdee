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

// A filter travels in the web address, and servers refuse long ones (gunicorn's limit is about
// 4 KB: some 350 pasted entry ids). Say so here and keep what was typed, rather than sending a
// request the server would reject with a bare error page.
const MAX_FILTER_URL_LENGTH = 4000;
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form.filter-form")) return;
  form.querySelector("[data-testid=filter-too-long]")?.remove();
  const query = new URLSearchParams(new FormData(form)).toString();
  const length = form.action.length + 1 + query.length;
  if (length <= MAX_FILTER_URL_LENGTH) return;
  event.preventDefault();
  const note = document.createElement("div");
  note.className = "alert alert-danger small";
  note.setAttribute("role", "alert");
  note.dataset.testid = "filter-too-long";
  note.textContent =
    `This filter is too long for a web address (${length.toLocaleString()} characters; at most ` +
    `${MAX_FILTER_URL_LENGTH.toLocaleString()}, about 350 entry ids). Split the id list, or use ` +
    "the command line: list_entries --id-file FILE (up to 10,000 ids).";
  form.prepend(note);
  note.scrollIntoView({ block: "nearest" });
});
