// The outage page: when the live stream (/api/live) reports a change, the map, the live outages
// and the timeline are fetched again from the server and swapped in; no reload, no toolkit.
const body = document.getElementById("outages-body");
let seen = null;
function showFirstOutage() {  // a large network scrolls: bring the first live outage into view
  const label = document.querySelector("#map .outage-label"), box = document.getElementById("map-box");
  if (label && box) box.scrollTop = Math.max(0, label.getBBox().y - box.clientHeight / 3);
}
async function refresh() {
  const box = document.getElementById("map-box"), top = box ? box.scrollTop : 0;
  const u = new URLSearchParams(location.search); u.set("part", "body");  // the same period
  const r = await fetch("/outages?" + u);
  if (!r.ok) return;
  body.innerHTML = await r.text();
  document.getElementById("map-box").scrollTop = top;  // where the operator was looking
}
showFirstOutage();
if (window.EventSource) {
  const es = new EventSource("/api/live");
  es.addEventListener("status", e => {
    const d = JSON.parse(e.data);
    document.getElementById("live").textContent = "live · outage events " + d.outage_event + " · " + d.at;
    if (seen !== null && seen !== d.version) refresh();
    seen = d.version;
  });
}
