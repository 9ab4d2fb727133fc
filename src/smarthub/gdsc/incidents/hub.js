// The hub detail page: when the live stream (/api/live) reports a change, the #detail part is
// fetched again from the server (same page of pulls) and swapped in; no reload, no toolkit.
const detail = document.getElementById("detail");
let seen = null;
async function refresh() {
  const u = new URLSearchParams({part: "detail", pulls_offset: detail.dataset.offset});
  const r = await fetch(location.pathname + "?" + u);
  if (r.ok) detail.innerHTML = await r.text();
}
if (window.EventSource) {
  const es = new EventSource("/api/live");
  es.addEventListener("status", e => {
    const d = JSON.parse(e.data);
    document.getElementById("live").textContent = "live · " + d.at;
    if (seen !== null && seen !== d.version) refresh();
    seen = d.version;
  });
}
