// Live: the summary, the windows and the error log come by Server-Sent Events
// (/api/live); the fleet table is paged, sorted and filtered by the server (/api/hubs).
const st = {offset: 0, limit: Number(document.getElementById("hubs").dataset.limit), sort: "hub_id", order: "asc", q: ""};
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function hubs() {
  const u = new URLSearchParams({offset: st.offset, limit: st.limit, sort: st.sort, order: st.order, q: st.q});
  const r = await fetch("/api/hubs?" + u); const d = await r.json();
  document.querySelector("#hubs tbody").innerHTML = d.rows.map(h => "<tr>" +
    "<td><a href='/hubs/" + encodeURIComponent(h.hub_id) + "'>" + esc(h.hub_id) + "</a></td>" +
    [h.premises_id, h.status, h.last_pull || "never", h.pulls, h.readings].map(c => "<td>" + esc(c) + "</td>").join("") +
    "<td class='" + (h.errors ? "err" : "ok") + "'>" + esc(h.errors) + "</td></tr>").join("");
  document.getElementById("page").textContent = d.total ? (d.offset + 1) + "–" + (d.offset + d.rows.length) + " of " + d.total : "no hub";
}
document.getElementById("q").addEventListener("input", e => { st.q = e.target.value; st.offset = 0; hubs(); });
document.getElementById("prev").onclick = () => { st.offset = Math.max(0, st.offset - st.limit); hubs(); };
document.getElementById("next").onclick = () => { st.offset += st.limit; hubs(); };
document.querySelectorAll("th[data-sort]").forEach(th => th.onclick = () => {
  st.order = (st.sort === th.dataset.sort && st.order === "asc") ? "desc" : "asc"; st.sort = th.dataset.sort; st.offset = 0; hubs(); });
let seen = null;
if (window.EventSource) {
  const es = new EventSource("/api/live");
  es.addEventListener("status", e => {
    const d = JSON.parse(e.data);
    document.getElementById("summary").textContent = d.summary;
    document.getElementById("live").textContent = "live · windows " + d.windows + " · pulls " + d.pulls +
      " · failed " + d.failed + " · open incidents " + d.incidents_open + " · " + d.at;
    document.getElementById("chart").innerHTML = d.chart;
    document.getElementById("errors").innerHTML = d.errors;
    if (d.version !== seen) hubs();  // the table is fetched again only when something changed
    seen = d.version;
  });
}
