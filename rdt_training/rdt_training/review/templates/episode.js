// The cursor follows the video on the time plot; clicking the plot seeks; the curation commands follow the inputs.
(function () {
  const video = document.getElementById("video");
  const box = document.getElementById("timeline");
  const img = document.getElementById("timeline-img");
  const cursor = document.getElementById("cursor");
  const label = document.getElementById("cursor-label");
  const g = JSON.parse(box.dataset.geometry);
  function place(t) {
    const f = Math.min(Math.max((t - g.t0) / (g.t1 - g.t0), 0), 1);
    const left = 100 * (g.x0 + f * (g.x1 - g.x0)) + "%";
    cursor.style.left = left; label.style.left = left;
    cursor.style.top = 100 * g.y0 + "%"; cursor.style.height = 100 * (g.y1 - g.y0) + "%";
    label.textContent = t.toFixed(2) + " s";
    box.dataset.cursorTime = t.toFixed(3);
  }
  place(0);
  if (video) {
    const follow = () => { place(video.currentTime); if (!video.paused && !video.ended) requestAnimationFrame(follow); };
    video.addEventListener("play", () => requestAnimationFrame(follow));
    video.addEventListener("timeupdate", () => place(video.currentTime));
    video.addEventListener("seeked", () => place(video.currentTime));
    img.addEventListener("click", ev => {
      const r = img.getBoundingClientRect();
      const f = ((ev.clientX - r.left) / r.width - g.x0) / (g.x1 - g.x0);
      video.currentTime = Math.min(Math.max(f, 0), 1) * (g.t1 - g.t0) + g.t0;
    });
  }
  // shell quoting as Python's shlex.quote
  const q = s => /^[A-Za-z0-9@%+=:,./_-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\"'\"'") + "'";
  const reason = document.getElementById("reason");
  const start = document.getElementById("trim-start"), end = document.getElementById("trim-end");
  function commands() {
    document.getElementById("cmd-exclude").textContent =
      `${EDIT} exclude ${KEY} --reason ${q(reason.value.trim() || "REASON")}`;
    document.getElementById("cmd-trim").textContent =
      `${EDIT} trim ${KEY} --start ${parseFloat(start.value || 0).toFixed(2)} --end ${parseFloat(end.value || 0).toFixed(2)}`;
  }
  reason.addEventListener("input", commands);
  start.addEventListener("input", commands);
  end.addEventListener("input", commands);
  const now = () => (video ? video.currentTime : 0).toFixed(2);
  document.getElementById("set-start").addEventListener("click", () => { start.value = now(); commands(); });
  document.getElementById("set-end").addEventListener("click", () => { end.value = now(); commands(); });
  commands();
})();
