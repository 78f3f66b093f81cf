"""The Spark engine of predict.py (`engine=spark`): Spark reads the input (Parquet, or CSV/JSONL
folders), keeps each distinct (title, description) once, codes those with `mapInArrow` in its
Python workers, joins the answers back to every row and writes a Parquet dataset.

Each Python worker loads the run once (`worker_predictor`, cached for the worker's life) and
runs the same `Predictor` as one process does, so the answers are predict.py's row for row.
The driver checks the options, the input's columns and the run (by loading it once) before any
task starts. The only module of occlass that imports pyspark; `spark-submit` runs this file
(`python -m occlass.predict.spark` is the same without spark-submit)."""

from __future__ import annotations

import functools
import json
import logging
import operator
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from pyspark.accumulators import AccumulatorParam
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from occlass.errors import DataError, OcclassError
from occlass.predict.loader import load_configured, predictor_options
from occlass.predict.predictor import Predictor, prediction_columns

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
# predict.py's options that a worker needs to load the run and build its Predictor
WORKER_OPTIONS = ("run", "data_dir", "zero_shot_cache", "corrections", "device",
                  "max_category_length", "max_input_length", "batch_size", "batch_tokens",
                  "precision", "evidence", "review_below", "confidence", "target_precision",
                  "min_level")

_PREDICTOR: dict[str, Predictor] = {}  # this Python worker's predictor, by its settings


class CountPerProcess(AccumulatorParam):
    """An accumulator of {worker pid: count}."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, total: dict, more: dict) -> dict:
        for pid, n in more.items():
            total[pid] = total.get(pid, 0) + n
        return total


def worker_predictor(settings: dict, loads) -> Predictor:
    """This worker's Predictor for `settings`, loaded on its first call (counted in `loads`)."""
    key = json.dumps(settings, sort_keys=True)
    if key not in _PREDICTOR:
        _PREDICTOR.clear()
        torch.set_num_threads(settings["threads"])
        transformers.logging.disable_progress_bar()
        options = settings["options"]
        predictor = Predictor(load_configured(options), **predictor_options(options))
        if predictor.run_id != settings["run_id"]:
            raise OcclassError(f"{options['run']}: this executor sees run {predictor.run_id}, "
                               f"the driver {settings['run_id']}; put the run on storage that "
                               "every node shares")
        _PREDICTOR[key] = predictor
        loads.add({os.getpid(): 1})
    return _PREDICTOR[key]


def code_batches(batches, settings: dict, schema: pa.Schema, loads, coded_rows):
    """`mapInArrow`'s function: each batch of distinct keys with its prediction columns."""
    keys = settings["keys"]
    for batch in batches:
        coded_rows.add(batch.num_rows)
        frame = batch.select(keys).to_pandas(types_mapper=pd.ArrowDtype, ignore_metadata=True)
        predictor = worker_predictor(settings, loads)
        description = frame[keys[1]] if len(keys) > 1 else None
        result = predictor.predict(frame[keys[0]], description, settings["top_k"]).to_frame()
        coded = pa.RecordBatch.from_pandas(result, schema=schema, preserve_index=False)
        yield pa.RecordBatch.from_arrays([*batch.select(keys).columns, *coded.columns],
                                         names=[*keys, *schema.names])


def spark_error(err: Exception) -> OcclassError:
    """Spark's error as one line: an OcclassError raised in a worker by its own message."""
    text = str(err)
    for line in text.splitlines():
        if "OcclassError: " in line or "DataError: " in line:
            return OcclassError(line.split("Error: ", 1)[1].strip())
    return OcclassError(" ".join(text.split("JVM stacktrace:")[0].split())[:500])


def session(engine: DictConfig) -> SparkSession:
    """The active session, or one built from `engine` (master, conf). Under spark-submit, its
    --master and --conf decide; a local master stays on loopback and uses this Python."""
    builder = SparkSession.builder.appName(engine.app_name)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started this process
    if engine.master and not submitted:
        builder = builder.master(engine.master)
        if str(engine.master).startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = OmegaConf.to_container(engine.conf, resolve=True) if engine.conf else {}
    for key, value in flat(conf).items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else value)
    return builder.getOrCreate()


def flat(conf: dict, prefix: str = "") -> dict:
    """{"spark": {"task": {"cpus": 2}}} as {"spark.task.cpus": 2} (Hydra nests dotted keys)."""
    out = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_input(spark: SparkSession, path: str, fmt: str | None) -> DataFrame:
    """The input table: Parquet, CSV (header, every value as text) or JSON Lines, by `fmt` or
    the path's suffix (a folder or glob without one: Parquet)."""
    fmt = fmt or FORMATS.get(Path(str(path).rstrip("/*")).suffix.lower(), "parquet")
    if fmt not in set(FORMATS.values()):
        raise OcclassError(f"engine.format={fmt!r}: choose parquet, csv or json")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.options(header=True, multiLine=True, escape='"')
    try:
        return reader.load(str(path))
    except PySparkException as err:
        raise DataError(f"input={path}: {spark_error(err)}") from None


def check_columns(df: DataFrame, cfg: DictConfig) -> list[str]:
    """The key columns (title, and description when there is one); a missing or clashing
    column is a DataError, before any work."""
    title, description = cfg.columns.title, cfg.columns.description
    header = df.columns
    if title not in header:
        near = [c for c in header if c.strip().lower() == title.lower()]
        hint = f"set columns.title={near[0]!r}" if near else f"columns found: {', '.join(header)}"
        raise DataError(f"{cfg.input}: no column {title!r} (columns.title); {hint}")
    if description not in (None, "description") and description not in header:
        raise DataError(f"{cfg.input}: has no column {description!r} (columns.description); "
                        f"columns found: {', '.join(header)}")
    written = prediction_columns(cfg.top_k) + (["row_id"] if cfg.engine.row_id else [])
    if clash := [c for c in written if c in header]:
        raise DataError(f"{cfg.input}: has column(s) {', '.join(clash)}, which prediction "
                        "writes; rename them")
    return [title] + ([description] if description in header else [])


def arrow_schema(columns: list[str]) -> pa.Schema:
    """The Arrow types of the prediction columns: scores and confidences as doubles,
    needs_review as booleans, the rest as text."""
    def kind(column: str) -> pa.DataType:
        if column.startswith("pred_score") or column.endswith("confidence"):
            return pa.float64()
        return pa.bool_() if column == "needs_review" else pa.string()
    return pa.schema([(c, kind(c)) for c in columns])


def worker_settings(cfg: DictConfig, threads: int) -> dict:
    """What a worker needs, as plain values. Paths stay as given: each worker resolves them in
    its own folder (local mode: the driver's; a cluster's: where --archives unpack)."""
    options = {key: cfg.get(key) for key in WORKER_OPTIONS}
    return {"options": options, "top_k": cfg.top_k, "threads": threads}


def predict_spark(cfg: DictConfig) -> dict:
    """predict.py with engine=spark: `cfg.input` coded into the Parquet dataset `cfg.output`.
    Returns the rows, the distinct keys coded, the rows per status, the run_id and the model
    loads per worker process."""
    engine = cfg.engine
    if not (cfg.input and cfg.output):
        raise OcclassError("engine=spark: give input=FILE_FOLDER_OR_GLOB and output=FOLDER")
    for key, default in (("threads_per_task", "spark.task.cpus"),
                         ("partitions", "2 × spark.default.parallelism")):
        value = engine[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise OcclassError(f"engine.{key}={value!r}: give a whole number of at least 1, "
                               f"or null ({default})")
    threads = engine.threads_per_task
    if Path(cfg.output).exists():
        raise OcclassError(f"output={cfg.output} exists: Spark writes a new folder; remove it "
                           "or choose another")
    created = SparkSession.getActiveSession() is None
    spark = session(engine)
    try:
        df = read_input(spark, cfg.input, engine.format)
        keys = check_columns(df, cfg)
        settings = worker_settings(cfg, threads or int(spark.conf.get("spark.task.cpus", "1")))
        predictor = Predictor(load_configured(settings["options"]),  # the run is sound
                              **predictor_options(settings["options"]))
        columns = list(predictor.predict_frame(pd.DataFrame({keys[0]: ["probe"]}), cfg.top_k,
                                               keys[0], None).columns[1:])
        settings.update(run_id=predictor.run_id, keys=keys)
        del predictor
        summary = run_job(spark, df, keys, settings, arrow_schema(columns), cfg)
    finally:
        if created:
            spark.stop()
    flagged = {s: n for s, n in summary["status"].items() if s != "ok"}
    log.info("%d rows → %s (%d distinct (title, description) coded, %.1f%% of the rows%s); "
             "run_id %s; the model loaded %d times in %d worker processes",
             summary["rows"], cfg.output, summary["distinct"],
             100 * summary["distinct"] / max(summary["rows"], 1),
             "".join(f"; {n} {s}" for s, n in flagged.items()), summary["run_id"],
             sum(summary["loads"].values()), len(summary["loads"]))
    return summary


def run_job(spark: SparkSession, df: DataFrame, keys: list[str], settings: dict,
            schema: pa.Schema, cfg: DictConfig) -> dict:
    """Distinct keys → mapInArrow → joined back → written; then the counts, read back."""
    if cfg.engine.row_id:
        df = df.withColumn("row_id", F.monotonically_increasing_id())
    # spread over the cores: Spark would pack a small set of distinct keys into one partition
    partitions = cfg.engine.partitions or 2 * spark.sparkContext.defaultParallelism
    distinct = df.select(*keys).dropDuplicates().repartition(partitions)
    fields = [T.StructField(f.name, T.DoubleType() if f.type == pa.float64() else
                            T.BooleanType() if f.type == pa.bool_() else T.StringType())
              for f in schema]
    loads = spark.sparkContext.accumulator({}, CountPerProcess())
    coded_rows = spark.sparkContext.accumulator(0)
    with warnings.catch_warnings():  # mapInArrow needs no pandas on Spark's side
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas",
                                FutureWarning)
        coded = distinct.mapInArrow(
            functools.partial(code_batches, settings=settings, schema=schema, loads=loads,
                              coded_rows=coded_rows),
            T.StructType([*distinct.schema.fields, *fields]))
    renamed = [f"__key_{i}" for i in range(len(keys))]
    coded = coded.toDF(*renamed, *schema.names)
    on = functools.reduce(operator.and_, [df[k].eqNullSafe(coded[r])
                                          for k, r in zip(keys, renamed)])
    try:
        df.join(coded, on, "left").drop(*renamed).write.parquet(str(cfg.output))
        written = spark.read.parquet(str(cfg.output))
        status = Counter({r["status"]: r["count"]
                          for r in written.groupBy("status").count().collect()})
    except PySparkException as err:
        raise spark_error(err) from None
    return {"rows": status.total(), "distinct": coded_rows.value, "status": status,
            "run_id": settings["run_id"], "loads": dict(loads.value)}


if __name__ == "__main__":  # spark-submit .../occlass/predict/spark.py run=RUN input=IN output=OUT
    import importlib  # predict.py's entry point, which imports this module: not at import time

    sys.argv[1:1] = ["engine=spark"]
    importlib.import_module("occlass.predict.__main__").main()
