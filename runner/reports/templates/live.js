/* wsload live dashboard: the report's page, its body replaced by each second's report pushed
   over Server-Sent Events (/events), its charts drawn by the report's own code
   (window.wsloadReport.draw). When the run ends the page is its final report, with that report
   to download. A stop button (like Ctrl-C) only when the page was opened with ?token=...: the
   token is sent with the request and checked by the server. The page writes its state into
   <body data-live data-updates data-second> so a headless browser (and the tests) can follow it. */
(function () {
  "use strict";
  var body = document.body;
  var main = document.querySelector("main");
  var token = new URLSearchParams(location.search).get("token") || "";
  var updates = 0;
  var ended = false;

  var bar = document.createElement("div");
  bar.className = "live-bar";
  bar.id = "live-bar";
  var state = document.createElement("span");
  state.id = "live-state";
  var when = document.createElement("span");
  when.id = "live-when";
  var rounds = document.createElement("span");
  rounds.className = "rounds";
  rounds.id = "live-rounds";
  bar.appendChild(state);
  bar.appendChild(when);
  bar.appendChild(rounds);
  var stop = null;
  if (token) {
    stop = document.createElement("button");
    stop.id = "live-stop";
    stop.type = "button";
    stop.textContent = "Stop the run (like Ctrl-C)";
    stop.onclick = function () {
      stop.disabled = true;
      fetch("/stop", { method: "POST", headers: { "Authorization": "Bearer " + token } })
        .then(function (r) { return r.text().then(function (t) { return [r.ok, t]; }); })
        .then(function (res) {
          body.setAttribute("data-stop", res[0] ? "accepted" : "refused");
          note.textContent = res[0] ? "stopping: the run ends gracefully, its report follows"
                                    : "stop refused: " + res[1] + " (is the whole token in the URL?)";
          if (!res[0]) stop.disabled = false;
        })
        .catch(function (e) { body.setAttribute("data-stop", "failed"); note.textContent = "stop failed: " + e; stop.disabled = false; });
    };
    bar.appendChild(stop);
    var note = document.createElement("span");  /* the stop's answer: kept, not overwritten each second */
    note.id = "live-stop-note";
    bar.appendChild(note);
  }
  var download = document.createElement("a");
  download.id = "live-download";
  download.style.display = "none";
  download.textContent = "download the HTML report";
  download.download = "wsload-report.html";
  bar.appendChild(download);
  body.insertBefore(bar, body.firstChild);

  function say(text) { state.textContent = text; }
  function live(value) { body.setAttribute("data-live", value); }
  live("connecting");
  say("connecting to the run...");

  var source = new EventSource("/events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  source.onmessage = function (event) {
    var msg = JSON.parse(event.data);
    main.innerHTML = msg.body;
    document.title = (msg.final ? "" : "[live] ") + msg.title;
    window.wsloadReport.draw(msg.data);
    updates++;
    body.setAttribute("data-updates", String(updates));
    body.setAttribute("data-second", String(msg.second));
    when.textContent = (msg.final ? "ended after " : "second ") + msg.second + (msg.final ? " s" : "");
    if (msg.rounds && msg.rounds.length) rounds.textContent = "earlier rounds: " + msg.rounds.join(" \u00b7 ");
    if (msg.final) {
      ended = true;
      live("final");
      say("the run has ended: its report");
      if (download.href) URL.revokeObjectURL(download.href);
      download.href = URL.createObjectURL(new Blob([msg.html], { type: "text/html" }));
      download.style.display = "";
      if (stop) stop.disabled = true;
    } else {
      ended = false;
      live("live");
      say("live: " + msg.verdict + " so far");
      download.style.display = "none";
      if (stop && body.getAttribute("data-stop") !== "accepted") stop.disabled = false;
    }
  };
  source.onerror = function () {
    if (ended) {
      source.close();  /* the run is over and wsload has exited: keep its report */
      say("the run has ended: its report (wsload has exited)");
      return;
    }
    live("disconnected");
    say("lost the connection to wsload; retrying...");
  };
})();
