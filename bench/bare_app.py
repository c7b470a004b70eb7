"""The bare app of the throughput benchmark: Flask, no model, no validation.

It parses the JSON body (as the API does) and answers a constant, so its
requests/s is what gunicorn, Flask and the loopback allow on this machine;
`bench_throughput` compares the API's endpoints with it.
"""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/<path:path>")
    def answer(path: str):
        request.get_json()
        return jsonify({"global_sales": 1.0})

    # What the launcher (serve.edge.launcher) polls before it says "up".
    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app
