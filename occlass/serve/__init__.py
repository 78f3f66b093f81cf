"""The review desk behind `serve.py`: an HTTP API over the `Predictor` with micro-batching
(`batcher`), a review page (`static/`) and its SQLite store of decisions (`store`), in one
FastAPI app (`app`)."""
