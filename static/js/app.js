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

// The Entries page's selection lives in the session (archive_app/selection.py). A tick sends
// just that row; the page's own form does the same without script ("Update the selection").
async function sendSelection(form, shown, checked) {
  const body = new URLSearchParams();
  body.append("op", "page");
  shown.forEach((id) => body.append("shown", id));
  checked.forEach((id) => body.append("checked", id));
  const response = await fetch(form.action, {
    method: "POST",
    body,
    headers: {
      Accept: "application/json",
      "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value,
    },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`selection: HTTP ${response.status}`);
  const { selected } = await response.json();
  document.querySelectorAll("[data-selected-count]").forEach((node) => {
    node.textContent = selected.toLocaleString("en-US");
  });
  const preview = document.querySelector("[data-testid=preview-selected]");
  if (preview) preview.disabled = selected === 0;
  document.body.dataset.selectionSaved = String(Date.now());
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("selection-form");
  if (!form) return;
  form.querySelectorAll(".js-hide").forEach((node) => node.classList.add("d-none"));
  const boxes = () => [...document.querySelectorAll("input[name=checked][form=selection-form]")];
  const pageBox = document.getElementById("select-page");
  const showPageState = () => {
    if (!pageBox) return;
    const ticked = boxes().filter((box) => box.checked).length;
    pageBox.checked = ticked > 0 && ticked === boxes().length;
    pageBox.indeterminate = ticked > 0 && ticked < boxes().length;
  };
  showPageState();
  document.addEventListener("change", (event) => {
    const box = event.target;
    let changed;
    if (box.matches("input[name=checked][form=selection-form]")) {
      changed = [box];
    } else if (box === pageBox) {
      changed = boxes();
      changed.forEach((row) => { row.checked = box.checked; });
    } else {
      return;
    }
    const ids = changed.map((row) => row.value);
    sendSelection(form, ids, changed.filter((row) => row.checked).map((row) => row.value)).catch(() => {
      // Not stored (signed out, say): undo the ticks rather than show a selection that is not there.
      changed.forEach((row) => { row.checked = !row.checked; });
      let note = document.querySelector("[data-testid=selection-error]");
      if (!note) {
        note = document.createElement("div");
        note.className = "alert alert-danger small";
        note.setAttribute("role", "alert");
        note.dataset.testid = "selection-error";
        form.after(note);
      }
      note.textContent = "The selection could not be saved. Reload the page (you may need to sign in again).";
    }).finally(showPageState);
    showPageState();
  });
});

// A type-ahead over a long <select multiple> (the category picker): options that do not
// contain the typed words are hidden; chosen ones always stay in sight.
document.addEventListener("input", (event) => {
  const finder = event.target;
  if (!finder.matches("input[data-find-options]")) return;
  const select = document.getElementById(finder.dataset.findOptions);
  if (!select) return;
  const words = finder.value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const option of select.options) {
    const text = option.textContent.toLowerCase();
    option.hidden = !option.selected && !words.every((word) => text.includes(word));
  }
});
