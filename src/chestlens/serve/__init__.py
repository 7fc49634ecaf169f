"""``chestlens serve``: the screening pipeline as a web service (FastAPI) with a browser page.

Modules: :mod:`~chestlens.serve.settings` (configuration), :mod:`~chestlens.serve.app` (the app factory
``create_app(settings)``), :mod:`~chestlens.serve.api` (routes under ``/api/v1``),
:mod:`~chestlens.serve.engine` (micro-batching off the event loop, bounded queue),
:mod:`~chestlens.serve.store` (results and jobs in SQLite or any SQLAlchemy URL),
:mod:`~chestlens.serve.uploads` (in-memory reading, private spool folders, zipped series),
:mod:`~chestlens.serve.layers` (overlay pictures), :mod:`~chestlens.serve.jobs` (background CT series),
:mod:`~chestlens.serve.problems` (RFC 9457 error bodies), :mod:`~chestlens.serve.middleware` (request
ids, structured logs, body size limit, API keys). Research use only.
"""
