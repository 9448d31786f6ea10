/* wsload HTML report: draw each chart spec from the embedded JSON with uPlot.
   The page writes its own render status into <body data-render data-charts data-error> so a
   headless browser (and the test suite) can tell that every chart was drawn with data. */
(function () {
  "use strict";
  var body = document.body;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  var HEIGHT = 240;
  /* Tick spacing of the elapsed-time axis, in seconds: whole minutes and hours, not 3:20. */
  var ELAPSED_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function isPower10(v) {
    if (!(v > 0)) return false;
    var e = Math.log10(v);
    return Math.abs(e - Math.round(e)) < 1e-9;
  }
  var plots = [];
  var drawn = 0;

  function fail(message) {
    body.setAttribute("data-render", "error");
    var prev = body.getAttribute("data-error");
    body.setAttribute("data-error", (prev ? prev + "; " : "") + message);
  }

  function elapsed(s) {
    if (s == null) return "";
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h && m < 10 ? "0" : "") + m, ss = (r < 10 ? "0" : "") + r;
    return (h ? h + ":" : "") + mm + ":" + ss;
  }

  function percentile(x) {
    if (x == null) return "";
    return String(parseFloat((100 * (1 - 1 / x)).toFixed(3))) + "%";
  }

  function number(v) {
    if (v == null) return "-";
    if (v === 0) return "0";
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
  }

  function pointsWithData(data) {
    var n = 0;
    for (var i = 1; i < data.length; i++) {
      for (var j = 0; j < data[i].length; j++) {
        if (data[i][j] != null && isFinite(data[i][j])) n++;
      }
    }
    return n;
  }

  function options(spec, width) {
    var pct = spec.x === "percentile";
    var fmtX = pct ? percentile : elapsed;
    var series = [{ label: pct ? "percentile" : "elapsed", value: function (u, v) { return fmtX(v); } }];
    var few = spec.data[0].length <= 60;
    spec.series.forEach(function (label, i) {
      series.push({
        label: label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
        points: { show: few },
        value: function (u, v) { return v == null ? "-" : number(v) + " " + spec.y; }
      });
    });
    return {
      width: width,
      height: HEIGHT,
      scales: {
        x: pct ? { time: false, distr: 3, log: 10 } : { time: false, range: function (u, min, max) {
          return [Math.min(min, 0), max > min ? max : min + 10];
        } },
        y: spec.ylog ? { distr: 3, log: 10 } : { range: function (u, min, max) {
          var top = Math.max(max, (spec.marks || []).reduce(function (m, x) { return Math.max(m, x[0]); }, 0));
          return [0, top > 0 ? top * 1.05 : 1];
        } }
      },
      axes: [
        pct ? { values: function (u, splits) { return splits.map(fmtX); } }
            : { incrs: ELAPSED_STEPS, values: function (u, splits) { return splits.map(fmtX); } },
        { label: spec.y, size: 60, values: function (u, splits) {
          return splits.map(function (v) { return spec.ylog && !isPower10(v) ? "" : number(v); });
        } }
      ],
      series: series,
      cursor: pct ? {} : { sync: { key: "wsload-time" } },
      hooks: {
        drawClear: [function (u) { shade(u, spec.shade || []); }],
        draw: [function (u) {
          marks(u, spec.marks || []);
          var box = u.root.parentNode;
          if (box.getAttribute("data-drawn") !== "1") {
            box.setAttribute("data-drawn", "1");
            drawn++;
            body.setAttribute("data-charts", String(drawn));
            if (drawn === plots.length && body.getAttribute("data-render") === "pending") {
              body.setAttribute("data-render", "ok");
            }
          }
        }]
      }
    };
  }

  /* Shaded x ranges behind the lines (the seconds the load generator was saturated). */
  function shade(u, ranges) {
    if (!ranges.length) return;
    var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
    ctx.save();
    ctx.fillStyle = "rgba(198, 40, 40, 0.12)";
    ranges.forEach(function (r) {
      var x0 = Math.round(u.valToPos(r[0], "x", true)), x1 = Math.round(u.valToPos(r[1], "x", true));
      if (x1 > x0) ctx.fillRect(x0, top, x1 - x0, height);
    });
    ctx.restore();
  }

  /* Dashed horizontal bounds, each with its label. */
  function marks(u, lines) {
    if (!lines.length) return;
    var ctx = u.ctx, left = u.bbox.left, width = u.bbox.width;
    ctx.save();
    ctx.strokeStyle = "#b26a00";
    ctx.fillStyle = "#b26a00";
    ctx.setLineDash([6, 4]);
    ctx.font = Math.round(11 * devicePixelRatio) + "px system-ui, sans-serif";
    lines.forEach(function (m) {
      var y = Math.round(u.valToPos(m[0], "y", true));
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
      ctx.fillText(m[1], left + 4, y - 3);
    });
    ctx.restore();
  }

  function widthOf(el) {
    return Math.max(320, Math.floor(el.clientWidth || 800));
  }

  /* Draw every chart of ``doc`` into the page as it is now: the report draws its own once; the
     live dashboard draws each new second's after replacing the page's body (old plots go). */
  function draw(doc) {
    plots.forEach(function (p) { p.plot.destroy(); });
    plots = [];
    drawn = 0;
    body.setAttribute("data-render", "pending");
    body.removeAttribute("data-error");
    try {
      var specs = doc.charts || [];
      body.setAttribute("data-charts-expected", String(specs.length));
      body.setAttribute("data-charts", "0");
      var made = [];
      specs.forEach(function (spec) {
        var el = document.getElementById("chart-" + spec.id);
        if (!el) { fail("no element for chart " + spec.id); return; }
        var points = pointsWithData(spec.data);
        el.setAttribute("data-points", String(points));
        if (points === 0) { fail("chart " + spec.id + " has no data"); return; }
        made.push([spec, el]);
      });
      made.forEach(function (pair) {
        plots.push({ el: pair[1], spec: pair[0] });
      });
      plots.forEach(function (p) {
        p.plot = new uPlot(options(p.spec, widthOf(p.el)), p.spec.data, p.el);
      });
      if (plots.length === 0 && body.getAttribute("data-render") === "pending") {
        body.setAttribute("data-render", "ok");
      }
    } catch (e) {
      fail(String(e && e.message || e));
    }
  }

  var resize = function () {
    plots.forEach(function (p) { p.plot.setSize({ width: widthOf(p.el), height: HEIGHT }); });
  };
  window.addEventListener("resize", resize);
  window.addEventListener("beforeprint", resize);
  if (window.matchMedia) {
    var mq = window.matchMedia("print");
    if (mq.addEventListener) mq.addEventListener("change", resize);
  }
  window.wsloadReport = { draw: draw };
  try {
    var embedded = document.getElementById("wsload-data").textContent;
    if (embedded.trim()) draw(JSON.parse(embedded));
  } catch (e) {
    fail(String(e && e.message || e));
  }
})();
