// The chart page: candles, moving average and forecast read from the JSON API, kept current by
// the server-sent events of /stream/{symbol}. Plain browser JavaScript, no build step.
"use strict";

const pageParams = new URLSearchParams(window.location.search);
const INTERVAL_MS = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 };
const COLORS = { up: "#1a9c6c", down: "#d64545", average: "#e08a00", forecast: "#1f6fd1", band: "rgba(31, 111, 209, 0.18)" };
const FORECAST_DAYS = 15;

const view = { symbol: "", period: "day", interval: "1m", start: "", end: "", window: "7" };
const chart = document.getElementById("chart");
let stream = null;
let drawCount = 0;
let revision = 0;

// GET a JSON endpoint (the browser sends the session cookie of /login when the API wants a key); a 401
// sends the page to /login, any other non-2xx answer becomes an Error carrying the API's message.
async function apiGet(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== "" && value != null) url.searchParams.set(name, value);
  }
  let response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error("the API cannot be reached");
  }
  if (response.status === 401) window.location.assign("/login");
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const reason = body && body.error ? body.error : response.statusText;
    throw new Error(`${reason} (${response.status})`);
  }
  if (body === null) throw new Error(`no JSON in the answer (${response.status})`);
  return body;
}

// A promise that never rejects, so parallel requests can each report their own failure.
function attempt(promise) {
  return promise.then((value) => ({ value }), (error) => ({ error }));
}

function symbolPath(endpoint) {
  return `/${endpoint}/${encodeURIComponent(view.symbol)}`;
}

// Each message belongs to a source ("chart", "price", "stream") so a redraw clears only its own.
function showMessage(text, source, kind = "info") {
  const item = document.createElement("li");
  item.textContent = text;
  item.className = kind;
  item.dataset.source = source;
  document.getElementById("messages").append(item);
}

function clearMessages(source) {
  for (const item of document.querySelectorAll(`#messages li[data-source="${source}"]`)) item.remove();
}

// Plotly draws date strings as written; without the "Z" it shows the UTC wall time the API sent.
function plotTime(iso) {
  return iso.replace(/Z$/, "");
}

// The API's range bounds, reduced to the YYYY-MM-DDTHH:MM:SSZ form its range parameters accept.
function isoSeconds(iso) {
  return new Date(iso).toISOString().slice(0, 19) + "Z";
}

function utcClock(date) {
  return date.toISOString().slice(11, 19) + " UTC";
}

function utcDateTime(iso) {
  return new Date(iso).toISOString().slice(0, 19).replace("T", " ") + " UTC";
}

function formatPrice(value) {
  if (value == null) return "—";
  const number = Number(value);
  const digits = Math.abs(number) < 1 ? 8 : 2;
  return number.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits });
}

function rangeQuery() {
  if (view.start && view.end) return { interval: view.interval, start: view.start, end: view.end };
  return { interval: view.interval, period: view.period };
}

function candleTrace(candles) {
  return {
    type: "candlestick",
    name: `${view.interval} candles`,
    x: candles.map((candle) => plotTime(candle.open_time)),
    open: candles.map((candle) => candle.open),
    high: candles.map((candle) => candle.high),
    low: candles.map((candle) => candle.low),
    close: candles.map((candle) => candle.close),
    increasing: { line: { color: COLORS.up }, fillcolor: COLORS.up },
    decreasing: { line: { color: COLORS.down }, fillcolor: COLORS.down },
  };
}

function averageTrace(points) {
  return {
    type: "scatter",
    mode: "lines+markers",
    name: `${view.window}-day average`,
    x: points.map((point) => point.day),
    y: points.map((point) => point.sma),
    line: { color: COLORS.average, width: 2 },
    marker: { size: 5 },
    hovertemplate: "%{x|%Y-%m-%d}<br>average %{y:,.8~r}<extra></extra>",
  };
}

// The interval band (lower edge, then upper edge filled down to it) and the predicted line, on the forecast panel.
function forecastTraces(answer) {
  const rows = answer.forecast;
  const x = rows.map((row) => plotTime(row.target_time));
  const onPanel = { type: "scatter", x, xaxis: "x2", yaxis: "y2" };
  const edge = { ...onPanel, mode: "lines", line: { width: 0, color: COLORS.band }, hoverinfo: "skip" };
  return [
    { ...edge, y: rows.map((row) => row.lower), showlegend: false },
    {
      ...edge,
      y: rows.map((row) => row.upper),
      fill: "tonexty",
      fillcolor: COLORS.band,
      name: `${Math.round(answer.level * 100)}% interval${answer.interval_method ? ` (${answer.interval_method})` : ""}`,
    },
    {
      ...onPanel,
      mode: "lines+markers",
      name: "forecast",
      y: rows.map((row) => row.predicted),
      customdata: rows.map((row) => [row.lower, row.upper]),
      line: { color: COLORS.forecast, width: 2 },
      marker: { size: 5 },
      hovertemplate: "%{x|%Y-%m-%d}<br>predicted %{y:,.8~r}<br>interval %{customdata[0]:,.8~r} – %{customdata[1]:,.8~r}<extra></extra>",
    },
  ];
}

function panelTitle(text, axis) {
  return { text, xref: `${axis} domain`, yref: "paper", x: 0, y: 1, xanchor: "left", yanchor: "bottom", showarrow: false, font: { size: 14 } };
}

// Candles and average on the left; when a forecast exists, its own daily panel on the right, so
// a day of minutes and fifteen days ahead are each drawn at a readable scale.
// With nothing to draw the history panel spans the requested range, or hides when the range is unknown.
function chartLayout(candleAnswer, historyPoints, forecastAnswer) {
  const withForecast = forecastAnswer !== null && forecastAnswer.forecast.length > 0;
  const withHistory = historyPoints > 0;
  const range = candleAnswer && !withHistory ? [plotTime(candleAnswer.start), plotTime(candleAnswer.end)] : undefined;
  const annotations = [panelTitle(`${view.symbol} · ${view.interval} candles (UTC)`, "x")];
  if (withForecast) {
    const version = forecastAnswer.model_version ? ` (${forecastAnswer.model_version})` : "";
    annotations.push(panelTitle(`${FORECAST_DAYS}-day forecast · ${forecastAnswer.model}${version}`, "x2"));
  }
  return {
    margin: { l: 70, r: 70, t: 40, b: 40 },
    font: { family: "DejaVu Sans, sans-serif", size: 12 },
    legend: { orientation: "h", traceorder: "normal", x: 0, y: -0.08, yanchor: "top" },
    xaxis: { type: "date", domain: withForecast ? [0, 0.7] : [0, 1], range, visible: candleAnswer !== null, rangeslider: { visible: false } },
    yaxis: { title: { text: "price" }, tickformat: ",.6~r", automargin: true, visible: withHistory },
    xaxis2: { type: "date", domain: [0.76, 1], anchor: "y2", visible: withForecast, tickformat: "%b %d", nticks: 6 },
    yaxis2: { anchor: "x2", side: "right", tickformat: ",.6~r", automargin: true, visible: withForecast },
    annotations,
    uirevision: `${view.symbol} ${view.interval} ${view.period} ${view.start} ${view.end}`,
    datarevision: ++revision,
  };
}

// Say which answers failed or came back empty, so a blank panel is never left unexplained.
function reportAnswers(candles, average, forecast) {
  clearMessages("chart");
  if (candles.error) showMessage(`candles: ${candles.error.message}`, "chart", "error");
  else if (candles.value.candles.length === 0) showMessage("no candles in this range yet", "chart");
  if (average.error) showMessage(`moving average: ${average.error.message}`, "chart", "error");
  // A daily average is drawn on a view of minutes when it has points, but its absence there is no news.
  else if (average.value && average.value.points.length === 0 && view.interval !== "1m") {
    showMessage(`no ${view.window}-day moving average in this range yet`, "chart");
  }
  if (forecast.error) showMessage(`forecast: ${forecast.error.message}`, "chart", "error");
  else if (forecast.value.forecast.length === 0) showMessage("no forecast yet", "chart");
  else if (forecast.value.reason) showMessage(`forecast by ${forecast.value.model}: ${forecast.value.reason}`, "chart");
}

// The average over the range the candles answer covers, so both panels agree on it.
function fetchAverage(candleAnswer) {
  const range = { start: isoSeconds(candleAnswer.start), end: isoSeconds(candleAnswer.end) };
  return attempt(apiGet(symbolPath("moving-average"), { window: view.window, ...range }));
}

// Fetch everything the current view shows and redraw; answers of a superseded draw are dropped.
async function drawChart() {
  const draw = ++drawCount;
  const forecastRequest = attempt(apiGet(symbolPath("forecast"), { days: FORECAST_DAYS }));
  const candles = await attempt(apiGet(symbolPath("candles"), rangeQuery()));
  const average = candles.value ? await fetchAverage(candles.value) : { value: null };
  const forecast = await forecastRequest;
  if (draw !== drawCount) return;

  reportAnswers(candles, average, forecast);
  const rows = candles.value ? candles.value.candles : [];
  const points = average.value ? average.value.points : [];
  const traces = [candleTrace(rows), averageTrace(points)];
  // Empty forecast traces would still claim the right-hand panel and squeeze the candles' grid into it.
  if (forecast.value && forecast.value.forecast.length > 0) traces.push(...forecastTraces(forecast.value));
  const layout = chartLayout(candles.value || null, rows.length + points.length, forecast.value || null);
  await Plotly.react(chart, traces, layout, { responsive: true, displaylogo: false });
}

function showPrice(price) {
  const parts = [`${price.symbol} ${formatPrice(price.last)}`];
  if (price.last_time) parts.push(`last ${price.last_source || "price"} at ${utcDateTime(price.last_time)}`);
  parts.push(`buy ${formatPrice(price.buy)}`, `sell ${formatPrice(price.sell)}`);
  document.getElementById("price").textContent = parts.join(" · ");
}

// The best levels of the newest order book and the spread, beside the price: what a market order meets now.
const BOOK_LEVELS = 5;

function showBook(book) {
  const element = document.getElementById("book");
  if (!book || (book.bids.length === 0 && book.asks.length === 0)) {
    element.textContent = "order book —";
    return;
  }
  const side = (levels) => levels.slice(0, BOOK_LEVELS).map((l) => `${formatPrice(l.price)} (${l.size})`).join(", ") || "—";
  const spread = book.spread === null ? "—" : formatPrice(book.spread);
  element.textContent = `bids ${side(book.bids)} · asks ${side(book.asks)} · spread ${spread}` +
    (book.time ? ` · book at ${utcDateTime(book.time)}` : "");
}

async function loadBook() {
  const book = await attempt(apiGet(`/${encodeURIComponent(view.symbol)}/orderbook?depth=${BOOK_LEVELS}`));
  if (!book.error) showBook(book.value);
}

async function loadPrice() {
  const price = await attempt(apiGet(`/${encodeURIComponent(view.symbol)}/price`));
  clearMessages("price");
  if (price.error) showMessage(`price: ${price.error.message}`, "price", "error");
  else showPrice(price.value);
}

// Fold a streamed candle into the last bar of the view (same bucket) or start a new bar after it.
// Custom ranges are history, and an empty view gets its first bars from the API on the next draw.
function applyLiveCandle(candle) {
  const trace = chart.data && chart.data[0];
  if (!trace || trace.x.length === 0 || view.start) return;
  const size = INTERVAL_MS[view.interval];
  const bucket = Math.floor(Date.parse(candle.open_time) / size) * size;
  const last = trace.x.length - 1;
  const lastBucket = Date.parse(trace.x[last] + "Z");
  if (bucket < lastBucket) return;
  if (bucket === lastBucket) {
    trace.high[last] = Math.max(trace.high[last], candle.high);
    trace.low[last] = Math.min(trace.low[last], candle.low);
    trace.close[last] = candle.close;
    Plotly.react(chart, chart.data, { ...chart.layout, datarevision: ++revision });
    return;
  }
  const bar = { x: [[new Date(bucket).toISOString().slice(0, 19)]], open: [[candle.open]], high: [[candle.high]], low: [[candle.low]], close: [[candle.close]] };
  Plotly.extendTraces(chart, bar, [0]);
}

function setStreamState(state) {
  const element = document.getElementById("stream-state");
  element.textContent = state;
  element.className = state === "live" ? "live" : state === "closed" ? "down" : "";
}

function onStreamUpdate(event) {
  const update = JSON.parse(event.data);
  setStreamState("live");
  document.getElementById("last-update").textContent = `last update ${utcClock(new Date())}`;
  if (update.price) showPrice(update.price);
  if (update.book) showBook(update.book);
  if (update.candle) applyLiveCandle(update.candle);
}

// EventSource retries by itself after a dropped connection; it gives up only when the API refuses the stream.
function onStreamError(event) {
  if (event.target.readyState === EventSource.CLOSED) {
    setStreamState("closed");
    showMessage(`live updates: the API refused the stream for ${view.symbol}; reload the page to try again (or log in again at /login)`, "stream", "error");
  } else {
    setStreamState("reconnecting");
  }
}

function openStream() {
  if (stream) stream.close();
  clearMessages("stream");
  const url = new URL(symbolPath("stream"), window.location.origin);
  setStreamState("connecting");
  stream = new EventSource(url);
  stream.addEventListener("open", () => setStreamState("live"));
  stream.addEventListener("update", onStreamUpdate);
  stream.addEventListener("error", onStreamError);
}

// Keep ?symbol= in the address so a reload or a shared link shows the same chart.
function rememberSymbol() {
  const url = new URL(window.location.href);
  url.searchParams.set("symbol", view.symbol);
  window.history.replaceState(null, "", url);
}

function selectSymbol(symbol) {
  view.symbol = symbol;
  document.getElementById("price").textContent = `${symbol} —`;
  rememberSymbol();
  document.getElementById("book").textContent = "order book —";
  drawChart().then(loadPrice).then(loadBook);
  openStream();
}

function markPeriod() {
  for (const button of document.querySelectorAll("[data-period]")) {
    button.classList.toggle("active", !view.start && button.dataset.period === view.period);
  }
}

function onPeriodClick(event) {
  view.period = event.currentTarget.dataset.period;
  view.start = view.end = "";
  document.getElementById("start").value = document.getElementById("end").value = "";
  markPeriod();
  drawChart();
}

// A custom range applies once both dates are set; clearing either returns to the chosen period.
function onDatesChange() {
  const start = document.getElementById("start").value;
  const end = document.getElementById("end").value;
  const custom = Boolean(start && end);
  if (!custom && !view.start) return;
  view.start = custom ? start : "";
  view.end = custom ? end : "";
  markPeriod();
  drawChart();
}

function bindControls() {
  document.getElementById("symbol").addEventListener("change", (event) => selectSymbol(event.target.value));
  for (const button of document.querySelectorAll("[data-period]")) button.addEventListener("click", onPeriodClick);
  document.getElementById("interval").addEventListener("change", (event) => { view.interval = event.target.value; drawChart(); });
  document.getElementById("window").addEventListener("change", (event) => { view.window = event.target.value; drawChart(); });
  document.getElementById("start").addEventListener("change", onDatesChange);
  document.getElementById("end").addEventListener("change", onDatesChange);
}

function fillSymbols(symbols) {
  const select = document.getElementById("symbol");
  select.replaceChildren(...symbols.map((symbol) => new Option(symbol, symbol)));
}

// Start with ?symbol= when the address names one (even one the API does not know, so it can say so), else the first symbol.
async function init() {
  if (typeof Plotly === "undefined") {
    showMessage("the charting library (plotly.min.js) did not load", "chart", "error");
    return;
  }
  bindControls();
  const answer = await attempt(apiGet("/symbols"));
  if (answer.error) {
    showMessage(`symbols: ${answer.error.message}`, "chart", "error");
    return;
  }
  const symbols = answer.value.symbols.map((entry) => entry.symbol);
  const wanted = (pageParams.get("symbol") || "").toUpperCase();
  if (wanted && !symbols.includes(wanted)) symbols.unshift(wanted);
  if (symbols.length === 0) {
    showMessage("no symbols are configured", "chart", "error");
    return;
  }
  fillSymbols(symbols);
  const initial = wanted || symbols[0];
  document.getElementById("symbol").value = initial;
  selectSymbol(initial);
}

init();
