"""The explorer: `minicnn explore` serves a local web page that shows a network's predictions, maps,
layers, units and every number of a convolution, live on the camera.

    state.py    what is computed (no web framework): an Explorer over one model and its dataset
    numbers.py  one convolution output as w . x + b, and the transposed convolution as stamps
    app.py      the Starlette app: the page and its JSON API (docs/explore.md)
    server.py   the command: load the model and dataset, run uvicorn on 127.0.0.1
    static/     the page: index.html, app.js, style.css (plain JavaScript, nothing from the internet)

Importing this package imports no web framework: app.py needs the `explore` extra.
"""
