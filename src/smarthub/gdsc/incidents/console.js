// The operator console's tables: each is paged, sorted and filtered by the server (its
// data-src); the page's summary, charts and error log arrive by Server-Sent Events (/api/live),
// and the tables are fetched again whenever the stream's version says something changed.
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");

const hubLink = h => "<a href=\"/hubs/" + encodeURIComponent(h) + "\">" + esc(h) + "</a>";
function cell(c, row) {
  const v = row[c.key];
  if (c.key === "hubs" && row.hub_ids && row.hub_ids.length)  // an incident's hubs: links, the rest counted
    return "<td>" + row.hub_ids.map(hubLink).join(", ") + (row.hubs_more ? " (+" + row.hubs_more + ")" : "") + "</td>";
  if (v === null || v === undefined || v === "") return "<td class='muted'>" + esc(c.empty || "") + "</td>";
  if (c.link === "hub" && v !== "(area)") return "<td>" + hubLink(v) + "</td>";
  if (c.flag) return "<td class='n " + (Number(v) ? "err" : "ok") + "'>" + esc(v) + "</td>";
  return (typeof v === "number" ? "<td class='n'>" : "<td>") + esc(v) + "</td>";
}

function liveTable(el) {
  const n = el.id, $ = s => document.getElementById(n + "-" + s);
  const cols = [...el.querySelectorAll("thead th")].map(th => ({key: th.dataset.key, empty: th.dataset.empty,
    link: th.dataset.link, flag: th.dataset.flag, th}));
  const st = {offset: 0, limit: Number(el.dataset.limit), sort: el.dataset.sort, order: el.dataset.order,
    q: "", state: el.dataset.state, total: null};
  let asked = 0;  // only the latest answer is shown (a slow one must not overwrite a newer one)
  async function load() {
    const mine = ++asked;
    const u = new URLSearchParams({offset: st.offset, limit: st.limit, sort: st.sort, order: st.order, q: st.q});
    if (st.state) u.set("state", st.state);
    const r = await fetch(el.dataset.src + "?" + u);
    if (!r.ok || mine !== asked) return;
    const d = await r.json();
    if (mine !== asked) return;
    st.total = d.total;
    el.querySelector("tbody").innerHTML = d.rows.map(row => "<tr>" + cols.map(c => cell(c, row)).join("") + "</tr>").join("");
    $("page").textContent = d.total ? (d.offset + 1) + "–" + (d.offset + d.rows.length) + " of " + d.total : "none";
    cols.forEach(c => c.key === st.sort ? c.th.setAttribute("aria-sort", st.order === "asc" ? "ascending" : "descending")
                                        : c.th.removeAttribute("aria-sort"));
    el.dataset.loaded = String(Number(el.dataset.loaded || 0) + 1);
  }
  $("q").addEventListener("input", e => { st.q = e.target.value; st.offset = 0; load(); });
  $("prev").onclick = () => { st.offset = Math.max(0, st.offset - st.limit); load(); };
  $("next").onclick = () => { if (st.total === null || st.offset + st.limit < st.total) { st.offset += st.limit; load(); } };
  if ($("state")) $("state").onchange = e => { st.state = e.target.value; st.offset = 0; load(); };
  cols.forEach(c => c.th.onclick = () => {
    st.order = (st.sort === c.key && st.order === "asc") ? "desc" : "asc"; st.sort = c.key; st.offset = 0; load(); });
  return load;
}

const tables = [...document.querySelectorAll("table[data-src]")].map(liveTable);
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
    if (seen !== null && d.version !== seen) tables.forEach(load => load());
    seen = d.version;
  });
}
