"""The explorer's web app: a Starlette application serving the page (static/) and a JSON API over an
Explorer (state.py). Every view of the page reads this API; scripts can read it too (docs/explore.md).

Starlette is a small ASGI toolkit whose routing, requests and responses fit in a few readable files;
it needs no template engine (the page is static HTML + JavaScript) and its TestClient drives the app
in tests without a server. uvicorn serves it (server.py).

Arrays travel as {"shape": [...], "min": m, "max": M, "data": [...]} with data the values in C order;
add `encoding=base64` to get data as base64 of little-endian float32 bytes instead (the page does).
Errors are {"error": message, "valid": [names...] or null} with a 4xx status.
"""
import base64
import contextlib
import io
import uuid
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .state import MAX_UPLOAD_BYTES, ExplorerError

STATIC = Path(__file__).resolve().parent / "static"
FORM_OVERHEAD = 64 * 1024   # multipart headers and other fields around an upload, in bytes


# ----------------------------------------------------------------------------------------------
# encoding answers


def array_json(array, encoding="list"):
    """An array as JSON: shape, min, max and the values in C order (a list, or base64 float32 bytes)."""
    array = np.asarray(array, dtype=np.float32)
    if encoding == "base64":
        data = base64.b64encode(array.astype("<f4").tobytes()).decode("ascii")
    elif encoding == "list":
        data = array.ravel().tolist()
    else:
        raise ExplorerError(400, f"unknown encoding {encoding!r}; valid encodings are: list, base64", ["list", "base64"])
    finite = array[np.isfinite(array)]
    return {"shape": list(array.shape), "min": float(finite.min()) if finite.size else 0.0,
            "max": float(finite.max()) if finite.size else 0.0, "data": data}


def png_response(picture):
    """A (3, H, W) RGB picture in [0, 1], or an (H, W) map (min-max scaled, 'inferno' colours), as a PNG."""
    from PIL import Image

    picture = np.asarray(picture, dtype=np.float64)
    if picture.ndim == 2:
        from matplotlib import colormaps

        low, high = picture.min(), picture.max()
        scaled = (picture - low) / (high - low) if high > low else np.zeros_like(picture)
        rgb = colormaps["inferno"](scaled)[..., :3]
    else:
        rgb = np.clip(picture, 0, 1).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


def top5_json(top):
    return [{"class": name, "index": index, "probability": probability} for index, name, probability in top]


def patch_json(layer, channel, rank, hit):
    base = f"/api/units/{layer}/{channel}"
    return {"image": f"dataset-{hit.index}", "position": list(hit.position), "activation": hit.activation,
            "box": list(hit.box), "patch_png": f"{base}/patches/{rank}.png", "deconv_png": f"{base}/deconv/{rank}.png"}


def dissection_json(job, channel=None):
    """The dissection job of a layer: its state and, when done, the row of `channel` (or every row)."""
    if job is None:
        return {"state": "unknown", "reason": "dissection needs concept masks, which only the shapes dataset has"}
    answer = {"state": job.state, "error": job.error}
    if job.state == "done":
        rows = job.result.table if channel is None else [job.result.table[channel]]
        answer["units"] = [{"unit": row.unit, "concept": row.concept, "iou": row.iou, "is_detector": row.is_detector}
                           for row in rows]
        answer["summary"] = job.result.summary
    return answer


# ----------------------------------------------------------------------------------------------
# reading requests


def int_parameter(value, name):
    """A path or query parameter that must be an int, or a 404 saying so."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExplorerError(404, f"{name} must be an integer, got {value!r}") from None


async def read_form(request):
    """The request's form (multipart or urlencoded); an upload larger than the limit is refused before reading."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + FORM_OVERHEAD:
        raise ExplorerError(413, f"the request is {length} bytes; images are limited to {MAX_UPLOAD_BYTES} bytes "
                                 f"({MAX_UPLOAD_BYTES // 2**20} MiB)")
    try:
        return await request.form(max_files=1)
    except Exception as error:  # malformed multipart bodies raise framework-specific errors
        raise ExplorerError(400, f"cannot read the form: {error}") from None


async def form_image(explorer, request, form=None, keep=True):
    """The image of a request: an uploaded file in field `image`, or `image_id` (form or query)."""
    form = await read_form(request) if form is None else form
    upload = form.get("image")
    if isinstance(upload, UploadFile):
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        return await run_in_threadpool(explorer.add_image, data, upload.filename or "upload", keep)
    if isinstance(upload, str) and upload:
        raise ExplorerError(400, "field image must be a file (multipart/form-data), got text; to name an image "
                                 "the server has, send image_id")
    image_id = form.get("image_id") or request.query_params.get("image_id")
    if not image_id:
        raise ExplorerError(400, "send an image: a file in the multipart field `image`, or `image_id` "
                                 "(dataset-N or the id POST /api/images returned)")
    return explorer.image(image_id)


def field(request, form, name, default=None):
    value = form.get(name) if form is not None else None
    return value if value not in (None, "") else request.query_params.get(name, default)


# ----------------------------------------------------------------------------------------------
# the app


def closing(explorer):
    """A lifespan that stops the explorer's worker thread when the server stops."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        explorer.close()
    return lifespan


def create_app(explorer):
    """The Starlette app answering the page and the JSON API for one Explorer."""

    async def page(request):
        return FileResponse(STATIC / "index.html")

    async def model(request):
        return JSONResponse(explorer.describe())

    async def dataset(request):
        if explorer.dataset is None:
            return JSONResponse({"count": 0, "description": None, "images": []})
        names = explorer.dataset.names
        return JSONResponse({"count": len(names), "description": explorer.dataset.description,
                             "images": [{"id": f"dataset-{n}", "name": name} for n, name in enumerate(names)]})

    async def image_png(request):
        return png_response(explorer.image(request.path_params["image_id"]).display)

    async def add_image(request):
        image = await form_image(explorer, request)
        return JSONResponse(image_json(image))

    def image_json(image):
        return {"id": image.id, "name": image.name, "notes": image.notes, "png": f"/api/images/{image.id}.png"}

    async def predict(request):
        image = await form_image(explorer, request)
        top = await run_in_threadpool(explorer.predict, image)
        return JSONResponse({"image": image_json(image), "top5": top5_json(top)})

    async def maps(request):
        form = await read_form(request)
        image = await form_image(explorer, request, form)
        method = explorer.check_method(field(request, form, "method", "saliency"))
        target = await run_in_threadpool(explorer.resolve_target, field(request, form, "target"), image)
        answer = {"image": image_json(image), "method": method, "title": explorer.method_title(method),
                  "target": target, "class": explorer.class_names[target]}
        if method == "occlusion":
            job = explorer.start_occlusion(image, target)
            return JSONResponse({**answer, "job": job.as_json(), "poll": f"/api/jobs/{job.id}"}, status_code=202)
        heat = await run_in_threadpool(explorer.attribution, image, target, method)
        map_id = remember_map(heat)
        return JSONResponse({**answer, "map": array_json(heat, field(request, form, "encoding", "list")),
                             "png": f"/api/maps/{map_id}.png"})

    saved_maps = {}

    def remember_map(heat):
        key = uuid.uuid4().hex[:12]
        saved_maps[key] = heat
        while len(saved_maps) > 64:
            saved_maps.pop(next(iter(saved_maps)))
        return key

    async def map_png(request):
        key = request.path_params["map_id"]
        if key not in saved_maps:
            raise ExplorerError(404, f"unknown map {key!r} (only the last 64 maps are kept)")
        return png_response(saved_maps[key])

    async def activations(request):
        layer = explorer.check_layer(request.path_params["layer"])
        form = await read_form(request) if request.method == "POST" else {}
        image = await form_image(explorer, request, form)
        values = await run_in_threadpool(explorer.activations, image, layer)
        return JSONResponse({"image": image_json(image), "layer": layer,
                             "activations": array_json(values, field(request, form, "encoding", "list"))})

    async def layer_dissection(request):
        layer = explorer.check_layer(request.path_params["layer"], spatial=True)
        return JSONResponse({"layer": layer, "dissection": dissection_json(explorer.dissection(layer))})

    def unit_path(request):
        layer = explorer.check_layer(request.path_params["layer"], spatial=True)
        channel = explorer.check_channel(layer, int_parameter(request.path_params["channel"], "channel"))
        return layer, channel

    async def unit(request):
        layer, channel = unit_path(request)
        hits = await run_in_threadpool(explorer.unit, layer, channel)
        job = explorer.dissection(layer)
        source = (explorer.dataset.description if explorer.index is not None else
                  f"top_patches over {len(explorer.dataset.names)} images ({explorer.dataset.description})")
        return JSONResponse({"layer": layer, "channel": channel, "source": source,
                             "patches": [patch_json(layer, channel, rank, hit) for rank, hit in enumerate(hits)],
                             "dissection": dissection_json(job, channel)})

    async def patch_png(request):
        layer, channel = unit_path(request)
        rank = int_parameter(request.path_params["rank"], "rank")
        return png_response(await run_in_threadpool(explorer.patch_picture, layer, channel, rank))

    async def deconv_png(request):
        layer, channel = unit_path(request)
        rank = int_parameter(request.path_params["rank"], "rank")
        return png_response(await run_in_threadpool(explorer.deconv_picture, layer, channel, rank))

    async def ascent(request):
        layer, channel = unit_path(request)
        job = explorer.start_ascent(layer, channel)
        return JSONResponse({"job": job.as_json(), "poll": f"/api/jobs/{job.id}"}, status_code=202)

    async def job_status(request):
        job = explorer.job(request.path_params["job_id"])
        answer = job.as_json()
        if job.state == "done" and job.kind == "occlusion":
            answer["map"] = array_json(job.result, request.query_params.get("encoding", "list"))
            answer["png"] = f"/api/jobs/{job.id}/image.png"
        elif job.state == "done" and job.kind == "ascent":
            answer["png"] = f"/api/jobs/{job.id}/image.png"
            answer["objective"] = [float(v) for v in job.result[1]]
        elif job.kind == "dissection":
            answer["dissection"] = dissection_json(job)
        return JSONResponse(answer)

    async def job_png(request):
        job = explorer.job(request.path_params["job_id"])
        if job.state != "done" or job.kind not in ("occlusion", "ascent"):
            raise ExplorerError(404, f"job {job.id} ({job.kind}) has no picture (state {job.state})")
        return png_response(job.result if job.kind == "occlusion" else job.result[0])

    def position(request):
        layer = explorer.check_layer(request.path_params["layer"])
        query = request.query_params
        channel, i, j = (int_parameter(query.get(name), name) for name in ("channel", "i", "j"))
        return layer, channel, i, j

    async def numbers_view(request):
        layer, channel, i, j = position(request)
        image = await form_image(explorer, request, {})
        terms, value, source, conv, box = await run_in_threadpool(explorer.dot_product, image, layer, channel, i, j)
        return JSONResponse({
            "layer": layer, "conv": conv, "input_layer": source, "channel": channel, "position": [i, j],
            "receptive_field": list(box), "rows": terms.rows.tolist(), "cols": terms.cols.tolist(),
            "padded": terms.padded.tolist(), "inputs": terms.inputs.tolist(), "weights": terms.weights.tolist(),
            "products": terms.products.tolist(), "channel_sums": terms.channel_sums.tolist(), "bias": terms.bias,
            "sum": terms.value, "activation": value, "relu": layer != conv})

    async def stamps_view(request):
        layer, channel, i, j = position(request)
        size = int_parameter(request.query_params.get("size", "2"), "size")
        if not 1 <= size <= 4:
            raise ExplorerError(400, f"size must be 1 to 4 (a window of size x size values), got {size}")
        image = await form_image(explorer, request, {})
        printed, total, library, conv, source = await run_in_threadpool(
            explorer.stamping, image, layer, channel, i, j, size)
        return JSONResponse({
            "layer": layer, "conv": conv, "output_layer": source, "channel": channel, "position": [i, j],
            "stamps": [{"position": [s.i, s.j], "value": s.value, "top": s.top, "left": s.left,
                        "stamp": s.stamp.tolist()} for s in printed],
            "sum": array_json(total), "conv_transpose2d": array_json(library),
            "max_difference": float(np.abs(total - library).max())})

    async def frame(request):
        form = await read_form(request)
        image = await form_image(explorer, request, form, keep=False)
        method = explorer.check_method(field(request, form, "method", explorer.methods[0]))
        layer = explorer.check_layer(field(request, form, "layer", explorer.net.names[0]))
        target = field(request, form, "target")
        target = None if target is None else await run_in_threadpool(explorer.resolve_target, target, image)
        top, target, heat, values = await run_in_threadpool(explorer.frame, image, target, method, layer)
        encoding = field(request, form, "encoding", "list")
        return JSONResponse({"top5": top5_json(top), "target": target, "class": explorer.class_names[target],
                             "method": method, "map": array_json(heat, encoding), "layer": layer,
                             "activations": array_json(values, encoding)})

    async def explorer_error(request, error):
        return JSONResponse({"error": error.message, "valid": error.valid}, status_code=error.status)

    async def http_error(request, error):
        return JSONResponse({"error": f"{error.detail}: {request.url.path}", "valid": None},
                            status_code=error.status_code)

    async def value_error(request, error):  # a library check refusing an input: say what it said
        return JSONResponse({"error": str(error), "valid": None}, status_code=400)

    routes = [
        Route("/", page),
        Route("/api/model", model),
        Route("/api/dataset", dataset),
        Route("/api/images", add_image, methods=["POST"]),
        Route("/api/images/{image_id}.png", image_png),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/maps", maps, methods=["POST"]),
        Route("/api/maps/{map_id}.png", map_png),
        Route("/api/layers/{layer}/activations", activations, methods=["GET", "POST"]),
        Route("/api/layers/{layer}/dissection", layer_dissection),
        Route("/api/units/{layer}/{channel}", unit),
        Route("/api/units/{layer}/{channel}/patches/{rank}.png", patch_png),
        Route("/api/units/{layer}/{channel}/deconv/{rank}.png", deconv_png),
        Route("/api/units/{layer}/{channel}/ascent", ascent, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_status),
        Route("/api/jobs/{job_id}/image.png", job_png),
        Route("/api/numbers/{layer}", numbers_view),
        Route("/api/stamps/{layer}", stamps_view),
        Route("/api/frame", frame, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {ExplorerError: explorer_error, HTTPException: http_error, ValueError: value_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=closing(explorer))
    app.state.explorer = explorer
    return app
