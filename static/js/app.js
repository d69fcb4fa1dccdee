// Behaviour for the dashboard. No inline scripts anywhere, so a strict
// Content-Security-Policy can forbid them.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (token) event.detail.headers["X-CSRFToken"] = token.value;
});
