// Sortable table: click a header; numbers sort as numbers, the rest as text.
(function () {
  const table = document.getElementById("episodes");
  const heads = table.tHead.rows[0].cells;
  for (let col = 0; col < heads.length; col++) {
    const th = heads[col];
    if (!th.dataset.type) continue;
    th.addEventListener("click", () => {
      const asc = !th.classList.contains("sorted-asc");
      for (const h of heads) h.classList.remove("sorted-asc", "sorted-desc");
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      const num = th.dataset.type === "num";
      const rows = Array.from(table.tBodies[0].rows);
      const key = r => { const v = r.cells[col].dataset.v; return num ? (v === "" || v === "None" ? -Infinity : parseFloat(v)) : (v || ""); };
      rows.sort((a, b) => { const x = key(a), y = key(b); const c = num ? x - y : x.localeCompare(y); return asc ? c : -c; });
      for (const r of rows) table.tBodies[0].appendChild(r);
    });
  }
})();
