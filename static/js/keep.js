// The keep page: the link from the e-mail carries its token after "#", which browsers never send
// to a server, so the token is in no access log. Post it from here, and take it out of the
// address bar and the history. (hashchange: a link opened while this page is already shown.)
function postKeepToken() {
  const form = document.getElementById("keep-open-form");
  const token = decodeURIComponent(window.location.hash.slice(1));
  if (!form || !token) return;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  form.querySelector("input[name=token]").value = token;
  form.submit();
}
document.addEventListener("DOMContentLoaded", postKeepToken);
window.addEventListener("hashchange", postKeepToken);
