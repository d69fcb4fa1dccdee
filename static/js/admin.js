// The RQ dashboard's job lists: its "select all" checkbox has no label, and its inline script is refused by
// the Content-Security-Policy. Give it a name and make it work. (Django's own change lists label theirs.)
document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.getElementById("action-toggle");
  if (!toggle || toggle.hasAttribute("aria-label")) return;
  toggle.setAttribute("aria-label", "Select all jobs on this page");
  toggle.addEventListener("change", () => {
    document.querySelectorAll("input.action-select").forEach((box) => {
      box.checked = toggle.checked;
    });
  });
});
