// Live power: the hub pushes each new reading (Server-Sent Events); no polling.
(function () {
  "use strict";
  var power = document.getElementById("live-power");
  var time = document.getElementById("live-time");
  if (!power || !window.EventSource) return;
  var source = new EventSource("/events");
  source.addEventListener("power", function (e) {
    var d = JSON.parse(e.data);
    power.textContent = Number(d.watts).toLocaleString("en-GB");
    if (time) {
      var t = new Date(d.time);
      time.textContent = t.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: "Europe/London" });
    }
    power.dataset.updated = d.time;
  });
})();
