// minicnn explore: the page. Plain JavaScript, no build step; every view reads the JSON API (docs/explore.md).
"use strict";

const state = {
  model: null,          // GET /api/model
  imageId: null,        // the current still image ("dataset-N" or an upload's id)
  target: "",           // "" = the top-1 class
  method: null,
  layer: null,          // the layer whose channels are shown
  unit: null,           // {layer, channel}
  position: null,       // {layer, channel, i, j} clicked for "every number"
  field: null,          // receptive field box drawn on the input
  camera: null,         // {stream, running}
  datasetPage: 0,
  frames: [],           // arrival times of camera frames (for the rate)
  occlusionJob: 0,      // bumped to forget an occlusion whose image changed
};
const PAGE_SIZE = 30;
const CAMERA_IN_FLIGHT = 1;  // camera frames on their way at once (2 was slower: docs/explore.md, Speed)
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ talking to the server
async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error || `${response.status} ${response.statusText}`);
  }
  return body;
}

function form(fields) {
  const data = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && value !== null) data.append(key, value);
  }
  return data;
}

function decode(array) {  // {"shape", "data"} -> Float32Array (data base64 float32 or a list)
  if (typeof array.data === "string") {
    const text = atob(array.data);
    const bytes = new Uint8Array(text.length);
    for (let k = 0; k < text.length; k++) bytes[k] = text.charCodeAt(k);
    return new Float32Array(bytes.buffer);
  }
  return Float32Array.from(array.data);
}

function message(text, kind = "error") {
  const box = document.createElement("div");
  box.className = `message ${kind}`;
  box.textContent = text;
  $("messages").prepend(box);
  while ($("messages").children.length > 4) $("messages").lastChild.remove();
  setTimeout(() => box.remove(), 15000);
}

function guarded(work) {  // run an async action; any error becomes a message in the page
  return (...args) => work(...args).catch((error) => message(error.message));
}

// ------------------------------------------------------------------ drawing numbers
const INFERNO = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];

const PALETTE = new Uint8ClampedArray(256 * 3);  // INFERNO interpolated at 256 levels, made once
for (let level = 0; level < 256; level++) {
  const x = level / 255 * (INFERNO.length - 1);
  const k = Math.min(Math.floor(x), INFERNO.length - 2);
  for (let n = 0; n < 3; n++) PALETTE[3 * level + n] = INFERNO[k][n] + (x - k) * (INFERNO[k + 1][n] - INFERNO[k][n]);
}

function paint(canvas, values, h, w, offset = 0) {  // one (h, w) plane of values, min-max scaled to the palette
  let low = Infinity, high = -Infinity;
  for (let k = offset; k < offset + h * w; k++) { if (values[k] < low) low = values[k]; if (values[k] > high) high = values[k]; }
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  const scale = high > low ? 255 / (high - low) : 0;
  const pixels = image.data;
  for (let k = 0; k < h * w; k++) {
    const level = 3 * Math.round((values[offset + k] - low) * scale);
    pixels[4 * k] = PALETTE[level]; pixels[4 * k + 1] = PALETTE[level + 1]; pixels[4 * k + 2] = PALETTE[level + 2];
    pixels[4 * k + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return {low, high};
}

const inputPixels = document.createElement("canvas");  // the network's input, at its own size

function drawInput() {
  const canvas = $("input-canvas");
  canvas.width = inputPixels.width; canvas.height = inputPixels.height;
  const context = canvas.getContext("2d");
  context.drawImage(inputPixels, 0, 0);
  if (state.field) {  // the receptive field of the clicked position: (top, bottom, left, right)
    const [top, bottom, left, right] = state.field;
    context.strokeStyle = "#00e5ff"; context.lineWidth = 1;
    context.strokeRect(left + 0.5, top + 0.5, right - left - 1, bottom - top - 1);
  }
}

function drawMap(array, caption) {
  const [h, w] = array.shape;
  const heat = document.createElement("canvas");
  paint(heat, decode(array), h, w);
  const canvas = $("map-canvas");
  canvas.width = w; canvas.height = h;
  const context = canvas.getContext("2d");
  context.drawImage(inputPixels, 0, 0, w, h);
  context.globalAlpha = Number($("alpha").value);
  context.drawImage(heat, 0, 0);
  context.globalAlpha = 1;
  $("map-caption").textContent = caption;
}

function loadPicture(url) {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new Error(`cannot load ${url}`));
    picture.src = url;
  });
}

// ------------------------------------------------------------------ 1. input
async function showImage(imageId) {
  state.imageId = imageId; state.field = null; state.occlusionJob++;
  const picture = await loadPicture(`/api/images/${imageId}.png`);
  inputPixels.width = picture.width; inputPixels.height = picture.height;
  inputPixels.getContext("2d").drawImage(picture, 0, 0);
  drawInput();
  document.querySelectorAll("#dataset-strip img").forEach((img) => img.classList.toggle("current", img.dataset.id === imageId));
  await refresh();
}

async function uploadFile(file) {
  if (file.size > state.model.max_upload_bytes) {  // the server refuses it too (413); say so before sending
    throw new Error(`${file.name} is ${file.size} bytes; the limit is ${state.model.max_upload_bytes} bytes`);
  }
  const image = await api("/api/images", {method: "POST", body: form({image: file})});
  showNotes(image.notes);
  $("input-caption").textContent = `${image.name} as the network sees it`;
  await showImage(image.id);
}

function showNotes(notes) {
  $("notes").replaceChildren(...notes.map((note) => Object.assign(document.createElement("li"), {textContent: note})));
}

async function showDataset() {
  const dataset = await api("/api/dataset");
  $("dataset-description").textContent = dataset.description ? `(${dataset.description})` : "(none: start with --images DIR)";
  const pages = Math.max(1, Math.ceil(dataset.count / PAGE_SIZE));
  state.datasetPage = Math.min(Math.max(state.datasetPage, 0), pages - 1);
  const shown = dataset.images.slice(state.datasetPage * PAGE_SIZE, (state.datasetPage + 1) * PAGE_SIZE);
  $("dataset-strip").replaceChildren(...shown.map((image) => {
    const img = Object.assign(document.createElement("img"), {src: `/api/images/${image.id}.png`, title: image.name, alt: image.name});
    img.dataset.id = image.id;
    img.classList.toggle("current", image.id === state.imageId);
    img.addEventListener("click", guarded(async () => {
      stopCamera();
      $("input-caption").textContent = image.name;
      showNotes([]);
      await showImage(image.id);
    }));
    return img;
  }));
  $("dataset-page").textContent = `page ${state.datasetPage + 1} of ${pages}`;
  return dataset;
}

// ------------------------------------------------------------------ 2. what the network says
function showTop5(top5, target) {
  $("top5").tBodies[0].replaceChildren(...top5.map((row) => {
    const line = document.createElement("tr");
    line.classList.toggle("target", row.index === target);
    const name = Object.assign(document.createElement("td"), {textContent: row.class});
    const bar = Object.assign(document.createElement("span"), {className: "bar"});
    bar.style.width = `${Math.max(1, 80 * row.probability)}px`;
    const probability = document.createElement("td");
    probability.append(bar, `${(100 * row.probability).toFixed(2)}%`);
    line.append(name, probability);
    line.addEventListener("click", guarded(async () => { $("target").value = String(row.index); await changeTarget(); }));
    return line;
  }));
}

async function changeTarget() {
  state.target = $("target").value;
  if (!state.camera) await showMaps();
}

async function showMaps() {
  const method = state.method;
  const answer = await api("/api/maps", {method: "POST",
    body: form({image_id: state.imageId, method, target: state.target, encoding: "base64"})});
  const caption = `${answer.title} for class ${answer.class}`;
  if (answer.map) { drawMap(answer.map, caption); return; }
  const ticket = ++state.occlusionJob;  // occlusion: a job with progress
  const bar = $("occlusion-progress");
  bar.hidden = false; bar.value = 0;
  $("map-caption").textContent = `${caption}: computing...`;
  for (;;) {
    const job = await api(`${answer.poll}?encoding=base64`);
    if (ticket !== state.occlusionJob) return;  // the image changed meanwhile
    bar.max = Math.max(job.total, 1); bar.value = job.done;
    if (job.state === "error") throw new Error(`occlusion failed: ${job.error}`);
    if (job.state === "done") { bar.hidden = true; drawMap(job.map, caption); return; }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function refresh() {
  const predicted = await api("/api/predict", {method: "POST", body: form({image_id: state.imageId})});
  const target = state.target === "" ? predicted.top5[0].index : Number(state.target);
  showTop5(predicted.top5, target);
  await Promise.all([showMaps(), showActivations()]);
}

// ------------------------------------------------------------------ 3. layer by layer
function showLayers() {
  $("layer-list").replaceChildren(...state.model.layers.map((layer) => {
    const item = document.createElement("li");
    const button = Object.assign(document.createElement("button"), {type: "button",
      textContent: `${layer.name} ${layer.shape.join("\u00d7")}`});
    button.dataset.layer = layer.name;
    button.classList.toggle("current", layer.name === state.layer);
    button.addEventListener("click", guarded(async () => { state.layer = layer.name; showLayers(); if (!state.camera) await showActivations(); }));
    item.append(button);
    return item;
  }));
}

async function showActivations() {
  const answer = await api(`/api/layers/${state.layer}/activations?image_id=${state.imageId}&encoding=base64`);
  drawChannels(answer.layer, answer.activations);
}

function drawChannels(layerName, array) {
  const values = decode(array);
  const shape = array.shape.length === 3 ? array.shape : [array.shape[0], 1, 1];
  const [count, h, w] = shape;
  const layer = state.model.layers.find((l) => l.name === layerName);
  const grid = $("channel-grid");
  if (grid.dataset.layer !== layerName || grid.children.length !== count) {
    grid.dataset.layer = layerName;
    grid.replaceChildren(...Array.from({length: count}, (_, c) => {
      const cell = Object.assign(document.createElement("div"), {className: "channel"});
      const canvas = document.createElement("canvas");
      canvas.dataset.channel = String(c);
      canvas.addEventListener("click", guarded((event) => clickChannel(event, layer, c, canvas)));
      cell.append(canvas, Object.assign(document.createElement("span"), {textContent: `${c}`}));
      return cell;
    }));
  }
  [...grid.querySelectorAll("canvas")].forEach((canvas, c) => {
    const {high} = paint(canvas, values, h, w, c * h * w);
    canvas.nextSibling.textContent = `${c}: max ${format(high)}`;
    canvas.classList.toggle("current", Boolean(state.unit && state.unit.layer === layerName && state.unit.channel === c));
  });
}

async function clickChannel(event, layer, channel, canvas) {
  const bounds = canvas.getBoundingClientRect();
  const [, h, w] = layer.shape.length === 3 ? layer.shape : [layer.shape[0], 1, 1];
  const i = Math.min(h - 1, Math.floor((event.clientY - bounds.top) / bounds.height * h));
  const j = Math.min(w - 1, Math.floor((event.clientX - bounds.left) / bounds.width * w));
  document.querySelectorAll("#channel-grid canvas").forEach((c) => c.classList.toggle("current", c === canvas));
  const work = [];
  if (layer.spatial) work.push(showUnit(layer.name, channel));
  if (layer.conv) work.push(showNumbers(layer.name, channel, i, j));
  if (!work.length) message(`${layer.name} has no feature maps: its units have no patches, and it is not a convolution`, "info");
  await Promise.all(work);
}

// ------------------------------------------------------------------ 4. one unit
async function showUnit(layer, channel) {
  state.unit = {layer, channel};
  $("unit-title").textContent = `${layer}, channel ${channel}: loading...`;
  $("ascent-start").disabled = false;
  $("ascent-image").hidden = true;
  const answer = await api(`/api/units/${layer}/${channel}`);
  if (state.unit.layer !== layer || state.unit.channel !== channel) return;
  $("unit-title").textContent = `${layer}, channel ${channel}: top ${answer.patches.length} of ${answer.source}, best first`;
  $("patches").replaceChildren(...answer.patches.map((patch, rank) => tile(patch.patch_png,
    `${patch.image} a=${patch.activation.toPrecision(3)}`, "patch")));
  $("deconvs").replaceChildren(...answer.patches.map((patch) => tile(patch.deconv_png, `at ${patch.position.join(",")}`, "deconv")));
  await showDissection(layer, channel, answer.dissection);
}

function tile(src, caption, kind) {
  const figure = document.createElement("figure");
  const img = Object.assign(document.createElement("img"), {src, alt: caption, className: kind});
  figure.append(img, Object.assign(document.createElement("figcaption"), {textContent: caption}));
  return figure;
}

async function showDissection(layer, channel, dissection) {
  for (;;) {
    if (!state.unit || state.unit.layer !== layer || state.unit.channel !== channel) return;
    if (dissection.state === "unknown") { $("dissection").textContent = `not known: ${dissection.reason}`; return; }
    if (dissection.state === "error") { $("dissection").textContent = `failed: ${dissection.error}`; return; }
    if (dissection.state === "done") {
      const row = dissection.units[0];
      $("dissection").textContent = `concept ${row.concept}, IoU ${row.iou.toFixed(3)}` +
        (row.is_detector ? " (a detector)" : " (below the detector threshold)") + `; ${dissection.summary}`;
      return;
    }
    $("dissection").textContent = "Network Dissection of this layer is running...";
    await new Promise((resolve) => setTimeout(resolve, 500));
    dissection = (await api(`/api/units/${layer}/${channel}`)).dissection;
  }
}

async function runAscent() {
  const {layer, channel} = state.unit;
  $("ascent-start").disabled = true;
  const bar = $("ascent-progress");
  bar.hidden = false; bar.value = 0;
  try {
    const answer = await api(`/api/units/${layer}/${channel}/ascent`, {method: "POST"});
    for (;;) {
      const job = await api(answer.poll);
      bar.max = Math.max(job.total, 1); bar.value = job.done;
      if (job.state === "error") throw new Error(`gradient ascent failed: ${job.error}`);
      if (job.state === "done") {
        if (state.unit.layer === layer && state.unit.channel === channel) {
          Object.assign($("ascent-image"), {src: job.png, hidden: false, title: `${layer}[${channel}] after ${job.total} steps`});
        }
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    bar.hidden = true; $("ascent-start").disabled = false;
  }
}

// ------------------------------------------------------------------ 5. every number
function numberTable(rows, caption, classOf) {
  const table = Object.assign(document.createElement("table"), {className: "numbers"});
  if (caption) table.append(Object.assign(document.createElement("caption"), {textContent: caption}));
  rows.forEach((row, r) => {
    const line = table.insertRow();
    row.forEach((value, c) => {
      const cell = line.insertCell();
      cell.textContent = typeof value === "number" ? format(value) : value;
      const extra = classOf ? classOf(r, c, value) : (value > 0 ? "positive" : value < 0 ? "negative" : "");
      if (extra) cell.className = extra;
    });
  });
  return table;
}

function format(value) { return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(2) : value.toFixed(3); }

async function showNumbers(layer, channel, i, j) {
  if (state.camera) { message("stop the camera to inspect every number of one frame", "info"); return; }
  state.position = {layer, channel, i, j};
  const n = await api(`/api/numbers/${layer}?image_id=${state.imageId}&channel=${channel}&i=${i}&j=${j}`);
  state.field = n.receptive_field;
  drawInput();
  $("numbers-title").textContent = `${n.conv}, filter ${channel}, position (${i}, ${j}): its receptive field on the input is rows ` +
    `${n.receptive_field[0]}-${n.receptive_field[1] - 1}, columns ${n.receptive_field[2]}-${n.receptive_field[3] - 1} (the cyan box); ` +
    `x is ${n.input_layer === "image" ? "the image" : `the output of ${n.input_layer}`}, rows ${n.rows[0]}-${n.rows[n.rows.length - 1]}, columns ${n.cols[0]}-${n.cols[n.cols.length - 1]} (grey: zero padding).`;
  const terms = Object.assign(document.createElement("div"), {className: "terms"});
  n.products.forEach((plane, c) => {
    const rows = plane.map((row, u) => row.map((_, v) => `${format(n.weights[c][u][v])}\u00d7${format(n.inputs[c][u][v])}`));
    terms.append(numberTable(rows, `channel ${c}: sum ${format(n.channel_sums[c])}`,
      (u, v) => n.padded[u][v] ? "padding" : (plane[u][v] > 0 ? "positive" : plane[u][v] < 0 ? "negative" : "")));
  });
  const sums = n.channel_sums.map(format).join(" + ");
  const equation = Object.assign(document.createElement("p"), {className: "equation"});
  equation.textContent = `w \u00b7 x + b = (${sums}) + ${format(n.bias)} = ${n.sum.toPrecision(7)}; ` +
    `the network computed ${n.activation.toPrecision(7)}` + (n.relu ? `; after the ReLU: ${Math.max(n.sum, 0).toPrecision(7)}` : "");
  $("dot-product").replaceChildren(equation, terms);
  await showStamps();
}

async function showStamps() {
  if (!state.position) return;
  const {layer, channel, i, j} = state.position;
  const s = await api(`/api/stamps/${layer}?image_id=${state.imageId}&channel=${channel}&i=${i}&j=${j}&size=2`);
  const [channels, height, width] = s.sum.shape;
  const select = $("stamp-channel");
  if (select.options.length !== channels) {
    select.replaceChildren(...Array.from({length: channels}, (_, c) => new Option(String(c), String(c))));
  }
  const c = Number(select.value || 0);
  const box = document.createElement("div");
  box.className = "terms";
  if (!s.stamps.length) { $("stamping").textContent = "these values are all zero: nothing to stamp"; return; }
  let top = Infinity, left = Infinity, bottom = -Infinity, right = -Infinity;
  for (const stamp of s.stamps) {
    const [kh, kw] = [stamp.stamp[c].length, stamp.stamp[c][0].length];
    box.append(numberTable(stamp.stamp[c], `y(${stamp.position.join(",")}) = ${format(stamp.value)} prints y \u00d7 w at row ${stamp.top}, column ${stamp.left}`));
    top = Math.min(top, stamp.top); left = Math.min(left, stamp.left);
    bottom = Math.max(bottom, stamp.top + kh); right = Math.max(right, stamp.left + kw);
  }
  top = Math.max(top, 0); left = Math.max(left, 0); bottom = Math.min(bottom, height); right = Math.min(right, width);
  const region = (array) => {
    const values = decode(array);
    return Array.from({length: bottom - top}, (_, r) => Array.from({length: right - left},
      (_, q) => values[(c * height + top + r) * width + left + q]));
  };
  box.append(numberTable(region(s.sum), `the stamps added (rows ${top}-${bottom - 1}, columns ${left}-${right - 1})`));
  box.append(numberTable(region(s.conv_transpose2d), "ops.conv_transpose2d of the same values"));
  const note = Object.assign(document.createElement("p"), {className: "equation",
    textContent: `largest difference between the two: ${s.max_difference.toExponential(2)}`});
  $("stamping").replaceChildren(note, box);
}

// ------------------------------------------------------------------ the camera
async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser gives the page no camera (it needs http://127.0.0.1 or https and a camera API)");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
  } catch (error) {
    const why = {NotAllowedError: "the camera was refused", NotFoundError: "no camera was found",
      NotReadableError: "the camera is in use by another program"}[error.name] || `the camera failed (${error.name})`;
    throw new Error(`${why}: the page keeps working with dataset images and uploads`);
  }
  const video = $("video");
  video.srcObject = stream;
  video.classList.add("on");
  await video.play();
  state.camera = {stream, running: true, sent: 0, shown: 0};
  state.frames = [];
  state.field = null;
  $("camera-start").disabled = true; $("camera-stop").disabled = false;
  $("input-caption").textContent = "the camera, as the network sees it";
  for (let k = 0; k < CAMERA_IN_FLIGHT; k++) {
    const camera = state.camera;
    cameraLoop(camera).catch((error) => {
      if (state.camera !== camera) return;
      message(`camera: ${error.message}`);
      stopCamera();
    });
  }
}

function stopCamera() {
  if (!state.camera) return;
  state.camera.running = false;
  state.camera.stream.getTracks().forEach((track) => track.stop());
  state.camera = null;
  $("video").classList.remove("on");
  $("camera-start").disabled = false; $("camera-stop").disabled = true;
  $("rate").textContent = "";
}

function grabFrame(video, pixels) {  // the centre square of the video, at the network's input size
  const side = state.model.input[1];
  pixels.width = side; pixels.height = side;
  const square = Math.min(video.videoWidth, video.videoHeight);
  pixels.getContext("2d").drawImage(video, (video.videoWidth - square) / 2, (video.videoHeight - square) / 2,
    square, square, 0, 0, side, side);
  return new Promise((resolve) => pixels.toBlob(resolve, "image/png"));
}

async function cameraLoop(camera) {  // one of CAMERA_IN_FLIGHT loops: grab, send, wait, draw, again
  const video = $("video");
  const pixels = document.createElement("canvas");  // this loop's frame, drawn with its own answer
  while (camera.running) {
    if (!video.videoWidth) { await new Promise((resolve) => setTimeout(resolve, 50)); continue; }
    const blob = await grabFrame(video, pixels);
    const sent = ++camera.sent;
    const answer = await api("/api/frame", {method: "POST", body: form({image: new File([blob], "frame.png", {type: "image/png"}),
      method: state.method, layer: state.layer, target: state.target, encoding: "base64"})});
    if (!camera.running || sent < camera.shown) continue;  // a newer frame is already on the page
    camera.shown = sent;
    inputPixels.width = pixels.width; inputPixels.height = pixels.height;
    inputPixels.getContext("2d").drawImage(pixels, 0, 0);
    drawInput();
    showTop5(answer.top5, answer.target);
    drawMap(answer.map, `${state.model.method_titles[answer.method]} for class ${answer.class} (live)`);
    drawChannels(answer.layer, answer.activations);
    const now = performance.now();
    state.frames.push(now);
    while (state.frames.length && now - state.frames[0] > 5000) state.frames.shift();  // the rate over the last 5 s
    const rate = state.frames.length > 1 ? (state.frames.length - 1) / ((now - state.frames[0]) / 1000) : 0;
    document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
    document.body.dataset.rate = rate.toFixed(2);
    $("rate").textContent = `camera: ${rate.toFixed(1)} frames/s`;
  }
}

// ------------------------------------------------------------------ start
async function main() {
  state.model = await api("/api/model");
  $("model-name").textContent = `${state.model.name}: input ${state.model.input.join("\u00d7")}, ` +
    `${state.model.layers.length} layers, ${state.model.classes.length} classes`;
  $("method").replaceChildren(...state.model.methods.map((m) => new Option(state.model.method_titles[m], m)));
  state.method = state.model.methods.includes("cam") ? "cam" : state.model.methods.includes("gradcam") ? "gradcam" : state.model.methods[0];
  $("method").value = state.method;
  state.model.classes.forEach((name, k) => $("target").append(new Option(name, String(k))));
  state.layer = state.model.layers[0].name;
  showLayers();
  $("method").addEventListener("change", guarded(async () => { state.method = $("method").value; if (!state.camera) await showMaps(); }));
  $("target").addEventListener("change", guarded(changeTarget));
  $("alpha").addEventListener("input", guarded(async () => { if (!state.camera) await showMaps(); }));
  $("upload").addEventListener("change", guarded(async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) { stopCamera(); await uploadFile(file); }
  }));
  $("camera-start").addEventListener("click", guarded(startCamera));
  $("camera-stop").addEventListener("click", () => stopCamera());
  $("ascent-start").addEventListener("click", guarded(runAscent));
  $("stamp-channel").addEventListener("change", guarded(showStamps));
  $("dataset-previous").addEventListener("click", guarded(async () => { state.datasetPage--; await showDataset(); }));
  $("dataset-next").addEventListener("click", guarded(async () => { state.datasetPage++; await showDataset(); }));
  const dataset = await showDataset();
  if (dataset.count) {
    $("input-caption").textContent = dataset.images[0].name;
    await showImage(dataset.images[0].id);
  } else {
    message("no dataset: upload an image or start the camera", "info");
  }
  document.body.dataset.ready = "true";
}

guarded(main)();
