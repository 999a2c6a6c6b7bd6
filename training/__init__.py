"""Training and evaluation entry points that need both the models (models/) and motion or video
databases (retrieval/): they open a database, read the training data out of it and hand it to the
model code, which knows nothing of databases.

    cd <pack folder>
    python -m training t2m --db-root R --db NAME --out DIR      # text-to-motion (t2m.py)
    python -m training i2v --db-root R --out DIR                # offline image-to-video motion model (i2v.py)
    python -m training t2m-benchmark --config small            # time t2m training steps (t2m_benchmark.py)
"""
